"""Grading of lab 6 (RTL to a board): the student's reading of recorded synthesis reports
(yosys ``stat.json``, nextpnr ``nextpnr.json``) against the figures gen.synth reported for
the same runs (``report.json``) and nextpnr's own; the peak throughput against its
definition; the largest array that fits and meets the clock; the area-throughput plot.

Nothing is synthesized here: the reports are in labs/06_board/reports/ (tests/test_labs.py
has a slow test that synthesizes one small array live)."""

import json
import tempfile
from pathlib import Path

import numpy as np

from gen.synth import DEVICES
from golden.bitfusion import lanes
from labs.check import LABS_DIR, Divergence, Part, StudentError

NUMBER = 6
TITLE = "From RTL to a board: area against throughput, the largest array for the iCEBreaker"
FILES = ["board.py"]

#: The recorded reports: ``fusion_array_RxC_B.synth-DEVICE`` directories.
REPORTS = LABS_DIR / "06_board" / "reports"
#: nextpnr's logic cells per family.
LOGIC_CELLS = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


def recorded_runs(reports=REPORTS):
    """(directory, device, rows, cols, bits) of every recorded report."""
    runs = []
    for directory in sorted(Path(reports).iterdir()):
        name, device = directory.name.split(".synth-")
        shape, bits = name.split("_")[2:4]
        rows, cols = (int(n) for n in shape.split("x"))
        runs.append((directory, device, rows, cols, bits if bits == "mixed" else int(bits)))
    return runs


def expected_figures(directory, device):
    """What :func:`read_report` must give, from gen.synth's ``report.json`` and nextpnr's
    utilization: ``{key: (value, where it is recorded)}``."""
    report = json.loads((directory / "report.json").read_text())
    placed = json.loads((directory / "nextpnr.json").read_text())
    logic_name = LOGIC_CELLS[DEVICES[device].family]
    logic = placed["utilization"][logic_name]
    want = {resource: (figure["used"], f"report.json resources.{resource}.used")
            for resource, figure in report["resources"].items()}
    want["cells"] = (logic["used"], f"nextpnr.json utilization.{logic_name}.used")
    want["cells_available"] = (logic["available"],
                               f"nextpnr.json utilization.{logic_name}.available")
    fmax = min(clock["achieved_mhz"] for clock in report["fmax"].values())
    want["fmax_mhz"] = (fmax, "report.json fmax ... achieved_mhz, to 0.1 MHz")
    return want


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise StudentError(f"{what} must be a number, not {value!r:.60}")
    return float(value)


def check_report(files):
    """``read_report`` on every recorded report gives its figures."""
    read = files.get("read_report")
    for directory, device, *_ in recorded_runs():
        got = files.call(read, directory, device)
        if not isinstance(got, dict):
            raise StudentError(f"read_report must return a dict, not {got!r:.60}")
        for key, (value, where) in expected_figures(directory, device).items():
            if key not in got:
                raise StudentError(f"read_report's dict needs the key {key!r}, not only "
                                   f"{sorted(got)}")
            mine = _number(got[key], f"read_report's {key!r}")
            close = abs(mine - value) <= 0.05 if key == "fmax_mhz" else mine == value
            if not close:
                raise Divergence(f"{directory.name}: expected {key} {value:g} ({where}), "
                                 f"got {mine:g}")


#: (rows, cols, bits, fmax_mhz) of the throughput part: the recorded 8x8 ECP5 arrays of
#: docs/results.md and small ones.
THROUGHPUT = [(8, 8, "mixed", 103.6), (8, 8, 2, 104.6), (8, 8, 4, 67.2), (8, 8, 8, 93.0),
              (2, 2, 8, 39.5), (1, 2, 2, 37.4), (4, 4, 4, 121.5)]


def check_throughput(files):
    """``peak_gops``: 2 x PEs x lanes of the mode x Fmax."""
    peak = files.get("peak_gops")
    for rows, cols, bits, fmax in THROUGHPUT:
        width = 2 if bits == "mixed" else bits
        want = 2 * rows * cols * lanes(width, width) * fmax / 1000
        got = _number(files.call(peak, rows, cols, bits, fmax), "peak_gops")
        if abs(got - want) > 1e-9:
            raise Divergence(f"peak_gops(rows={rows}, cols={cols}, bits={bits!r}, "
                             f"fmax_mhz={fmax}): expected {want:.4f} GOPS "
                             f"({lanes(width, width)} multiplies per PE per cycle), got "
                             f"{got:.4f}")


