"""Generator of the Bit Fusion systolic array (``--unit array``)."""

from gen.cli import UsageError, parse_array

BITS = ("2", "4", "8", "mixed")


def add_arguments(parser):
    group = parser.add_argument_group("systolic array (--unit array)")
    group.add_argument("--array", default="8x8", metavar="RxC",
                       help="PE rows x columns, each 1..32 (default: 8x8)")
    group.add_argument("--bits", default="mixed", metavar="{2,4,8,mixed}",
                       help="operand precision: mixed = run-time fusible 2/4/8-bit PEs, "
                            "or one fixed precision (default: mixed)")


def design(args):
    rows, cols = parse_array(args.array)
    if args.bits not in BITS:
        raise UsageError(f"--bits must be one of 2, 4, 8, mixed, not {args.bits!r}")
    raise UsageError(f"the {rows}x{cols} systolic array generator is not available yet")
