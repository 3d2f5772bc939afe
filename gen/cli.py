"""``python -m gen``: parameters in, Verilog/RTLIL, manifest and reports out."""

import argparse
import json
import importlib
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from gen.emit import write_design

__all__ = ["UsageError", "options_named", "parse_array", "main"]

#: The generated units and the ``gen`` module that builds each.
UNITS = {"array": "gen.systolic", "spmv": "gen.spmv", "topk": "gen.topk"}

#: Steps that may follow generation (synthesis, board bitstreams), each a module with
#: ``add_arguments(parser)`` and ``run(args, design, paths)``.
STEPS = ("gen.synth", "gen.board")

EXAMPLES = """\
examples:
  python -m gen --array 8x8 --bits mixed          run-time 2/4/8-bit fusible 8x8 systolic array
  python -m gen --array 4x16 --bits 8 --out out/  fixed 8-bit PEs, files in out/
  python -m gen --unit spmv --spmv-pes 4          EIE-style CSC sparse matrix-vector unit
  python -m gen --unit topk --topk-n 256 --topk-k 8 --topk-par 4
"""


class UsageError(Exception):
    """A user mistake: reported as one line, exit status 2, no traceback."""


@contextmanager
def options_named(options):
    """Reword a constructor's ValueError with command-line option names (``{param: option}``)."""
    try:
        yield
    except ValueError as error:
        message = str(error)
        name = message.split()[0]
        raise UsageError(message.replace(name, options.get(name, name), 1)) from None


def parse_array(text):
    """``"RxC"`` -> ``(R, C)`` with R and C from 1 to 32."""
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not match:
        raise UsageError(f"--array must be ROWSxCOLS such as 8x8, not {text!r}")
    rows, cols = (int(group) for group in match.groups())
    for what, value in (("rows", rows), ("columns", cols)):
        if not 1 <= value <= 32:
            raise UsageError(f"--array {text}: {what} must be between 1 and 32, not {value}")
    return rows, cols


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is reported in one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(
        prog="python -m gen",
        description="Generate accelerator RTL (Verilog + RTLIL + JSON manifest) with Amaranth HDL.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unit", choices=sorted(UNITS), default="array",
                        help="which engine to generate (default: array)")
    parser.add_argument("--out", default="build", metavar="DIR",
                        help="output directory (default: build/)")
    parser.add_argument("--json", action="store_true",
                        help="print the manifest as JSON instead of a summary")
    for module in (*UNITS.values(), *STEPS):
        importlib.import_module(module).add_arguments(parser)
    return parser


def _check_out_dir(out):
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out}: cannot create the directory ({error.strerror})")
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the directory is not writable")
    return path


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        design = importlib.import_module(UNITS[args.unit]).design(args)
        args.out = _check_out_dir(args.out)
        paths = write_design(design, args.out)
        if args.json:
            print(json.dumps(json.loads(paths["json"].read_text()), indent=2))
        else:
            print(design.summary())
            print("wrote " + ", ".join(str(path) for path in paths.values()))
        for step in STEPS:
            importlib.import_module(step).run(args, design, paths)
        return 0
    except (UsageError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
