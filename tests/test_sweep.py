"""The design-space sweep (``python -m sim.bench sweep``): the grid, the cache and ``--force``,
failed and timed-out jobs as rows, the table and the plot; a real tiny sweep is slow-marked."""

import csv
import json
import subprocess
import sys
import time

import pytest
from distributed import Client, LocalCluster

from gen.cli import UsageError
from sim.bench import main as bench
from sim.bench_sweep import (COLUMNS, _child_row, _logic_cells, config_key, grid, pareto_front,
                             plot, sweep, write_table)

TINY = grid(["1x1", "1x2"], ["mixed"], ["ice40-up5k"], plain=False)


@pytest.fixture(scope="module")
def client():
    """A local cluster of two workers, in this process (threads)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


class Recorder:
    """A job that logs each configuration it runs to ``log`` (the cluster runs a copy of the
    job) and returns made-up figures; or fails (raises, or reports a tool error) on the
    shapes named."""

    def __init__(self, log, raises=(), tool_error=()):
        self.log, self.raises, self.tool_error = log, set(raises), set(tool_error)

    @property
    def runs(self):
        return sorted(self.log.read_text().split()) if self.log.exists() else []

    def __call__(self, config, work, timeout):
        with open(self.log, "a") as log:
            log.write(config["array"] + "\n")
        if config["array"] in self.raises:
            raise RuntimeError("the worker lost its tools")
        if config["array"] in self.tool_error:
            return {**config, "error": "yosys failed on it: ERROR: boom"}
        rows, cols = map(int, config["array"].split("x"))
        return {**config, "lut": 1000 * rows * cols, "ff": 700 * rows * cols, "dsp": 0,
                "bram": 2 * rows * cols, "fmax_mhz": 40.0, "gops_2x2": 1.28 * rows * cols,
                "gops_4x4": 0.32 * rows * cols, "gops_8x8": 0.08 * rows * cols}


def test_grid_crosses_every_option_and_puts_the_plain_array_beside():
    configs = grid(["2x2", "1x3"], ["4", "mixed"], ["ice40-up5k", "ecp5-85k"],
                   edge_registers=(1, 2), drain_rows=(None, 2))
    # drain rows 2 does not divide 1 row: 1x3 only with the default drain.
    assert len(configs) == 2 * (2 * 2 + 2 * 1) * 3
    assert {c["pe"] for c in configs} == {"4", "mixed", "plain"}
    assert {c["target_mhz"] for c in configs if c["device"] == "ecp5-85k"} == {100.0}
    assert not [c for c in configs if c["array"] == "1x3" and c["drain_rows"] == 2]
    assert len({config_key(c) for c in configs}) == len(configs)


def test_grid_refuses_a_drain_that_divides_no_rows():
    with pytest.raises(UsageError, match="--drain-rows 3 divides none of the rows of 2x2"):
        grid(["2x2"], ["mixed"], ["ice40-up5k"], drain_rows=(3,))


def test_a_cached_configuration_is_not_run_again_unless_forced(client, tmp_path):
    job = Recorder(tmp_path / "runs")
    first = sweep(TINY, tmp_path, client, job=job)
    assert job.runs == ["1x1", "1x2"]
    assert [row["lut"] for row in first] == [1000, 2000]
    again = sweep(TINY, tmp_path, client, job=job)
    assert job.runs == ["1x1", "1x2"], "a cached configuration was run again"
    assert again == first
    bigger = grid(["1x1", "1x2", "2x2"], ["mixed"], ["ice40-up5k"], plain=False)
    sweep(bigger, tmp_path, client, job=job)
    assert job.runs == ["1x1", "1x2", "2x2"], "only the new configuration runs"
    sweep(TINY, tmp_path, client, job=job, force=True)
    assert job.runs == ["1x1", "1x1", "1x2", "1x2", "2x2"]


def test_a_failed_job_is_a_row_and_the_sweep_goes_on(client, tmp_path):
    configs = grid(["1x1", "1x2", "2x2"], ["mixed"], ["ice40-up5k"], plain=False)
    job = Recorder(tmp_path / "runs", raises={"1x2"}, tool_error={"2x2"})
    rows = sweep(configs, tmp_path, client, job=job)
    assert rows[0]["lut"] == 1000 and "error" not in rows[0]
    assert rows[1]["error"] == "job failed: RuntimeError: the worker lost its tools"
    assert rows[2]["error"].startswith("yosys failed")
    # A tool's error is a result (the tools fail the same way again): cached. A crashed job
    # is not: the next sweep runs it again.
    sweep(configs, tmp_path, client, job=job)
    assert job.runs == ["1x1", "1x2", "1x2", "2x2"]


def test_a_job_past_its_timeout_is_killed_with_its_tools_and_reported(tmp_path):
    marker = tmp_path / "grandchild-alive"
    # The child starts a grandchild (as synthesis starts yosys) that would write the marker.
    script = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
              f"\"import time; time.sleep(3); open({str(marker)!r}, 'w')\"]); time.sleep(60)")
    started = time.monotonic()
    row = _child_row(TINY[0], [sys.executable, "-c", script], timeout=1)
    assert time.monotonic() - started < 10
    assert row["error"] == "timeout after 1 s" and row["array"] == "1x1"
    time.sleep(3.5)
    assert not marker.exists(), "the job's tools outlived its timeout"


def test_a_job_that_exits_without_a_row_is_reported():
    row = _child_row(TINY[0], [sys.executable, "-c", "import sys; sys.exit('no tools here')"],
                     timeout=30)
    assert row["error"] == "job failed (exit status 1): no tools here"


def test_table_and_plot_are_written_and_the_plot_is_deterministic(tmp_path):
    rows = [Recorder(tmp_path / "runs")(config, None, None)
            for config in grid(["1x1", "1x2"], ["2", "mixed"], ["ice40-up5k"])]
    rows.append({**rows[0], "array": "4x4", "error": "does not fit", "fmax_mhz": None})
    csv_path, json_path = write_table(rows, tmp_path)
    with open(csv_path) as file:
        table = list(csv.DictReader(file))
    assert list(table[0]) == COLUMNS and len(table) == len(rows)
    assert table[-1]["error"] == "does not fit"
    assert json.loads(json_path.read_text())["results"] == rows
    first = plot(rows, tmp_path / "a.png").read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot(rows, tmp_path / "b.png").read_bytes() == first


def test_pareto_front_keeps_only_points_no_other_beats():
    points = [(100, 1.0), (200, 0.5), (200, 3.0), (300, 2.0), (400, 4.0), (100, 0.2)]
    assert pareto_front(points) == [(100, 1.0), (200, 3.0), (400, 4.0)]


@pytest.mark.parametrize("argv, message", [
    (["--array", "2y2"], "--array must be ROWSxCOLS such as 8x8, not '2y2'"),
    (["--workers", "0"], "--workers must be at least 1, not 0"),
    (["--timeout", "0"], "--timeout must be a positive number of seconds, not 0"),
    (["--array", "2x2", "--drain-rows", "3"], "--drain-rows 3 divides none of the rows of 2x2"),
    (["--drain-rows", "0"], "--drain-rows must be at least 1, not 0"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"],
     "--workers sets the size of a local cluster: not with --scheduler"),
    (["--device", "ice40-up9k"], "argument --device: invalid choice: 'ice40-up9k'"),
])
def test_bad_input_is_one_line_and_exit_status_2(argv, message, tmp_path, capsys):
    try:
        status = bench(["sweep", "--out", str(tmp_path), *argv])
    except SystemExit as exit:      # argparse's own errors
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_real_sweep_of_1x1_and_1x2_on_ice40(tmp_path):
    """yosys + nextpnr on a local cluster of one worker (about 30 s), through the command."""
    out = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "-m", "sim.bench", "sweep", "--json", "--quiet",
                             "--array", "1x1", "--array", "1x2", "--bits", "mixed",
                             "--no-plain", "--workers", "1", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["results"]
    assert [row["array"] for row in rows] == ["1x1", "1x2"]
    for row in rows:
        assert "error" not in row and row["fmax_mhz"] > 12 and row["bram"] == 2 * int(
            row["array"][-1])
        assert row["lut"] > 500 and row["ff"] > 300 and row["cells"] >= row["lut"]
    assert (out / "sweep.png").exists() and (out / "sweep.csv").exists()
    assert len(list((out / "cache").glob("*.json"))) == 2


@pytest.mark.parametrize("device, bel", [("ice40-up5k", "ICESTORM_LC"),
                                         ("ecp5-85k", "TRELLIS_COMB")])
def test_cells_are_what_nextpnr_counts_against_the_device(device, bel, tmp_path):
    # iCE40: logic cells; ECP5: LUT/carry slices (the flip-flops are counted apart), which the
    # estimate's fit check compares with the device (a LUT4 count leaves out the carries).
    (tmp_path / "job").mkdir()
    report = {"utilization": {"ICESTORM_LC": {"used": 11}, "TRELLIS_COMB": {"used": 22},
                              "TRELLIS_FF": {"used": 33}}}
    (tmp_path / "job" / "nextpnr.json").write_text(json.dumps(report))
    assert _logic_cells({"device": device}, tmp_path) == report["utilization"][bel]["used"]
