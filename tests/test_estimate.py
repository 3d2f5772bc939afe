"""The resource estimate (``python -m gen ... --estimate``) and the fit check that ``--synth``
and ``--board`` make before they synthesize (``--force`` to try anyway)."""

import re
import statistics
import time

import pytest

import gen.board
import gen.synth
from gen.cli import main
from gen.estimate import CAPACITY, MEASUREMENTS, estimate, held_out_errors, overflow


def run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_estimate_prints_every_device_at_once_and_writes_nothing(tmp_path, capsys):
    out_dir = tmp_path / "o"
    main(["--array", "2x2", "--estimate", "--out", str(out_dir)])      # imports done
    capsys.readouterr()
    started = time.monotonic()
    status, out, err = run(["--array", "8x8", "--bits", "mixed", "--estimate", "--out",
                            str(out_dir)], capsys)
    assert time.monotonic() - started < 1.0
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "estimate of array 8x8 mixed, edge registers 2, drain rows 2:"
    by_device = {line.split()[0]: line for line in lines[1:-1]}
    assert set(by_device) == set(CAPACITY)
    assert "does not fit: LUT4 3" in by_device["ecp5-25k"]
    assert "does not fit: logic cells" in by_device["ice40-up5k"]
    assert "fits" in by_device["ecp5-85k"] and "does not" not in by_device["ecp5-85k"]
    # Measured: 31,863 LUT4 and 34,843 FF on ECP5 (docs/results.md).
    lut = int(by_device["ecp5-85k"].split("LUT4")[1].split()[0].replace(",", ""))
    assert abs(lut - 31863) / 31863 < 0.05
    assert not out_dir.exists(), "--estimate generated files"


def test_estimate_with_synth_shows_that_device_alone(tmp_path, capsys):
    status, out, _ = run(["--array", "4x4", "--bits", "4", "--synth", "ice40-up5k", "--estimate",
                          "--out", str(tmp_path)], capsys)
    assert status == 0
    [line] = [line for line in out.splitlines() if line.startswith("  ice40")]
    assert "does not fit: logic cells" in line and len(out.splitlines()) == 3


def test_the_estimate_gives_each_measured_dsp_and_block_ram():
    for family, shape, pe, edge, drain, lut, ff, dsp, bram, cells, _ in MEASUREMENTS:
        rows, cols = map(int, shape.split("x"))
        device = {"ice40": "ice40-up5k", "ecp5": "ecp5-85k"}[family]
        figures = estimate(device, rows, cols, pe, edge, drain)
        assert (figures["dsp"], figures["bram"]) == (dsp, bram), (family, shape, pe)


def test_fit_check_names_each_resource_over_the_device():
    assert overflow("ice40-up5k", estimate("ice40-up5k", 2, 2, "mixed")) == []
    assert [resource for resource, *_ in overflow("ice40-up5k",
                                                  estimate("ice40-up5k", 4, 4, "mixed"))] \
        == ["cells", "bram"]
    assert overflow("ecp5-85k", {"lut": 1, "ff": 1, "dsp": 157, "bram": 0}) == \
        [("dsp", 157, 156)]


class SynthesisStarted(Exception):
    pass


@pytest.fixture
def no_synthesis(monkeypatch):
    """Synthesis and board builds that record being started instead of running."""
    started = []

    def record(*args, **kwargs):
        started.append(args[1])
        raise gen.synth.SynthesisError(f"synthesis started for {args[1]}")
    monkeypatch.setattr(gen.synth, "synthesize", record)
    monkeypatch.setattr(gen.board, "build_board", record)
    return started


@pytest.mark.parametrize("argv, message", [
    (["--array", "4x4", "--synth", "ice40-up5k"],
     "array 4x4 mixed does not fit ice40-up5k by the estimate: the array needs about {} "
     "logic cells (the device has 5,280), 32 BRAM (the device has 30); --force to try anyway"),
    (["--array", "8x8", "--synth", "ecp5-25k"],
     "array 8x8 mixed does not fit ecp5-25k by the estimate: the array needs about {} LUT4 "
     "(the device has 24,288), {} FF (the device has 24,288), {} LUT/carry slices (the device "
     "has 24,288); --force to try anyway"),
    # Its LUT4s (about 49,000) and FFs (59,000) alone are under the ECP5-85F's 83,640; with
    # its carries they take more LUT/carry slices than it has.
    (["--array", "10x10", "--synth", "ecp5-85k"],
     "array 10x10 mixed does not fit ecp5-85k by the estimate: the array needs about {} "
     "LUT/carry slices (the device has 83,640); --force to try anyway"),
    # Its LUT4s (4,555) and FFs (3,502) alone are under the UP5K's 5,280 cells; packed into
    # cells they are not (nextpnr: 6,974 for the array).
    (["--array", "3x3", "--bits", "2", "--synth", "ice40-up5k"],
     "array 3x3 2-bit does not fit ice40-up5k by the estimate: the array needs about {} "
     "logic cells (the device has 5,280); --force to try anyway"),
    (["--unit", "array", "--array", "3x3", "--board", "icebreaker"],
     "array 3x3 mixed does not fit ice40-up5k by the estimate: the array needs about {} "
     "logic cells (the device has 5,280); --force to try anyway"),
])
def test_synth_and_board_refuse_an_array_that_cannot_fit_before_synthesis(
        argv, message, tmp_path, capsys, no_synthesis):
    status, _, err = run([*argv, "--out", str(tmp_path / "o")], capsys)
    assert status == 2
    [line] = err.splitlines()
    pattern = re.escape("python -m gen: error: " + message).replace(r"\{\}", "[0-9,]+")
    assert re.fullmatch(pattern, line), line
    assert no_synthesis == [] and not (tmp_path / "o").exists()


