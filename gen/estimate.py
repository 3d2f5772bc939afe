"""Resource estimate of a systolic array before synthesis (``--estimate``), and the fit check
that ``--synth`` and ``--board`` make before they synthesize (``--force``: synthesize anyway).

The model is linear in the array's parts. Per device family and PE kind (the fusion PE of
each precision, the plain ``a*b`` PE), each resource (LUT4, FF, DSP, BRAM) is::

    a * R*C  +  b * drain_rows*C  +  c  +  d * R*C*(C-1)/2  +  s * (R*(R-1) + C*(C-1))/2
             +  e * (edge_registers - 2) * (R + C)

``R*C`` counts the PEs and their row FIFOs; ``drain_rows*C`` the sums of a result beat (the
drain columns' output, the result stream and what reads it); ``c`` the control;
``R*C*(C-1)/2`` the registers of the delay lines that line up a row's sums (``C-1-c`` cycles
after column ``c``); ``(R*(R-1) + C*(C-1))/2`` the registers of the edge skews (``r`` cycles
for row ``r``, ``c`` for column ``c``); the last term the edge registers left out (or added)
between each row's and column's steer and its first PE. On iCE40, swept widely (``python -m
sim.bench sweep``), the coefficients are fitted per PE kind to :data:`MEASUREMENTS` by least
squares; on ECP5, measured at five sizes, the iCE40 model of the PE kind is scaled by one
factor per resource fitted to the ECP5 measurements (see :func:`fit`). Every measurement has 32-bit accumulators; other
``--acc-bits`` are not modelled. :func:`held_out_errors` measures the model on points left
out of its fit (docs/sweep.md).
"""

from functools import lru_cache

import numpy as np

from gen.cli import UsageError, settings

__all__ = ["MEASUREMENTS", "CAPACITY", "add_arguments", "check", "run", "directory",
           "estimate", "overflow", "fit", "held_out_errors", "describe"]

RESOURCES = ("lut", "ff", "dsp", "bram")
#: Each resource as the messages name it.
NAMES = {"lut": "LUT4", "ff": "FF", "dsp": "DSP", "bram": "BRAM", "cells": "logic cells"}
#: ``cells`` as the messages name them on ECP5.
ECP5_CELLS = "LUT/carry slices"

#: Each device's resources as nextpnr counts them. On iCE40 a logic cell holds one LUT4 and
#: one flip-flop: what must fit is the cells (``cells``), LUT4s and flip-flops packed into
#: them. On ECP5 flip-flops are counted apart, and ``cells`` are nextpnr's LUT/carry slices
#: (``TRELLIS_COMB``): one per LUT4, two per carry cell, and those that distributed RAM takes;
#: the LUT4s alone leave out the carries, a third of an 8x8 array's slices.
CAPACITY = {
    "ice40-up5k": {"cells": 5280, "dsp": 8, "bram": 30},
    "ice40-hx8k": {"cells": 7680, "dsp": 0, "bram": 32},
    "ecp5-25k": {"lut": 24288, "ff": 24288, "cells": 24288, "dsp": 28, "bram": 56},
    "ecp5-45k": {"lut": 43848, "ff": 43848, "cells": 43848, "dsp": 72, "bram": 108},
    "ecp5-85k": {"lut": 83640, "ff": 83640, "cells": 83640, "dsp": 156, "bram": 208},
}

