"""Design-space sweep: synthesis + place and route of a grid of arrays on Dask, cached, plotted.

The grid is array shapes x precisions x devices x edge registers x drain rows, each
precision's fusion array and, per shape, device and options, the plain 8-bit ``a*b`` array
beside it. Every configuration is one job on a ``dask.distributed`` cluster: a local one of
``--workers`` (default: the machine's cores) or the one at ``--scheduler ADDRESS``. A job
runs :func:`gen.synth.synthesize` in a process of its own, killed after ``--timeout``
seconds. Its row is cached in ``OUT/cache/<configuration>.json`` and not run again
(``--force``: run again); a job that fails (a tool error, a design that does not fit, a
timeout) is a row with its ``error``, and for a design yosys mapped its yosys counts (and the
logic cells, or on ECP5 the LUT/carry slices, nextpnr packed it into). The
table goes to ``OUT/sweep.csv`` and ``OUT/sweep.json``, the plot (GOPS at Fmax per mode
against LUT4, the Pareto front marked, one panel per device) to ``OUT/sweep.png``.

Example::

    python -m sim.bench sweep --device ice40-up5k --array 1x1 --array 2x2 --workers 1
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from gen.cli import UsageError, parse_array
from gen.synth import DEVICES, SynthesisError, cell_counts, synthesize
from rtl.fusion import modes
from rtl.systolic import peak_macs

__all__ = ["add_arguments", "run", "grid", "config_key", "measure", "measure_in_process",
           "sweep", "write_table", "plot", "pareto_front", "COLUMNS"]

#: Precisions of the grid: the fusion array's, and ``plain`` for the 8-bit ``a*b`` array.
PRECISIONS = ("2", "4", "8", "mixed")
#: Columns of ``sweep.csv``, in order (``cells``: iCE40 logic cells or ECP5 LUT/carry slices,
#: placed or, for a design too large, packed; ``gops_<mode>``: GOPS at Fmax in mode
#: ``<mode>``).
COLUMNS = ["device", "array", "pe", "edge_registers", "drain_rows", "target_mhz", "lut", "ff",
           "dsp", "bram", "cells", "fmax_mhz", "gops_2x2", "gops_4x4", "gops_8x8", "seconds",
           "error"]
#: Seconds a job may take before it is killed and reported as a timeout (an 8x8 array on
#: ECP5-85F takes 15-20 min).
DEFAULT_TIMEOUT = 3600.0


def add_arguments(parser):
    parser.add_argument("--array", action="append", metavar="RxC",
                        help="array shape, repeatable (default: 1x1, 1x2, 2x2)")
    parser.add_argument("--bits", action="append", choices=PRECISIONS,
                        help="precision of the fusion array, repeatable (default: all)")
    parser.add_argument("--device", action="append", choices=sorted(DEVICES),
                        help="device, repeatable (default: ice40-up5k)")
    parser.add_argument("--edge-registers", action="append", type=int, choices=(1, 2),
                        help="edge registers, repeatable (default: 2)")
    parser.add_argument("--drain-rows", action="append", type=int, metavar="G",
                        help="result rows per beat, repeatable; a shape whose rows G does not "
                             "divide is left out for that G (default: the array's)")
    parser.add_argument("--no-plain", action="store_true",
                        help="leave out the plain a*b array beside each shape")
    parser.add_argument("--freq", type=float, metavar="MHZ",
                        help="target MHz (default: the device's)")
    parser.add_argument("--out", default="build/sweep", metavar="DIR",
                        help="table, plot, cache and tool files (default: build/sweep)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a running Dask scheduler, such as tcp://10.0.0.5:8786 (default: "
                             "a local cluster)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="jobs at a time on the local cluster (default: the machine's "
                             "cores)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"kill a job after this long (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--force", action="store_true",
                        help="run every configuration again, cached or not")


def grid(shapes, precisions, devices, edge_registers=(2,), drain_rows=(None,), plain=True,
         freq_mhz=None):
    """The configurations of a sweep, each a dict (see :func:`config_key`).

    A ``drain_rows`` value that does not divide a shape's rows is left out for that shape;
    the plain ``a*b`` array follows each shape's fusion arrays when ``plain``.

    Raises
    ------
    UsageError
        A shape that is not ``RxC``, or a drain value that divides no shape's rows.
    """
    parsed = [(shape, *parse_array(shape)) for shape in shapes]
    for drain in drain_rows:
        if drain is not None and drain < 1:
            raise UsageError(f"--drain-rows must be at least 1, not {drain}")
        if drain is not None and not any(rows % drain == 0 for _, rows, _ in parsed):
            raise UsageError(f"--drain-rows {drain} divides none of the rows of "
                             f"{', '.join(shapes)}")
    kinds = [*precisions, *(["plain"] if plain else [])]
    return [{"device": device, "array": shape, "pe": pe, "edge_registers": edge,
             "drain_rows": drain, "target_mhz": freq_mhz or DEVICES[device].default_mhz}
            for device in devices for shape, rows, _ in parsed for edge in edge_registers
            for drain in drain_rows if drain is None or rows % drain == 0 for pe in kinds]


def config_key(config):
    """The file name of a configuration's cached row: ``ice40-up5k_2x2_mixed_edge2_drain-
    default_12mhz``."""
    drain = "default" if config["drain_rows"] is None else config["drain_rows"]
    return (f"{config['device']}_{config['array']}_{config['pe']}_edge{config['edge_registers']}"
            f"_drain-{drain}_{config['target_mhz']:g}mhz")


def _array(config):
    """The array a configuration describes."""
    from rtl.baseline import PlainArray
    from rtl.systolic import SystolicArray
    rows, cols = parse_array(config["array"])
    options = {"edge_registers": config["edge_registers"], "drain_rows": config["drain_rows"]}
    if config["pe"] == "plain":
        return PlainArray(rows, cols, **options)
    precision = "mixed" if config["pe"] == "mixed" else int(config["pe"])
    return SystolicArray(rows, cols, precision, **options)


def _gops(array, fmax_mhz):
    """GOPS at ``fmax_mhz`` (2 ops per MAC) in each square mode the array runs."""
    return {f"gops_{w}x{a}": round(2 * peak_macs(array.rows, array.cols, w, a) * fmax_mhz / 1e3, 3)
            for w, a in modes(array.precision) if w == a}


def measure(config, work):
    """Synthesize, place and route one configuration in ``work``; return its row.

    A :class:`~gen.synth.SynthesisError` (a tool failed, the design does not fit) is the row's
    ``error``; the row keeps yosys's counts if yosys got that far.
    """
    started = time.monotonic()
    shutil.rmtree(work, ignore_errors=True)     # no report of an earlier run (--force) is read
    array = _array(config)
    name = config_key(config).replace("-", "_").replace(".", "_")
    row = {**config}
    try:
        report = synthesize(array, name, config["device"], work, config["target_mhz"])
    except SynthesisError as error:
        row["error"] = str(error)
        row.update(_yosys_counts(config, Path(work)))
    else:
        fmax = min(clock["achieved_mhz"] for clock in report["fmax"].values())
        row.update({resource: figure["used"] for resource, figure in report["resources"].items()})
        row["fmax_mhz"] = fmax
        row.update(_gops(array, fmax))
    row["cells"] = _logic_cells(config, Path(work))
    row["seconds"] = round(time.monotonic() - started, 1)
    return row


def _yosys_counts(config, work):
    """LUT4, FF, DSP and BRAM from the yosys statistics under ``work``, if there are any."""
    stats = list(work.glob("*/stat.json"))
    if not stats:
        return {}
    cells = json.loads(stats[0].read_text())["design"]["num_cells_by_type"]
    return cell_counts(cells, DEVICES[config["device"]].family)


#: nextpnr's logic cells per family: on iCE40 each a LUT4 and a flip-flop (what the UP5K
#: runs out of); on ECP5 the LUT/carry slices (a LUT4 each, two per carry cell), counted
#: against the device apart from the flip-flops.
LOGIC_CELLS = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


def _logic_cells(config, work):
    """Logic cells nextpnr used (or, after an overflow, needed, from its pack-only report)
    under ``work``; None on a family without them or before nextpnr ran."""
    bel = LOGIC_CELLS.get(DEVICES[config["device"]].family)
    reports = [*work.glob("*/nextpnr.json"), *work.glob("*/packed.json")]
    if bel is None or not reports:
        return None
    return json.loads(reports[0].read_text())["utilization"][bel]["used"]


def measure_in_process(config, work, timeout=DEFAULT_TIMEOUT):
    """:func:`measure` in a child process of its own, killed with its tools after ``timeout``
    seconds; the job a sweep runs on each worker.

    Returns the row; a timeout, or a child that fails without a row, is the row's ``error``.
    """
    command = [sys.executable, "-m", "sim.bench_sweep", json.dumps(config), str(work)]
    return _child_row(config, command, timeout)


def _child_row(config, command, timeout):
    """The row that ``command`` prints as its last line of JSON, else one with the error."""
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)    # the child and the tools it runs
        child.communicate()
        return {**config, "error": f"timeout after {timeout:g} s",
                "seconds": round(time.monotonic() - started, 1)}
    if child.returncode:
        last = (err.strip().splitlines() or ["(no message)"])[-1]
        return {**config, "error": f"job failed (exit status {child.returncode}): {last}",
                "seconds": round(time.monotonic() - started, 1)}
    return json.loads(out.strip().splitlines()[-1])


def _cacheable(row):
    """Whether a row is a measurement to keep: it is, or it failed in the tools (which fail
    the same way again), but not a timeout or a job that crashed."""
    error = row.get("error", "")
    return not error.startswith(("timeout", "job failed"))


def sweep(configs, out_dir, client, job=measure_in_process, force=False, timeout=DEFAULT_TIMEOUT,
          progress=None):
    """Run ``configs`` on the Dask ``client``; return their rows in the same order.

    Parameters
    ----------
    configs : list of dict
        From :func:`grid`.
    out_dir : path
        ``cache/`` holds a row per configuration measured; ``work/`` the tools' files.
    client : distributed.Client
    job : callable
        ``job(config, work_dir, timeout) -> row``; an exception it raises is the row's error.
    force : bool
        Run every configuration, cached or not.
    progress : file, optional
        Where the progress bar goes (jobs done, running and failed); None: nowhere.
    """
    from distributed import as_completed
    from tqdm import tqdm

    cache = Path(out_dir) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    rows = {}
    for config in configs:
        path = cache / f"{config_key(config)}.json"
        if not force and path.exists():
            rows[config_key(config)] = json.loads(path.read_text())
    todo = [config for config in configs if config_key(config) not in rows]
    futures = {client.submit(job, config, str(Path(out_dir) / "work" / config_key(config)),
                             timeout, key=f"sweep-{config_key(config)}-{time.time_ns()}",
                             pure=False): config
               for config in todo}
    slots = sum(client.nthreads().values()) or 1
    failed = sum(1 for row in rows.values() if row.get("error"))
    left = len(futures)
    with tqdm(total=len(configs), initial=len(rows), file=progress, disable=progress is None,
              unit="job", dynamic_ncols=True) as bar:
        bar.set_postfix(running=min(slots, left), failed=failed)
        for future in as_completed(futures):
            config = futures[future]
            try:
                row = future.result()
            except Exception as error:      # the job's own failure: a row, not a crash
                row = {**config, "error": f"job failed: {type(error).__name__}: {error}"}
            rows[config_key(config)] = row
            if _cacheable(row):
                (cache / f"{config_key(config)}.json").write_text(
                    json.dumps(row, indent=1, sort_keys=True) + "\n")
            failed += bool(row.get("error"))
            left -= 1
            bar.update(1)
            bar.set_postfix(running=min(slots, left), failed=failed)
    return [rows[config_key(config)] for config in configs]


def write_table(rows, out_dir):
    """``sweep.csv`` (:data:`COLUMNS`) and ``sweep.json`` in ``out_dir``; return their paths."""
    out = Path(out_dir)
    with open(out / "sweep.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "sweep.json").write_text(json.dumps({"results": rows}, indent=1) + "\n")
    return out / "sweep.csv", out / "sweep.json"


def pareto_front(points):
    """The points ``(lut, gops)`` that no other point beats: no more LUTs and more GOPS, in
    order of LUTs."""
    front, best = [], float("-inf")
    for lut, gops in sorted(points, key=lambda point: (point[0], -point[1])):
        if gops > best:
            front.append((lut, gops))
            best = gops
    return front


#: Marker of each precision and colour of each mode in the plot.
MARKERS = {"2": "v", "4": "s", "8": "D", "mixed": "o"}
MODE_COLOURS = {"2x2": "tab:green", "4x4": "tab:blue", "8x8": "tab:red"}


def plot(rows, path):
    """GOPS at Fmax per mode against LUT4, one panel per device, to the PNG ``path``.

    Each fusion array is a point per square mode it runs (colour: the mode; marker: the
    precision), the Pareto front over them a dashed line with the points on it ringed; the
    plain ``a*b`` array is a black cross. Rows without an Fmax (failed) are left out.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    placed = [row for row in rows if row.get("fmax_mhz")]
    devices = sorted({row["device"] for row in placed})
    figure, axes = plt.subplots(1, max(len(devices), 1), figsize=(6 * max(len(devices), 1), 4.8),
                                squeeze=False)
    for axis, device in zip(axes[0], devices):
        points = []
        for row in placed:
            if row["device"] != device:
                continue
            for mode, colour in MODE_COLOURS.items():
                gops = row.get(f"gops_{mode}")
                if gops is None:
                    continue
                if row["pe"] == "plain":
                    axis.scatter(row["lut"], gops, marker="x", color="black", zorder=3)
                    continue
                points.append((row["lut"], gops))
                axis.scatter(row["lut"], gops, marker=MARKERS[row["pe"]], color=colour,
                             alpha=0.8, zorder=2)
        front = pareto_front(points)
        if front:
            axis.plot(*zip(*front), linestyle="--", color="grey", drawstyle="steps-post",
                      zorder=1)
            axis.scatter(*zip(*front), s=160, facecolors="none", edgecolors="black", zorder=4)
        axis.set_xscale("log")
        axis.set_yscale("log")
        targets = sorted({row["target_mhz"] for row in placed if row["device"] == device})
        axis.set_title(f"{device} (target {', '.join(f'{t:g}' for t in targets)} MHz)")
        axis.set_xlabel("LUT4")
        axis.set_ylabel("GOPS at Fmax (2 ops per MAC)")
        axis.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colour, label=f"mode {mode}")
               for mode, colour in MODE_COLOURS.items()]
    handles += [plt.Line2D([], [], marker=marker, linestyle="", color="grey",
                           label=f"{pe}-bit fusion" if pe != "mixed" else "mixed fusion")
                for pe, marker in MARKERS.items()]
    handles += [plt.Line2D([], [], marker="x", linestyle="", color="black",
                           label="plain a*b 8-bit"),
                plt.Line2D([], [], marker="o", markersize=12, linestyle="--", color="grey",
                           markerfacecolor="none", label="Pareto front (fusion)")]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return Path(path)


