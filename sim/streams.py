"""cocotb drivers for the generated Verilog: clock and reset, stream source and sink.

Amaranth flattens an ``amaranth.lib.stream`` port named ``i`` into the Verilog
ports ``i__valid``, ``i__ready`` and ``i__payload``; these classes drive and
watch such a triple. A transfer happens on a rising clock edge where both valid
and ready are high. Payloads are handled as unsigned integers of the payload's
width; :func:`to_signed` and the golden packers convert.
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

__all__ = ["to_signed", "start_clock", "reset", "StreamSource", "StreamSink", "EngineDriver"]


def to_signed(value, width):
    """Two's complement reading of the ``width``-bit unsigned ``value``."""
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def start_clock(dut, period_ns=10):
    """Start the clock of the ``sync`` domain (port ``clk``)."""
    return cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())


async def reset(dut, cycles=2):
    """Hold the synchronous reset (port ``rst``) for ``cycles`` rising edges."""
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class StreamSource:
    """Drives payloads into the stream ``prefix`` of ``dut``.

    Parameters
    ----------
    dut : cocotb handle
        The top level.
    prefix : str
        Name of the stream port (``i`` for ``i__valid``/``i__ready``/``i__payload``).
    stall : float
        Probability, per cycle, of withholding valid before a payload (0 to 1).
    rng : random.Random, optional
        Source of the stalls; seed it for a reproducible run.
    """

    def __init__(self, dut, prefix, *, stall=0.0, rng=None):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.stall = stall
        self.rng = rng or random.Random(0)
        self.valid.value = 0

    async def send(self, payload):
        """Offer ``payload`` until the sink takes it; returns after the transfer edge."""
        while self.stall and self.rng.random() < self.stall:
            self.valid.value = 0
            await RisingEdge(self.clk)
        self.payload.value = payload
        self.valid.value = 1
        while True:
            await RisingEdge(self.clk)
            if self.ready.value:
                break
        self.valid.value = 0

    async def send_all(self, payloads):
        """Send every payload in order."""
        for payload in payloads:
            await self.send(payload)


class StreamSink:
    """Accepts payloads from the stream ``prefix`` of ``dut``, with random back-pressure.

    Call :meth:`start` once; received payloads then collect in :attr:`received`.

    Parameters
    ----------
    dut : cocotb handle
        The top level.
    prefix : str
        Name of the stream port (``o`` for ``o__valid``/``o__ready``/``o__payload``).
    stall : float
        Probability, per cycle, of holding ready low (0 to 1).
    rng : random.Random, optional
        Source of the stalls; seed it for a reproducible run.
    """

    def __init__(self, dut, prefix, *, stall=0.0, rng=None):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.stall = stall
        self.rng = rng or random.Random(0)
        self.received = []
        self._task = None
        self.ready.value = 0

    def start(self):
        """Begin accepting payloads in the background."""
        if self._task is None:
            self._task = cocotb.start_soon(self._accept())
        return self

    def stop(self):
        """Stop accepting (ready goes low)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.ready.value = 0

    async def _accept(self):
        while True:
            ready = not (self.stall and self.rng.random() < self.stall)
            self.ready.value = int(ready)
            await RisingEdge(self.clk)
            if ready and self.valid.value:
                self.received.append(int(self.payload.value))

    async def wait_for(self, count, timeout_cycles=100_000):
        """Wait until ``count`` payloads have arrived; fail after ``timeout_cycles``."""
        for _ in range(timeout_cycles):
            if len(self.received) >= count:
                return self.received[:count]
            await RisingEdge(self.clk)
        raise AssertionError(f"timed out after {timeout_cycles} cycles with "
                             f"{len(self.received)} of {count} payloads received")


class EngineDriver:
    """The streams of one engine under test and a cycle count for timing it.

    Each input stream named in ``sources`` becomes a :class:`StreamSource` attribute of
    the same name; the output stream ``sink`` is accepted from the start into
    :attr:`sink`. After every rising edge :meth:`watch` sees the top level with
    :attr:`cycle` already advanced; engines override it to record timing in :attr:`marks`.

    Parameters
    ----------
    dut : cocotb handle
        The top level.
    sources : iterable of str
        Names of the input streams.
    rng : random.Random
        Source of the stalls of every stream.
    stall : float
        Stall probability of every stream (0 to 1).
    sink : str
        Name of the output stream.
    """

    def __init__(self, dut, sources, rng, stall=0.0, sink="result"):
        self.dut = dut
        for name in sources:
            setattr(self, name, StreamSource(dut, name, stall=stall, rng=rng))
        self.sink = StreamSink(dut, sink, stall=stall, rng=rng).start()
        self.cycle = 0
        self.marks = {}
        self.tasks = [cocotb.start_soon(self._count())]

    async def _count(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1
            self.watch(self.dut)

    def watch(self, dut):
        """Record what the cycle that just ended did (nothing by default)."""

    def abort(self):
        """Stop driving and watching (before a reset)."""
        for task in self.tasks:
            task.cancel()
        self.sink.stop()
