"""Generator of the accelerator (``--unit accel``): the array, the sparse unit and the top-k
engine around shared memories, run by a program (docs/accel.md, docs/isa.md)."""

from dataclasses import fields

from boards.top import BOARDS
from gen.cli import given, parse_array, settings
from gen.emit import Design
from rtl.accel.config import DEPTHS, AccelConfig, SpmvConfig, TopkConfig
from rtl.accel.core import Accelerator
from rtl.accel.isa import Space
from rtl.systolic import default_drain_rows

__all__ = ["add_arguments", "config", "design"]

#: Memory depth options: AccelConfig field -> short tag in the design's name.
DEPTH_TAGS = {"program_words": "prog", "act_words": "act", "input_words": "in",
              "weight_words": "wgt", "param_words": "par", "csc_words": "csc",
              "result_words": "res", "output_words": "out"}

#: The options of the array, the sparse unit and the top-k engine that the accelerator takes
#: too, with the same meaning (their defaults below; ``topk_par`` None: the array's columns).
SHARED = {"array": "8x8", "bits": "mixed", "acc_bits": 32, "drain_rows": None, "spmv_pes": 4,
          "rows": 256, "cols": 256, "act_lanes": 4, "topk_n": 256, "topk_k": 8, "topk_par": None}

#: Each option of the unit (argparse destination) and its value when it is not given.
DEFAULTS = {**SHARED, "no_spmv": False, "no_topk": False,
            **{name: default for name, default, _ in DEPTHS}}

#: Parameter -> command-line option, for error messages.
OPTIONS = {"rows": "--array rows", "cols": "--array columns", "precision": "--bits",
           "acc_width": "--acc-bits", "drain_rows": "--drain-rows", "spmv_n_pes": "--spmv-pes",
           "spmv_rows": "--rows", "spmv_cols": "--cols", "spmv_lanes": "--act-lanes",
           "topk_n_max": "--topk-n", "topk_k_max": "--topk-k", "topk_par": "--topk-par",
           **{name: "--" + name.replace("_", "-") for name, _, _ in DEPTHS}}


def add_arguments(parser):
    group = parser.add_argument_group(
        "accelerator (--unit accel; also takes --array, --bits, --acc-bits, --drain-rows, "
        "--spmv-pes, --rows, --cols, --act-lanes, --topk-n, --topk-k, --topk-par: by default "
        "the array's columns, a divisor of them)")
    group.add_argument("--no-spmv", action="store_true", default=None,
                       help="no sparse unit")
    group.add_argument("--no-topk", action="store_true", default=None,
                       help="no top-k engine")
    for name, default, low in DEPTHS:
        group.add_argument("--" + name.replace("_", "-"), type=int, metavar="W",
                           help=f"{name.split('_')[0]} memory depth in words, {low}.. "
                                f"(default: {default})")


#: The options of each optional engine (given, they add it to a board's accelerator that
#: has none).
ENGINE_OPTIONS = {"no_spmv": ("spmv_pes", "rows", "cols", "act_lanes"),
                  "no_topk": ("topk_n", "topk_k", "topk_par")}


def defaults_of(c):
    """The option values that describe the accelerator ``c`` (where ``c`` has no sparse
    unit or top-k engine, their options keep :data:`DEFAULTS`)."""
    options = {**DEFAULTS, "array": f"{c.rows}x{c.cols}", "bits": str(c.precision),
               "acc_bits": c.acc_width, "drain_rows": c.drain_rows, "no_spmv": c.spmv is None,
               "no_topk": c.topk is None,
               **{name: getattr(c, name) for name, _, _ in DEPTHS}}
    if c.spmv is not None:
        options.update(spmv_pes=c.spmv.n_pes, rows=c.spmv.rows, cols=c.spmv.cols,
                       act_lanes=c.spmv.lanes)
    if c.topk is not None:
        options.update(topk_n=c.topk.n_max, topk_k=c.topk.k_max, topk_par=c.topk.par)
    return options


