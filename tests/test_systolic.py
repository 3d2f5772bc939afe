# amaranth: UnusedElaboratable=no
"""The fusion PE and the systolic array, as generated Verilog under cocotb, against golden."""

import itertools
import subprocess

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from golden.bitfusion import brick_product, lanes, value_range
from golden.systolic import Mode, Tiling, gemm_cycles, pack_steps, tile_gemm, unpack_results

from golden.network import PRECISIONS, digits_network, digits_split
from rtl.baseline import PlainArray, PlainPE
from rtl.fusion import BitBrick, BrickOperands, FusionMAC, FusionPE, PESignature, mode_const, modes
from gen.synth import tool
from rtl.systolic import DrainColumn, SystolicArray, k_step_bound
from sim.runner import run, simulator_available

ICARUS = pytest.mark.skipif(not simulator_available("icarus"),
                            reason="Icarus Verilog (iverilog) is not installed")


def array_params(array, seed=1, **extra):
    return {"rows": array.rows, "cols": array.cols, "drain_rows": array.drain_rows,
            "fifo_depth": array.fifo_depth, "edge_registers": array.edge_registers,
            "acc_width": array.acc_width,
            "word_bits": array.word_bits, "modes": modes(array.precision), "seed": seed,
            # Odd shapes; the last has one-step tiles in the wide-lane modes, so that
            # draining binds and the credit limit shows in the cycle count.
            "shapes": [[2 * array.rows + 1, array.cols + 2, 37], [array.rows, array.cols, 16],
                       [4 * array.rows, 3 * array.cols, 3]],
            "k_bound_unsigned": k_step_bound(array.acc_width, *modes(array.precision)[-1],
                                             False, False),
            **extra}


@pytest.mark.parametrize("kwargs, message", [
    ({"rows": 0, "cols": 4}, "rows must be between 1 and 32, not 0"),
    ({"rows": 4, "cols": 33}, "cols must be between 1 and 32, not 33"),
    ({"rows": 4, "cols": 4, "precision": 3}, "precision must be 'mixed', 2, 4 or 8, not 3"),
    ({"rows": 4, "cols": 4, "acc_width": 12},
     "acc_width must be between 17 and 64 for mixed-precision PEs, not 12"),
    ({"rows": 4, "cols": 4, "precision": 8, "acc_width": 16},
     "acc_width must be between 17 and 64 for 8-bit PEs, not 16"),
    ({"rows": 4, "cols": 4, "precision": 2, "acc_width": 65},
     "acc_width must be between 16 and 64 for 2-bit PEs, not 65"),
    ({"rows": 6, "cols": 4, "drain_rows": 4}, "drain_rows must divide rows=6, not 4"),
    ({"rows": 4, "cols": 4, "fifo_depth": 0}, "fifo_depth must be between 1 and 128, not 0"),
    ({"rows": 4, "cols": 4, "edge_registers": 3}, "edge_registers must be 1 or 2, not 3"),
])
def test_bad_array_parameters_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        SystolicArray(**kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize("build, message", [
    (lambda: FusionPE("mixed", 16),
     "acc_width must be between 17 and 64 for mixed-precision PEs, not 16"),
    (lambda: FusionPE(4, 65), "acc_width must be between 16 and 64 for 4-bit PEs, not 65"),
    (lambda: FusionPE(6), "precision must be 'mixed', 2, 4 or 8, not 6"),
    (lambda: FusionMAC(8, 16), "acc_width must be between 17 and 64 for 8-bit PEs, not 16"),
    (lambda: PlainPE(4), "precision must be 8, not 4"),
    (lambda: PlainPE(8, 16), "acc_width must be between 17 and 64 for 8-bit PEs, not 16"),
    (lambda: SystolicArray(2, 2, "mixed", pe=PlainPE),
     "precision must be 8 for PlainPE, not 'mixed'"),
    (lambda: SystolicArray(2, 2, pe=object), "pe must be a processing element class such as "
                                             "FusionPE, not <class 'object'>"),
    (lambda: PlainArray(2, 2, acc_width=16),
     "acc_width must be between 17 and 64 for 8-bit PEs, not 16"),
])
def test_bad_pe_parameters_are_one_line_errors_from_the_constructor(build, message):
    with pytest.raises(ValueError) as error:
        build()
    assert str(error.value) == message


@pytest.mark.parametrize("pe_class, precision, operand", [
    (FusionPE, "mixed", BrickOperands), (FusionPE, 2, BrickOperands), (FusionMAC, "mixed", 32),
    (FusionMAC, 4, 16), (PlainPE, 8, 8)])
def test_every_pe_has_the_pe_signature(pe_class, precision, operand):
    # The array strings PEs together (and the proofs drive them) by these member names alone.
    pe = pe_class(precision, 24)
    assert pe.signature == PESignature(operand, 24)
    assert list(pe.signature.members) == ["w", "a", "control", "result", "result_valid",
                                          "forward"]
    assert pe.signature != PESignature(operand, 32)


@pytest.mark.parametrize("rows, drain_rows", [(1, 1), (3, 1), (4, 1), (8, 2), (12, 3), (7, 7),
                                              (32, 8)])
def test_default_drain_rows_keeps_up_with_four_step_tiles(rows, drain_rows):
    # A 2x2-bit tile with K = 64 is 4 steps; its rows must leave in at most 4 beats.
    assert SystolicArray(rows, 2).drain_rows == drain_rows


@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 32), (2, 2), (3, 4), (5, 7), (8, 8), (31, 32),
                                        (32, 32)])
