"""Board bitstreams and programming (``--board NAME``, ``--program``)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from boards.top import BAUD, BOARDS, BoardTop, uart_divisor
from gen.cli import Unfinished, UsageError, given, options_named, settings
from gen.progress import elapsed, relay
from gen.synth import (FOLD_SMALL_MODULES, FLOW, HIDE_PORT_FIELD_ALIASES, ROUTER,
                       ROW_FIFOS_IN_BRAM, SynthesisError,
                       nextpnr_command, overflow_message, packed_utilization, tool)
from rtl.accel.core import Accelerator

__all__ = ["add_arguments", "check", "run", "directory", "nextpnr_options", "build_board",
           "board_report", "format_report", "find_programmer", "flash", "by_hand",
           "yosys_options", "BRICK_ADDERS_IN_LUTS"]

#: The tools of each family's bitstream flow (see :data:`gen.synth.TOOLS`): synthesis, place
#: and route, and the bitstream packer.
BITSTREAM_FLOW = {"ice40": (*FLOW["ice40"], "ICEPACK"), "ecp5": (*FLOW["ecp5"], "ECPPACK")}

#: Each option of the step (argparse destination) and its value when it is not given (the
#: baud rate's depends on the unit: :data:`boards.top.BAUD`); the argparse defaults are
#: ``None``.
DEFAULTS = {"board": None, "program": False, "baud": None}

#: The units a board build takes.
UNITS = ("accel", "array")


def add_arguments(parser):
    group = parser.add_argument_group("FPGA boards (--unit accel, the default with --board, or "
                                      "--unit array)")
    group.add_argument("--board", choices=sorted(BOARDS), metavar="NAME",
                       help="build a bitstream for NAME (" + ", ".join(sorted(BOARDS)) + "): "
                            "the board's accelerator behind its UART link, or with --unit array "
                            "the array behind the host link (default: the largest that fits); "
                            "prints its resources and Fmax (minutes: see docs/boards.md)")
    group.add_argument("--program", action="store_true", default=None,
                       help="with --board: build, then flash the bitstream with the board's "
                            "programmer; without one installed, say how to flash it by hand "
                            "and exit with status 3")
    group.add_argument("--baud", type=int,
                       help=f"with --board: UART rate (default {BAUD['accel']:,} for the "
                            f"accelerator, {BAUD['array']:,} for the array)")


def check(args):
    """Raise ``UsageError`` unless the options of the step go together, the board can make
    the baud rate, the tools are here and no programmer variable names a missing command.

    Called before any file is written. A programmer that is not installed is no error: the
    bitstream is built all the same (see :func:`run`).
    """
    if args.board is None:
        if given(args, DEFAULTS):
            raise UsageError(f"{given(args, DEFAULTS)[0]} needs --board NAME")
        return
    if args.unit not in UNITS:
        raise UsageError(f"--board builds --unit accel or --unit array, not --unit {args.unit}")
    options = _options(args)
    spec = BOARDS[args.board]
    platform = spec.make_platform()
    with options_named(OPTIONS):
        # The board top's own check, made before it elaborates (and leaves a module unused).
        uart_divisor(spec.clock_hz(args.unit), options["baud"])
    try:
        for variable in BITSTREAM_FLOW[platform.family.lower()]:
            tool(variable)
    except SynthesisError as error:
        raise UsageError(f"--board {args.board}: {error}") from None
    if options["program"]:
        find_programmer(args.board)


def _options(args):
    """The step's options, the baud rate's default the unit's."""
    return settings(args, {**DEFAULTS, "baud": BAUD[args.unit]})


def directory(args, design):
    """Where the board build of ``design`` goes: ``<out>/<design>.board-<board>``, and
    ``-<baud>baud`` when the UART rate is not the unit's default; None without ``--board``."""
    if args.board is None:
        return None
    baud = _options(args)["baud"]
    suffix = "" if baud == BAUD[args.unit] else f"-{baud}baud"
    return Path(args.out) / f"{design.name}.board-{args.board}{suffix}"


