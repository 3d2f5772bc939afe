"""Grading of lab 2 (systolic dataflow): the student's timing model against the array's.

The skew and row timing are checked against the pipeline of docs/systolic.md, the cycle count
against golden.systolic.gemm_cycles over arrays and GEMMs that are fill-, drain- and
credit-bound, and finally against the real array (rtl.systolic.SystolicArray), built by
Verilator and run under cocotb (the ``benchmark`` test of sim.tb.systolic).
"""

import itertools
import json

from golden.bitfusion import lanes
from golden.systolic import Tiling, gemm_cycles, useful_macs
from labs.check import Divergence, Part, StudentError

NUMBER = 2
TITLE = "Systolic dataflow: the skew, cycle count and utilization of the output-stationary array"
FILES = ["dataflow.py"]

#: Arrays of the cycle-model sweep: (rows, cols, drain_rows, fifo_depth, edge_registers).
ARRAYS = [(2, 2, 1, 7, 2), (3, 4, 1, 6, 2), (2, 3, 1, 2, 1), (8, 8, 2, 7, 2), (4, 4, 4, 1, 1),
          (5, 7, 5, 20, 2), (4, 2, 2, 1, 2), (6, 3, 3, 3, 1)]
#: GEMM shapes (M, N, K) of the sweep, with modes (w_bits, a_bits).
SHAPES = [(1, 1, 1), (2, 2, 16), (9, 6, 37), (16, 12, 3), (20, 9, 64), (7, 30, 130)]
MODES = [(8, 8), (4, 4), (2, 2), (8, 2), (2, 4)]
#: The array under Verilator and its GEMMs: one per mode, fill-, drain- and K-bound shapes.
RTL_ARRAY = {"rows": 3, "cols": 4, "precision": "mixed", "acc_width": 24}
RTL_SHAPES = [(9, 6, 37), (3, 4, 16), (12, 12, 3), (7, 9, 70), (3, 4, 1)]


def _count(number, noun):
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _describe(tiling, drain_rows=None, fifo_depth=None, edge_registers=None):
    text = (f"GEMM {tiling.m}x{tiling.n}x{tiling.k} (M x N x K) on array "
            f"{tiling.rows}x{tiling.cols}, {_count(tiling.lanes, 'lane')}: "
            f"{_count(tiling.k_steps, 'step')} per tile, {_count(tiling.tiles, 'tile')}")
    if drain_rows is not None:
        text += (f"; {_count(drain_rows, 'row')} per beat, FIFOs of "
                 f"{_count(fifo_depth, 'tile')}, {_count(edge_registers, 'edge register')}")
    return text


def _integer(files, function, *args):
    value = files.call(function, *args)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StudentError(f"{function.__name__}{args} must return an int, not {value!r}")
    return value


def check_skew(files):
    """``arrival(r, c, E)``: the step reaches PE (r, c) E + r + c edges after it is accepted."""
    arrival = files.get("arrival")
    for edge_registers, r, c in itertools.product((2, 1), range(8), range(8)):
        got = _integer(files, arrival, r, c, edge_registers)
        want = edge_registers + r + c
        if got != want:
            raise Divergence(
                f"arrival(r={r}, c={c}, edge_registers={edge_registers}): expected {want}, "
                f"got {got} (a step accepted at edge 0 is in PE ({r}, {c})'s stage 1 at "
                f"edge {want}: see the timing table in docs/systolic.md)")


def check_rows(files):
    """``row_written``: row r of a tile whose last step is accepted at t is written at
    t + E + r + C - 1 + pe_latency."""
    row_written = files.get("row_written")
    for last_step, r, cols, pe_latency, edge_registers in itertools.product(
            (0, 1, 17), range(4), (1, 2, 4, 8), (5, 3), (2, 1)):
        got = _integer(files, row_written, last_step, r, cols, pe_latency, edge_registers)
        want = last_step + edge_registers + r + cols - 1 + pe_latency
        if got != want:
            raise Divergence(
                f"row_written(last_step={last_step}, r={r}, cols={cols}, "
                f"pe_latency={pe_latency}, edge_registers={edge_registers}): expected {want}, "
                f"got {got}")


def _not_golden(files, name):
    function = files.get(name)
    if "gemm_cycles" in function.__code__.co_names:
        raise StudentError(f"{name} calls gemm_cycles: derive the count yourself")
    return function