#: Measured arrays: family, shape, PE kind (``2``, ``4``, ``8``, ``mixed``, ``plain``), edge
#: registers, result rows per beat (None: the default), LUT4, FF, DSP, BRAM, iCE40 logic
#: cells or ECP5 LUT/carry slices (nextpnr's, placed or, for a design too large, packed; None
#: where not measured), and where the figures come from. ``sweep``: ``python -m sim.bench
#: sweep`` on ice40-up5k or ecp5-85k, placed and routed; ``sweep, yosys``: the same, for an
#: array that does not fit the UP5K (yosys's counts, nextpnr's cells after packing);
#: ``synth``: ``python -m gen --array 8x8 --bits B --synth ecp5-85k`` (docs/results.md,
#: "Timing with margin"); ``results``: the older ECP5-85F figure of section "Synthesis:
#: resources and Fmax beside a plain ``a*b`` array". The iCE40 sweep predates the array's
#: row modules and drain skids; the ECP5 rows are the RTL with them.
MEASUREMENTS = [
    ("ice40", "1x1", "2", 2, None, 678, 558, 0, 2, 1034, "sweep"),
    ("ice40", "1x1", "4", 2, None, 569, 490, 0, 2, 866, "sweep"),
    ("ice40", "1x1", "8", 2, None, 540, 472, 0, 2, 844, "sweep"),
    ("ice40", "1x1", "mixed", 2, None, 972, 726, 0, 2, 1442, "sweep"),
    ("ice40", "1x1", "plain", 2, None, 309, 393, 1, 2, 630, "sweep"),
    ("ice40", "1x2", "2", 2, None, 1173, 980, 0, 4, 1803, "sweep"),
    ("ice40", "1x2", "4", 2, None, 977, 872, 0, 4, 1502, "sweep"),
    ("ice40", "1x2", "8", 2, None, 905, 847, 0, 4, 1436, "sweep"),
    ("ice40", "1x2", "mixed", 2, None, 1670, 1275, 0, 4, 2488, "sweep"),
    ("ice40", "1x2", "plain", 2, None, 445, 686, 2, 4, 1005, "sweep"),
    ("ice40", "1x2", "8", 1, None, 906, 840, 0, 4, 1429, "sweep"),
    ("ice40", "1x2", "mixed", 1, None, 1669, 1124, 0, 4, 2341, "sweep"),
    ("ice40", "2x1", "2", 2, None, 1185, 898, 0, 4, 1777, "sweep"),
    ("ice40", "2x1", "4", 2, None, 985, 790, 0, 4, 1472, "sweep"),
    ("ice40", "2x1", "8", 2, None, 917, 765, 0, 4, 1409, "sweep"),
    ("ice40", "2x1", "mixed", 2, None, 1712, 1193, 0, 4, 2489, "sweep"),
    ("ice40", "2x1", "plain", 2, None, 454, 604, 2, 4, 976, "sweep"),
    ("ice40", "1x4", "2", 2, None, 2176, 1917, 0, 8, 3445, "sweep"),
    ("ice40", "1x4", "4", 2, None, 1817, 1729, 0, 8, 2894, "sweep"),
    ("ice40", "1x4", "8", 2, None, 1650, 1690, 0, 8, 2728, "sweep"),
    ("ice40", "1x4", "mixed", 2, None, 3069, 2467, 0, 8, 4677, "sweep"),
    ("ice40", "1x4", "plain", 2, None, 729, 1365, 4, 8, 1863, "sweep"),
    ("ice40", "2x2", "2", 2, None, 2177, 1639, 0, 8, 3271, "sweep"),
    ("ice40", "2x2", "4", 2, None, 1811, 1479, 0, 8, 2729, "sweep"),
    ("ice40", "2x2", "8", 2, None, 1662, 1451, 0, 8, 2588, "sweep"),
    ("ice40", "2x2", "mixed", 2, None, 3035, 2147, 0, 8, 4431, "sweep"),
    ("ice40", "2x2", "plain", 2, None, 741, 1126, 4, 8, 1722, "sweep"),
    ("ice40", "2x2", "8", 2, 2, 1652, 1549, 0, 8, 2592, "sweep"),
    ("ice40", "2x2", "mixed", 2, 2, 3017, 2245, 0, 8, 4426, "sweep"),
    ("ice40", "2x2", "8", 1, None, 1661, 1443, 0, 8, 2578, "sweep"),
    ("ice40", "2x2", "mixed", 1, None, 3030, 1948, 0, 8, 4236, "sweep"),
    ("ice40", "4x1", "2", 2, None, 2144, 1570, 0, 8, 3197, "sweep"),
    ("ice40", "4x1", "4", 2, None, 1752, 1382, 0, 8, 2613, "sweep"),
    ("ice40", "4x1", "8", 2, None, 1603, 1343, 0, 8, 2465, "sweep"),
    ("ice40", "4x1", "mixed", 2, None, 3120, 2119, 0, 8, 4508, "sweep"),
    ("ice40", "4x1", "plain", 2, None, 682, 1018, 4, 8, 1601, "sweep"),
    ("ice40", "2x3", "2", 2, None, 3192, 2442, 0, 12, 4848, "sweep"),
    ("ice40", "2x3", "4", 2, None, 2626, 2230, 0, 12, 4035, "sweep"),
    ("ice40", "2x3", "8", 2, None, 2413, 2199, 0, 12, 3834, "sweep"),
    ("ice40", "2x3", "mixed", 2, None, 4357, 3163, 0, 12, 6442, "sweep, yosys"),
    ("ice40", "2x3", "plain", 2, None, 1036, 1710, 6, 12, 2538, "sweep"),
    ("ice40", "3x2", "2", 2, None, 3107, 2287, 0, 12, 4666, "sweep"),
    ("ice40", "3x2", "4", 2, None, 2557, 2075, 0, 12, 3868, "sweep"),
    ("ice40", "3x2", "8", 2, None, 2351, 2044, 0, 12, 3674, "sweep"),
    ("ice40", "3x2", "mixed", 2, None, 4332, 3008, 0, 12, 6319, "sweep, yosys"),
    ("ice40", "3x2", "plain", 2, None, 975, 1555, 6, 12, 2379, "sweep"),
    ("ice40", "4x2", "8", 2, 2, 3153, 2755, 0, 16, 4881, "sweep"),
    ("ice40", "4x2", "mixed", 2, 2, 5742, 3987, 0, 16, 8328, "sweep, yosys"),
    ("ice40", "3x3", "2", 2, None, 4580, 3462, 0, 18, 6974, "sweep, yosys"),
    ("ice40", "3x3", "4", 2, None, 3771, 3186, 0, 18, 5818, "sweep, yosys"),
    ("ice40", "3x3", "8", 2, None, 3469, 3156, 0, 18, 5538, "sweep, yosys"),
    ("ice40", "3x3", "mixed", 2, None, 6269, 4482, 0, 18, 9266, "sweep, yosys"),
    ("ice40", "3x3", "plain", 2, None, 1407, 2421, 9, 18, 3594, "sweep, yosys"),
    ("ice40", "4x4", "2", 2, None, 7871, 6074, 0, 32, 12210, "sweep, yosys"),
    ("ice40", "4x4", "4", 2, None, 6459, 5658, 0, 32, 10223, "sweep, yosys"),
    ("ice40", "4x4", "8", 2, None, 5927, 5634, 0, 32, 9739, "sweep, yosys"),
    ("ice40", "4x4", "mixed", 2, None, 10654, 7779, 0, 32, 15976, "sweep, yosys"),
    ("ice40", "4x4", "plain", 2, None, 2258, 4325, 16, 32, 6274, "sweep, yosys"),
    ("ecp5", "1x1", "2", 2, None, 567, 698, 0, 0, 1043, "sweep"),
    ("ecp5", "1x1", "4", 2, None, 535, 594, 0, 0, 1011, "sweep"),
    ("ecp5", "1x1", "8", 2, None, 539, 555, 0, 0, 1039, "sweep"),
    ("ecp5", "1x1", "mixed", 2, None, 815, 726, 0, 0, 1351, "sweep"),
    ("ecp5", "1x1", "plain", 2, None, 287, 448, 1, 0, 451, "sweep"),
    ("ecp5", "1x2", "2", 2, None, 979, 1265, 0, 0, 1873, "sweep"),
    ("ecp5", "1x2", "4", 2, None, 912, 1113, 0, 0, 1804, "sweep"),
    ("ecp5", "1x2", "8", 2, None, 888, 1057, 0, 0, 1804, "sweep"),
    ("ecp5", "1x2", "mixed", 2, None, 1387, 1321, 0, 0, 2377, "sweep"),
    ("ecp5", "1x2", "plain", 2, None, 413, 796, 2, 0, 661, "sweep"),
    ("ecp5", "2x2", "2", 2, None, 1920, 2096, 0, 0, 3644, "sweep"),
    ("ecp5", "2x2", "4", 2, None, 1777, 1880, 0, 0, 3501, "sweep"),
    ("ecp5", "2x2", "8", 2, None, 1779, 1806, 0, 0, 3533, "sweep"),
    ("ecp5", "2x2", "mixed", 2, None, 2553, 2208, 0, 0, 4449, "sweep"),
    ("ecp5", "2x2", "plain", 2, None, 783, 1295, 4, 0, 1201, "sweep"),
    ("ecp5", "4x4", "2", 2, None, 6800, 7695, 0, 0, 13516, "sweep"),
    ("ecp5", "4x4", "4", 2, None, 6380, 7231, 0, 0, 13098, "sweep"),
    ("ecp5", "4x4", "8", 2, None, 6340, 7099, 0, 0, 13108, "sweep"),
    ("ecp5", "4x4", "mixed", 2, None, 8848, 8143, 0, 0, 16194, "sweep"),
    ("ecp5", "4x4", "plain", 2, None, 2423, 4889, 16, 0, 3849, "sweep"),
    ("ecp5", "8x8", "2", 2, None, 26151, 33572, 0, 0, 52837, "synth"),
    ("ecp5", "8x8", "4", 2, None, 24045, 32516, 0, 0, 50731, "synth"),
    ("ecp5", "8x8", "8", 2, None, 24382, 32316, 0, 0, 51214, "synth"),
    ("ecp5", "8x8", "mixed", 2, None, 32735, 35364, 0, 0, 61873, "synth"),
    ("ecp5", "8x8", "plain", 2, None, 7840, 22623, 64, 0, None, "results"),
]

