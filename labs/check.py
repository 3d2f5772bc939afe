# amaranth: UnusedElaboratable=no
"""The lab checker: loads a lab's files, grades them part by part, reports each part.

A lab is a directory ``labs/NN_name/`` (handout and starter files), its reference solution
``labs/solutions/NN_name/``, and a grading module ``labs/grading/name.py`` that defines:

- ``NUMBER`` (int), ``TITLE`` (str), ``FILES`` (the student's file names, in the lab directory);
- ``PARTS``: a list of :class:`Part`, each with a check function that takes a :class:`Files`
  and returns normally when the part passes, or raises :class:`Divergence` with the first
  place the student's answer differs (which mode, lane, cycle; expected and got).

A student's exception (at import or inside a part) is reported in one line with the file and
line of the student's code it came from; a part that runs past its time limit is stopped.
"""

import importlib
import importlib.util
import json
import pkgutil
import signal
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LABS_DIR", "Divergence", "StudentError", "Part", "Lab", "Files", "PartResult",
           "Report", "labs", "lab", "grade", "write_json"]

#: The labs package directory.
LABS_DIR = Path(__file__).resolve().parent


class Divergence(AssertionError):
    """The student's answer differs from the expected one: the message says where and how."""


class _Timeout(Exception):
    pass


@dataclass(frozen=True)
class Part:
    """One graded part of a lab.

    Attributes
    ----------
    name : str
        Short name, shown on the score line.
    points : int
        What the part is worth.
    check : callable
        ``check(files)``: returns when the part passes, raises :class:`Divergence` otherwise.
    timeout : float
        Seconds before the part is stopped (a hung simulation).
    """
    name: str
    points: int
    check: object
    timeout: float = 240.0


@dataclass(frozen=True)
class Lab:
    """A lab: its number, directory name, title, student files and graded parts."""
    number: int
    name: str
    title: str
    files: tuple
    parts: tuple

    @property
    def directory(self):
        return LABS_DIR / f"{self.number:02d}_{self.name}"

    @property
    def solution_directory(self):
        return LABS_DIR / "solutions" / f"{self.number:02d}_{self.name}"


def labs():
    """Every lab, by number, from the grading modules in ``labs/grading/``."""
    found = {}
    for info in pkgutil.iter_modules([str(LABS_DIR / "grading")]):
        module = importlib.import_module(f"labs.grading.{info.name}")
        found[module.NUMBER] = Lab(module.NUMBER, info.name, module.TITLE, tuple(module.FILES),
                                   tuple(module.PARTS))
    return [found[n] for n in sorted(found)]


def lab(number):
    """The lab numbered ``number`` (ValueError naming the numbers there are)."""
    known = labs()
    for entry in known:
        if entry.number == number:
            return entry
    numbers = ", ".join(str(entry.number) for entry in known)
    raise ValueError(f"no lab {number!r}: the labs are {numbers}")


class StudentError(Exception):
    """A student's file failed to load or raised: ``str()`` is the one-line report."""


def student_frame(exc, directory):
    """``file:line`` of the innermost frame of ``exc`` in ``directory``, or None."""
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve().parent == directory.resolve():
            where = f"{Path(frame.filename).name}:{frame.lineno}"
    if where is None and isinstance(exc, SyntaxError) and exc.filename:
        where = f"{Path(exc.filename).name}:{exc.lineno}"
    return where


def describe(exc, directory):
    """One line for a student's exception: its type, message and where in the student's code."""
    text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    message = " ".join(text.split()) or type(exc).__name__
    if len(message) > 160:
        message = message[:157] + "..."
    where = student_frame(exc, directory)
    at = f" at {where}" if where else ""
    return f"{type(exc).__name__}{at}: {message}"


