# amaranth: UnusedElaboratable=no
"""``python -m sim.run``, the runner's parameters, waveforms and build cache."""

import fcntl
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sim.run
from rtl.hostlink import HostLink
from rtl.systolic import SystolicArray
from sim.run import ENGINES, WAVES_DIR, build_parser, main, save_file
from sim.runner import (SimulationFailed, prune, run, simulator_available, resolve_params,
                        waves_file)
from sim.tb.smoke import StreamAccumulator

ICARUS = pytest.mark.skipif(not simulator_available("icarus"),
                            reason="Icarus Verilog (iverilog) is not installed")
SMALL_TOPK = ["topk", "--topk-n", "16", "--topk-k", "2", "--topk-par", "2", "--score-bits", "12"]


@ICARUS
def test_entry_point_runs_the_default_tests_and_passes(capsys):
    assert main([*SMALL_TOPK, "--sim", "icarus", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for test in ENGINES["topk"][1]:
        assert re.search(rf"^PASS  {test}  \(\d+\.\d s\)$", out, re.M), out
    count = len(ENGINES["topk"][1])
    assert f"{count} of {count} tests passed" in out


@ICARUS
def test_entry_point_reports_a_failing_test_and_exits_1(tmp_path, monkeypatch, capsys):
    (tmp_path / "fault_tb.py").write_text(textwrap.dedent("""\
        import cocotb

        PARAMS = {}

        @cocotb.test()
        async def holds(dut):
            pass

        @cocotb.test()
        async def breaks(dut):
            assert False, "an injected fault"
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sim.run.ENGINES, "topk", ("fault_tb", ["holds", "breaks"]))
    assert main([*SMALL_TOPK, "--sim", "icarus"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^PASS  holds ", out, re.M) and re.search(r"^FAIL  breaks ", out, re.M)
    assert "1 of 2 tests passed" in out
    log = Path(re.search(r"^log: (.*)$", out, re.M)[1])
    assert "an injected fault" in log.read_text()


@pytest.mark.parametrize("argv, message", [
    ([], "choose an engine: array, spmv, topk, hostlink (or --clean)"),
    (["array", "--array", "2y2"], "--array must be ROWSxCOLS such as 8x8, not '2y2'"),
    (["array", "--array", "0x2"], "--array rows must be between 1 and 32, not 0"),
    (["array", "--bits", "3"], "--bits must be 'mixed', 2, 4 or 8, not 3"),
    (["spmv", "--spmv-pes", "0"], "--spmv-pes must be between 1 and 64, not 0"),
    (["topk", "--topk-par", "0"], "--topk-par must be between 1 and 32, not 0"),
    (["hostlink", "--divisor", "2"],
     "--divisor (clock cycles per bit) must be an integer of at least 4, not 2"),
    (["topk", "--seed", "-1"], "--seed must be a whole number of at least 0, not -1"),
    (["array", "--sim", "modelsim"], "argument --sim: invalid choice: 'modelsim'"),
    (["gemm"], "argument ENGINE: invalid choice: 'gemm'"),
    (["--clean", "topk"], "--clean takes no engine"),
])
def test_bad_options_are_one_line_errors_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        sys.exit(main(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m sim.run") and message in err, err


def test_a_bad_option_from_the_shell_has_no_traceback():
    done = subprocess.run([sys.executable, "-m", "sim.run", "array", "--array", "0x2"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("python -m sim.run: error: --array rows must be between 1 and 32, "
                           "not 0\n")


def test_missing_params_are_named_before_anything_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEGEN_SIM_BUILD", str(tmp_path))
    with pytest.raises(ValueError, match=r"^sim\.tb\.systolic needs params rows, cols, .*: "
                                         r"give them in params=\{\.\.\.\} \(their defaults "
                                         r"need the Amaranth component, not Verilog text\)$"):
        run("module top; endmodule\n", "sim.tb.systolic")
    with pytest.raises(ValueError, match="sim.tb.smoke takes no param 'sead'; it takes seed, "
                                         "offset"):
        run(StreamAccumulator(), "sim.tb.smoke", params={"sead": 1})
    assert list(tmp_path.iterdir()) == []


def test_the_link_test_takes_the_divisor_the_link_was_built_with():
    link = HostLink(SystolicArray(2, 2, edge_registers=1), 6)
    assert resolve_params(link, "sim.tb.hostlink", {"layer": {}})["divisor"] == 6


def test_defaults_come_from_the_design_and_given_params_win():
    array = SystolicArray(3, 2, 4, acc_width=20, edge_registers=1)
    resolved = resolve_params(array, "sim.tb.systolic", {"seed": 9})
    assert {key: resolved[key] for key in ("rows", "cols", "drain_rows", "acc_width",
                                           "edge_registers", "modes", "seed")} == {
        "rows": 3, "cols": 2, "drain_rows": 1, "acc_width": 20, "edge_registers": 1,
        "modes": [(4, 4)], "seed": 9}
    # The network test's layers are in the array's precision.
    assert {(layer["w_bits"], layer["a_bits"]) for layer in resolved["layers"]} == {(4, 4)}


@pytest.mark.slow
def test_the_readme_example_runs_as_written():
    # README.md, "Simulation": every test of the module, defaults filled in, a waveform.
    test_dir = run(SystolicArray(2, 2), "sim.tb.systolic", waves=True)
    assert waves_file(test_dir, "verilator").stat().st_size > 0


def vcd_variables(text):
    """``(scopes, name, bit range)`` of every variable of a VCD."""
    scopes, variables = [], []
    for line in text.splitlines():
        words = line.split()
        if words[:2] == ["$scope", "module"]:
            scopes.append(words[2])
        elif words[:1] == ["$upscope"]:
            scopes.pop()
        elif words[:1] == ["$var"]:
            variables.append((tuple(scopes), words[4], words[5] if words[5] != "$end" else ""))
        elif words[:1] == ["$enddefinitions"]:
            return variables


def test_save_file_names_signals_as_the_waveform_does():
    design = StreamAccumulator()
    test_dir = run(design, "sim.tb.smoke", name="smoke_acc", simulator="verilator", waves=True)
    shown = [line for line in save_file([("smoke_acc", design)]).splitlines()
             if line.startswith("smoke_acc.")]
    assert shown == ["smoke_acc.clk", "smoke_acc.rst", "smoke_acc.i__valid", "smoke_acc.i__ready",
                     "smoke_acc.i__payload[7:0]", "smoke_acc.total[23:0]"]
    variables = vcd_variables(waves_file(test_dir, "verilator").read_text())
    names = {".".join([*scopes, name]) + bits for scopes, name, bits in variables}
    assert set(shown) <= names, sorted(names)
    # GTKWave takes a dot in a name for a scope and refuses the file (yosys' registers that
    # start its `always @*` blocks have one, unless the runner renames them).
    assert not [name for _, name, _ in variables if "." in name]


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_has_the_save_file_of_its_default_design(engine):
    _, scopes = sim.run._design(build_parser().parse_args([engine]))
    assert (WAVES_DIR / f"{engine}.gtkw").read_text() == save_file(scopes)


def fake_build(root, name, size, used):
    build = root / "verilator" / name
    build.mkdir(parents=True)
    (build / "top").write_bytes(bytes(size))
    (build / "built.stamp").touch()
    os.utime(build / "built.stamp", (used, used))
    (root / "verilator" / f"{name}.lock").touch()
    return build


def test_pruning_removes_the_least_recently_used_builds_beyond_the_limit(tmp_path):
    builds = [fake_build(tmp_path, f"b{i}", 1000, used=1_000_000 + i) for i in range(5)]
    removed = prune(limit=2500, root=tmp_path)
    assert removed == builds[:3]
    assert [build.exists() for build in builds] == [False, False, False, True, True]
    assert not (tmp_path / "verilator" / "b0.lock").exists()
    assert prune(limit=2500, root=tmp_path) == []


def test_pruning_keeps_a_build_in_use(tmp_path):
    builds = [fake_build(tmp_path, f"b{i}", 1000, used=1_000_000 + i) for i in range(3)]
    with open(tmp_path / "verilator" / "b0.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)         # a run on b0, in any process
        assert prune(limit=0, root=tmp_path) == builds[1:]
    assert builds[0].exists()


def test_clean_empties_the_cache_but_for_builds_in_use(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FUSEGEN_SIM_BUILD", str(tmp_path))
    builds = [fake_build(tmp_path, f"b{i}", 1 << 20, used=1_000_000 + i) for i in range(3)]
    with open(tmp_path / "verilator" / "b2.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        assert main(["--clean"]) == 0
    assert capsys.readouterr().out == f"removed 2 builds (2 MB) from {tmp_path}; 1 in use kept\n"
    assert [build.exists() for build in builds] == [False, False, True]


def test_a_new_build_prunes_the_cache_but_not_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEGEN_SIM_BUILD", str(tmp_path))
    monkeypatch.setenv("FUSEGEN_SIM_CACHE_MB", "0")
    old = fake_build(tmp_path, "old", 1000, used=1_000_000)
    test_dir = run(StreamAccumulator(), "sim.tb.smoke", name="smoke_acc", simulator="icarus"
                   if simulator_available("icarus") else "verilator")
    assert not old.exists() and (test_dir / "results.xml").exists()
    # A Verilator build keeps its executable alone; Icarus its compiled design.
    assert {path.name for path in test_dir.parent.iterdir()} <= {
        "smoke_acc", "smoke_acc.v", "build.log", "built.stamp", "sim.vvp", "cmds.f",
        test_dir.name}


@ICARUS
def test_a_failed_build_names_its_error_and_log(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEGEN_SIM_BUILD", str(tmp_path))
    with pytest.raises(SimulationFailed) as failure:
        run("module top(input clk); wire x = ; endmodule\n", "sim.tb.smoke", simulator="icarus")
    message = str(failure.value)
    assert "\n" not in message and message.startswith("icarus could not build top: ")
    assert "syntax error" in message
    log = Path(re.search(r"\(log: (.*)\)$", message)[1])
    assert log.is_file()


@ICARUS
def test_pytest_options_choose_the_simulator_and_write_waveforms(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider",
         "tests/test_runner.py::test_runner_leaves_the_process_environment_as_it_was",
         "--sim", "icarus", "--waves"],
        capture_output=True, text=True, cwd=Path(__file__).parent.parent,
        env={**os.environ, "FUSEGEN_SIM_BUILD": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 waveforms" in done.stdout, done.stdout
    listed = [Path(line) for line in done.stdout.splitlines() if line.endswith("waves.fst")]
    assert len(listed) == 1 and listed[0].is_relative_to(tmp_path / "icarus")
