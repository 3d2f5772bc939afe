"""Generator of the SpAtten-style top-k engine (``--unit topk``)."""

from gen.emit import Design
from rtl.topk import TopK

__all__ = ["add_arguments", "design", "build"]

#: Constructor parameter -> command-line option, for error messages.
OPTIONS = {"n_max": "--topk-n", "k_max": "--topk-k", "par": "--topk-par",
           "score_bits": "--score-bits"}


def add_arguments(parser):
    group = parser.add_argument_group("top-k engine (--unit topk)")
    group.add_argument("--topk-n", type=int, default=256, metavar="N",
                       help="most scores per batch, 2..65536 (default: 256)")
    group.add_argument("--topk-k", type=int, default=8, metavar="K",
                       help="largest k, 1..min(N, 256); lower k at run time (default: 8)")
    group.add_argument("--topk-par", type=int, default=4, metavar="P",
                       help="scores per cycle, 1..32 (default: 4)")
    group.add_argument("--score-bits", type=int, default=16, metavar="W",
                       help="score width, 2..32 (default: 16)")
    group.add_argument("--unsigned-scores", action="store_true",
                       help="scores are unsigned (default: two's complement)")


def build(args):
    """The :class:`TopK` the arguments describe."""
    return TopK(n_max=args.topk_n, k_max=args.topk_k, par=args.topk_par,
                score_bits=args.score_bits, signed_scores=not args.unsigned_scores)


def design(args):
    engine = build(args)
    kind = "s" if engine.signed_scores else "u"
    name = f"topk_n{engine.n_max}_k{engine.k_max}_p{engine.par}_{kind}{engine.score_bits}"
    manifest = {
        "unit": "topk",
        "parameters": {"n_max": engine.n_max, "k_max": engine.k_max, "par": engine.par,
                       "score_bits": engine.score_bits, "signed": engine.signed_scores,
                       "index_bits": engine.index_bits},
        "latency": {"last_score_to_first_index_cycles": "1 + survivors left in the last beat",
                    "output_beats": "min(k, n), each with the threshold"},
        "throughput": {"scores_per_cycle_peak": engine.par,
                       "note": "a beat with s > 1 threshold survivors takes s cycles"},
    }
    figures = {
        "selects": f"k <= {engine.k_max} of n <= {engine.n_max} "
                   f"{'signed' if engine.signed_scores else 'unsigned'} {engine.score_bits}-bit scores",
        "throughput": f"{engine.par} scores per cycle while survivors are rare",
        "output": "indices in ascending order, each beat with the threshold",
    }
    return Design(engine, name, manifest,
                  f"top-k engine, {engine.par} scores per cycle", figures)
