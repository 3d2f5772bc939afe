"""Utilization of the fusion systolic array per mode, measured on the RTL against the cycle model.

Runs GEMMs on the generated Verilog (Verilator, cycle by cycle) with an ideal
source and sink and reports, per mode, the array utilization of docs/design.md 4
(useful MACs / (PEs x lanes x cycles from the first step accepted to the last
result taken)), the steady-state utilization (the same over the cycles from the
first to the last step accepted, without the final drain) and the measured
cycles beside golden.systolic's prediction.
"""

import json
import sys
import tempfile
from pathlib import Path

from gen.cli import parse_array
from golden.systolic import Mode, Tiling, gemm_cycles, useful_macs
from rtl.fusion import modes
from rtl.systolic import SystolicArray
from sim import runner
from sim.progress import FIRST_BUILD, Progress

SHAPES = {"64x64x64": (64, 64, 64), "odd 50x70x33": (50, 70, 33)}


def add_arguments(parser):
    parser.add_argument("--array", default="8x8", metavar="RxC", help="array shape (default 8x8)")
    parser.add_argument("--bits", default="mixed", choices=["mixed", "2", "4", "8"],
                        help="PE precision (default mixed)")
    parser.add_argument("--drain-rows", type=int, default=None, metavar="G",
                        help="result rows per beat (default: the generator's default)")


def run(args):
    rows, cols = parse_array(args.array)
    precision = "mixed" if args.bits == "mixed" else int(args.bits)
    array = SystolicArray(rows, cols, precision, drain_rows=args.drain_rows)
    jobs = [{"shape": name, "m": m, "n": n, "k": k, "w_bits": w, "a_bits": a,
             "w_signed": True, "a_signed": False}
            for w, a in modes(precision) for name, (m, n, k) in SHAPES.items()]
    top = f"array_{rows}x{cols}_{precision}"
    label = f"{rows}x{cols} {'mixed' if precision == 'mixed' else f'{precision}-bit'} array"
    progress = Progress(2, None if args.quiet else sys.stderr, kinds=["Verilog", "simulation"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        with progress.job(f"{label}: Verilog"):
            source = runner.verilog_of(array, top)
            # No network layers: the benchmark runs none, and their default trains the MLP.
            params = runner.resolve_params(array, "sim.tb.systolic", {
                "seed": 0, "jobs": jobs, "out": str(out), "layers": []})
        with progress.job(f"{label}: {len(jobs)} GEMMs simulated", FIRST_BUILD):
            runner.run(source, "sim.tb.systolic", name=top, testcase="benchmark", params=params)
        measured = json.loads(out.read_text())
    table = []
    for job in measured:
        mode = Mode(job["w_bits"], job["a_bits"], job["w_signed"], job["a_signed"])
        tiling = Tiling(job["m"], job["n"], job["k"], rows, cols, mode.lanes)
        work = rows * cols * mode.lanes
        table.append({
            "mode": f"{job['w_bits']}x{job['a_bits']}",
            "gemm": job["shape"],
            "cycles": job["cycles"],
            "model_cycles": gemm_cycles(tiling, array.drain_rows, array.fifo_depth,
                                        edge_registers=array.edge_registers),
            "utilization": round(useful_macs(tiling) / (work * job["cycles"]), 4),
            "steady_state_utilization": round(useful_macs(tiling) / (work * job["step_span"]), 4),
        })
    document = {"array": f"{rows}x{cols}", "precision": precision,
                "drain_rows": array.drain_rows, "fifo_depth": array.fifo_depth, "results": table}
    if not args.json:
        from sim.bench import print_table
        print(f"{rows}x{cols} fusion array ({precision}, {array.drain_rows} result rows per beat),"
              f" ideal source and sink")
        print_table(table, ["mode", "gemm", "cycles", "model_cycles", "utilization",
                            "steady_state_utilization"])
    return document
