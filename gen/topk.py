"""Generator of the SpAtten-style top-k engine (``--unit topk``)."""

from gen.cli import settings
from gen.emit import Design
from rtl.topk import TopK

__all__ = ["add_arguments", "design", "build"]

#: Constructor parameter -> command-line option, for error messages.
OPTIONS = {"n_max": "--topk-n", "k_max": "--topk-k", "par": "--topk-par",
           "score_bits": "--score-bits"}


#: Each option of the unit (argparse destination) and its value when it is not given; the
#: argparse defaults are ``None`` (see :func:`gen.cli.given`).
DEFAULTS = {"topk_n": 256, "topk_k": 8, "topk_par": 4, "score_bits": 16,
            "unsigned_scores": False}


def add_arguments(parser):
    group = parser.add_argument_group("top-k engine (--unit topk)")
    group.add_argument("--topk-n", type=int, metavar="N",
                       help=f"most scores per batch, 2..65536 (default: {DEFAULTS['topk_n']})")
    group.add_argument("--topk-k", type=int, metavar="K",
                       help=f"largest k, 1..min(N, 256); lower k at run time "
                            f"(default: {DEFAULTS['topk_k']})")
    group.add_argument("--topk-par", type=int, metavar="P",
                       help=f"scores per cycle, 1..32 (default: {DEFAULTS['topk_par']})")
    group.add_argument("--score-bits", type=int, metavar="W",
                       help=f"score width, 2..32 (default: {DEFAULTS['score_bits']})")
    group.add_argument("--unsigned-scores", action="store_true", default=None,
                       help="scores are unsigned (default: two's complement)")


def build(args):
    """The :class:`TopK` the arguments describe."""
    options = settings(args, DEFAULTS)
    return TopK(n_max=options["topk_n"], k_max=options["topk_k"], par=options["topk_par"],
                score_bits=options["score_bits"], signed_scores=not options["unsigned_scores"])


def design(args):
    engine = build(args)
    kind = "s" if engine.signed_scores else "u"
    name = f"topk_n{engine.n_max}_k{engine.k_max}_p{engine.par}_{kind}{engine.score_bits}"
    manifest = {
        "unit": "topk",
        "parameters": {"n_max": engine.n_max, "k_max": engine.k_max, "par": engine.par,
                       "score_bits": engine.score_bits, "signed": engine.signed_scores,
                       "index_bits": engine.index_bits},
        "latency": {"last_score_to_first_index_cycles": f"{engine.latency} + min(k, n)",
                    "output_beats": "min(k, n), one per cycle, each with the threshold"},
        "throughput": {"scores_per_cycle_peak": engine.par,
                       "batch_period_cycles": f"max(ceil(n / {engine.par}), {engine.latency} + "
                                              f"2 min(k, n)), batches back to back",
                       "note": "the next batch's scores go in while a batch's indices come "
                               "out"},
    }
    figures = {
        "selects": f"k <= {engine.k_max} of n <= {engine.n_max} "
                   f"{'signed' if engine.signed_scores else 'unsigned'} {engine.score_bits}-bit scores",
        "throughput": f"{engine.par} scores per cycle while a batch outlasts its output "
                      f"({engine.latency} + 2k cycles)",
        "output": "indices in ascending order, each beat with the threshold",
    }
    return Design(engine, name, manifest,
                  f"top-k engine, {engine.par} scores per cycle", figures)
