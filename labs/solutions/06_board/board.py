"""Lab 6: from RTL to a board: area against throughput, and the largest array that fits.

Reference solution. The student's starter is labs/06_board/board.py.
"""

import json
from pathlib import Path

from gen.synth import CELLS, DEVICES
from golden.bitfusion import lanes

#: The recorded synthesis reports of the lab (``python -m gen --array RxC --bits B --synth
#: DEVICE``), one directory ``fusion_array_RxC_B.synth-DEVICE`` each.
REPORTS = Path(__file__).resolve().parents[2] / "06_board" / "reports"
#: nextpnr's name for the logic cells that a design must fit in, per family.
LOGIC_CELLS = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


def read_report(directory, device):
    """The figures of one synthesis run for ``device`` (a key of gen.synth.DEVICES).

    ``directory`` holds yosys's ``stat.json`` (cells by type, after synthesis) and nextpnr's
    ``nextpnr.json`` (``--report``: the device's utilization after placement, Fmax per clock).

    Returns
    -------
    dict
        ``lut``, ``ff``, ``dsp``, ``bram``: yosys's cells of each resource (the cell types
        gen.synth.CELLS names for the family, each a prefix); ``cells`` and
        ``cells_available``: the logic cells nextpnr placed and the device has;
        ``fmax_mhz``: the slowest clock's achieved frequency.
    """
    family = DEVICES[device].family
    directory = Path(directory)
    stat = json.loads((directory / "stat.json").read_text())
    placed = json.loads((directory / "nextpnr.json").read_text())
    by_type = stat["design"]["num_cells_by_type"]
    figures = {resource: sum(count for cell, count in by_type.items()
                             if cell.startswith(tuple(names)))
               for resource, names in CELLS[family].items()}
    logic = placed["utilization"][LOGIC_CELLS[family]]
    figures["cells"], figures["cells_available"] = logic["used"], logic["available"]
    figures["fmax_mhz"] = min(clock["achieved"] for clock in placed["fmax"].values())
    return figures


def peak_gops(rows, cols, bits, fmax_mhz):
    """Peak throughput in GOPS (a multiply-accumulate is 2 operations) of an array ``rows x
    cols`` of ``bits``-bit PEs at ``fmax_mhz``; a ``"mixed"`` array at its peak, mode 2x2."""
    width = 2 if bits == "mixed" else bits
    return 2 * rows * cols * lanes(width, width) * fmax_mhz / 1000


def largest_fitting(designs, clock_mhz):
    """The design with the most PEs that fits its device and meets ``clock_mhz``.

    ``designs`` are dicts with ``rows`` and ``cols`` and the figures of :func:`read_report`.
    A design fits when its logic cells are at most the device's; it meets the clock when its
    Fmax is at least ``clock_mhz``. Of designs with as many PEs, the first. None if none does.
    """
    best = None
    for design in designs:
        if design["cells"] <= design["cells_available"] and design["fmax_mhz"] >= clock_mhz:
            if best is None or design["rows"] * design["cols"] > best["rows"] * best["cols"]:
                best = design
    return best


def plot(points, path):
    """Area against throughput: LUTs on x, peak GOPS on y, a line per device (labelled with
    the device's name) through its points in order of LUTs. Writes a PNG to ``path`` and
    returns the figure. ``points`` are dicts with ``device``, ``lut`` and ``gops``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(6, 4))
    for device in sorted({point["device"] for point in points}):
        mine = sorted((p["lut"], p["gops"]) for p in points if p["device"] == device)
        axes.plot([lut for lut, _ in mine], [gops for _, gops in mine], "o-", label=device)
    axes.set_xscale("log")
    axes.set_xlabel("LUT4")
    axes.set_ylabel("peak GOPS")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return figure


def recorded(reports=REPORTS):
    """Every report recorded in ``reports``, as dicts of ``device``, ``rows``, ``cols``,
    ``bits`` and the figures of :func:`read_report`."""
    designs = []
    for directory in sorted(Path(reports).iterdir()):
        name, device = directory.name.split(".synth-")
        shape, bits = name.split("_")[2:4]
        rows, cols = (int(n) for n in shape.split("x"))
        designs.append({"device": device, "rows": rows, "cols": cols,
                        "bits": bits if bits == "mixed" else int(bits),
                        **read_report(directory, device)})
    return designs


if __name__ == "__main__":
    designs = recorded()
    print("device      array  bits   lut    cells  fmax   GOPS")
    for d in designs:
        d["gops"] = peak_gops(d["rows"], d["cols"], d["bits"], d["fmax_mhz"])
        print(f"{d['device']:10}  {d['rows']}x{d['cols']}    {d['bits']!s:5}  {d['lut']:5}  "
              f"{d['cells']:5}  {d['fmax_mhz']:5.1f}  {d['gops']:5.2f}")
    best = largest_fitting([d for d in designs if d["device"] == "ice40-up5k"], 12.0)
    print("largest for the iCEBreaker:",
          None if best is None else f"{best['rows']}x{best['cols']} {best['bits']}-bit")
    plot(designs, "area_throughput.png")
