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
    and by an unknown opcode (error, error_pc, no hang, the next program runs), a host that
    stalls its writes and reads, and host writes into WEIGHT while the GEMM engine runs (they
    wait: WEIGHT has one port): all bit-exact against the model."""
    from rtl.accel.core import Accelerator
    from sim.runner import run
    from sim.tb.accel import digits_jobs
    config = small_config()
    run(Accelerator(config), "sim.tb.accel", name="accel_test_4x4",
        testcase=["reset_mid_program_then_clean_run",
                  "bad_address_stops_with_error_then_next_program_runs",
                  "slow_host_back_pressure", "weight_writes_wait_for_the_array"],
        params={"jobs": digits_jobs(config, images=8, batches=2, precisions=["mixed"],
                                    sparsities=(0.9,))})


def topk_job(config, images=8, batches=2, n=13, k=2, seed=3):
    """A job whose TOPK stands alone: a one-layer network of ``n`` outputs (``ceil(n / C)``
    RESULT words an image), compiled for logits, then TOPK of ``k`` of its ``n`` logits per
    image into OUTPUT. Weights -1..1 and inputs 0..2 make ties (at the k-th score in 7 of
    the 16 images with the default seed). The model's OUTPUT words and publication cycles, in
    the form of ``sim.tb.accel.network_job`` (RESULT is not read back: its 32 words would keep
    the host behind the program, and the cycles are the model's only for a host ahead)."""
    import dataclasses
    from golden.accel import AccelModel, compile_network
    from golden.network import QuantizedLayer, QuantizedMLP
    from rtl.accel.isa import Engine, Instruction, Opcode, Space
    rng = np.random.default_rng(seed)
    layer = QuantizedLayer(rng.integers(-1, 2, (n, 16)), rng.integers(-1, 2, n), 8, 8,
                           None, None, None)
    program = compile_network(QuantizedMLP((layer,), 1.0), config, images, output="logits")
    topk_words = [Instruction.const({"opcode": opcode, "args": {opcode.name.lower(): args}})
                  .as_bits() for opcode, args in (
                      (Opcode.TOPK, {"src": program.output_dst, "n": n, "k": k, "dst": 0,
                                     "tile_cols": program.output_tile_cols, "images": images}),
                      (Opcode.WAIT, {"engines": Engine.TOPK}))]
    instructions = program.instructions[:-2] + topk_words + program.instructions[-2:]
    program = dataclasses.replace(program, instructions=instructions)
    model = AccelModel(config)
    model.load(program)
    model.start()
    jobs_batches = []
    for _ in range(batches):
        page = program.input_page(rng.integers(0, 3, (images, 16)))
        model.fill_input(page)
        base = model.published * config.output_words
        jobs_batches.append({
            "input": [[w, v] for w, v in enumerate(page) if v],
            "expect": {"OUTPUT": [[w, model.read(Space.OUTPUT, base + w)]
                                  for w in range(images * k)]}})
        model.results_taken()
    memories = {space.name: sorted(words.items()) for space, words in program.memories.items()
                if space is not Space.SPMV}
    memories["PROGRAM"] = list(enumerate(program.instructions))
    return {"name": f"TOPK alone, n={n} k={k}", "memories": memories, "entries": [],
            "batches": jobs_batches, "published": model.timing.published}


def run_topk_and_digits(name, **changes):
    """TOPK alone and the digits network (8-bit, 90% sparse) on ``small_config()`` with a
    fixed 8-bit array, no sparse unit (a smaller model to build) and ``changes``: the
    model's outputs, bit for bit, and its cycles."""
    import dataclasses
    from rtl.accel.core import Accelerator
    from sim.runner import run
    from sim.tb.accel import digits_jobs
    config = dataclasses.replace(small_config(), precision=8, spmv=None, **changes)
    jobs = [topk_job(config)] + digits_jobs(config, images=8, batches=2, precisions=["8-bit"],
                                            sparsities=(0.9,))
    run(Accelerator(config), "sim.tb.accel", name=name, testcase="networks_bit_exact",
        params={"jobs": jobs})


@pytest.mark.parametrize("par", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_fewer_scores_per_beat_bit_exact_and_cycle_exact(par):
    """The top-k engine taking a bank of C = 4 scores in 4 / par beats: the digits network
    (n = 10, k = 1) and TOPK alone (n = 13, not a multiple of par or C; k = k_max = 2) give
    the model's outputs, bit for bit, and its cycles. Each par is a model to build (about a
    minute): par = 1 (no beat sorter, 4 beats a bank) runs with -m slow."""
    from rtl.accel.config import TopkConfig
    run_topk_and_digits(f"accel_test_4x4_topk_par{par}",
                        topk=TopkConfig(n_max=16, k_max=2, par=par))


def test_two_rows_per_beat_and_24_bit_accumulators_bit_exact_and_cycle_exact():
    """The 4x4 array draining two rows per beat (its default is one: a RESULT word of two
    banks, an output stage of 8 lanes) with 24-bit accumulators, the ULX3S accelerator's
    kind of setting: the digits network (through the top-k engine) and TOPK alone give the
    model's outputs, bit for bit, and its cycles."""
    run_topk_and_digits("accel_test_4x4_drain2_acc24", drain_rows=2, acc_width=24)


@pytest.mark.parametrize("option, value, message", [
    ("--topk-par", "3", "--topk-par must divide the array's cols (8), not 3"),
    ("--topk-par", "0", "--topk-par must be between 1 and 32, not 0"),
    ("--drain-rows", "3", "--drain-rows must divide the array's rows (8), not 3"),
    ("--drain-rows", "16", "--drain-rows must be between 1 and 8, not 16"),
])
def test_gen_refuses_a_share_that_does_not_divide_the_array(option, value, message, tmp_path,
                                                            capsys):
    from gen.cli import main
    out = tmp_path / "out"
    assert main(["--unit", "accel", option, value, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"python -m gen: error: {message}\n" and not captured.out
    assert not out.exists()


@pytest.mark.parametrize("argv, name, par", [
    ([], "accel_8x8_mixed", 8),
    (["--topk-par", "2"], "accel_8x8_mixed_topk256_8_2", 2),
    (["--array", "4x4", "--topk-n", "16", "--topk-k", "2"], "accel_4x4_mixed_topk16_2", 4),
    (["--array", "4x4", "--topk-n", "16", "--topk-k", "2", "--topk-par", "1"],
     "accel_4x4_mixed_topk16_2_1", 1),
])
def test_gen_topk_par_defaults_to_the_columns_and_names_the_design(argv, name, par):
    from gen.accel import config, name_of
    from gen.cli import build_parser
    accel = config(build_parser().parse_args(["--unit", "accel", *argv]))
    assert (name_of(accel), accel.topk_par) == (name, par)
