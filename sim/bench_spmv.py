"""Sparse efficiency and speedup of the CSC matrix-vector unit, measured on the RTL.

For a 256x256 layer at 90% weight sparsity and 50% activation sparsity, and for
the pruned digits MLP layers, runs the generated Verilog (Verilator, cycle by
cycle, ideal source and sink) and reports docs/design.md 4's figures: ideal cycles
(sum over non-zero x_j of column nnz / N), measured compute cycles (first
activation accepted to the first result), load-balance efficiency =
ideal / compute, total cycles (to the last result taken) and the speedup over
the same N PEs running the dense layer (rows * cols / N cycles).
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from golden.csc import ideal_cycles
from golden.network import digits_network, digits_split
from rtl.spmv import SpMV
from sim import runner
from sim.progress import FIRST_BUILD, Progress


def add_arguments(parser):
    parser.add_argument("--pes", type=int, default=4, metavar="N", help="PEs (default 4)")
    parser.add_argument("--z-bits", type=int, default=4, metavar="Z",
                        help="zero-run field width (default 4)")
    parser.add_argument("--seed", type=int, default=0)


def layer_jobs(seed):
    rng = np.random.default_rng(seed)
    matrix = rng.integers(-128, 128, size=(256, 256))
    matrix[matrix == 0] = 1
    matrix *= rng.random((256, 256)) >= 0.9
    x = rng.integers(1, 256, size=256) * (rng.random(256) >= 0.5)
    jobs = [{"name": "256x256 w90% x50%", "matrix": matrix.tolist(), "x": x.tolist()}]
    x_test = digits_split()[1][:1]
    for sparsity in (0.5, 0.8, 0.9):
        net = digits_network(8, sparsity)
        for i, (layer, a) in enumerate(zip(net.layers, net.layer_inputs(net.quantize_input(x_test)))):
            jobs.append({"name": f"digits {sparsity:.0%} layer {i}", "matrix": layer.weight.tolist(),
                         "x": a[0].tolist()})
    return jobs


def run(args):
    unit = SpMV(n_pes=args.pes, rows=256, cols=256, value_bits=8, z_bits=args.z_bits, lanes=4,
                queue_depth=8)
    jobs = layer_jobs(args.seed)
    top = f"spmv_{args.pes}pe_256x256_8b_z{args.z_bits}"
    progress = Progress(2, None if args.quiet else sys.stderr, kinds=["Verilog", "simulation"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        with progress.job(f"{args.pes}-PE SpMV unit: Verilog"):
            source = runner.verilog_of(unit, top)
            params = runner.resolve_params(
                unit, "sim.tb.spmv", {"seed": 0, "jobs": jobs, "out": str(out)})
        with progress.job(f"{args.pes}-PE SpMV unit: {len(jobs)} layers simulated", FIRST_BUILD):
            runner.run(source, "sim.tb.spmv", name=top, testcase="benchmark", params=params)
        marks = {m["name"]: m for m in json.loads(out.read_text())}
    table = []
    for job in jobs:
        matrix, x = np.array(job["matrix"]), np.array(job["x"])
        mark = marks[job["name"]]
        compute = mark["first_result"] - mark["first_act"]
        total = mark["last_result"] - mark["first_act"] + 1
        ideal = ideal_cycles(matrix, x, args.pes)
        dense = matrix.size / args.pes
        table.append({
            "layer": job["name"], "shape": f"{matrix.shape[0]}x{matrix.shape[1]}",
            "weight_sparsity": round(float((matrix == 0).mean()), 3),
            "act_sparsity": round(float((x == 0).mean()), 3),
            "ideal_cycles": round(ideal, 1), "compute_cycles": compute, "total_cycles": total,
            "efficiency": round(ideal / compute, 3),
            "speedup": round(dense / total, 2),
        })
    document = {"n_pes": args.pes, "z_bits": args.z_bits, "results": table}
    if not args.json:
        from sim.bench import print_table
        print(f"{args.pes}-PE CSC SpMV, {args.z_bits}-bit zero runs, ideal source and sink")
        print_table(table, list(table[0]))
    return document