def run(args, design, paths):
    """Build the bitstream, print its resources and Fmax, and flash it with ``--program``.

    Raises
    ------
    Unfinished
        ``--program``, and the bitstream is built but not flashed: no programmer is
        installed (the message says how to flash it by hand) or the programmer failed.
    """
    if args.board is None:
        return
    options = _options(args)
    report = build_board(design.component, args.board, directory(args, design),
                         options["baud"], progress=sys.stderr)
    print(format_report(design.name, report))
    if options["program"]:
        flash(args.board, report["bitstream"], progress=sys.stderr)


#: Parameter -> command-line option, for the errors of the board top (see gen.cli.UNITS).
OPTIONS = {"baud": "--baud"}

#: The device of each board, as ``--synth`` names it: nextpnr's options for the board's FPGA.
DEVICE = {"icebreaker": "ice40-up5k", "ulx3s-85f": "ecp5-85k"}

#: nextpnr's JSON report in the build directory (``--report``).
REPORT = "top.report.json"

#: The resources of a board build as nextpnr's report names them, per family: logic cells
#: (LUT and flip-flop pairs) on iCE40, LUT/carry slices and flip-flops on ECP5.
RESOURCES = {
    "ice40": {"LC": "ICESTORM_LC", "BRAM": "ICESTORM_RAM", "DSP": "ICESTORM_DSP",
              "SPRAM": "ICESTORM_SPRAM"},
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD", "DSP": "MULT18X18D"},
}


def nextpnr_options(family, accelerator):
    """nextpnr's options for a board build on ``family`` ("ice40" or "ecp5") of an accelerator
    or (``accelerator`` false) a systolic array.

    The ECP5 accelerator fills most of the device; nextpnr's electrostatic placer (``--placer
    static``) leaves far less congestion there than its default analytic one (the ULX3S's:
    23,181 overused wires after router2's ninth pass against about 57,000), and router1,
    which rips up and reroutes net by net, finishes what router2 cannot: on the ULX3S router2
    stalls at about 9,000 overused wires, router1 routes it in about 25 min (38.3 MHz after
    routing, end to end at 25 MHz; docs/results.md).
    """
    if accelerator and family == "ecp5":
        return f"--router router1 --placer static --report {REPORT}"
    return f"--router {ROUTER[family]} --report {REPORT}"


#: Yosys command that builds the adders of the array PEs' bricks (``brick_product``: the
#: 5-bit sum and the 7-bit difference of its partial products, the PE's only adders that
#: narrow) from LUTs instead of carry chains: on ECP5 a carry chain takes whole slices, two
#: a brick (``python -m sim.bench synth --pe``), and in LUTs the mixed PE takes a fifth of
#: its slices fewer. Only the array's PEs (``...row<r>.pe<c>``; the sparse unit's are
#: ``unit.pe<i>``): their wider adders, and every other module's, keep their carry chains.
BRICK_ADDERS_IN_LUTS = ("techmap -map +/techmap.v *.row*.pe*/t:$add *.row*.pe*/t:$sub %u "
                        "r:Y_WIDTH<=7 %i")


def timing_target_hz(platform, accelerator):
    """The frequency nextpnr is asked to meet on a clock from the PLL (None: the clock's
    own): for the ECP5 accelerator, the board's oscillator. Its router1 routes the ULX3S's
    at 25 MHz in 23.5 min, 38.3 MHz after routing; asked for the PLL's 30 MHz (with a reset
    net to every flip-flop, since replaced by the global set/reset, see
    :class:`boards.top.Ecp5Pll`) it had 147,569 arcs left after 45 min (docs/results.md).
    nextpnr's Fmax is that of the routed design whatever it was asked, and
    :func:`board_report` holds it to the clock the design runs at.
    """
    if accelerator and platform.family.lower() == "ecp5":
        return platform.default_clk_frequency
    return None


