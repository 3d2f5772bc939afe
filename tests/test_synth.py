"""The open synthesis flow (--synth) and the board bitstreams (--board), end to end."""

import json
import os
import subprocess
import sys

import pytest

from gen.synth import HIDE_PORT_FIELD_ALIASES, SynthesisError, overflow_message, synthesize
from rtl.systolic import SystolicArray


def gen(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("device, family_lut", [("ice40-up5k", "SB_LUT4"), ("ecp5-25k", "LUT4")])
def test_synth_writes_a_report_with_resources_and_fmax(tmp_path, device, family_lut):
    result = gen("--array", "1x1", "--bits", "mixed", "--synth", device, "--out", "o",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "o" / "synth" / device / "report.json").read_text())
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


def test_overflow_is_reported_with_the_numbers():
    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:    5646/   5280   106%\n"
           "Info: \t        ICESTORM_RAM:       0/     30     0%\n"
           "ERROR: Failed to expand region (0, 0) |_> (25, 31) of 5646 ICESTORM_LCs\n")
    assert overflow_message(log, "top", "ice40-up5k") == \
        "top does not fit ice40-up5k: it needs 5646 ICESTORM_LC and the device has 5280"
    assert overflow_message(log.replace("5646/", "5000/"), "top", "ice40-up5k") is None


@pytest.mark.parametrize("board, bitstream, clock_mhz", [
    ("icebreaker", "top.bin", 12.0), ("ulx3s-85f", "top.bit", 25.0)])
def test_board_bitstream_meets_timing_at_the_board_clock(tmp_path, board, bitstream, clock_mhz):
    result = gen("--board", board, "--array", "1x1", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "board" / board / bitstream).stat().st_size > 1000
    line = result.stdout.strip().splitlines()[-1]
    assert f"(need {clock_mhz:.1f}): met" in line, line


def test_program_without_the_programmer_is_one_line(tmp_path):
    result = gen("--board", "icebreaker", "--array", "1x1", "--program", "--out", "o",
                 cwd=tmp_path, env={"ICEPROG": "/nonexistent/iceprog"})
    assert result.returncode == 2
    assert result.stderr.strip() == ("python -m gen: error: cannot program the icebreaker: "
                                     "/nonexistent/iceprog is not installed (set ICEPROG to its path)")


def test_board_needs_the_array(tmp_path):
    result = gen("--unit", "topk", "--board", "icebreaker", cwd=tmp_path)
    assert result.returncode == 2 and "--board builds the array" in result.stderr


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
