"""Generator of the EIE-style CSC sparse matrix-vector unit (``--unit spmv``)."""

from gen.cli import settings
from gen.emit import Design, design_name
from golden.csc import spmv_cycles
from rtl.spmv import MULTIPLIER_BITS, SpMV

__all__ = ["add_arguments", "arguments", "design"]


#: Each option of the unit (argparse destination) and its value when it is not given; the
#: argparse defaults are ``None`` (see :func:`gen.cli.given`).
DEFAULTS = {"spmv_pes": 4, "rows": 256, "cols": 256, "value_bits": 8, "codebook": False,
            "z_bits": 4, "queue_depth": 8, "act_lanes": 4}


def add_arguments(parser):
    group = parser.add_argument_group("CSC sparse matrix-vector unit (--unit spmv)")
    group.add_argument("--spmv-pes", type=int, metavar="N",
                       help=f"processing elements, 1..64 (default: {DEFAULTS['spmv_pes']})")
    group.add_argument("--rows", type=int, metavar="R",
                       help=f"largest matrix row count, 1..4096 (default: {DEFAULTS['rows']})")
    group.add_argument("--cols", type=int, metavar="C",
                       help=f"largest matrix column count, 1..65535 (default: {DEFAULTS['cols']})")
    values = group.add_mutually_exclusive_group()
    values.add_argument("--value-bits", type=int, metavar="B",
                        help=f"stored signed weight width: 2, 4 or 8 "
                             f"(default: {DEFAULTS['value_bits']})")
    values.add_argument("--codebook", action="store_true", default=None,
                        help="store 4-bit indices into a 16-entry codebook of 8-bit weights")
    group.add_argument("--z-bits", type=int, metavar="Z",
                       help=f"zero-run field width, 1..8 (default: {DEFAULTS['z_bits']})")
    group.add_argument("--queue-depth", type=int, metavar="D",
                       help=f"depth of each of a PE's two column queues, 2..256 (4 or more "
                            f"sustains a hand-out per cycle; default: {DEFAULTS['queue_depth']})")
    group.add_argument("--act-lanes", type=int, metavar="P",
                       help=f"activations per input beat (zero-skip candidates), 1..16 "
                            f"(default: {DEFAULTS['act_lanes']})")


#: Constructor parameter -> command-line option, for error messages.
OPTIONS = {"n_pes": "--spmv-pes", "rows": "--rows", "cols": "--cols", "value_bits": "--value-bits",
           "z_bits": "--z-bits", "lanes": "--act-lanes", "queue_depth": "--queue-depth"}


def arguments(args):
    """The keyword arguments of :class:`SpMV` that the options describe."""
    options = settings(args, DEFAULTS)
    return {"n_pes": options["spmv_pes"], "rows": options["rows"], "cols": options["cols"],
            "value_bits": options["value_bits"], "codebook": options["codebook"],
            "z_bits": options["z_bits"], "lanes": options["act_lanes"],
            "queue_depth": options["queue_depth"]}


#: The parameters that the unit's name carries when they are not the defaults, beside its PEs,
#: largest matrix and weight format (see :func:`gen.emit.design_name`).
NAME_TAGS = {"z_bits": "z", "lanes": "lanes", "queue_depth": "q"}


def design(args):
    given = arguments(args)
    unit = SpMV(**given)
    values = "codebook" if unit.codebook else f"{unit.value_bits}b"
    name = design_name(f"spmv_{unit.n_pes}pe_{unit.rows}x{unit.cols}_{values}", SpMV, given,
                       NAME_TAGS)
    entry_bits = unit.value_bits + unit.z_bits
    manifest = {
        "unit": "spmv",
        "parameters": {"n_pes": unit.n_pes, "rows": unit.rows, "cols": unit.cols,
                       "entries_per_pe": unit.entries, "value_bits": unit.value_bits,
                       "codebook": unit.codebook, "z_bits": unit.z_bits,
                       "act_bits": unit.act_bits, "act_lanes": unit.lanes,
                       "queue_depth": unit.queue_depth, "acc_width": unit.acc_width},
        # The column pointers are one memory of the unit: word j holds every PE's p[j].
        "memories": {"pointers": [unit.cols + 1, unit.n_pes * unit.entries.bit_length()]},
        "memories_per_pe": {"weights": [unit.entries, entry_bits],
                            "accumulators": [unit.local_rows, unit.acc_width],
                            "biases": [unit.local_rows, unit.acc_width],
                            "multipliers": [unit.local_rows, MULTIPLIER_BITS]},
        "accumulator_bound_bits": unit.accumulator_bound_bits,
        # A vector whose only work is one weight (docs/spmv.md, Operation and timing).
        "latency": {"handout_to_queue_cycles": 2,
                    "first_result_cycles": spmv_cycles([[1]], [1], 1)[0],
                    "first_result_cycles_requantized": spmv_cycles([[1]], [1], 1,
                                                                   requantize=True)[0],
                    "result_beats": f"ceil(rows / {unit.n_pes})"},
    }
    figures = {
        "weights": f"{values} values, {unit.z_bits}-bit zero runs, "
                   f"{unit.entries} entries per PE",
        "activations": f"{unit.lanes} per beat, zeros skipped; queues of {unit.queue_depth}",
        "accumulators": f"{unit.acc_width}-bit signed (bound {unit.accumulator_bound_bits} bits "
                        f"before bias)",
        "peak": f"{unit.n_pes} multiply-accumulates per cycle",
    }
    return Design(unit, name, manifest,
                  f"{unit.n_pes}-PE CSC sparse matrix-vector unit, matrices up to "
                  f"{unit.rows}x{unit.cols} (rows x columns)",
                  figures)
