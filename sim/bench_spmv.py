"""Sparse efficiency and speedup of the CSC matrix-vector unit, measured on the RTL.

For a 256x256 layer at 90% weight sparsity and 50% activation sparsity, and for
the pruned digits MLP layers, runs the generated Verilog (Verilator, cycle by
cycle, ideal source and sink) and reports docs/design.md 4's figures: ideal cycles
(sum over non-zero x_j of column nnz / N), the weights met by the busiest PE,
measured compute cycles (first activation accepted to the first result),
load-balance efficiency = ideal / compute, total cycles (to the last result taken)
and the speedup over the same N PEs running the dense layer (rows * cols / N
cycles). Every measured figure must equal ``golden.csc.spmv_cycles``.

The digits layers run as a network flow would load them: each layer's rows in
``golden.csc.balanced_order`` for N PEs (each column counted with how often its
activation is non-zero on the training split), its columns in its predecessor's
row order, and its input vector in that order too.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from golden.csc import balanced_order, ideal_cycles, pe_loads, spmv_cycles
from golden.network import digits_network, digits_split
from rtl.spmv import SpMV
from sim import runner
from sim.progress import FIRST_BUILD, Progress


def add_arguments(parser):
    parser.add_argument("--pes", type=int, default=4, metavar="N", help="PEs (default 4)")
    parser.add_argument("--z-bits", type=int, default=4, metavar="Z",
                        help="zero-run field width (default 4)")
    parser.add_argument("--seed", type=int, default=0)


def digits_layers(sparsity, n_pes, sample):
    """The digits MLP's layers at ``sparsity`` in balanced row order for ``n_pes`` PEs, each as
    (reordered weights, its input for test image ``sample`` in the reordered columns)."""
    x_train, x_test = digits_split()[:2]
    net = digits_network(8, sparsity)
    inputs = net.layer_inputs(net.quantize_input(x_test[sample:sample + 1]))
    calibration = net.layer_inputs(net.quantize_input(x_train))
    columns = np.arange(net.layers[0].weight.shape[1])
    layers = []
    for layer, x, seen in zip(net.layers, inputs, calibration):
        weight = layer.weight[:, columns]
        rows = balanced_order(weight, n_pes, activity=(seen[:, columns] != 0).mean(axis=0))
        layers.append((weight[rows], x[0][columns]))
        columns = rows
    return layers


def layer_jobs(seed, n_pes):
    rng = np.random.default_rng(seed)
    matrix = rng.integers(-128, 128, size=(256, 256))
    matrix[matrix == 0] = 1
    matrix *= rng.random((256, 256)) >= 0.9
    x = rng.integers(1, 256, size=256) * (rng.random(256) >= 0.5)
    jobs = [{"name": "256x256 w90% x50%", "matrix": matrix.tolist(), "x": x.tolist()}]
    for sparsity in (0.5, 0.8, 0.9):
        for i, (weight, x) in enumerate(digits_layers(sparsity, n_pes, 0)):
            jobs.append({"name": f"digits {sparsity:.0%} layer {i}", "matrix": weight.tolist(),
                         "x": x.tolist()})
    return jobs


def run(args):
    unit = SpMV(n_pes=args.pes, rows=256, cols=256, value_bits=8, z_bits=args.z_bits, lanes=4,
                queue_depth=8)
    jobs = layer_jobs(args.seed, args.pes)
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
        model = spmv_cycles(matrix, x, args.pes, z_bits=args.z_bits, lanes=unit.lanes,
                            queue_depth=unit.queue_depth)
        if (compute, total) != model:
            raise RuntimeError(f"{job['name']}: the RTL took {compute} / {total} cycles, "
                               f"golden.csc.spmv_cycles says {model[0]} / {model[1]}")
        ideal = ideal_cycles(matrix, x, args.pes)
        dense = matrix.size / args.pes
        table.append({
            "layer": job["name"], "shape": f"{matrix.shape[0]}x{matrix.shape[1]}",
            "weight_sparsity": round(float((matrix == 0).mean()), 3),
            "act_sparsity": round(float((x == 0).mean()), 3),
            "ideal_cycles": round(ideal, 1),
            "busiest_pe": int(pe_loads(matrix, args.pes, activity=(x != 0).astype(float)).max()),
            "compute_cycles": compute, "total_cycles": total,
            "efficiency": round(ideal / compute, 3),
            "speedup": round(dense / total, 2),
        })
    document = {"n_pes": args.pes, "z_bits": args.z_bits, "results": table}
    if not args.json:
        from sim.bench import print_table
        print(f"{args.pes}-PE CSC SpMV, {args.z_bits}-bit zero runs, ideal source and sink; "
              f"digits layers in golden.csc.balanced_order")
        print_table(table, list(table[0]))
    return document
