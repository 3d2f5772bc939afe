"""The benchmarks' command line (``python -m sim.bench``) and its progress lines.

A benchmark runs jobs of a minute or more (a Verilog conversion, a simulation that may first
build its Verilator model, a synthesis run). While it runs it prints a line per job on standard
error, counted and with the time left; standard output keeps the table, or with ``--json`` a
JSON document and nothing else.
"""

import io
import json
import re
import time

import pytest

from sim.bench import main
from sim.progress import Progress, clock_time, time_left

#: The tiny configuration the command-line tests run: a 1x1 array of 2-bit PEs, one mode, two
#: GEMMs (a first run builds its Verilator model, about 40 s; then about 5 s).
TINY = ["systolic", "--array", "1x1", "--bits", "2"]


@pytest.mark.parametrize("seconds_done, weight_done, weight_left, expected", [
    (30.0, 3, 2, 20.0),         # jobs of equal cost: the mean time of those done, per job left
    (12.0, 4, 16, 48.0),        # weighted: 4 PEs took 12 s, 16 PEs are left
    (50.0, 2, 0, 0.0),          # nothing left
])
def test_time_left_is_the_cost_left_at_the_pace_of_the_jobs_done(seconds_done, weight_done,
                                                                  weight_left, expected):
    assert time_left(seconds_done, weight_done, weight_left) == pytest.approx(expected)


def test_time_left_is_unknown_before_any_job_is_done():
    assert time_left(0.0, 0, 5) is None


@pytest.mark.parametrize("seconds, text", [(0.4, "0:00"), (59.6, "1:00"), (100, "1:40"),
                                           (3725, "1:02:05")])
def test_clock_time_is_minutes_and_seconds_then_hours(seconds, text):
    assert clock_time(seconds) == text


def test_each_job_gets_a_counted_line_as_it_starts_and_one_with_the_time_left_as_it_ends():
    stream = io.StringIO()
    now = iter([0.0, 10.0, 10.0, 40.0])
    progress = Progress([1, 3], stream, interval=None, clock=lambda: next(now))
    with progress.job("first"):
        pass
    with progress.job("second", "may take minutes"):
        pass
    assert stream.getvalue().splitlines() == [
        "[1/2] first ...",
        "[1/2] first: 10.0 s, about 0:30 left",        # cost 3 left at 10 s per unit
        "[2/2] second (may take minutes) ...",
        "[2/2] second: 30.0 s, 0:40 in all",
    ]


def test_jobs_left_of_a_kind_are_expected_at_the_pace_of_that_kind():
    stream = io.StringIO()
    now = iter([0.0, 2.0, 2.0, 12.0, 12.0, 15.0, 15.0, 25.0])
    progress = Progress(4, stream, interval=None, kinds=["Verilog", "simulation"] * 2,
                        clock=lambda: next(now))
    for label in ("Verilog 1", "simulation 1", "Verilog 2", "simulation 2"):
        with progress.job(label):
            pass
    assert [line for line in stream.getvalue().splitlines() if "..." not in line] == [
        "[1/4] Verilog 1: 2.0 s, about 0:06 left",      # no simulation done: 2 s per job
        "[2/4] simulation 1: 10.0 s, about 0:12 left",  # 2 s of Verilog, 10 s of simulation
        "[3/4] Verilog 2: 3.0 s, about 0:10 left",
        "[4/4] simulation 2: 10.0 s, 0:25 in all",
    ]


def test_a_running_job_prints_a_line_every_interval():
    stream = io.StringIO()
    progress = Progress(1, stream, interval=0.01)
    with progress.job("long"):
        deadline = time.monotonic() + 10
        while "so far" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/1] long ..."
    assert "[1/1] long: 0:00 so far" in lines[1:-1]
    assert re.fullmatch(r"\[1/1\] long: \d+\.\d s, 0:00 in all", lines[-1])


def test_no_line_without_a_stream_and_no_more_jobs_than_announced():
    progress = Progress(1, None, interval=0.01)
    with progress.job("only"):
        time.sleep(0.03)
    with pytest.raises(RuntimeError, match="more jobs than the 1 announced"):
        with progress.job("one too many"):
            pass
    with pytest.raises(ValueError, match="job weights must be positive"):
        Progress([1, 0], None)
    with pytest.raises(ValueError, match="1 kinds for 2 jobs"):
        Progress(2, None, kinds=["simulation"])


def test_benchmark_prints_counted_progress_on_stderr_and_only_json_on_stdout(capsys):
    assert main([*TINY, "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert [(row["mode"], row["gemm"]) for row in document["results"]] == [
        ("2x2", "64x64x64"), ("2x2", "odd 50x70x33")]
    lines = [line for line in captured.err.splitlines()
             if line.startswith("[") and not re.search(r": \d+:\d\d so far$", line)]
    assert lines[0] == "[1/2] 1x1 2-bit array: Verilog ..."
    assert re.fullmatch(r"\[1/2\] 1x1 2-bit array: Verilog: \d+\.\d s, about \d+:\d\d left",
                        lines[1])
    assert lines[2].startswith("[2/2] 1x1 2-bit array: 2 GEMMs simulated (")
    assert re.fullmatch(r"\[2/2\] 1x1 2-bit array: 2 GEMMs simulated: \d+\.\d s, "
                        r"\d+:\d\d in all", lines[-1])


def test_quiet_benchmark_prints_the_table_and_nothing_on_stderr(capsys):
    assert main([*TINY, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    table = captured.out.splitlines()
    assert table[0].startswith("1x1 fusion array")
    assert table[1].split() == ["mode", "gemm", "cycles", "model_cycles", "utilization",
                                "steady_state_utilization"]
    # Measured cycles, equal to golden.systolic's model (the model_cycles column).
    assert [line.split()[:5] for line in table[3:]] == [
        ["2x2", "64x64x64", "16393", "16393", "0.9995"],
        ["2x2", "odd", "50x70x33", "10509", "10509"]]


@pytest.mark.parametrize("argv, message", [
    (["systolic", "--array", "9x"], "--array must be ROWSxCOLS such as 8x8, not '9x'"),
    (["synth", "--array", "9x"], "--array must be ROWSxCOLS such as 8x8, not '9x'"),
    (["systolic", "--array", "1x1", "--drain-rows", "3"], "drain_rows must divide rows=1, not 3"),
    (["spmv", "--pes", "0"], "n_pes must be between 1 and 64, not 0"),
])
def test_bad_values_are_one_line_errors_with_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m sim.bench: error: ") and message in err
    assert err.count("\n") == 1


def test_bad_options_are_one_line_usage_errors_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["systolic", "--bits", "3"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --bits: invalid choice: '3'" in err and err.count("\n") == 1