@pytest.mark.parametrize("edge_registers", [1, 2])
def test_default_fifo_depth_keeps_tiles_of_one_step_per_beat_back_to_back(rows, cols,
                                                                          edge_registers):
    # The shortest tiles the drain keeps up with have R/G steps; with the default depth the
    # cycle model takes one more such tile every R/G cycles, never waiting for credit.
    array = SystolicArray(rows, cols, edge_registers=edge_registers)
    steps = rows // array.drain_rows

    def cycles(fifo_depth):
        return [gemm_cycles(Tiling(rows * tiles, cols, steps, rows, cols, 1), array.drain_rows,
                            fifo_depth, edge_registers=edge_registers)
                for tiles in range(1, 3 * array.fifo_depth)]
    default = cycles(array.fifo_depth)
    assert np.all(np.diff(default) == steps)
    # ... and no deeper than that needs.
    assert array.fifo_depth == 2 or cycles(array.fifo_depth - 1)[-1] > default[-1]


@pytest.mark.parametrize("precision, acc_width", [("mixed", 17), ("mixed", 24), ("mixed", 32),
                                                  (8, 17), (4, 16), (2, 16)])
def test_k_bound_is_the_largest_k_whose_worst_sum_fits_the_accumulator(precision, acc_width):
    top = (1 << (acc_width - 1)) - 1
    assert SystolicArray(2, 2, precision, acc_width).k_step_bounds().keys() == {
        (w, a, ws, as_) for w, a in modes(precision) for ws in (False, True)
        for as_ in (False, True)}
    for (w_bits, a_bits), w_signed, a_signed in itertools.product(
            modes(precision), (False, True), (False, True)):
        bound = k_step_bound(acc_width, w_bits, a_bits, w_signed, a_signed)
        corners = [w * a for w in value_range(w_bits, w_signed)
                   for a in value_range(a_bits, a_signed)]
        worst = max(abs(c) for c in corners) * lanes(w_bits, a_bits)   # per step
        assert 1 <= bound <= 65535
        assert bound * worst <= top, (w_bits, a_bits, w_signed, a_signed)
        assert bound == 65535 or (bound + 1) * worst > top, (w_bits, a_bits, w_signed, a_signed)
    assert k_step_bound(32, 8, 8, False, False) == 33025      # (2^31 - 1) // (255 * 255)
    assert k_step_bound(16, 2, 2, False, False) == 227        # (2^15 - 1) // (16 * 3 * 3)


