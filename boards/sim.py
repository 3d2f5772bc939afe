"""A simulated board: a board top's link and engine (the systolic array or the accelerator)
in the Amaranth simulator, as a transport for :class:`boards.host.Host` or
:class:`boards.host.AccelHost`.

:class:`SimulatedBoard` has the interface of :class:`boards.host.SerialTransport` (the
coroutines ``write(data)``, ``read(count)`` and ``discard()``), so the code that drives a
board over its serial port drives the simulation unchanged::

    host = Host(SimulatedBoard())           # instead of Host(SerialTransport("/dev/ttyUSB1"))
    result = asyncio.run(host.gemm(a, w, Mode(8, 8, True, True)))

    host = AccelHost(SimulatedBoard(board_accelerator("icebreaker")))

The simulated design is the board top's (:class:`boards.top.BoardTop`) without the pins:
:class:`~rtl.hostlink.HostLink` in front of the board's array, or
:class:`~rtl.accel.link.AccelLink` in front of its accelerator, the UART lines driven and
sampled bit by bit at ``divisor`` clock cycles per bit. It runs in this process, in
Amaranth's Python simulator: no Verilog, no build. Each coroutine advances the simulation
while it waits (a read until its bytes have arrived), so simulated time passes only while
the host is sending or waiting, as on a board. ``examples/host_gemm.py --sim`` (the array)
and ``examples/host_accel.py --sim`` (the accelerator) use it.
"""

from collections import deque

from amaranth.sim import Simulator

from boards.host import HostLinkError
from boards.top import BOARDS, link_of
from rtl.accel.core import Accelerator
from rtl.accel.link import AccelLink
from rtl.hostlink import HostLink
from rtl.systolic import SystolicArray

__all__ = ["SimulatedBoard", "board_accelerator", "board_array"]

#: Bits of one 8N1 byte on the line: start, eight data bits, stop.
_BYTE_BITS = 10
#: Bit times of silence after which the link ends a frame (its default timeout).
_LINK_TIMEOUT_BITS = 40
#: Bit times without a byte after which :meth:`SimulatedBoard.discard` finds the line quiet:
#: longer than the link waits before it answers a broken frame.
_QUIET_BITS = _LINK_TIMEOUT_BITS + 20
#: The default ``slack`` of :class:`SimulatedBoard`: bit times a read waits beyond its bytes'
#: time on the line. The array's link answers as soon as it has executed a request; the
#: accelerator's answers COLLECT only once a batch is published, so a read waits for a
#: batch: 10,000 bit times, 40,000 cycles at the smallest divisor, six times a batch of the
#: digits MLP on the iCEBreaker's accelerator (6,529 cycles; 2,085 for 16 images on the
#: ULX3S's).
SLACK = {HostLink: 100, AccelLink: 10_000}
#: The simulated clock period in seconds. Only cycles matter (the board's COUNTERS count
#: them); the period is the simulator's unit of time.
_PERIOD = 1e-6


async def _ticks(ctx, count):
    """Wait ``count`` clock cycles. Not ``ctx.tick().repeat(count)``: that is an async
    generator, which the asyncio loop the host runs in would take, and close when it ends
    (under ``asyncio.run``), while the simulation goes on."""
    for _ in range(count):
        await ctx.tick()


def _board(board):
    """The :class:`boards.top.Board` named ``board``."""
    if board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(sorted(BOARDS))}, not {board!r}")
    return BOARDS[board]


def board_array(board="icebreaker"):
    """The array ``python -m gen --board NAME --unit array`` builds: the board's largest
    mixed array with its edge registers (:data:`boards.top.BOARDS`)."""
    spec = _board(board)
    rows, cols = (int(size) for size in spec.largest_array.split("x"))
    return SystolicArray(rows, cols, "mixed", edge_registers=spec.edge_registers)


def board_accelerator(board="icebreaker"):
    """The accelerator ``python -m gen --board NAME`` builds: the board's ``accel``
    configuration (:data:`boards.top.BOARDS`)."""
    return Accelerator(_board(board).accel)


