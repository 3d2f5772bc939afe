"""Sustained throughput and latency of the top-k engine, measured on the RTL.

Random signed 16-bit scores, an ideal source and sink, the generated Verilog on
Verilator cycle by cycle; each batch runs :data:`REPEATS` times back to back. ``cycles`` is
one batch alone, from its first score taken to its last index taken (docs/design.md 4's
top-k throughput is n / cycles); ``period`` the cycles between consecutive batches' last
indices back to back, and ``scores_per_cycle`` n / period, the sustained throughput;
``latency`` the cycles from a batch's last score taken to its last index taken.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from rtl.topk import TopK
from sim import runner
from sim.progress import FIRST_BUILD, Progress

LONG = 8192
REPEATS = 4
#: The engines timed, (n_max, k_max, P), each with the batch sizes and the k it runs: one
#: engine per P with k_max = 32 takes every size and k at run time; the default generated
#: engine (``python -m gen --unit topk``) has k_max = 8, and a latency to match
#: (docs/topk.md Timing: it grows with k_max, not with the run-time k).
ENGINES = [*(((LONG, 32, par), (64, 256, 1024, LONG), (8, 32)) for par in (1, 4, 8)),
           ((256, 8, 4), (64, 256), (8,))]


def add_arguments(parser):
    parser.add_argument("--seed", type=int, default=0)


def run(args):
    rng = np.random.default_rng(args.seed)
    table = []
    progress = Progress(2 * len(ENGINES), None if args.quiet else sys.stderr,
                        kinds=["Verilog", "simulation"] * len(ENGINES))
    for (n_max, k_max, par), sizes, ks in ENGINES:
        engine = TopK(n_max=n_max, k_max=k_max, par=par, score_bits=16, signed_scores=True)
        batches = [{"name": f"n{n} k{k}", "n": n, "k": k,
                    "scores": rng.integers(-(1 << 15), 1 << 15, size=n).tolist()}
                   for n in sizes for k in ks]
        top = f"topk_n{n_max}_k{k_max}_p{par}_s16"
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            with progress.job(f"top-k engine k_max={k_max} P={par}: Verilog"):
                source = runner.verilog_of(engine, top)
                params = runner.resolve_params(
                    engine, "sim.tb.topk",
                    {"seed": 0, "batches": batches, "repeats": REPEATS, "out": str(out)})
            with progress.job(f"top-k engine k_max={k_max} P={par}: {len(batches)} batches "
                              f"simulated",
                              FIRST_BUILD):
                runner.run(source, "sim.tb.topk", name=top, testcase="benchmark", params=params)
            marks = {m["name"]: m for m in json.loads(out.read_text())}
        for batch in batches:
            first, *_, final = marks[batch["name"]]["repeats"]
            period = (final["last_index"] - first["last_index"]) / (REPEATS - 1)
            rate = batch["n"] / period
            table.append({"P": par, "k_max": k_max, "n": batch["n"], "k": batch["k"],
                          "cycles": first["last_index"] - first["first_score"] + 1,
                          "period": round(period, 2), "scores_per_cycle": round(rate, 3),
                          "fraction_of_P": round(rate / par, 3),
                          "latency": first["last_index"] - first["last_score"]})
    document = {"results": table}
    if not args.json:
        from sim.bench import print_table
        print(f"top-k engine, random signed 16-bit scores, ideal source and sink, "
              f"{REPEATS} batches back to back")
        print_table(table, list(table[0]))
    return document