def _client(args):
    """A client of the scheduler at ``--scheduler``, else of a new local cluster."""
    from distributed import Client, LocalCluster
    if args.scheduler:
        try:
            return Client(args.scheduler, timeout=10)
        except OSError as error:
            raise UsageError(f"--scheduler {args.scheduler}: cannot connect ({error})") from None
    workers = args.workers or os.cpu_count() or 1
    # Threads are enough: each job runs in a process of its own (measure_in_process).
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                           dashboard_address=":0")
    return Client(cluster)


def run(args):
    if args.workers is not None and args.scheduler:
        raise UsageError("--workers sets the size of a local cluster: not with --scheduler")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {args.workers}")
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    if args.freq is not None and not 1 <= args.freq <= 1000:
        raise UsageError(f"--freq must be between 1 and 1000 MHz, not {args.freq:g}")
    configs = grid(args.array or ["1x1", "1x2", "2x2"], args.bits or list(PRECISIONS),
                   args.device or ["ice40-up5k"], args.edge_registers or [2],
                   args.drain_rows or [None], not args.no_plain, args.freq)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with _client(args) as client:
        rows = sweep(configs, out, client, force=args.force, timeout=args.timeout,
                     progress=None if args.quiet else sys.stderr)
    paths = [*write_table(rows, out), plot(rows, out / "sweep.png")]
    if not args.quiet:
        print("wrote " + ", ".join(str(path) for path in paths), file=sys.stderr)
    if not args.json:
        from sim.bench import print_table
        print_table([{**row, "drain_rows": row["drain_rows"] or "default"} for row in rows],
                    COLUMNS)
    return {"results": rows}


if __name__ == "__main__":
    # A worker's job (measure_in_process): one configuration, its row printed as JSON.
    print(json.dumps(measure(json.loads(sys.argv[1]), sys.argv[2])))
