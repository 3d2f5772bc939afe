"""Progress lines for the long commands: one as each job starts and finishes, with the time left.

The benchmarks (``python -m sim.bench``) run a few long jobs in a row (Verilog conversion,
a simulation that may first build its Verilator model, a synthesis run). :class:`Progress`
prints a line when each job starts, a line every ``interval`` seconds while it runs, and a
line when it ends, with how long it took and an estimate of the time the remaining jobs
need (:func:`time_left`). The lines go to standard error, so a table or a JSON document on
standard output stays as it was.

Example::

    progress = Progress(2, sys.stderr)
    with progress.job("8x8 mixed array: Verilog"):
        ...
    with progress.job("18 GEMMs simulated"):
        ...

prints::

    [1/2] 8x8 mixed array: Verilog ...
    [1/2] 8x8 mixed array: Verilog: 7.1 s, about 0:07 left
    [2/2] 18 GEMMs simulated ...
    [2/2] 18 GEMMs simulated: 9.0 s, 0:16 in all
"""

import threading
import time
from contextlib import contextmanager

__all__ = ["Progress", "time_left", "clock_time", "FIRST_BUILD"]

#: Said of a simulation job: the runner builds a design's Verilator model on its first run
#: (minutes for a large design) and reuses it from ``sim_build/`` after.
FIRST_BUILD = "a design's first run also builds its simulator model"


def time_left(seconds_done, weight_done, weight_left):
    """Seconds the jobs left should take, at the pace of the jobs done.

    Parameters
    ----------
    seconds_done : float
        Wall time the finished jobs took.
    weight_done, weight_left : float
        Expected cost of the finished and of the remaining jobs, in any one unit (a job
        count, PEs to synthesize, expected seconds).

    Returns
    -------
    float or None
        ``seconds_done / weight_done * weight_left``; None while nothing is done to
        measure the pace by.
    """
    if weight_done <= 0:
        return None
    return seconds_done / weight_done * weight_left


def clock_time(seconds):
    """``seconds`` as ``m:ss`` (``h:mm:ss`` from an hour on), rounded to the second."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class Progress:
    """Lines on ``stream`` as each of a known list of jobs starts, runs and finishes.

    Parameters
    ----------
    weights : int or sequence of float
        The number of jobs (each as costly as the others), or each job's expected cost in
        the order they run.
    stream : file, optional
        Where the lines go; ``None`` prints nothing.
    interval : float, optional
        Seconds between the lines printed while a job runs; ``None``: none (for jobs that
        relay their own phases, as synthesis does).
    kinds : sequence, optional
        Each job's kind (a Verilog conversion, a simulation), in the order they run: the
        jobs left of a kind are expected at the pace of the jobs done of that kind, or of
        all the jobs done while none of that kind is. By default every job is of one kind.
    clock : callable
        Seconds now, for tests (default: :func:`time.monotonic`).
    """

    def __init__(self, weights, stream, interval=10.0, kinds=None, clock=time.monotonic):
        self._weights = [1] * weights if isinstance(weights, int) else list(weights)
        if any(weight <= 0 for weight in self._weights):
            raise ValueError(f"job weights must be positive, not {self._weights!r}")
        self._kinds = [None] * len(self._weights) if kinds is None else list(kinds)
        if len(self._kinds) != len(self._weights):
            raise ValueError(f"{len(self._kinds)} kinds for {len(self._weights)} jobs")
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._seconds = []                      # of each job done

    def _time_left(self):
        """Seconds the jobs not done should take, kind by kind (:func:`time_left`)."""
        done = len(self._seconds)
        left = 0.0
        for kind in set(self._kinds[done:]):
            weight_left = sum(w for w, k in zip(self._weights[done:], self._kinds[done:])
                              if k == kind)
            same = [(s, w) for s, w, k in zip(self._seconds, self._weights, self._kinds)
                    if k == kind]
            pace_of = same or list(zip(self._seconds, self._weights))
            left += time_left(sum(s for s, _ in pace_of), sum(w for _, w in pace_of),
                              weight_left)
        return left

    def _print(self, line):
        if self._stream is not None:
            self._stream.write(line + "\n")     # one write: lines from the ticker stay whole
            self._stream.flush()

    @contextmanager
    def job(self, label, note=""):
        """Run the body as the next job: ``label`` names it in every line, ``note`` (what
        may make it long) is added to the first."""
        if len(self._seconds) >= len(self._weights):
            raise RuntimeError(f"more jobs than the {len(self._weights)} announced")
        tag = f"[{len(self._seconds) + 1}/{len(self._weights)}] {label}"
        self._print(f"{tag}{f' ({note})' if note else ''} ...")
        started = self._clock()
        stop = threading.Event()

        def tick():
            while not stop.wait(self._interval):
                self._print(f"{tag}: {clock_time(self._clock() - started)} so far")
        ticker = threading.Thread(target=tick, daemon=True)
        if self._stream is not None and self._interval is not None:
            ticker.start()
        try:
            yield
        finally:
            stop.set()
            if ticker.is_alive():
                ticker.join()
        seconds = self._clock() - started
        self._seconds.append(seconds)
        ending = (f"about {clock_time(self._time_left())} left"
                  if len(self._seconds) < len(self._weights)
                  else f"{clock_time(sum(self._seconds))} in all")
        self._print(f"{tag}: {seconds:.1f} s, {ending}")