#: The model's terms (see the module's docstring): the array's parts and the options.
BASE_TERMS = ("pes", "result_sums", "one", "deskew", "skew")
OPTION_TERMS = ("edge_extra",)


def _terms(rows, cols, edge_registers, drain_rows):
    from rtl.systolic import default_drain_rows
    return {"pes": rows * cols, "result_sums": (drain_rows or default_drain_rows(rows)) * cols,
            "one": 1, "deskew": rows * cols * (cols - 1) / 2,
            "skew": (rows * (rows - 1) + cols * (cols - 1)) / 2,
            "edge_extra": (edge_registers - 2) * (rows + cols)}


def _family(device):
    return device.split("-")[0]


def _fit(points, terms):
    """Least-squares coefficients of ``terms`` for each resource over ``points``
    (``(terms dict, figures dict)`` pairs)."""
    matrix = np.array([[float(t[name]) for name in terms] for t, _ in points])
    coefficients = {}
    for resource in RESOURCES:
        target = np.array([float(figures[resource]) for _, figures in points])
        coefficients[resource] = dict(zip(terms, np.linalg.lstsq(matrix, target, rcond=None)[0]))
    return coefficients


def _points(measurements, family, pe):
    return [(_terms(*_shape(m["array"]), m["edge"], m["drain"]), m) for m in measurements
            if m["family"] == family and m["pe"] == pe]


