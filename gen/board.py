"""Board bitstreams and programming (``--board NAME``, ``--program``)."""

import json
import os
import shutil
import subprocess
import sys

from boards.top import BOARDS, BoardTop, uart_divisor
from gen.cli import UsageError, given, options_named, settings
from gen.synth import (FOLD_SMALL_MODULES, FLOW, ROUTER, ROW_FIFOS_IN_BRAM, SynthesisError,
                       nextpnr_command, overflow_message, packed_utilization, tool)

__all__ = ["add_arguments", "check", "run", "build_board", "programmer"]

#: The tools of each family's bitstream flow (see :data:`gen.synth.TOOLS`): synthesis, place
#: and route, and the bitstream packer.
BITSTREAM_FLOW = {"ice40": (*FLOW["ice40"], "ICEPACK"), "ecp5": (*FLOW["ecp5"], "ECPPACK")}

#: How to install each board's programmer (neither is on PyPI).
PROGRAMMER_INSTALL = {"iceprog": "apt-get install fpga-icestorm",
                      "openFPGALoader": "apt-get install openfpgaloader"}

#: Each option of the step (argparse destination) and its value when it is not given; the
#: argparse defaults are ``None``.
DEFAULTS = {"board": None, "program": False, "baud": 115200}


def add_arguments(parser):
    group = parser.add_argument_group("FPGA boards (--unit array)")
    group.add_argument("--board", choices=sorted(BOARDS), metavar="NAME",
                       help="build a bitstream of the array behind the UART host link for NAME: "
                            + ", ".join(sorted(BOARDS)) + " (default array: the largest that fits)")
    group.add_argument("--program", action="store_true", default=None,
                       help="with --board: flash the bitstream with the board's programmer")
    group.add_argument("--baud", type=int,
                       help=f"with --board: UART rate (default {DEFAULTS['baud']})")


def check(args):
    """Raise ``UsageError`` unless the options of the step go together, the board can make
    the baud rate and the tools (and the programmer, with ``--program``) are here.

    Called before any file is written.
    """
    if args.board is None:
        if given(args, DEFAULTS):
            raise UsageError(f"{given(args, DEFAULTS)[0]} needs --board NAME")
        return
    if args.unit != "array":
        raise UsageError(f"--board builds the array (--unit array), not --unit {args.unit}")
    options = settings(args, DEFAULTS)
    platform = BOARDS[args.board].make_platform()
    with options_named(OPTIONS):
        # The board top's own check, made before it elaborates (and leaves a module unused).
        uart_divisor(platform.default_clk_frequency, options["baud"])
    try:
        for variable in BITSTREAM_FLOW[platform.family.lower()]:
            tool(variable)
    except SynthesisError as error:
        raise UsageError(f"--board {args.board}: {error}") from None
    if options["program"]:
        programmer(args.board)


def run(args, design, paths):
    if args.board is None:
        return
    options = settings(args, DEFAULTS)
    report = build_board(design.component, args.board, args.out, options["baud"],
                         options["program"])
    print(f"{args.board}: bitstream {report['bitstream']}; "
          + ", ".join(f"Fmax {mhz:.1f} MHz on {clock} (need {need:.1f}): "
                      f"{'met' if mhz >= need else 'FAILED'}"
                      for clock, (mhz, need) in report["fmax"].items()))


#: Parameter -> command-line option, for the errors of the board top (see gen.cli.UNITS).
OPTIONS = {"baud": "--baud"}

#: The device of each board, as ``--synth`` names it: nextpnr's options for the board's FPGA.
DEVICE = {"icebreaker": "ice40-up5k", "ulx3s-85f": "ecp5-85k"}

#: nextpnr's JSON report in the build directory (``--report``).
REPORT = "top.report.json"


def build_board(array, board, out_dir, baud=115200, program=False):
    """Build (and optionally flash) ``array`` for ``board``; return the bitstream and Fmax.

    The tools are found by :func:`gen.synth.tool` (the yowasp-* commands beside the running
    interpreter, or what the variables of :data:`gen.synth.TOOLS` name); they reach the build
    script through its environment (``execute_local(env=...)``), and this process's
    environment is left as it is.

    Raises
    ------
    UsageError
        A tool or the programmer is missing, or the build or programming failed (one line).
    """
    if program:
        programmer(board)
    platform = BOARDS[board].make_platform()
    family = platform.family.lower()        # "ice40" or "ecp5"
    try:
        env = {**os.environ, **{variable: tool(variable) for variable in BITSTREAM_FLOW[family]}}
    except SynthesisError as error:
        raise UsageError(f"--board {board}: {error}") from None
    build_dir = os.path.join(out_dir, "board", board)
    print(f"board: building {board} in {build_dir} ...", file=sys.stderr, flush=True)
    # The same yosys preparation as the reports: ECP5 synthesizes hierarchically (a
    # flattened 8x8 array trips an assertion in this yosys), iCE40 keeps the row
    # FIFOs in block RAM.
    flow = ({"script_after_read": FOLD_SMALL_MODULES, "synth_opts": "-noflatten"}
            if family == "ecp5" else {"script_after_read": ROW_FIFOS_IN_BRAM})
    plan = platform.prepare(BoardTop(array, baud), name="top",
                            nextpnr_opts=f"--router {ROUTER[family]} --report {REPORT}", **flow)
    try:
        products = plan.execute_local(build_dir, env=env)
    except subprocess.CalledProcessError as error:
        overflow = None
        if os.path.exists(os.path.join(build_dir, "top.json")):
            command = [*nextpnr_command(DEVICE[board]), "--json", "top.json"]
            overflow = overflow_message(packed_utilization(command, build_dir),
                                        "the board top", board)
        raise UsageError(overflow or f"the build for {board} failed ({error.cmd[0]} exited "
                                     f"{error.returncode}); logs in {build_dir}") from None
    if program:
        try:
            platform.toolchain_program(products, "top")
        except subprocess.CalledProcessError as error:
            raise UsageError(f"programming the {board} failed ({error.cmd[0]} exited "
                             f"{error.returncode}); bitstream in {build_dir}") from None
    with open(os.path.join(build_dir, REPORT)) as report:
        fmax = {clock: (timing["achieved"], timing["constraint"])
                for clock, timing in json.load(report)["fmax"].items()}
    bitstream = next(os.path.join(build_dir, f"top.{ext}") for ext in ("bin", "bit")
                     if os.path.exists(os.path.join(build_dir, f"top.{ext}")))
    return {"bitstream": bitstream, "fmax": fmax}


def programmer(board):
    """The command that programs ``board``: what its variable names (``ICEPROG``,
    ``OPENFPGALOADER``, read by the board's platform), else the programmer on ``PATH``.

    Raises
    ------
    UsageError
        The programmer is not there; the message says how to install it.
    """
    command = BOARDS[board].programmer
    variable = command.upper().replace("-", "_")
    if variable in os.environ:
        found = shutil.which(os.environ[variable])
        if not found:
            raise UsageError(f"--program: {variable}={os.environ[variable]} is not a command "
                             f"(unset {variable} to use {command})")
        return found
    found = shutil.which(command)
    if not found:
        raise UsageError(f"--program needs {command} to program the {board}, and it is not "
                         f"installed ({PROGRAMMER_INSTALL[command]}, or set {variable} to its "
                         f"path)")
    return found
