"""Progress of the long tools: the phases of yosys and nextpnr, relayed from their logs.

A synthesis or board build runs yosys, then nextpnr, for seconds to half an hour, and both
write their log files as they go (yosys ``-l``, nextpnr's standard error or ``--log``).
:func:`relay` reads those logs while the tools run and prints each phase as the tools
enter it (a yosys pass, nextpnr's packing, placing and routing) with the time since the
flow started, and at least one line every :data:`HEARTBEAT` seconds, with the latest
iteration line of the placer or router, so a long run is never silent.
"""

import re
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["HEARTBEAT", "LogFollower", "phase_of", "detail_of", "elapsed", "relay"]

#: The longest time without a printed line while a flow runs, in seconds.
HEARTBEAT = 30.0

#: Each pattern of a log line that starts a phase and the phase's name. Yosys numbers its
#: passes (``2.43. Executing ABC9 pass.``): the first two levels are relayed, the script's
#: commands and the passes of ``synth_*``.
PHASES = [
    (re.compile(r"\d+(?:\.\d+)?\. Executing (\S+)"), "yosys {0}"),
    (re.compile(r"Info: Packing"), "nextpnr packing"),
    (re.compile(r"Info: (?:Creating initial analytic placement|Running main analytical placer)"),
     "nextpnr placing (analytic placer)"),
    (re.compile(r"Info: Running simulated annealing placer"), "nextpnr placing (annealing)"),
    (re.compile(r"Info: (?:Routing globals|Running router2|Routing\.\.)"), "nextpnr routing"),
    (re.compile(r"Info: Critical path report"), "nextpnr timing analysis"),
]
#: A line that says how far the current phase has got: an iteration of nextpnr's placers
#: (``at iteration #8, ...``, ``at initial placer iter 2, ...``) or of router2
#: (``iter=5 wires=... overused=...``), or a row of router1's table.
DETAIL = re.compile(r"Info:\s+((?:at .*iter|iter=|\d+ \|).*)")


def phase_of(line):
    """The phase that ``line`` of a yosys or nextpnr log starts, or None."""
    for pattern, name in PHASES:
        match = pattern.match(line)
        if match:
            return name.format(*match.groups())
    return None


def detail_of(line):
    """How far the current phase has got, if ``line`` says so (shortened), else None."""
    match = DETAIL.match(line)
    if not match:
        return None
    text = " ".join(match[1].split())
    return text if len(text) <= 80 else text[:77] + "..."


def elapsed(seconds):
    """``seconds`` as a person reads it: ``45 s``, ``3 min 05 s``."""
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


class LogFollower:
    """Reads the lines added to a log file, as a tool writes it, since the last call."""

    def __init__(self, path):
        self.path, self.offset, self.partial = Path(path), 0, ""

    def new_lines(self):
        try:
            with open(self.path, "rb") as log:
                log.seek(0, 2)
                if log.tell() < self.offset:        # the tool started the file again
                    self.offset, self.partial = 0, ""
                log.seek(self.offset)
                text = log.read().decode(errors="replace")
                self.offset = log.tell()
        except FileNotFoundError:
            return []
        *lines, self.partial = (self.partial + text).split("\n")
        return lines


@contextmanager
def relay(label, logs, stream=sys.stderr, heartbeat=HEARTBEAT, gap=5.0, poll=1.0):
    """While the block runs, print the phases that the tools write to ``logs`` to ``stream``.

    Each line is ``<label>: <time since the block started>  <phase>``. A new phase is printed
    when it starts, but no sooner than ``gap`` seconds after the last line (yosys runs many
    short passes: the one running then is printed); when ``heartbeat`` seconds pass without a
    line, the current phase is printed again with the latest iteration line of nextpnr's
    placer or router. The logs are the tools' own, written afresh: any left by an earlier
    run are removed first. With ``stream`` None, nothing is printed.

    Parameters
    ----------
    label : str
        What runs, e.g. ``"synth"`` or ``"board"``.
    logs : list of path-like
        The tools' log files, in any order; each is read as it grows.
    """
    if stream is None:
        yield
        return
    for log in logs:
        Path(log).unlink(missing_ok=True)
    followers = [LogFollower(log) for log in logs]
    started = time.monotonic()
    done = threading.Event()

    def watch():
        phase = detail = printed = None
        last = started
        while not done.wait(poll):
            for follower in followers:
                for line in follower.new_lines():
                    entered = phase_of(line)
                    if entered:
                        phase, detail = entered, None
                    else:
                        detail = detail_of(line) or detail
            now = time.monotonic()
            if phase != printed and (printed is None or now - last >= gap):
                text, printed = phase, phase
            elif now - last >= heartbeat:
                text = (phase or "starting") + (f" ({detail})" if detail else "")
            else:
                continue
            print(f"{label}: {elapsed(now - started)}  {text}", file=stream, flush=True)
            last = now

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
