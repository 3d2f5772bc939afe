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

__all__ = ["UsageError", "Unfinished", "OneLineParser", "options_named", "parse_array",
           "option_name", "given", "settings", "main"]

#: The generated units and the ``gen`` module that builds each: a module with
#: ``add_arguments(parser)``, ``DEFAULTS``, ``design(args)`` and ``OPTIONS``, the table from the
#: component's constructor parameters to the command-line options that set them (see
#: :func:`options_named`).
UNITS = {"array": "gen.systolic", "spmv": "gen.spmv", "topk": "gen.topk", "accel": "gen.accel"}

#: Steps that may follow generation (synthesis, board bitstreams; the resource estimate's
#: ``--estimate`` takes the place of generation, its check refuses an array that cannot fit
#: before synthesis), each a module with
#: ``add_arguments(parser)``, ``DEFAULTS``, ``check(args)``, ``run(args, design, paths)`` and
#: ``directory(args, design)``, where its files go (None when the step is not asked for).
STEPS = ("gen.synth", "gen.board", "gen.estimate")

EXAMPLES = """\
examples:
  python -m gen --array 8x8 --bits mixed          array 8x8, every mode 2x2 to mode 8x8 at run time
  python -m gen --array 4x16 --bits 8 --out out/  array 4x16 of fixed 8-bit PEs, files in out/
  python -m gen --unit spmv --spmv-pes 4          EIE-style CSC sparse matrix-vector unit
  python -m gen --unit topk --topk-n 256 --topk-k 8 --topk-par 4
  python -m gen --unit accel --array 8x8 --bits mixed   the accelerator: array, sparse unit, top-k
  python -m gen --board ulx3s-85f                 bitstream of the board's accelerator
  python -m gen --unit array --board icebreaker --program   array 2x2, flashed if possible
  python -m gen --array 16x16 --bits 4 --estimate   LUT4, FF, DSP, BRAM on each device, at once

files: OUT/<top>.v, .il and .json, <top> naming every parameter that is not the default
(fusion_array_8x8_mixed, fusion_array_2x2_mixed_edge1, ...); --synth DEVICE writes
OUT/<top>.synth-DEVICE/report.json, --board NAME OUT/<top>.board-NAME/top.bin or top.bit.

exit status: 0 done; 2 a usage error (one line, nothing written); 3 --program built the
bitstream but did not flash it (no programmer installed, or it failed: the message says how
to flash by hand).
"""


class UsageError(Exception):
    """A user mistake: reported as one line, exit status 2, no traceback."""


class Unfinished(Exception):
    """A step did what it could but not all it was asked (``--program`` without a programmer
    installed): the message says what is done and how to finish by hand; exit status 3."""


@contextmanager
def options_named(options):
    """Report a constructor's ``ValueError`` under the command-line option of its parameter.

    The components check their parameters once, in their constructors, and raise
    ``ValueError("<parameter> must be ..., not <value>")``. ``options`` is the unit's table
    ``{parameter: option}``; the error becomes a :class:`UsageError` that names the option
    instead (``acc_width must be ...`` -> ``--acc-bits must be ...``). A ``ValueError`` of
    any other form, or about a parameter not in the table, passes unchanged.
    """
    try:
        yield
    except ValueError as error:
        match = re.fullmatch(r"(\w+) (must .*)", str(error), re.S)
        if not match or match[1] not in options:
            raise
        raise UsageError(f"{options[match[1]]} {match[2]}") from None


def parse_array(text):
    """``"RxC"`` -> ``(R, C)``; the sizes are checked by the array's constructor."""
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not match:
        raise UsageError(f"--array must be ROWSxCOLS such as 8x8, not {text!r}")
    return int(match[1]), int(match[2])


def option_name(dest):
    """The command-line option of an argparse destination: ``acc_bits`` -> ``--acc-bits``."""
    return "--" + dest.replace("_", "-")