class Files:
    """The student's (or the solution's) files of one lab, imported on first use."""

    def __init__(self, lab_, directory):
        self.lab = lab_
        self.directory = Path(directory)
        self._modules = {}

    def module(self, filename=None):
        """The imported module of ``filename`` (default: the lab's first file)."""
        filename = filename or self.lab.files[0]
        if filename not in self._modules:
            self._modules[filename] = self._load(filename)
        loaded = self._modules[filename]
        if isinstance(loaded, StudentError):
            raise loaded
        return loaded

    def _load(self, filename):
        path = self.directory / filename
        if not path.is_file():
            return StudentError(f"{path} is missing")
        name = f"_lab{self.lab.number:02d}_{path.stem}_{id(self)}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(self.directory))
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:     # the student's code: report it in one line
            return StudentError(f"{filename} does not import: {describe(exc, self.directory)}")
        finally:
            sys.path.remove(str(self.directory))
        return module

    def get(self, name, filename=None):
        """``name`` from the student's module (StudentError when it is not there)."""
        module = self.module(filename)
        if not hasattr(module, name):
            raise StudentError(f"{filename or self.lab.files[0]} defines no {name}")
        return getattr(module, name)

    def own(self, name, *golden):
        """The student's function ``name``, refused (StudentError) when its code names one of
        the ``golden`` functions it is meant to replace."""
        function = self.get(name)
        names = function.__code__.co_names if hasattr(function, "__code__") else ()
        called = [g for g in golden if g in names]
        if called:
            raise StudentError(f"{name} calls {called[0]}: write it yourself")
        return function

    def call(self, function, *args, **kwargs):
        """Call a student's function; its exception becomes a one-line StudentError."""
        try:
            return function(*args, **kwargs)
        except (Divergence, StudentError, _Timeout):
            raise
        except (Exception, SystemExit) as exc:
            raise StudentError(describe(exc, self.directory)) from None


@dataclass
class PartResult:
    """How one part went: its score out of its points, the feedback of a failure, the time."""
    name: str
    points: int
    score: int
    feedback: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    """The grading of one lab's files: a :class:`PartResult` per part graded."""
    lab: Lab
    directory: Path
    parts: list = field(default_factory=list)

    @property
    def passed(self):
        return all(part.score == part.points for part in self.parts)

    def as_json(self):
        return {"lab": self.lab.number, "name": self.lab.name, "directory": str(self.directory),
                "passed": self.passed, "score": sum(p.score for p in self.parts),
                "points": sum(p.points for p in self.parts),
                "parts": [{"name": p.name, "score": p.score, "points": p.points,
                           "feedback": p.feedback, "seconds": round(p.seconds, 2)}
                          for p in self.parts]}


@contextmanager
def _time_limit(seconds):
    """Raise _Timeout after ``seconds`` (where SIGALRM exists, in the main thread)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _Timeout()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_part(part, files):
    start = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _time_limit(part.timeout):
                part.check(files)
    except (Divergence, StudentError) as exc:
        return 0, str(exc), time.monotonic() - start
    except _Timeout:
        return 0, (f"stopped after {part.timeout:g} s: does the student's code (or the "
                   f"simulation) hang?"), time.monotonic() - start
    except (Exception, SystemExit) as exc:   # from student code called without Files.call
        return 0, describe(exc, files.directory), time.monotonic() - start
    return part.points, "", time.monotonic() - start


def grade(number, directory=None, solution=False, out=None, parts=None):
    """Grade lab ``number`` and print a score line per part to ``out`` (if given).

    Parameters
    ----------
    number : int
        The lab.
    directory : path, optional
        Where the graded files are; default the lab's directory, or its solution's with
        ``solution``.
    solution : bool
        Grade the reference solution.
    out : file, optional
        Where the score lines go.
    parts : sequence of str, optional
        Grade only these parts (by name).

    Returns
    -------
    Report
    """
    entry = lab(number)
    if directory is None:
        directory = entry.solution_directory if solution else entry.directory
    files = Files(entry, directory)
    report = Report(entry, Path(directory))
    chosen = [p for p in entry.parts if parts is None or p.name in parts]
    width = max(len(p.name) for p in chosen)
    if out:
        print(f"lab {entry.number}: {entry.title} ({directory})", file=out, flush=True)
    for part in chosen:
        score, feedback, seconds = _run_part(part, files)
        result = PartResult(part.name, part.points, score, feedback, seconds)
        report.parts.append(result)
        if out:
            verdict = "pass" if score == part.points else "FAIL"
            print(f"  {part.name:<{width}}  {score:>2}/{part.points:<2} {verdict}"
                  f"  ({seconds:.1f} s)", file=out, flush=True)
            for line in feedback.splitlines():
                print(f"      {line}", file=out, flush=True)
    if out:
        total = sum(p.score for p in report.parts)
        points = sum(p.points for p in report.parts)
        print(f"  total {total}/{points}: {'all parts pass' if report.passed else 'not yet'}",
              file=out, flush=True)
    return report


def write_json(report, path):
    """Write ``report`` as a JSON score file (for a class's records)."""
    Path(path).write_text(json.dumps(report.as_json(), indent=2) + "\n")