def _shape(text):
    rows, cols = text.split("x")
    return int(rows), int(cols)


def fit(measurements):
    """The model fitted to ``measurements`` (dicts of the fields of :data:`MEASUREMENTS`):
    ``{(family, pe): {resource: {term: coefficient}}}``; under ``"ice40 cells per FF"`` the
    ``k`` of iCE40 logic cells = LUT4 + k * FF, and under ``("ecp5 cells per FF", pe)`` the
    ``k`` of ECP5 LUT/carry slices = LUT4 + k * FF of each PE kind (its carries and
    distributed RAM grow with its flip-flops: k is 0.80 to 0.84 for the fusion PEs, 0.29 for
    the plain one).

    iCE40, the family swept widely (shapes from 1x1 to 4x4, the options varied), gets each
    term's coefficient by least squares; another family, measured at fewer shapes (ECP5: five
    sizes), gets the iCE40 model of the same PE kind scaled to its measurements, one factor
    per resource (least squares too): the growth with the shape and the options is iCE40's,
    the cost per part the family's own.
    """
    model = {}
    for pe in sorted({m["pe"] for m in measurements}):
        points = _points(measurements, "ice40", pe)
        if not points:
            continue
        varied = tuple(term for term in OPTION_TERMS if any(t[term] for t, _ in points))
        base = _fit(points, BASE_TERMS + varied)
        model["ice40", pe] = {resource: {term: base[resource].get(term, 0.0)
                                         for term in BASE_TERMS + OPTION_TERMS}
                              for resource in RESOURCES}
        for family in sorted({m["family"] for m in measurements} - {"ice40"}):
            others = _points(measurements, family, pe)
            if not others:
                continue
            model[family, pe] = {}
            for resource in RESOURCES:
                shape = model["ice40", pe][resource]
                guess = np.array([sum(shape[term] * t[term] for term in shape) for t, _ in others])
                target = np.array([float(figures[resource]) for _, figures in others])
                scale = float(guess @ target / (guess @ guess)) if guess @ guess else 0.0
                model[family, pe][resource] = {term: scale * value for term, value in shape.items()}
    # iCE40 logic cells: every LUT4 takes one, and the flip-flops that nextpnr cannot pack
    # beside a LUT4 of theirs one each: cells = LUT4 + k * FF.
    packed = [m for m in measurements if m["family"] == "ice40" and m["cells"] is not None]
    model["ice40 cells per FF"] = _cells_per_ff(packed) if packed else 1.0
    for pe in sorted({m["pe"] for m in measurements}):
        placed = [m for m in measurements
                  if m["family"] == "ecp5" and m["pe"] == pe and m["cells"] is not None]
        if placed:
            model["ecp5 cells per FF", pe] = _cells_per_ff(placed)
    return model


