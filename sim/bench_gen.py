# amaranth: UnusedElaboratable=no
"""Generator run time: seconds to write an array's files, against its size.

For each array shape asked for, runs what ``python -m gen --array RxC --bits B`` does (the
array's Verilog, RTLIL and manifest) in a Python process of its own, imports included, and
times it: with every module the design repeats converted once and instantiated, as the
generator does, and with ``--flat`` also with every submodule converted where it is, as the
generator did before (one after the other for each shape, so both meet the same load on the
machine), each the fastest of ``--repeat`` runs. The table gives both and the speed-up;
the JSON document adds the machine's CPU count and load average.
"""

import os
import subprocess
import sys
import tempfile
import time

from gen.cli import UsageError, parse_array
from rtl.systolic import SystolicArray
from sim.progress import Progress

#: Shapes timed by default: square, 1x1 to 32x32.
DEFAULT_ARRAYS = ("1x1", "2x2", "4x4", "8x8", "16x16", "32x32")

#: The child process: ``generate(shape, bits, out, way)``.
CHILD = "import sys; from sim.bench_gen import generate; generate(*sys.argv[1:])"


def add_arguments(parser):
    parser.add_argument("--array", action="append", metavar="RxC",
                        help=f"array shape, repeatable (default: {', '.join(DEFAULT_ARRAYS)})")
    parser.add_argument("--bits", choices=["2", "4", "8", "mixed"], default="mixed",
                        help="precision (default: mixed)")
    parser.add_argument("--flat", action="store_true",
                        help="also time the flat conversion (every submodule a module of its "
                             "own, as before; minutes at 32x32)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="time each N times and keep the fastest, the run least slowed by "
                             "other jobs on the machine (default: 1)")


def generate(shape, bits, out, way):
    """Write the files ``python -m gen --array shape --bits bits`` writes into ``out``,
    the repeated modules ``"shared"`` (the generator's way) or ``"flat"``."""
    from gen.cli import build_parser
    from gen.emit import write_design
    from gen.systolic import design
    args = build_parser().parse_args(["--array", shape, "--bits", bits])
    write_design(design(args), out, shared=way == "shared")


def _seconds(shape, bits, way):
    """Wall time of :func:`generate` in a fresh Python process."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", CHILD, shape, bits, out, way],
                                capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"the generator failed on {shape} {bits} ({way}): {last}")
    return round(seconds, 2)


def run(args):
    shapes = args.array or list(DEFAULT_ARRAYS)
    bits = args.bits
    for shape in shapes:
        rows, cols = parse_array(shape)
        try:
            SystolicArray(rows, cols, "mixed" if bits == "mixed" else int(bits))
        except ValueError as error:
            raise UsageError(f"--array {error}") from None
    if args.repeat < 1:
        raise UsageError(f"--repeat must be 1 or more, not {args.repeat}")
    ways = ["shared", "flat"] if args.flat else ["shared"]
    # The flat conversion's time grows as the PE count; the shared one's far more slowly.
    jobs = [(shape, way) for shape in shapes for _ in range(args.repeat) for way in ways]
    pes = {shape: parse_array(shape)[0] * parse_array(shape)[1] for shape in shapes}
    progress = Progress([pes[shape] if way == "flat" else 1 + pes[shape] / 16
                         for shape, way in jobs], None if args.quiet else sys.stderr,
                        kinds=[way for _, way in jobs])
    times = {}
    for shape, way in jobs:
        with progress.job(f"{shape} {bits}: generator, {way} modules"):
            seconds = _seconds(shape, bits, way)
        times[shape, way] = min(seconds, times.get((shape, way), seconds))
    runs = []
    for shape in shapes:
        row = {"array": shape, "pes": pes[shape], "shared_s": times[shape, "shared"]}
        if args.flat:
            row["flat_s"] = times[shape, "flat"]
            row["speedup"] = round(row["flat_s"] / row["shared_s"], 1)
        runs.append(row)
    if not args.json:
        from sim.bench import print_table
        print_table(runs, list(runs[0]))
    return {"bits": bits, "cpus": os.cpu_count(),
            "load_average": [round(load, 2) for load in os.getloadavg()], "runs": runs}