def given(args, defaults):
    """The options among ``defaults`` (a module's table) that the command line gives.

    Every unit and step option has the argparse default ``None``, so that a value given on
    the command line, even one equal to the default, can be told from no value. Each is
    returned as the user wrote it: ``--array 4x4``, ``--freq -5``, ``--codebook``.
    """
    spelled = []
    for dest in defaults:
        value = getattr(args, dest)
        if value is True:
            spelled.append(option_name(dest))
        elif value is not None:
            spelled.append(f"{option_name(dest)} {value:g}" if isinstance(value, float)
                           else f"{option_name(dest)} {value}")
    return spelled


def settings(args, defaults):
    """``{dest: value}`` of the options in ``defaults``: as given, else the default there."""
    return {dest: default if getattr(args, dest) is None else getattr(args, dest)
            for dest, default in defaults.items()}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is reported in one line (exit status 2); the project's
    commands (``gen``, ``sim.run``, ``sim.bench``, the examples) share it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _GeneratorParser(OneLineParser):
    """The generator's parser: ``--unit`` is ``accel`` with ``--board`` and ``array``
    otherwise, unless given."""

    def parse_known_args(self, args=None, namespace=None):
        args, rest = super().parse_known_args(args, namespace)
        if args.unit is None:
            args.unit = "accel" if args.board else "array"
        return args, rest


def build_parser():
    parser = _GeneratorParser(
        prog="python -m gen",
        description="Generate accelerator RTL (Verilog + RTLIL + JSON manifest) with Amaranth HDL.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unit", choices=sorted(UNITS),
                        help="which engine to generate (default: array; with --board, accel); "
                             "each takes only the options of its own group below")
    parser.add_argument("--out", default="build", metavar="DIR",
                        help="output directory (default: build/)")
    parser.add_argument("--json", action="store_true",
                        help="print the manifest as JSON instead of a summary")
    for module in (*UNITS.values(), *STEPS):
        importlib.import_module(module).add_arguments(parser)
    return parser


def _check_unit_options(args):
    """Raise :class:`UsageError` if an option of another unit than ``--unit`` is given (one
    that ``--unit`` takes as well, such as the accelerator's ``--array``, is its own)."""
    own = importlib.import_module(UNITS[args.unit]).DEFAULTS
    for unit, module in UNITS.items():
        if unit == args.unit:
            continue
        theirs = importlib.import_module(module).DEFAULTS
        foreign = given(args, {dest: None for dest in theirs if dest not in own})
        if foreign:
            raise UsageError(f"{foreign[0]} is an option of --unit {unit}, not of "
                             f"--unit {args.unit}")


def _check_out_dir(out):
    if not out.strip():
        raise UsageError(f"--out must name a directory, not {out!r}")
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out}: cannot create the directory ({error.strerror})")
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the directory is not writable")
    return path


def main(argv=None):
    """Run the generator on ``argv``; return the exit status (2: a usage error, reported; 3: a
    step left unfinished, see :class:`Unfinished`).

    Every check comes before the first file is written: the options of the unit (its
    constructor), options of another unit, the steps' options and tools, and ``--out``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_unit_options(args)
        steps = [importlib.import_module(step) for step in STEPS]
        for step in steps:
            step.check(args)
        if args.estimate:           # the model's figures alone, in under a second
            print(importlib.import_module("gen.estimate").describe(args))
            return 0
        unit = importlib.import_module(UNITS[args.unit])
        with options_named(unit.OPTIONS):
            design = unit.design(args)
        paths = write_design(design, _check_out_dir(args.out))
        if args.json:
            print(json.dumps(json.loads(paths["json"].read_text()), indent=2))
        else:
            print(design.summary())
            print("wrote " + ", ".join(str(path) for path in paths.values()))
        for step in steps:
            step.run(args, design, paths)
        return 0
    except (UsageError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except Unfinished as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 3