def _cells_per_ff(measurements):
    """The ``k`` of cells = LUT4 + k * FF that fits ``measurements`` best (least squares)."""
    ffs = np.array([m["ff"] for m in measurements], dtype=float)
    return float(ffs @ np.array([m["cells"] - m["lut"] for m in measurements]) / (ffs @ ffs))


@lru_cache(maxsize=1)
def _model():
    return fit(_measurements())


def _measurements():
    fields = ("family", "array", "pe", "edge", "drain", *RESOURCES, "cells", "source")
    return tuple(dict(zip(fields, row)) for row in MEASUREMENTS)


def estimate(device, rows, cols, pe="mixed", edge_registers=2, drain_rows=None, model=None):
    """LUT4, FF, DSP and BRAM the model gives an array on ``device``, ``{resource: int}``, and
    on iCE40 the logic cells they take (``cells``).

    ``pe`` is a precision (2, 4, 8 or ``"mixed"``) or ``"plain"``; ``drain_rows`` None is the
    array's default.
    """
    model = model or _model()
    coefficients = model[_family(device), str(pe)]
    terms = _terms(rows, cols, edge_registers, drain_rows)
    figures = {resource: max(0, round(sum(value * terms[term]
                                          for term, value in coefficients[resource].items())))
               for resource in RESOURCES}
    per_ff = (model["ice40 cells per FF"] if _family(device) == "ice40"
              else model.get(("ecp5 cells per FF", str(pe))))
    if per_ff is not None:
        figures["cells"] = round(figures["lut"] + per_ff * figures["ff"])
    return figures


def overflow(device, figures):
    """The resources of ``figures`` (:func:`estimate`) beyond ``device``'s capacity, each
    ``(resource, needed, available)``; empty if it fits."""
    return [(resource, figures[resource], available)
            for resource, available in CAPACITY[device].items()
            if resource in figures and figures[resource] > available]


def _name(resource, device):
    """``resource`` as the messages name it on ``device``."""
    return ECP5_CELLS if resource == "cells" and _family(device) == "ecp5" else NAMES[resource]


def held_out_errors(measurements=None):
    """The model's relative error on each measurement left out of its own fit.

    Each measurement is left out in turn, the model fitted to the rest and its estimate for
    the measurement compared with the figures (a measurement with fewer than two others of
    its family and PE kind to fit to is skipped). Returns a dict per measurement: its fields,
    ``estimate``, and ``lut_error``, ``ff_error`` and, where the cells were measured,
    ``cells_error`` (estimate / measured - 1).
    """
    measurements = list(measurements or _measurements())
    results = []
    for index, point in enumerate(measurements):
        rest = measurements[:index] + measurements[index + 1:]
        if sum(m["family"] == point["family"] and m["pe"] == point["pe"] for m in rest) < 2:
            continue
        device = {"ice40": "ice40-up5k", "ecp5": "ecp5-85k"}[point["family"]]
        guess = estimate(device, *_shape(point["array"]), point["pe"], point["edge"],
                         point["drain"], model=fit(rest))
        measured = ("lut", "ff", "cells") if point["cells"] is not None else ("lut", "ff")
        results.append({**point, "estimate": guess,
                        **{f"{resource}_error": guess[resource] / point[resource] - 1
                           for resource in measured}})
    return results


# The command line (``python -m gen``): a step of gen.cli.STEPS.

#: The step's options (argparse destinations) and their values when not given.
DEFAULTS = {"estimate": False, "force": False}


def add_arguments(parser):
    group = parser.add_argument_group("resource estimate (a model fitted to synthesis results)")
    group.add_argument("--estimate", action="store_true", default=None,
                       help="print the array's estimated LUT4, FF, DSP and block RAM on each "
                            "device (with --synth, on that device) and stop: nothing is "
                            "generated (see docs/sweep.md)")
    group.add_argument("--force", action="store_true", default=None,
                       help="with --synth or --board: synthesize even when the estimate says "
                            "the array does not fit the device")