def digits_layers(samples=12):
    """Layer inputs and weights of the pruned, quantized digits MLP (8-bit and mixed)."""
    x_test = digits_split()[1][:samples]
    layers = []
    for name, bits, sparsity in (("8-bit 50%", 8, 0.5), ("mixed 80%", PRECISIONS["mixed"], 0.8)):
        net = digits_network(bits, sparsity)
        for i, (layer, a) in enumerate(zip(net.layers, net.layer_inputs(net.quantize_input(x_test)))):
            layers.append({"name": f"{name} layer {i}", "w_bits": layer.w_bits,
                           "a_bits": layer.a_bits, "a": a.tolist(), "w": layer.weight.T.tolist(),
                           "bias": layer.bias.tolist(), "acc": layer.accumulate(a).tolist()})
    return layers


def test_bitbrick_multiplies_every_pair_of_slices_as_golden_does():
    # Every 2-bit slice pair, each read unsigned (0..3) or as a signed top slice (-2..1):
    # the steered 3-bit values the brick gets, and the golden brick's product.
    cases = [(w, a, ws, as_) for ws in (False, True) for as_ in (False, True)
             for w in range(-2 if ws else 0, 2 if ws else 4)
             for a in range(-2 if as_ else 0, 2 if as_ else 4)]
    brick, got = BitBrick(), []

    async def testbench(ctx):
        for w, a, _, _ in cases:
            ctx.set(brick.w, w)
            ctx.set(brick.a, a)
            got.append(ctx.get(brick.product))

    sim = Simulator(brick)
    sim.add_testbench(testbench)
    sim.run()
    assert got == [int(brick_product(w, a, ws, as_)) for w, a, ws, as_ in cases]
    assert len(cases) == 64


@pytest.mark.parametrize("simulator", ["verilator", pytest.param("icarus", marks=ICARUS)])
def test_fusion_pe_matches_golden_in_every_mode(simulator):
    tests = None if simulator == "verilator" else ["random_dot_products_in_every_mode",
                                                   "reset_mid_dot_product_discards_it"]
    run(FusionMAC("mixed"), "sim.tb.fusion", name="fusion_mac", simulator=simulator,
        testcase=tests, params={"acc_width": 32, "latency": FusionPE.latency, "seed": 7,
                                "modes": modes("mixed")})


@pytest.mark.parametrize("precision", [8, 4, 2])
def test_fixed_precision_pe_matches_golden(precision):
    run(FusionMAC(precision), "sim.tb.fusion", name=f"fusion_mac_{precision}",
        testcase=["random_dot_products_in_every_mode", "reset_mid_dot_product_discards_it"],
        params={"acc_width": 32, "latency": FusionPE.latency, "seed": precision,
                "modes": modes(precision)})


def test_mixed_array_gemms_stalls_cycles_reset_and_bounds():
    array = SystolicArray(3, 4, "mixed", acc_width=24)
    run(array, "sim.tb.systolic", name="array_3x4_mixed",
        testcase=["random_gemms_in_every_mode_under_stalls", "cycle_count_matches_golden_model",
                  "reset_mid_gemm_then_a_clean_gemm", "configuration_beyond_the_k_bound_is_rejected",
                  "result_back_pressure_stalls_the_array_without_loss",
                  "back_to_back_gemms_of_different_modes"],
        params=array_params(array))


@ICARUS
def test_mixed_array_on_icarus():
    array = SystolicArray(2, 3, "mixed", edge_registers=1)
    run(array, "sim.tb.systolic", name="array_2x3_mixed", simulator="icarus",
        testcase=["random_gemms_in_every_mode_under_stalls", "cycle_count_matches_golden_model",
                  "reset_mid_gemm_then_a_clean_gemm"],
        params=array_params(array, seed=5))


def test_8x8_array_runs_the_digits_mlp_and_matches_the_cycle_model():
    array = SystolicArray(8, 8, "mixed")
    run(array, "sim.tb.systolic", name="array_8x8_mixed",
        testcase=["digits_mlp_layers_bit_exact", "cycle_count_matches_golden_model"],
        params=array_params(array, layers=digits_layers()))


@pytest.mark.parametrize("precision", [8, 2])
def test_fixed_precision_array(precision):
    array = SystolicArray(2, 3, precision, edge_registers=1)
    run(array, "sim.tb.systolic", name=f"array_2x3_{precision}",
        testcase=["random_gemms_in_every_mode_under_stalls", "cycle_count_matches_golden_model",
                  "reset_mid_gemm_then_a_clean_gemm"],
        params=array_params(array, seed=precision))