class SimulatedBoard:
    """A board top's link and engine, simulated, behind the transport interface.

    Parameters
    ----------
    engine : SystolicArray or Accelerator, optional
        The engine behind the link: an array behind a :class:`~rtl.hostlink.HostLink`
        (:class:`~boards.host.Host` drives it), an accelerator behind an
        :class:`~rtl.accel.link.AccelLink` (:class:`~boards.host.AccelHost`); by default the
        iCEBreaker's array (:func:`board_array`).
    divisor : int
        Clock cycles per UART bit, at least 4. The board's is its clock over the baud rate
        (104 for 115200 baud at 12 MHz); the protocol is the same at any divisor, and 4, the
        smallest, makes the simulation fastest.
    slack : int, optional
        Bit times a read waits beyond the time its bytes take on the line, at least 40. A
        link answers a broken frame 40 bit times after the line goes quiet; the array's
        answers a request as soon as it has executed it, and the default for it, 100, covers
        both. The accelerator's answers COLLECT only once a batch is published: its default,
        10,000, covers a batch of the digits MLP several times over (:data:`SLACK`); give
        more for a longer program. A read that fails waits all of it.

    Attributes
    ----------
    link : HostLink or AccelLink
        The simulated design.
    cycles : int
        Clock cycles simulated so far.
    """

    def __init__(self, engine=None, divisor=4, slack=None):
        if engine is not None and not isinstance(engine, (SystolicArray, Accelerator)):
            raise TypeError(f"engine must be an rtl.systolic.SystolicArray or an "
                            f"rtl.accel.core.Accelerator, not {engine!r}")
        link = link_of(engine)
        slack = SLACK[link] if slack is None else slack
        # Checked here, before anything is built (the UART checks it too).
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor must be a whole number of clock cycles per bit of at "
                             f"least 4, not {divisor!r}")
        if not isinstance(slack, int) or slack < _LINK_TIMEOUT_BITS:
            raise ValueError(f"slack must be a whole number of bit times of at least "
                             f"{_LINK_TIMEOUT_BITS}, not {slack!r}")
        self.link = link(board_array() if engine is None else engine, divisor)
        self.divisor = divisor
        self.slack = slack
        self.cycles = 0
        self._line = deque()            # bits still to send to the board, one per bit time
        self._received = bytearray()    # bytes from the board, not read yet
        self._receiving = False         # a byte from the board has started and not ended
        self._sim = Simulator(self.link)
        self._sim.add_clock(_PERIOD)
        self._sim.add_testbench(self._send, background=True)
        self._sim.add_testbench(self._listen, background=True)

    async def _send(self, ctx):
        """Drive ``rx`` with the queued bits, each for ``divisor`` cycles; idle high."""
        while True:
            ctx.set(self.link.rx, self._line.popleft() if self._line else 1)
            await _ticks(ctx, self.divisor)

    async def _listen(self, ctx):
        """Sample ``tx`` in the middle of each bit of every byte the board sends."""
        while True:
            await ctx.negedge(self.link.tx)                 # a start bit
            self._receiving = True
            await _ticks(ctx, self.divisor + self.divisor // 2)
            byte = 0
            for bit in range(8):
                byte |= ctx.get(self.link.tx) << bit
                await _ticks(ctx, self.divisor)
            self._received.append(byte)                     # now in the stop bit
            self._receiving = False

    def _run(self, bits):
        """Simulate ``bits`` bit times."""
        self.cycles += bits * self.divisor
        self._sim.run_until(self.cycles * _PERIOD)

    async def write(self, data):
        """Send ``data`` to the board, 8N1; return when its last stop bit has been sent."""
        for byte in bytes(data):
            self._line.extend([0, *((byte >> bit) & 1 for bit in range(8)), 1])
        while self._line:
            self._run(len(self._line))
        self._run(1)

    async def read(self, count):
        """The next ``count`` bytes from the board.

        Raises
        ------
        HostLinkError
            They have not all come within their time on the line plus ``slack`` bit times.
        """
        limit = _BYTE_BITS * count + self.slack
        waited = 0
        while len(self._received) < count:
            if waited >= limit:
                raise HostLinkError(f"timeout: {len(self._received)} of {count} bytes")
            self._run(_BYTE_BITS)
            waited += _BYTE_BITS
        data = bytes(self._received[:count])
        del self._received[:count]
        return data

    async def discard(self, limit=100):
        """Wait until nothing has come for 60 bit times (longer than the link waits before
        it answers a broken frame); drop every byte received and not read.

        Raises
        ------
        HostLinkError
            The board has not been quiet within ``limit`` such periods.
        """
        quiet = 0
        for _ in range(limit * _QUIET_BITS):
            count = len(self._received)
            self._run(1)
            quiet = 0 if self._receiving or len(self._received) != count else quiet + 1
            if quiet == _QUIET_BITS:
                self._received.clear()
                return
        raise HostLinkError(f"the line is not quiet after {limit * _QUIET_BITS} bit times")
