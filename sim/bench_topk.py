"""Sustained throughput and latency of the top-k engine, measured on the RTL.

Random signed 16-bit scores, an ideal source and sink, the generated Verilog on
Verilator cycle by cycle. ``scores/cycle`` is docs/design.md 4's top-k throughput: n
over the cycles from the first score taken to the last index taken;
``latency`` is the cycles from the last score taken to the last index taken.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from rtl.topk import TopK
from sim import runner
from sim.progress import FIRST_BUILD, Progress

SIZES = (64, 256, 1024)
KS = (8, 32)
PARS = (1, 4, 8)
LONG = 8192


def add_arguments(parser):
    parser.add_argument("--seed", type=int, default=0)


def run(args):
    rng = np.random.default_rng(args.seed)
    table = []
    progress = Progress(2 * len(PARS), None if args.quiet else sys.stderr,
                        kinds=["Verilog", "simulation"] * len(PARS))
    for par in PARS:
        engine = TopK(n_max=LONG, k_max=max(KS), par=par, score_bits=16, signed_scores=True)
        batches = [{"name": f"n{n} k{k}", "n": n, "k": k,
                    "scores": rng.integers(-(1 << 15), 1 << 15, size=n).tolist()}
                   for n in (*SIZES, LONG) for k in KS]
        top = f"topk_n{LONG}_k{max(KS)}_p{par}_s16"
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            with progress.job(f"top-k engine P={par}: Verilog"):
                source = runner.verilog_of(engine, top)
                params = runner.resolve_params(
                    engine, "sim.tb.topk", {"seed": 0, "batches": batches, "out": str(out)})
            with progress.job(f"top-k engine P={par}: {len(batches)} batches simulated",
                              FIRST_BUILD):
                runner.run(source, "sim.tb.topk", name=top, testcase="benchmark", params=params)
            marks = {m["name"]: m for m in json.loads(out.read_text())}
        for batch in batches:
            mark = marks[batch["name"]]
            cycles = mark["last_result"] - mark["first_score"] + 1
            rate = batch["n"] / cycles
            table.append({"P": par, "n": batch["n"], "k": batch["k"], "cycles": cycles,
                          "scores_per_cycle": round(rate, 3),
                          "fraction_of_P": round(rate / par, 3),
                          "latency": mark["last_result"] - mark["last_score"]})
    document = {"results": table}
    if not args.json:
        from sim.bench import print_table
        print("top-k engine, random signed 16-bit scores, ideal source and sink")
        print_table(table, list(table[0]))
    return document
