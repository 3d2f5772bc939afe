# amaranth: UnusedElaboratable=no
"""Grading of lab 1 (BitBrick and fusion): the student's Amaranth under the Amaranth simulator.

Every part simulates every input it covers: every slice value of the brick, every operand
word of every width for the slices, every operand pair of every mode and signedness for the
fused multiplier, against golden.bitfusion and plain integer products.
"""

import itertools

import numpy as np
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden.bitfusion import fused_product, slices, value_range
from labs.check import Divergence, Part, StudentError
from rtl.fusion import BitWidth, mode_const

NUMBER = 1
TITLE = "BitBrick and fusion: a 2-bit brick and the shift-add of a 2/4/8-bit multiply"
FILES = ["bitbrick.py"]

#: Modes with and without an 8-bit operand.
NARROW = [(w, a) for w in (2, 4) for a in (2, 4)]
WIDE = [(w, a) for w in (2, 4, 8) for a in (2, 4, 8) if 8 in (w, a)]


def _kind(is_signed):
    return "signed" if is_signed else "unsigned"


def _simulate(dut, testbench):
    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()


def _component(files, name, ports):
    """An instance of the student's component ``name``, its ports checked against ``ports``."""
    cls = files.get(name)
    dut = files.call(cls)
    if not isinstance(dut, wiring.Component):
        raise StudentError(f"{name} must be an amaranth.lib.wiring.Component, not "
                           f"{type(dut).__name__}")
    members = dut.signature.members
    for port, (flow, shape) in ports.items():
        if port not in members:
            raise StudentError(f"{name} has no port {port!r} (it needs {', '.join(ports)})")
        member = members[port]
        if member.flow != flow or member.shape != shape:
            raise StudentError(f"{name}.{port} must be {flow.name}({shape!r}), not "
                               f"{member.flow.name}({member.shape!r})")
    return dut


def check_brick(files):
    """The brick multiplies every pair of slice values (-2..3) exactly."""
    dut = _component(files, "BitBrick", {"w": (In, signed(3)), "a": (In, signed(3)),
                                         "product": (Out, signed(5))})
    wrong = []

    async def testbench(ctx):
        for w, a in itertools.product(range(-2, 4), repeat=2):
            ctx.set(dut.w, w)
            ctx.set(dut.a, a)
            got = ctx.get(dut.product)
            if got != w * a:
                wrong.append(f"BitBrick w={w} a={a}: expected {w * a}, got {got}")
                return
    _simulate(dut, testbench)
    if wrong:
        raise Divergence(wrong[0])


class _SliceProbe(wiring.Component):
    """The student's ``operand_slice`` for p = 0..3 of one word."""

    def __init__(self, files, function):
        super().__init__({"word": In(8), "width": In(BitWidth), "is_signed": In(1),
                          **{f"slice{p}": Out(signed(3)) for p in range(4)}})
        self._files, self._function = files, function

    def elaborate(self, platform):
        m = Module()
        for p in range(4):
            value = self._files.call(self._function, self.word, p, self.width, self.is_signed)
            m.d.comb += getattr(self, f"slice{p}").eq(value)
        return m


def check_slices(files):
    """``operand_slice`` of every word, width, signedness and slice against golden slices."""
    probe = _SliceProbe(files, files.get("operand_slice"))
    wrong = []

    async def testbench(ctx):
        for bits, is_signed in itertools.product((2, 4, 8), (False, True)):
            ctx.set(probe.width, BitWidth.of(bits))
            ctx.set(probe.is_signed, is_signed)
            for word in range(256):
                ctx.set(probe.word, word)
                low = word & ((1 << bits) - 1)
                value = low - (1 << bits) if is_signed and low >> (bits - 1) else low
                want = [int(s) for s in slices(value, bits, is_signed)] + [0] * (4 - bits // 2)
                for p in range(4):
                    got = ctx.get(getattr(probe, f"slice{p}"))
                    if got != want[p]:
                        wrong.append(
                            f"operand_slice(word={word:#010b}, p={p}, width={bits} bits, "
                            f"{_kind(is_signed)}): expected {want[p]}, got {got} "
                            f"(the operand is {value}; its slices, least significant first, "
                            f"are {want[:bits // 2]}; a slice above them is 0)")
                        return
    _simulate(probe, testbench)
    if wrong:
        raise Divergence(wrong[0])


def _explain(w, a, w_bits, a_bits, w_signed, a_signed):
    w_slices = [int(s) for s in slices(w, w_bits, w_signed)]
    a_slices = [int(s) for s in slices(a, a_bits, a_signed)]
    terms = ", ".join(f"({p},{q}) {ws * aq}<<{2 * (p + q)}"
                      for p, ws in enumerate(w_slices) for q, aq in enumerate(a_slices))
    return (f"slices of w {w_slices}, of a {a_slices} (least significant first); "
            f"brick (p,q) products << 2(p+q): {terms}")


def _check_modes(files, modes):
    dut = _component(files, "FusedMultiplier", {"w": (In, 8), "a": (In, 8),
                                                "product": (Out, signed(17))})
    if "mode" not in dut.signature.members:
        raise StudentError("FusedMultiplier has no port 'mode'")
    rng = np.random.default_rng(18)
    wrong = []

    async def testbench(ctx):
        for (w_bits, a_bits), w_signed, a_signed in itertools.product(
                modes, (False, True), (False, True)):
            ctx.set(dut.mode, mode_const(w_bits, a_bits, w_signed, a_signed))
            w_values = np.arange(*np.add(value_range(w_bits, w_signed), (0, 1)))
            a_values = np.arange(*np.add(value_range(a_bits, a_signed), (0, 1)))
            # The bits above an operand belong to other lanes: fill them with noise.
            w_noise = rng.integers(0, 256, len(w_values)) >> w_bits << w_bits
            a_noise = rng.integers(0, 256, len(a_values)) >> a_bits << a_bits
            want = fused_product(w_values[:, None], a_values[None, :], w_bits, a_bits,
                                 w_signed, a_signed)
            assert np.array_equal(want, np.multiply.outer(w_values, a_values))
            for i, w in enumerate(w_values.tolist()):
                ctx.set(dut.w, (w & ((1 << w_bits) - 1)) | int(w_noise[i]))
                for j, a in enumerate(a_values.tolist()):
                    ctx.set(dut.a, (a & ((1 << a_bits) - 1)) | int(a_noise[j]))
                    got = ctx.get(dut.product)
                    if got != w * a:
                        wrong.append(
                            f"mode {w_bits}x{a_bits} (w {_kind(w_signed)}, a "
                            f"{_kind(a_signed)}), w={w} a={a} (words {ctx.get(dut.w):#010b}, "
                            f"{ctx.get(dut.a):#010b}): expected {w * a}, got {got}\n"
                            + _explain(w, a, w_bits, a_bits, w_signed, a_signed))
                        return
    _simulate(dut, testbench)
    if wrong:
        raise Divergence(wrong[0])


def check_narrow(files):
    """Every operand pair of the modes of 2- and 4-bit operands, signed and unsigned."""
    _check_modes(files, NARROW)


def check_wide(files):
    """Every operand pair of the modes with an 8-bit operand, signed and unsigned."""
    _check_modes(files, WIDE)


PARTS = [
    Part("brick", 2, check_brick, timeout=60),
    Part("slices", 3, check_slices, timeout=60),
    Part("fused 2/4-bit", 3, check_narrow, timeout=120),
    Part("fused 8-bit", 2, check_wide, timeout=240),
]