def test_force_synthesizes_anyway(tmp_path, capsys, no_synthesis):
    argv = ["--array", "3x3", "--synth", "ice40-up5k", "--out", str(tmp_path)]
    assert run(argv, capsys)[0] == 2 and no_synthesis == []
    status, _, err = run([*argv, "--force"], capsys)
    assert no_synthesis == ["fusion_array_3x3_mixed"]
    assert status == 2 and err.strip().endswith("synthesis started for fusion_array_3x3_mixed")


def test_an_array_that_fits_goes_on_to_synthesis(tmp_path, capsys, no_synthesis):
    status, _, _ = run(["--array", "2x2", "--synth", "ice40-up5k", "--out", str(tmp_path)],
                       capsys)
    assert no_synthesis == ["fusion_array_2x2_mixed"]


@pytest.mark.parametrize("argv, message", [
    (["--force"], "--force needs --synth DEVICE or --board NAME"),
    (["--unit", "topk", "--estimate"],
     "--estimate covers --unit array and --unit accel (its array), not --unit topk"),
    (["--array", "2y2", "--estimate"], "--array must be ROWSxCOLS such as 8x8, not '2y2'"),
    (["--array", "40x2", "--estimate"], "--array must be 1..32 by 1..32, not 40x2"),
    (["--bits", "3", "--estimate"], "--bits must be one of 2, 4, 8, mixed, not 3"),
    (["--array", "4x4", "--drain-rows", "3", "--estimate"],
     "--drain-rows must divide rows=4, not 3"),
])
def test_bad_input_is_one_line_and_exit_status_2(argv, message, tmp_path, capsys):
    status, _, err = run([*argv, "--out", str(tmp_path / "o")], capsys)
    assert status == 2
    assert err.splitlines() == [f"python -m gen: error: {message}"]


def within(errors, resource, worst, median):
    """Whether the largest and the median relative error of ``resource`` are within bounds."""
    sizes = sorted(abs(e[f"{resource}_error"]) for e in errors)
    return sizes[-1] <= worst and statistics.median(sizes) <= median


def test_held_out_error_is_what_the_docs_say():
    # docs/results.md, "Design-space sweep and fit prediction": each measurement left out of
    # the fit in turn and estimated by the model of the others.
    errors = held_out_errors()
    ice40 = [e for e in errors if e["family"] == "ice40" and e["pe"] != "plain"]
    assert len(ice40) == 48
    assert within(ice40, "lut", 0.06, 0.02) and within(ice40, "ff", 0.09, 0.01)
    inner = [e for e in ice40 if e["array"] != "1x1"]
    assert within(inner, "lut", 0.05, 0.02) and within(inner, "ff", 0.04, 0.01)
    cells = [e for e in errors if "cells_error" in e and e["family"] == "ice40"]
    assert len(cells) == 58 and within(cells, "cells", 0.18, 0.03)
    ecp5 = [e for e in errors if e["family"] == "ecp5" and e["pe"] != "plain"]
    assert len(ecp5) == 20
    assert within(ecp5, "lut", 0.13, 0.03) and within(ecp5, "ff", 0.12, 0.02)
    larger = [e for e in ecp5 if e["array"] not in ("1x1", "1x2")]
    assert within(larger, "lut", 0.03, 0.02) and within(larger, "ff", 0.02, 0.01)
    slices = [e for e in ecp5 if "cells_error" in e]
    assert len(slices) == 20 and within(slices, "cells", 0.13, 0.07)


def test_ecp5_fit_counts_the_carries_that_lut4s_leave_out():
    # 10x10 mixed: its LUT4s and flip-flops alone would fit the ECP5-85F; its LUT/carry
    # slices (nextpnr's TRELLIS_COMB, two per carry cell) do not, and those are what must fit.
    figures = estimate("ecp5-85k", 10, 10, "mixed")
    assert figures["lut"] < 83640 and figures["ff"] < 83640
    assert [resource for resource, *_ in overflow("ecp5-85k", figures)] == ["cells"]
    # 8x8 mixed, measured: 61,873 slices (74% of the device) for 32,735 LUT4.
    assert abs(estimate("ecp5-85k", 8, 8, "mixed")["cells"] / 61873 - 1) < 0.05