def check_cycles(files):
    """``predict_cycles`` equals golden.systolic.gemm_cycles over the sweep."""
    predict = _not_golden(files, "predict_cycles")
    for (rows, cols, drain, depth, edge), (m, n, k), (w_bits, a_bits) in itertools.product(
            ARRAYS, SHAPES, MODES):
        tiling = Tiling(m, n, k, rows, cols, lanes(w_bits, a_bits))
        want = gemm_cycles(tiling, drain, depth, edge_registers=edge)
        got = _integer(files, predict, tiling, drain, depth, 5, edge)
        if got != want:
            raise Divergence(f"{_describe(tiling, drain, depth, edge)}: expected {want} "
                             f"cycles, got {got}")


def check_utilization(files):
    """``utilization`` and ``drain_bound`` against their definitions."""
    utilization, bound = files.get("utilization"), files.get("drain_bound")
    for (rows, cols, drain, depth, edge), (m, n, k), (w_bits, a_bits) in itertools.product(
            ARRAYS[:4], SHAPES, MODES):
        tiling = Tiling(m, n, k, rows, cols, lanes(w_bits, a_bits))
        cycles = gemm_cycles(tiling, drain, depth, edge_registers=edge)
        want = useful_macs(tiling) / (cycles * rows * cols * tiling.lanes)
        got = files.call(utilization, tiling, cycles)
        if not isinstance(got, (int, float)) or abs(got - want) > 1e-9:
            raise Divergence(f"utilization of the {_describe(tiling)} in {cycles} cycles: "
                             f"expected {want:.4f} (useful MACs / (cycles x R x C x lanes)), "
                             f"got {got!r}")
        want = min(1.0, tiling.k_steps * drain / rows)
        got = files.call(bound, tiling, drain)
        if not isinstance(got, (int, float)) or abs(got - want) > 1e-9:
            raise Divergence(f"drain_bound of the {_describe(tiling)}, {drain} rows per "
                             f"beat: expected {want:.4f}, got {got!r}")


def measure_rtl(jobs):
    """Cycles of ``jobs`` on the RTL array under Verilator: (array, list of job dicts)."""
    from rtl.systolic import SystolicArray
    from sim.runner import SimulationFailed, SimulatorMissing, run
    array = SystolicArray(**RTL_ARRAY)
    try:
        # The array of tests/test_systolic.py: the same Verilog, so the same Verilator build.
        test_dir = run(array, "sim.tb.systolic", name="array_3x4_mixed", testcase="benchmark",
                       params={"jobs": jobs, "out": "lab2.json", "layers": [], "seed": 2})
    except (SimulatorMissing, SimulationFailed) as error:
        raise StudentError(f"the array did not run under Verilator: "
                           f"{str(error).splitlines()[0]}") from None
    return array, json.loads((test_dir / "lab2.json").read_text())


def check_rtl(files):
    """``predict_cycles`` equals the cycles the real array takes under Verilator."""
    predict = _not_golden(files, "predict_cycles")
    jobs = [{"shape": f"{m}x{n}x{k}", "m": m, "n": n, "k": k, "w_bits": w_bits,
             "a_bits": a_bits, "w_signed": True, "a_signed": False}
            for (m, n, k), (w_bits, a_bits) in zip(itertools.cycle(RTL_SHAPES),
                                                   itertools.product((2, 4, 8), repeat=2))]
    array, measured = measure_rtl(jobs)
    for job in measured:
        tiling = Tiling(job["m"], job["n"], job["k"], array.rows, array.cols,
                        lanes(job["w_bits"], job["a_bits"]))
        got = _integer(files, predict, tiling, array.drain_rows, array.fifo_depth, 5,
                       array.edge_registers)
        if got != job["cycles"]:
            raise Divergence(
                f"on Verilator, mode {job['w_bits']}x{job['a_bits']}, "
                f"{_describe(tiling, array.drain_rows, array.fifo_depth, array.edge_registers)}"
                f": the array took {job['cycles']} cycles, you predict {got}")


PARTS = [
    Part("skew", 2, check_skew, timeout=30),
    Part("row timing", 2, check_rows, timeout=30),
    Part("cycle model", 3, check_cycles, timeout=60),
    Part("utilization", 1, check_utilization, timeout=60),
    Part("RTL on Verilator", 2, check_rtl, timeout=280),
]
