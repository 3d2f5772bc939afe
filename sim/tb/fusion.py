"""cocotb tests of a stand-alone fusion PE (rtl.fusion.FusionMAC) against golden.bitfusion."""

import functools
import itertools
import random

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge

from golden.bitfusion import fused_dot, lanes, pack, value_range
from rtl.fusion import StepControl, mode_const, modes
from sim.runner import params
from sim.streams import reset, start_clock, to_signed

#: Parameters (sim.runner.params) and their defaults for a :class:`rtl.fusion.FusionMAC`
#: ``pe``: its accumulator width, latency and modes ((w_bits, a_bits) pairs), and the seed of
#: the random dot products.
PARAMS = {
    "acc_width": lambda pe: pe.acc_width,
    "latency": lambda pe: pe.latency,
    "modes": lambda pe: modes(pe.precision),
    "seed": 1,
}


@functools.cache
def control_word(mode, valid, first=False, last=False):
    """The PE's ``control`` port: ``mode`` = (w_bits, a_bits, w_signed, a_signed) and flags."""
    return StepControl.const({"mode": mode_const(*mode), "valid": valid, "first": first,
                              "last": last}).as_bits()


async def run_steps(dut, steps, mode):
    """Drive ``steps`` (w word, a word, first, last) one per cycle; return finished results."""
    p = params()
    acc_width, latency = p["acc_width"], p["latency"]
    results = []
    for w, a, first, last in [*steps, *[(0, 0, None, None)] * latency]:
        dut.w.value, dut.a.value = w, a
        dut.control.value = control_word(tuple(mode), first is not None, bool(first), bool(last))
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        if dut.result_valid.value:
            results.append(to_signed(int(dut.result.value), acc_width))
    return results


@cocotb.test()
async def every_8bit_pair_in_8x8_mode(dut):
    """All 65536 operand pairs, signed x signed and unsigned x unsigned, one product per tile."""
    start_clock(dut)
    await reset(dut)
    for signed in (True, False):
        lo, hi = value_range(8, signed)
        pairs = list(itertools.product(range(lo, hi + 1), repeat=2))
        steps = [(w & 0xFF, a & 0xFF, True, True) for w, a in pairs]
        got = await run_steps(dut, steps, (8, 8, signed, signed))
        want = [w * a for w, a in pairs]
        bad = [(pair, g, e) for pair, g, e in zip(pairs, got, want) if g != e]
        assert len(got) == len(want) and not bad, f"signed={signed}: {bad[:5]}"


@cocotb.test()
async def random_dot_products_in_every_mode(dut):
    """Back-to-back multi-step dot products of random lanes in all 9 modes x 4 signednesses."""
    rng = random.Random(params()["seed"])
    start_clock(dut)
    await reset(dut)
    for (w_bits, a_bits), w_signed, a_signed in itertools.product(
            params()["modes"], (False, True), (False, True)):
        count = lanes(w_bits, a_bits)
        steps, want = [], []
        for _ in range(20):
            length = rng.randint(1, 4)
            total = 0
            for s in range(length):
                w = [rng.randint(*value_range(w_bits, w_signed)) for _ in range(count)]
                a = [rng.randint(*value_range(a_bits, a_signed)) for _ in range(count)]
                total += fused_dot(w, a, w_bits, a_bits, w_signed, a_signed)
                steps.append((pack(w, w_bits, w_signed), pack(a, a_bits, a_signed),
                              s == 0, s == length - 1))
            want.append(total)
        got = await run_steps(dut, steps, (w_bits, a_bits, w_signed, a_signed))
        assert got == want, f"mode {w_bits}x{a_bits} signed {w_signed}/{a_signed}, " \
                            f"seed {params()['seed']}"


@cocotb.test()
async def reset_mid_dot_product_discards_it(dut):
    """A reset in the middle of a dot product leaves no result and a clean accumulator."""
    start_clock(dut)
    await reset(dut)
    w_bits, a_bits = params()["modes"][-1]
    mode = (w_bits, a_bits, False, False)
    ones = pack([1] * lanes(w_bits, a_bits), w_bits)
    dut.w.value, dut.a.value = ones, ones
    dut.control.value = control_word(mode, valid=True, first=True)
    await RisingEdge(dut.clk)
    dut.control.value = control_word(mode, valid=True)
    await RisingEdge(dut.clk)
    await reset(dut)
    assert not dut.result_valid.value
    got = await run_steps(dut, [(ones, ones, False, True)], mode)
    # Without `first`, the step adds to the accumulator, which reset cleared.
    assert got == [lanes(w_bits, a_bits)], got