def _array_options(args):
    """The array's ``(rows, cols, precision, edge_registers, drain_rows)`` the options
    describe (for ``--unit accel``, the accelerator's array)."""
    if args.unit == "array":
        from gen.systolic import arguments
        array = arguments(args)
        return (array["rows"], array["cols"], str(array["precision"]),
                array["edge_registers"], array["drain_rows"])
    from gen.accel import config
    accel = config(args)
    return accel.rows, accel.cols, str(accel.precision), accel.edge_registers, None


def _kind(pe):
    """``"2-bit"``, ..., ``"mixed"``: a PE kind as the messages name it."""
    return pe if pe == "mixed" else f"{pe}-bit"


def _device(args):
    """The device ``--synth`` or ``--board`` names; None without either."""
    from gen.board import DEVICE
    return args.synth or (DEVICE[args.board] if args.board else None)


def check(args):
    """Raise ``UsageError`` unless the step's options go together, and when ``--synth`` or
    ``--board`` asks for an array the model says does not fit the device (unless
    ``--force``). Called before any file is written."""
    options = settings(args, DEFAULTS)
    device = _device(args)
    if options["force"] and device is None:
        raise UsageError("--force needs --synth DEVICE or --board NAME")
    if args.unit not in ("array", "accel"):
        if options["estimate"]:
            raise UsageError(f"--estimate covers --unit array and --unit accel (its array), "
                             f"not --unit {args.unit}")
        return
    if device is None or options["force"] or options["estimate"]:
        return
    rows, cols, pe, edge, drain = _array_options(args)
    if pe not in {"2", "4", "8", "mixed"}:
        return          # the array's constructor reports the precision
    over = overflow(device, estimate(device, rows, cols, pe, edge, drain))
    if over:
        what = "the array alone" if args.unit == "accel" else "the array"
        needs = ", ".join(f"{needed:,} {_name(resource, device)} (the device has {available:,})"
                          for resource, needed, available in over)
        raise UsageError(f"array {rows}x{cols} {_kind(pe)} does not fit {device} by the estimate: "
                         f"{what} needs about {needs}; --force to try anyway")


def describe(args):
    """The text ``--estimate`` prints: the array's figures on each device (on the device of
    ``--synth`` or ``--board`` only, if given), whether they fit, and the model's error."""
    rows, cols, pe, edge, drain = _array_options(args)
    from rtl.systolic import default_drain_rows
    if not 1 <= rows <= 32 or not 1 <= cols <= 32:
        raise UsageError(f"--array must be 1..32 by 1..32, not {rows}x{cols}")
    if pe not in {"2", "4", "8", "mixed"}:
        raise UsageError(f"--bits must be one of 2, 4, 8, mixed, not {pe}")
    drain = drain or default_drain_rows(rows)
    if rows % drain:
        raise UsageError(f"--drain-rows must divide rows={rows}, not {drain}")
    devices = [_device(args)] if _device(args) else sorted(CAPACITY)
    lines = [f"estimate of array {rows}x{cols} {_kind(pe)}, edge registers {edge}, "
             f"drain rows {drain}"
             + (" (the accelerator's array alone)" if args.unit == "accel" else "")
             + (f"; fitted at --acc-bits 32, not {args.acc_bits}"
                if getattr(args, "acc_bits", None) not in (None, 32) else "") + ":"]
    for device in devices:
        figures = estimate(device, rows, cols, pe, edge, drain)
        over = overflow(device, figures)
        logic = [r for r in ("cells", "lut", "ff") if r in CAPACITY[device] and r in figures]
        share = max(figures[r] / CAPACITY[device][r] for r in logic)
        verdict = ("does not fit: " + ", ".join(f"{_name(r, device)} {n:,} > {a:,}"
                                                for r, n, a in over)
                   if over else f"fits ({share:.0%} of the logic)")
        label = "slices" if _family(device) == "ecp5" else "LC"
        cells = f"  {label:>6} {figures['cells']:>7,}" if "cells" in figures else " " * 16
        lines.append(f"  {device:11} LUT4 {figures['lut']:>7,}  FF {figures['ff']:>7,}{cells}  "
                     f"DSP {figures['dsp']:>3}  BRAM {figures['bram']:>3}  {verdict}")
    lines.append("  (model of gen/estimate.py; its error on held-out arrays: docs/sweep.md)")
    return "\n".join(lines)


def run(args, design, paths):
    """Nothing after generation: ``--estimate`` stops before it (gen.cli)."""


def directory(args, design):
    return None
