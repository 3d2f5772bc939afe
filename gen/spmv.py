"""Generator of the EIE-style CSC sparse matrix-vector unit (``--unit spmv``)."""


def add_arguments(parser):
    group = parser.add_argument_group("CSC sparse matrix-vector unit (--unit spmv)")
    group.add_argument("--spmv-pes", type=int, default=4, metavar="N",
                       help="processing elements, 1..64 (default: 4)")


def design(args):
    raise ValueError("--unit spmv is not available yet")
