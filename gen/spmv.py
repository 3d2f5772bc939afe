"""Generator of the EIE-style CSC sparse matrix-vector unit (``--unit spmv``)."""

from gen.emit import Design
from rtl.spmv import SpMV

__all__ = ["add_arguments", "design", "build"]


def add_arguments(parser):
    group = parser.add_argument_group("CSC sparse matrix-vector unit (--unit spmv)")
    group.add_argument("--spmv-pes", type=int, default=4, metavar="N",
                       help="processing elements, 1..64 (default: 4)")
    group.add_argument("--rows", type=int, default=256, metavar="R",
                       help="largest matrix row count, 1..4096 (default: 256)")
    group.add_argument("--cols", type=int, default=256, metavar="C",
                       help="largest matrix column count, 1..65535 (default: 256)")
    values = group.add_mutually_exclusive_group()
    values.add_argument("--value-bits", type=int, default=8, metavar="B",
                        help="stored signed weight width: 2, 4 or 8 (default: 8)")
    values.add_argument("--codebook", action="store_true",
                        help="store 4-bit indices into a 16-entry codebook of 8-bit weights")
    group.add_argument("--z-bits", type=int, default=4, metavar="Z",
                       help="zero-run field width, 1..8 (default: 4)")
    group.add_argument("--queue-depth", type=int, default=8, metavar="D",
                       help="activation queue depth per PE, 2..256 (default: 8)")
    group.add_argument("--act-lanes", type=int, default=4, metavar="P",
                       help="activations per input beat (zero-skip candidates), 1..16 (default: 4)")


#: Constructor parameter -> command-line option, for error messages.
OPTIONS = {"n_pes": "--spmv-pes", "rows": "--rows", "cols": "--cols", "value_bits": "--value-bits",
           "z_bits": "--z-bits", "lanes": "--act-lanes", "queue_depth": "--queue-depth"}


def build(args):
    """The :class:`SpMV` the arguments describe."""
    return SpMV(n_pes=args.spmv_pes, rows=args.rows, cols=args.cols,
                value_bits=args.value_bits, codebook=args.codebook, z_bits=args.z_bits,
                lanes=args.act_lanes, queue_depth=args.queue_depth)


def design(args):
    unit = build(args)
    values = "codebook" if unit.codebook else f"{unit.value_bits}b"
    name = f"spmv_{unit.n_pes}pe_{unit.rows}x{unit.cols}_{values}"
    manifest = {
        "unit": "spmv",
        "parameters": {"n_pes": unit.n_pes, "rows": unit.rows, "cols": unit.cols,
                       "entries_per_pe": unit.entries, "value_bits": unit.value_bits,
                       "codebook": unit.codebook, "z_bits": unit.z_bits,
                       "act_bits": unit.act_bits, "act_lanes": unit.lanes,
                       "queue_depth": unit.queue_depth, "acc_width": unit.acc_width},
        "memories_per_pe": {"weights": [unit.entries, unit.value_bits + unit.z_bits],
                            "pointers": [unit.cols + 1, unit.entries.bit_length()],
                            "accumulators": [unit.local_rows, unit.acc_width]},
        "accumulator_bound_bits": unit.accumulator_bound_bits,
        "latency": {"pointer_fetch_cycles": 2, "entry_to_accumulator_cycles": 3,
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
                  f"{unit.n_pes}-PE CSC sparse matrix-vector unit, up to {unit.rows}x{unit.cols}",
                  figures)
