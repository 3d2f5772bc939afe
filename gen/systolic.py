"""Generator of the Bit Fusion systolic array (``--unit array``)."""

from boards.top import BOARDS
from gen.cli import parse_array, settings
from gen.emit import Design, design_name
from rtl.fusion import lanes, modes
from rtl.systolic import SystolicArray, peak_macs

__all__ = ["add_arguments", "arguments", "design"]

#: Constructor parameter -> command-line option, for error messages.
OPTIONS = {"rows": "--array rows", "cols": "--array columns", "precision": "--bits",
           "acc_width": "--acc-bits", "drain_rows": "--drain-rows",
           "edge_registers": "--edge-registers"}


#: Each option of the unit (argparse destination) and its value when it is not given; the
#: argparse defaults are ``None`` (see :func:`gen.cli.given`). ``None`` here: worked out by
#: :func:`arguments` (``--array`` and ``--edge-registers`` from ``--board``, ``--drain-rows`` by
#: the array).
DEFAULTS = {"array": None, "bits": "mixed", "acc_bits": 32, "drain_rows": None,
            "edge_registers": None}


def add_arguments(parser):
    group = parser.add_argument_group("systolic array (--unit array)")
    group.add_argument("--array", metavar="RxC",
                       help="array shape: PE rows x columns, each 1..32 (default: array 8x8, or "
                            "with --board the largest that fits the board)")
    group.add_argument("--bits", metavar="{2,4,8,mixed}",
                       help="operand precision: mixed = PEs that fuse at run time into every "
                            "mode w x a of 2, 4 and 8 bits (mode 2x2 to mode 8x8), or one "
                            f"fixed precision B (mode BxB only; default: {DEFAULTS['bits']})")
    group.add_argument("--acc-bits", type=int, metavar="N",
                       help="signed accumulator width, 17..64 (16..64 for --bits 2 or 4; "
                            f"default: {DEFAULTS['acc_bits']})")
    group.add_argument("--drain-rows", type=int, metavar="G",
                       help="result rows per beat of the result stream, a divisor of R "
                            "(default: the smallest divisor of R that is at least R/4, so a "
                            "tile of 4 steps drains in 4 beats)")
    group.add_argument("--edge-registers", type=int, metavar="N",
                       help="registers between each row's and column's slice steer and its "
                            "first PE, 1 or 2 (default: 2, or what --board sets: 1 on "
                            "icebreaker, where 2 does not fit)")


def arguments(args):
    """The keyword arguments of :class:`SystolicArray` that the options describe (``--board``
    sets the defaults of ``--array`` and ``--edge-registers``)."""
    board = BOARDS[args.board] if getattr(args, "board", None) else None
    default_shape, default_edge_registers = ((board.largest_array, board.edge_registers)
                                             if board else ("8x8", 2))
    options = settings(args, {**DEFAULTS, "array": default_shape,
                              "edge_registers": default_edge_registers})
    rows, cols = parse_array(options["array"])
    # "mixed", or a number the constructor checks ("3" is reported as --bits ... not 3).
    bits = options["bits"]
    return {"rows": rows, "cols": cols, "precision": int(bits) if bits.isdigit() else bits,
            "acc_width": options["acc_bits"], "drain_rows": options["drain_rows"],
            "edge_registers": options["edge_registers"]}


#: The parameters that the array's name carries when they are not the defaults, beside its
#: shape and precision (see :func:`gen.emit.design_name`). The row FIFOs' depth is not an
#: option: it follows from these.
NAME_TAGS = {"acc_width": "acc", "drain_rows": "drain", "edge_registers": "edge"}


def design(args):
    given = arguments(args)
    array = SystolicArray(**given)
    rows, cols = array.rows, array.cols
    name = design_name(f"fusion_array_{rows}x{cols}_{array.precision}", SystolicArray, given,
                       NAME_TAGS)
    mode_list = modes(array.precision)
    manifest = {
        "unit": "array",
        "parameters": {"rows": rows, "cols": cols, "precision": array.precision,
                       "acc_width": array.acc_width, "drain_rows": array.drain_rows,
                       "fifo_depth": array.fifo_depth, "edge_registers": array.edge_registers,
                       "word_bits": array.word_bits},
        "latency": {
            "pe_cycles": array.pe.latency,
            "last_step_to_first_result_cycles": array.latency,
            "note": f"a step reaches PE (r, c) {array.edge_registers} + r + c cycles after it "
                    "is accepted",
        },
        "modes": [
            {"w_bits": w, "a_bits": a, "lanes": lanes(w, a),
             "peak_macs_per_cycle": peak_macs(rows, cols, w, a),
             "k_steps_bound": {f"{'s' if ws else 'u'}{w}x{'s' if as_ else 'u'}{a}": bound
                               for (bw, ba, ws, as_), bound in array.k_step_bounds().items()
                               if (bw, ba) == (w, a)}}
            for w, a in mode_list
        ],
    }
    kind = "run-time 2/4/8-bit fusible" if array.precision == "mixed" else \
        f"fixed {array.precision}-bit"
    peaks = ", ".join(f"mode {w}x{a}: {peak_macs(rows, cols, w, a)}" for w, a in mode_list
                      if w == a)
    figures = {
        "peak MACs/cycle": peaks,
        "accumulator": f"{array.acc_width}-bit signed; K bound in mode 8x8 signed: "
                       f"{array.k_step_bounds().get((8, 8, True, True), 'n/a')} steps"
                       if (8, 8) in mode_list else f"{array.acc_width}-bit signed",
        "result stream": f"{array.drain_rows} row(s) of {cols} per beat",
        "latency": f"{array.latency} cycles from a tile's last step to its first result beat",
    }
    return Design(array, name, manifest,
                  f"Bit Fusion systolic array, array {rows}x{cols} (rows x columns) of {kind} PEs",
                  figures)