def yosys_options(family, accelerator):
    """The build script's yosys options (``script_after_read``, ``synth_opts``) for a board
    build on ``family`` ("ice40" or "ecp5") of an accelerator or (``accelerator`` false) a
    systolic array.

    The same preparation as the reports: ECP5 synthesizes hierarchically (a flattened 8x8
    array trips an assertion in this yosys) with the port-field aliases hidden from the start
    (ABC9 asserts on them, see :data:`gen.synth.HIDE_PORT_FIELD_ALIASES`: on the accelerator,
    and on the array since its rows are modules of their own); iCE40 keeps the row FIFOs in
    block RAM. The ECP5 accelerator builds its PEs' brick adders from LUTs
    (:data:`BRICK_ADDERS_IN_LUTS`), maps to LUT4s alone (no PFUMX/L6MUX21 wide LUTs: 11% fewer
    LUT and carry slices on the array) and leaves its row FIFOs to yosys, which builds them
    from distributed RAM: in block RAM, one a PE, their wires to the block RAM rows were an
    eighth of the ULX3S's congestion (docs/results.md). On iCE40 the accelerator's
    multipliers go to the DSPs (WEIGHT is in SPRAM there, see :mod:`rtl.accel.memory`).
    """
    if family == "ice40":
        return {"script_after_read": ROW_FIFOS_IN_BRAM,
                **({"synth_opts": "-dsp"} if accelerator else {})}
    if accelerator:
        return {"script_after_read": f"{FOLD_SMALL_MODULES}; {HIDE_PORT_FIELD_ALIASES}; "
                                     f"{BRICK_ADDERS_IN_LUTS}",
                "synth_opts": "-noflatten -nowidelut"}
    return {"script_after_read": f"{FOLD_SMALL_MODULES}; {HIDE_PORT_FIELD_ALIASES}",
            "synth_opts": "-noflatten"}