def config(args):
    """The :class:`AccelConfig` the options describe; with ``--board``, the options not given
    are the board's accelerator's (:data:`boards.top.BOARDS`)."""
    board = getattr(args, "board", None)
    defaults = defaults_of(BOARDS[board].accel) if board else DEFAULTS
    options = settings(args, defaults)
    for engine, engine_options in ENGINE_OPTIONS.items():
        if getattr(args, engine) is None and given(args, dict.fromkeys(engine_options)):
            options[engine] = False
    rows, cols = parse_array(options["array"])
    bits = options["bits"]
    spmv = None if options["no_spmv"] else SpmvConfig(
        n_pes=options["spmv_pes"], rows=options["rows"], cols=options["cols"],
        lanes=options["act_lanes"])
    topk = None if options["no_topk"] else TopkConfig(n_max=options["topk_n"],
                                                      k_max=options["topk_k"],
                                                      par=options["topk_par"])
    return AccelConfig(rows=rows, cols=cols, precision=int(bits) if bits.isdigit() else bits,
                       acc_width=options["acc_bits"], drain_rows=options["drain_rows"],
                       spmv=spmv, topk=topk,
                       **{name: options[name] for name, _, _ in DEPTHS})


def name_of(c):
    """The design's name: its array, then every parameter that is not the default."""
    default = AccelConfig()
    name = f"accel_{c.rows}x{c.cols}_{c.precision}"
    if c.acc_width != default.acc_width:
        name += f"_acc{c.acc_width}"
    if c.rows_per_beat != default_drain_rows(c.rows):
        name += f"_drain{c.rows_per_beat}"
    for engine, tag in (("spmv", "spmv"), ("topk", "topk")):
        mine, theirs = getattr(c, engine), getattr(default, engine)
        if mine is None:
            name += f"_no{tag}"
        elif mine != theirs:
            name += f"_{tag}" + "_".join(str(getattr(mine, f.name)) for f in fields(mine)
                                         if getattr(mine, f.name) is not None)
    for field_name, tag in DEPTH_TAGS.items():
        if getattr(c, field_name) != getattr(default, field_name):
            name += f"_{tag}{getattr(c, field_name)}"
    return name


def design(args):
    c = config(args)
    accel = Accelerator(c)
    memories = {space.name: {"words": c.depth(space), "bits": c.word_bits_of(space),
                             "chunks": c.chunks(space)}
                for space in Space if space is not Space.SPMV
                and not (space is Space.CSC and c.spmv is None)}
    manifest = {
        "unit": "accel",
        "parameters": c.parameters(),
        "derived": {"drain_rows": c.rows_per_beat, "scratchpad_lanes": c.lanes,
                    "padded_cols": c.padded_cols, "word_bits": c.word_bits,
                    "topk_par": c.topk_par},
        "memories": memories,
        "isa": "docs/isa.md",
    }
    engines = ["systolic array"] + (["sparse unit"] if c.spmv else []) + \
        (["top-k engine"] if c.topk else [])
    figures = {
        "array": f"{c.rows}x{c.cols} {c.precision}, {c.acc_width}-bit accumulators",
        "sparse unit": f"{c.spmv.n_pes} PEs, matrices up to {c.spmv.rows}x{c.spmv.cols}"
                       if c.spmv else "none",
        "top-k": f"n <= {c.topk.n_max}, k <= {c.topk.k_max}, {c.topk_par} "
                 f"score{'s' if c.topk_par > 1 else ''} per beat"
                 if c.topk else "none",
        "memories": ", ".join(f"{space.lower()} {m['words']} x {m['bits']}"
                              for space, m in memories.items()),
    }
    return Design(accel, name_of(c), manifest,
                  "accelerator: " + ", ".join(engines) + ", run by a program (docs/isa.md)",
                  figures)
