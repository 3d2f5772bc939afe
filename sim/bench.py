"""``python -m sim.bench <engine>``: benchmarks that print JSON and a table.

Each engine's benchmark lives in ``sim/bench_<engine>.py`` and provides
``add_arguments(parser)`` and ``run(args) -> dict`` (the JSON document). Figures
come from the RTL simulated cycle by cycle or from yosys/nextpnr (docs/design.md 4);
record them in docs/results.md with the command that made them.

While it runs, a benchmark prints a line on standard error as each job (a Verilog
conversion, a simulation, a synthesis run) starts and ends, with the time left
(``sim/progress.py``), and what the simulation runner reports (a simulator model being
built); ``--quiet`` leaves them out. The table, or with ``--json`` the JSON
document, is the only thing on standard output.
"""

import importlib
import json
import logging
import sys
from contextlib import contextmanager, nullcontext

from gen.cli import OneLineParser, UsageError

BENCHMARKS = {
    "systolic": "sim.bench_systolic",
    "spmv": "sim.bench_spmv",
    "topk": "sim.bench_topk",
    "synth": "sim.bench_synth",
    "accel": "sim.bench_accel",
    "gen": "sim.bench_gen",
    "sweep": "sim.bench_sweep",
}


def print_table(rows, columns):
    """Print ``rows`` (dicts) as an aligned text table of ``columns``."""
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(cell[i]) for cell in cells)) if cells else len(column)
              for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)))
    print("  ".join("-" * width for width in widths))
    for cell in cells:
        print("  ".join(value.ljust(width) for value, width in zip(cell, widths)))


@contextmanager
def _runner_log_relayed():
    """Inside the block, what the simulation runner reports (a model being built) goes to
    standard error."""
    log = logging.getLogger("sim.runner")
    handler, level = logging.StreamHandler(sys.stderr), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def main(argv=None):
    parser = OneLineParser(prog="python -m sim.bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="engine", required=True,
                                     parser_class=OneLineParser)
    modules = {}
    for engine, module_name in BENCHMARKS.items():
        try:
            modules[engine] = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        sub = commands.add_parser(engine, help=modules[engine].__doc__.splitlines()[0])
        sub.add_argument("--json", action="store_true", help="print only the JSON document")
        sub.add_argument("--quiet", action="store_true",
                         help="no progress lines on standard error")
        modules[engine].add_arguments(sub)
    args = parser.parse_args(argv)
    try:
        with nullcontext() if args.quiet else _runner_log_relayed():
            document = modules[args.engine].run(args)
    except (ValueError, UsageError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