def _design(rows, cols, lut, cells, fmax, available=5280):
    return {"rows": rows, "cols": cols, "lut": lut, "ff": lut, "dsp": 0, "bram": 8,
            "cells": cells, "cells_available": available, "fmax_mhz": fmax}


#: Lists of the largest-array part: (name, designs, clock, index of the answer or None).
CHOICES = [
    ("its LUT4 fit but not its logic cells", [_design(1, 2, 905, 1436, 37.4),
                                              _design(2, 2, 1662, 2588, 39.5),
                                              _design(2, 3, 2500, 5400, 30.0)], 12.0, 1),
    ("too slow for the clock", [_design(2, 2, 1662, 2588, 11.5),
                                _design(1, 2, 905, 1436, 37.4)], 12.0, 1),
    ("exactly full, exactly the clock", [_design(1, 1, 540, 844, 37.6),
                                         _design(2, 4, 3500, 5280, 12.0)], 12.0, 1),
    ("nothing fits", [_design(4, 4, 6600, 9900, 20.0)], 12.0, None),
]


def check_largest(files):
    """``largest_fitting``: the most PEs among the designs that fit and meet the clock."""
    largest = files.get("largest_fitting")
    for name, designs, clock, answer in CHOICES:
        got = files.call(largest, [dict(d) for d in designs], clock)
        want = None if answer is None else designs[answer]
        if (got is None) != (want is None) or \
                (got is not None and (got.get("rows"), got.get("cols")) !=
                 (want["rows"], want["cols"])):
            listed = ", ".join(f"{d['rows']}x{d['cols']} ({d['cells']} of "
                               f"{d['cells_available']} cells, {d['fmax_mhz']} MHz)"
                               for d in designs)
            shape = "None" if want is None else f"{want['rows']}x{want['cols']}"
            mine = "None" if got is None else f"{got.get('rows')}x{got.get('cols')}"
            raise Divergence(f"{name}: of {listed} at {clock:g} MHz, expected {shape}, "
                             f"got {mine}")


def check_plot(files):
    """``plot``: a PNG and a line per device through its (LUT, GOPS) points by LUT."""
    plot = files.get("plot")
    points = [{"device": "ecp5-25k", "lut": 1505, "gops": 1.02},
              {"device": "ice40-up5k", "lut": 1662, "gops": 0.32},
              {"device": "ice40-up5k", "lut": 540, "gops": 0.08},
              {"device": "ecp5-25k", "lut": 486, "gops": 0.26},
              {"device": "ice40-up5k", "lut": 905, "gops": 0.15}]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "area.png"
        try:
            figure = files.call(plot, [dict(p) for p in points], str(path))
        except StudentError as error:
            if "matplotlib" in str(error):
                raise StudentError(f"{error} (pip install matplotlib)") from None
            raise
        if not path.is_file() or path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            raise Divergence(f"plot(points, path) wrote no PNG at {path.name}")
    lines = {} if not hasattr(figure, "axes") or not figure.axes else \
        {line.get_label(): line for line in figure.axes[0].get_lines()}
    for device in ("ecp5-25k", "ice40-up5k"):
        if device not in lines:
            raise Divergence(f"the figure plot returns has no line labelled {device!r} (its "
                             f"lines: {sorted(lines) or 'none'})")
        want = sorted((p["lut"], p["gops"]) for p in points if p["device"] == device)
        got = list(zip(np.asarray(lines[device].get_xdata(), dtype=float).tolist(),
                       np.asarray(lines[device].get_ydata(), dtype=float).tolist()))
        if len(got) != len(want) or not np.allclose(got, want):
            raise Divergence(f"line {device!r}: expected the points (LUT, GOPS) {want}, in "
                             f"order of LUTs, got {got}")


PARTS = [
    Part("read report", 3, check_report, timeout=30),
    Part("throughput", 2, check_throughput, timeout=30),
    Part("largest array", 2, check_largest, timeout=30),
    Part("plot", 1, check_plot, timeout=60),
]
