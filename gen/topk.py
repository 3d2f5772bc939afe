"""Generator of the SpAtten-style top-k engine (``--unit topk``)."""


def add_arguments(parser):
    group = parser.add_argument_group("top-k engine (--unit topk)")
    group.add_argument("--topk-n", type=int, default=256, metavar="N",
                       help="maximum number of scores per batch (default: 256)")


def design(args):
    raise ValueError("--unit topk is not available yet")