def test_plain_baseline_array_matches_golden():
    array = PlainArray(2, 3)
    run(array, "sim.tb.systolic", name="plain_array_2x3",
        testcase=["random_gemms_in_every_mode_under_stalls", "cycle_count_matches_golden_model"],
        params=array_params(array, seed=11))


def simulate_gemm(array, mode, a, w, sink_ready=lambda cycle: True, cycles=1000):
    """``a @ w`` on ``array`` in the Amaranth simulator, from an ideal source.

    Returns the result beats the sink took and the cycles of the first step taken and the last
    beat taken; ``sink_ready(cycle)`` is the sink's ``ready``.
    """
    tiling = tile_gemm(a, w, array.rows, array.cols, mode)
    steps = pack_steps(a, w, array.rows, array.cols, mode)
    beats_wanted = tiling.tiles * array.rows // array.drain_rows
    seen = {"beats": [], "first": None, "last": None}

    async def testbench(ctx):
        ctx.set(array.config.payload, {
            "mode": mode_const(mode.w_bits, mode.a_bits, mode.w_signed, mode.a_signed),
            "k_steps": tiling.k_steps, "tiles": tiling.tiles})
        ctx.set(array.config.valid, 1)
        await ctx.tick().until(array.config.ready)
        ctx.set(array.config.valid, 0)
        sent = 0
        for cycle in range(cycles):
            if len(seen["beats"]) == beats_wanted:
                break
            more = sent < len(steps)
            if more:
                ctx.set(array.act.payload, steps[sent][0])
                ctx.set(array.wgt.payload, steps[sent][1])
            ctx.set(array.act.valid, more)
            ctx.set(array.wgt.valid, more)
            ctx.set(array.result.ready, sink_ready(cycle))
            *_, taken, valid, ready, payload = await ctx.tick().sample(
                array.act.ready, array.result.valid, array.result.ready, array.result.payload)
            if more and taken:
                sent += 1
                seen["first"] = cycle if seen["first"] is None else seen["first"]
            if valid and ready:
                seen["beats"].append([[payload[g][c] for c in range(array.cols)]
                                      for g in range(array.drain_rows)])
                seen["last"] = cycle

    sim = Simulator(array)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return tiling, seen["beats"], seen["first"], seen["last"]


@pytest.mark.parametrize("mode", [Mode(4, 2, True, False), Mode(2, 8, False, True),
                                  Mode(8, 8, True, True), Mode(2, 2, True, True)], ids=str)
def test_amaranth_simulator_gemm_is_exact_and_on_the_cycle_model(mode):
    """Without Verilog: one odd GEMM, ideal source and sink, in the Amaranth simulator."""
    seed = mode.lanes + 3 * mode.w_signed + 5 * mode.a_signed
    rng = np.random.default_rng(seed)
    array = SystolicArray(2, 3, "mixed")
    k = 2 * mode.lanes + 1
    a = rng.integers(*value_range(mode.a_bits, mode.a_signed), endpoint=True, size=(5, k))
    w = rng.integers(*value_range(mode.w_bits, mode.w_signed), endpoint=True, size=(k, 4))
    tiling, beats, first, last = simulate_gemm(array, mode, a, w)
    assert np.array_equal(unpack_results(beats, tiling, array.drain_rows), a @ w), f"seed {seed}"
    assert last - first + 1 == gemm_cycles(tiling, array.drain_rows, array.fifo_depth,
                                           edge_registers=array.edge_registers), f"seed {seed}"


