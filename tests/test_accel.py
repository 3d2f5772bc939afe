# amaranth: UnusedElaboratable=no
"""The accelerator: its output stage in the Amaranth simulator, and the generated Verilog under
cocotb against the instruction-level golden model (golden.accel)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.requant import requantize
from rtl.accel.output import OutputStage


def run_output_stage(stage, beats, shift, out_bits):
    """Every beat ``(sums, params)`` through ``stage``: [(biased, requantized)] in order."""
    d, C = len(beats[0][0]), len(beats[0][0][0])
    outputs = []

    async def bench(ctx):
        ctx.set(stage.setting, {"shift": shift, "out_bits": out_bits})
        await ctx.tick()
        await ctx.tick()
        for i in range(len(beats) + stage.latency + 1):
            ctx.set(stage.valid, i < len(beats))
            if i < len(beats):
                ctx.set(stage.sums, beats[i][0])
                ctx.set(stage.params, beats[i][1])
            if ctx.get(stage.out_valid):
                outputs.append(([[ctx.get(stage.biased[r][c]) for c in range(C)] for r in range(d)],
                                [[ctx.get(stage.requantized[r][c]) for c in range(C)]
                                 for r in range(d)]))
            await ctx.tick()
    sim = Simulator(stage)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outputs


@pytest.mark.parametrize("shift, out_bits", [(1, 8), (13, 4), (24, 2), (47, 8)])
def test_output_stage_is_golden_requantize(shift, out_bits):
    """acc + bias and clamp((v*M + 2^(shift-1)) >> shift) of every lane, one beat per cycle,
    at the extremes of the accumulator, the bias, the multiplier and the shift."""
    rng = np.random.default_rng(shift)
    d, C = 2, 3
    edges = [-(1 << 31), (1 << 31) - 1, 0, -1, 1]
    beats = []
    for i in range(30):
        sums = rng.integers(-(1 << 31), 1 << 31, (d, C)) if i % 3 else rng.integers(-5000, 5000, (d, C))
        sums.flat[i % (d * C)] = edges[i % len(edges)]
        bias = rng.integers(-(1 << 31), 1 << 31, C) if i % 2 else rng.integers(-300, 300, C)
        multiplier = rng.integers(0, 1 << 16, C)
        multiplier[i % C] = [0, (1 << 16) - 1, 1][i % 3]
        beats.append((sums.tolist(), [{"bias": int(b), "multiplier": int(m)}
                                      for b, m in zip(bias, multiplier)]))
    # Products at the edges of the rounding and the clamp: the top and just above (with
    # the largest out_bits), half a step below and above, 0 and -1/2.
    half, step = 1 << (shift - 1), 1 << shift
    edges = [(256 * step) - half - 1, (256 * step) - half, (255 * step) + half - 1,
             (255 * step) + half, half - 1, half, -half, -half - 1, 0,
             ((1 << out_bits) - 1) * step - half, ((1 << out_bits) - 1) * step + half]
    edges = [v for v in edges if -(1 << 31) <= v < (1 << 31)]
    for first in range(0, len(edges), d * C):
        chunk = (edges[first:first + d * C] + [0] * (d * C))[:d * C]
        beats.append((np.array(chunk).reshape(d, C).tolist(),
                      [{"bias": 0, "multiplier": 1} for _ in range(C)]))
    outputs = run_output_stage(OutputStage(d, C, 32), beats, shift, out_bits)
    assert len(outputs) == len(beats)
    for (sums, params), (biased, requantized) in zip(beats, outputs):
        v = np.array(sums, dtype=np.int64) + np.array([p["bias"] for p in params])
        assert (np.array(biased) == v).all()
        want = requantize(v, np.array([p["multiplier"] for p in params]), shift, out_bits)
        assert (np.array(requantized) == want).all(), (want, requantized)


def small_config():
    """An accelerator small enough to build in seconds that still runs the digits MLP: array
    4x4 mixed, a 2-PE sparse unit, a top-k engine."""
    from rtl.accel.config import AccelConfig, SpmvConfig, TopkConfig
    return AccelConfig(rows=4, cols=4, spmv=SpmvConfig(n_pes=2, rows=64, cols=64),
                       topk=TopkConfig(n_max=16, k_max=2), program_words=32, act_words=256,
                       input_words=32, weight_words=2048, param_words=64, csc_words=1024,
                       result_words=32, output_words=32)


def test_digits_network_every_precision_bit_exact_and_cycle_exact():
    from rtl.accel.core import Accelerator
    from sim.runner import run
    from sim.tb.accel import digits_jobs
    config = small_config()
    run(Accelerator(config), "sim.tb.accel", name="accel_test_4x4", testcase="networks_bit_exact",
        params={"jobs": digits_jobs(config, images=8, batches=3, sparsities=(0.5, 0.9))})


def test_reset_mid_program_bad_address_and_slow_host():
    """Reset in the middle of a program, a program stopped by an address past the scratchpad
    and by an unknown opcode (error, error_pc, no hang, the next program runs), and a host that
    stalls its writes and reads: all bit-exact against the model."""
    from rtl.accel.core import Accelerator
    from sim.runner import run
    from sim.tb.accel import digits_jobs
    config = small_config()
    run(Accelerator(config), "sim.tb.accel", name="accel_test_4x4",
        testcase=["reset_mid_program_then_clean_run",
                  "bad_address_stops_with_error_then_next_program_runs",
                  "slow_host_back_pressure"],
        params={"jobs": digits_jobs(config, images=8, batches=2, precisions=["mixed"],
                                    sparsities=(0.9,))})