def build_board(engine, board, build_dir, baud=115200, progress=None):
    """Build ``engine`` (a systolic array or an accelerator) for ``board`` in ``build_dir``;
    return (and write as ``report.json`` there) the bitstream, the resources and Fmax.

    The tools are found by :func:`gen.synth.tool` (the yowasp-* commands beside the running
    interpreter, or what the variables of :data:`gen.synth.TOOLS` name); they reach the build
    script through its environment (``execute_local(env=...)``), and this process's
    environment is left as it is. The phases of yosys and nextpnr go to ``progress`` (a text
    stream) as they run (see :func:`gen.progress.relay`).

    Returns
    -------
    dict
        ``board``, ``bitstream`` (its path), ``resources`` ``{name: {"used", "available",
        "percent"}}`` (see :data:`RESOURCES`) and ``fmax`` ``{clock: {"achieved_mhz",
        "need_mhz", "met"}}``, the need being the clock the design runs at on the board
        (:meth:`boards.top.Board.clock_hz`: the oscillator's, or the ULX3S accelerator's PLL's).

    Raises
    ------
    UsageError
        A tool is missing, or the build failed (one line; the numbers when it does not fit).
    """
    platform = BOARDS[board].make_platform()
    family = platform.family.lower()        # "ice40" or "ecp5"
    try:
        env = {**os.environ, **{variable: tool(variable) for variable in BITSTREAM_FLOW[family]}}
    except SynthesisError as error:
        raise UsageError(f"--board {board}: {error}") from None
    build_dir = Path(build_dir)
    started = time.monotonic()
    if progress:
        print(f"board: building {board} in {build_dir} ...", file=progress, flush=True)
    accelerator = isinstance(engine, Accelerator)
    clock_hz = BOARDS[board].clock_hz("accel" if accelerator else "array")
    top = BoardTop(engine, baud, clock_hz, timing_target_hz(platform, accelerator))
    plan = platform.prepare(top, name="top",
                            nextpnr_opts=nextpnr_options(family, accelerator),
                            **yosys_options(family, accelerator))
    try:
        # The build script's yosys logs to top.rpt, nextpnr to top.tim.
        with relay("board", [build_dir / "top.rpt", build_dir / "top.tim"], progress):
            plan.execute_local(build_dir, env=env)
    except subprocess.CalledProcessError as error:
        overflow = None
        if (build_dir / "top.json").exists():
            command = [*nextpnr_command(DEVICE[board]), "--json", "top.json"]
            overflow = overflow_message(packed_utilization(command, build_dir),
                                        "the board top", board)
        raise UsageError(overflow or f"the build for {board} failed ({error.cmd[0]} exited "
                                     f"{error.returncode}); logs in {build_dir}") from None
    if progress:
        print(f"board: built {board} in {elapsed(time.monotonic() - started)}", file=progress,
              flush=True)
    report = board_report(board, build_dir, clock_hz)
    (build_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def board_report(board, build_dir, clock_hz=None):
    """The bitstream, resources and Fmax of the build of ``board`` in ``build_dir``, from
    nextpnr's report there (see :func:`build_board`), each clock's Fmax against ``clock_hz``,
    the clock the design runs at (None: the frequency nextpnr was asked to meet)."""
    build_dir = Path(build_dir)
    placed = json.loads((build_dir / REPORT).read_text())
    family = BOARDS[board].make_platform().family.lower()
    report = {"board": board,
              "bitstream": str(next(build_dir / f"top.{ext}" for ext in ("bin", "bit")
                                    if (build_dir / f"top.{ext}").exists())),
              "resources": {}, "fmax": {}}
    for name, kind in RESOURCES[family].items():
        if kind in placed["utilization"]:
            figure = placed["utilization"][kind]
            report["resources"][name] = {
                "used": figure["used"], "available": figure["available"],
                "percent": round(100 * figure["used"] / figure["available"], 1)}
    for clock, timing in placed["fmax"].items():
        need = clock_hz / 1e6 if clock_hz else timing["constraint"]
        report["fmax"][clock] = {"achieved_mhz": round(timing["achieved"], 1),
                                 "need_mhz": round(need, 1), "met": timing["achieved"] >= need}
    return report


def format_report(name, report):
    """The printed table of a board build: bitstream, resources, Fmax against the board clock."""
    lines = [f"{name} on {report['board']}: {report['bitstream']}"]
    for resource, figure in report["resources"].items():
        lines.append(f"  {resource:5} {figure['used']} ({figure['percent']}% of "
                     f"{figure['available']})")
    for clock, timing in report["fmax"].items():
        verdict = "met" if timing["met"] else "FAILED"
        lines.append(f"  Fmax  {timing['achieved_mhz']:.1f} MHz on {clock} (need "
                     f"{timing['need_mhz']:.1f} MHz): {verdict}")
    return "\n".join(lines)


def find_programmer(board):
    """The first of ``board``'s programmers that is installed, and its path; None if none is.

    A programmer's variable (``ICEPROG``, ``OPENFPGALOADER``), when set, names its command
    instead of ``PATH`` (as for Amaranth's platforms).

    Raises
    ------
    UsageError
        A programmer's variable names no command (a mistake to report before the build).
    """
    found = []
    for programmer in BOARDS[board].programmers:
        if programmer.variable in os.environ:
            named = os.environ[programmer.variable]
            path = shutil.which(named)
            if not path:
                raise UsageError(f"--program: {programmer.variable}={named} is not a command "
                                 f"(unset {programmer.variable} to use {programmer.command})")
        else:
            path = shutil.which(programmer.command)
        if path:
            found.append((programmer, path))
    return found[0] if found else None


def by_hand(board, bitstream):
    """Lines that say how to flash ``bitstream`` onto ``board`` with each of its programmers,
    and how to install each."""
    return [f"  {' '.join([programmer.command, *programmer.arguments, str(bitstream)])}"
            f"    ({programmer.install})" for programmer in BOARDS[board].programmers]


def flash(board, bitstream, progress):
    """Flash ``bitstream`` onto ``board`` with the first of its programmers that is installed;
    its output goes to ``progress`` (a text stream).

    Raises
    ------
    Unfinished
        No programmer is installed (the message says how to flash by hand, with each one and
        how to install it), or the programmer failed (its last line of output).
    """
    found = find_programmer(board)
    if found is None:
        names = ", ".join(programmer.command for programmer in BOARDS[board].programmers)
        raise Unfinished("\n".join([
            f"--program: no programmer of the {board} ({names}) is installed: the bitstream "
            f"is built, not flashed. Flash it by hand with one of:", *by_hand(board, bitstream)]))
    programmer, path = found
    command = [path, *programmer.arguments, str(bitstream)]
    print(f"board: flashing with {' '.join(command)} ...", file=progress, flush=True)
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(result.stdout, end="", file=progress, flush=True)
    if result.returncode:
        last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        raise Unfinished(f"--program: {programmer.command} exited {result.returncode} ({last}); "
                         f"the bitstream {bitstream} is built but not flashed")