@pytest.mark.parametrize("fifo_depth", [1, 2, 3])
def test_back_to_back_one_step_tiles_lose_no_result_at_any_fifo_depth(fifo_depth):
    """Results written on consecutive cycles while the sink waits all come out, in order.

    A two-entry ``SyncFIFOBuffered`` refuses a write in the cycle after its first one (its
    one-entry inner FIFO is full while it refills the output register): found by the
    ``systolic_result_stream`` proof (docs/verification.md).
    """
    mode = Mode(2, 2, True, True)
    array = SystolicArray(1, 1, 2, acc_width=16, fifo_depth=fifo_depth)
    rng = np.random.default_rng(fifo_depth)
    a = rng.integers(*value_range(2, True), endpoint=True, size=(6, mode.lanes))
    w = rng.integers(*value_range(2, True), endpoint=True, size=(mode.lanes, 1))
    # The sink waits until every result is written.
    tiling, beats, _, _ = simulate_gemm(array, mode, a, w, sink_ready=lambda cycle: cycle >= 30,
                                        cycles=200)
    assert tiling.k_steps == 1 and tiling.tiles == 6
    assert len(beats) == tiling.tiles, f"fifo_depth {fifo_depth}: {len(beats)} beats"
    assert np.array_equal(unpack_results(beats, tiling, array.drain_rows), a @ w)


def yosys_selections(tmp_path, component, passes, *selections):
    """The names yosys lists for each of ``selections`` in ``component`` (converted to RTLIL
    as ``top``, flattened after ``passes``), one list per selection."""
    (tmp_path / "top.il").write_text(rtlil.convert(component, name="top", emit_src=False))
    script = f"read_rtlil top.il; hierarchy -top top; proc; flatten; {passes}; " + "; ".join(
        f"tee -q -o selection{i}.txt select -list {selection}"
        for i, selection in enumerate(selections))
    done = subprocess.run([tool("YOSYS"), "-q", "-p", script], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [(tmp_path / f"selection{i}.txt").read_text().split()
            for i in range(len(selections))]


def test_result_ready_reaches_no_row_fifo_read_enable(tmp_path):
    """The result stream's ``ready`` reaches no row FIFO's read enable: yosys follows the
    logic from the drain column's ``beat.ready`` up to the first flip-flop or memory (issue
    19: the fan-out of ``ready`` into every FIFO's read logic limited the 8x8 array's
    Fmax). Without the skid register the cone holds every ``row_fifoN.r_en``."""
    cone, = yosys_selections(tmp_path, DrainColumn(4, 2, 8, 2), "opt_clean",
                             "w:beat__ready %co*:-$dff,$adff,$mem_v2")
    assert "top/beat__ready" in cone and len(cone) > 1       # the skid flag's next state
    assert not [name for name in cone if "r_en" in name or "r_port" in name], cone


@pytest.mark.parametrize("drain_rows, acc_width, flags", [(2, 32, 1 + 4 + 2), (1, 18, 1 + 2 + 4),
                                                        (1, 16, 1 + 1 + 4)])
def test_skid_flag_has_a_copy_per_16_bits_and_per_group_that_yosys_keeps(
        tmp_path, drain_rows, acc_width, flags):
    """The drain column's beat multiplexer takes its select from a copy of the skid flag per
    16 bits of the beat, and each group of rows reads its FIFOs on a copy of its own, beside
    the flag the group pointer uses (issue 19: one flag driving the whole beat's select was
    the 8x8 2-bit array's critical path, one flag into every FIFO's read enable the 8-bit
    array's), and yosys's optimization keeps every copy: copies loaded from the flag's next
    state would be merged into one."""
    registers, = yosys_selections(tmp_path, DrainColumn(4, drain_rows, acc_width, 2),
                                  "opt -full", "w:*skid_valid* %ci1:+[Q] t:*dff* %i")
    assert len(registers) == flags


def test_each_column_writes_its_fifos_on_a_flag_of_its_own(tmp_path):
    """Column ``c``'s row FIFOs are written on PE ``c``'s result flag, delayed with its sum,
    so the registers behind the write enables of different columns are different (issue 19:
    the 8x8 mixed array's critical path was the last PE's flag reaching the first column's
    FIFO across the array). yosys follows each column's row-0 write enable back to the
    registers it comes from; with one flag per row every column finds the same one."""
    cones = yosys_selections(tmp_path, SystolicArray(2, 3, 8), "opt_clean",
                             *(f"w:drain{c}.row_fifo0.w_en %ci*:+$dff[Q]" for c in range(3)))
    sources = [{name for name in cone if "$" not in name and "w_en" not in name}
               for cone in cones]
    assert all(sources), sources
    assert not any(one & other for one, other in itertools.combinations(sources, 2)), sources
