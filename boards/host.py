"""Host-side driver of the UART host link (docs/host-protocol.md).

:class:`Host` speaks the protocol over any *transport*: an object with two coroutines,
``write(data)`` and ``read(count)`` (which raises :class:`HostLinkError` when ``count``
bytes do not come within its timeout), and optionally a third, ``discard()``, that waits
until the line is quiet and drops every byte received and not read.
:class:`SerialTransport` is a board on a serial port (pyserial); the cocotb UART model of
the simulated board (``sim/tb/hostlink.py``) is another, so the same code is tested end to
end in simulation, and :class:`boards.sim.SimulatedBoard` a third, the board top in
Amaranth's simulator in this process (``examples/host_gemm.py --sim``). Every word it sends
or reads is built or parsed through its definition in ``rtl/hostlink.py`` (and
``rtl/systolic.py`` for the configuration and the result beat).

    host = Host(SerialTransport("/dev/ttyUSB1"))
    result = asyncio.run(host.gemm(a, w, Mode(8, 8, True, False)))

What :meth:`Host.gemm` promises for bad input and failures is in docs/reliability.md.
"""

import asyncio
import numbers

import numpy as np

from golden.bitfusion import value_range
from golden.checks import integer_array
from golden.systolic import Mode, pack_steps, tile_gemm, unpack_results
from rtl.fusion import mode_const, modes
from rtl.hostlink import (CONFIG_BYTES, FRAME_CRC, REQUEST_SYNC, RESPONSE_SYNC, Command, Counters,
                          Identity, RequestHeader, ResponseHeader, Status, step_layout)
from rtl.systolic import ArrayConfig, k_step_bound, result_layout

__all__ = ["HostLinkError", "seal", "frame", "config_payload", "check_gemm", "Host",
           "SerialTransport"]

_HEADER_BYTES = RequestHeader.size // 8
#: Tries of RESET before :meth:`Host.reset` gives up.
_RESET_TRIES = 3


class HostLinkError(Exception):
    """The board answered with an error status (``status``, a :class:`Status`, names it), or
    its answer was malformed, late or unexpected (``status`` is then a description);
    ``detail`` says what it means."""

    def __init__(self, status, command=None, detail=None):
        self.status = status
        name = status.name if isinstance(status, Status) else status
        super().__init__(f"the board answered {name}"
                         + (f" to {command.name}" if command is not None else "")
                         + (f": {detail}" if detail else ""))


def seal(body):
    """``body`` followed by its :data:`~rtl.hostlink.FRAME_CRC`, low byte first."""
    return bytes(body) + FRAME_CRC.compute(body).to_bytes(2, "little")


def frame(command, payload=b""):
    """A request frame: header (sync, ``command``, length), ``payload``, CRC."""
    header = RequestHeader.const({"sync": REQUEST_SYNC, "command": command,
                                  "length": len(payload)}).as_bits()
    header = header.to_bytes(_HEADER_BYTES, "little")
    return header[:1] + seal(header[1:] + bytes(payload))


def config_payload(mode, k_steps, tiles):
    """The CONFIG payload: an ``ArrayConfig`` of ``mode`` (a golden ``Mode``) and the counts."""
    for name, value in (("k_steps", k_steps), ("tiles", tiles)):
        limit = (1 << ArrayConfig[name].shape.width) - 1
        if not 1 <= value <= limit:
            raise ValueError(f"{name} must be between 1 and {limit}, not {value!r}")
    word = ArrayConfig.const({
        "mode": mode_const(mode.w_bits, mode.a_bits, mode.w_signed, mode.a_signed),
        "k_steps": k_steps, "tiles": tiles}).as_bits()
    return word.to_bytes(CONFIG_BYTES, "little")


def _operand(name, values, bits, signed):
    """``values`` as a 2-D int64 array of ``bits``-bit integers, or a one-line error."""
    lo, hi = value_range(bits, signed)
    sign = "signed" if signed else "unsigned"
    return integer_array(name, values, lo, hi, ndim=2, fits=f"{bits} bits {sign} ({lo}..{hi})")


def check_gemm(a, w, mode, identity):
    """Check ``A @ W`` in ``mode`` on the array ``identity`` describes (an IDENTIFY answer).

    Everything the array would refuse, and everything that would make an answer wrong, is
    refused here, before anything is sent.

    Returns
    -------
    a, w : ndarray of int64
        The operands as integers (whole floats become integers).
    tiling : Tiling
        How the GEMM maps onto the array.

    Raises
    ------
    TypeError
        ``mode`` is not a :class:`~golden.systolic.Mode`, its signedness not a bool, or
        ``a`` or ``w`` holds something other than numbers (bools, strings, objects).
    ValueError
        ``a`` or ``w`` is not 2-D or empty, their K differ, a value is NaN, infinite, not
        whole or outside the mode's range, the mode is not one of the array's, K needs more
        steps than the accumulator bound allows, or M and N make more tiles than a
        configuration can carry.
    """
    if not isinstance(mode, Mode):
        raise TypeError(f"mode must be a golden.systolic.Mode, not {mode!r}")
    for name in ("w_signed", "a_signed"):
        if not isinstance(getattr(mode, name), (bool, np.bool_)):
            raise TypeError(f"mode.{name} must be True or False, not "
                            f"{getattr(mode, name)!r}")
    supported = modes(identity["precision"])
    pair = (mode.w_bits, mode.a_bits)
    if not all(isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in pair) \
            or pair not in supported:
        allowed = ", ".join(f"{w}x{a}" for w, a in supported)
        raise ValueError(f"mode w_bits x a_bits must be one of the array's modes ({allowed}), "
                         f"not {mode.w_bits!r}x{mode.a_bits!r}")
    a = _operand("a", a, mode.a_bits, mode.a_signed)
    w = _operand("w", w, mode.w_bits, mode.w_signed)
    (m, k), (k_w, n) = a.shape, w.shape
    if k != k_w:
        raise ValueError(f"a (M x K) and w (K x N) must agree in K, not {a.shape} and {w.shape}")
    if not (m and n and k):
        raise ValueError(f"a and w must not be empty, not {a.shape} and {w.shape}")
    tiling = tile_gemm(a, w, identity["rows"], identity["cols"], mode)
    bound = k_step_bound(identity["acc_width"], mode.w_bits, mode.a_bits, mode.w_signed,
                         mode.a_signed)
    if tiling.k_steps > bound:
        w_kind, a_kind = ("signed" if s else "unsigned" for s in (mode.w_signed, mode.a_signed))
        raise ValueError(f"K must be at most {bound * mode.lanes} for {w_kind} {mode.w_bits}-bit "
                         f"weights and {a_kind} {mode.a_bits}-bit activations on a "
                         f"{identity['acc_width']}-bit accumulator, not {k}")
    limit = (1 << ArrayConfig["tiles"].shape.width) - 1
    if tiling.tiles > limit:
        raise ValueError(f"M and N must make at most {limit} tiles of {identity['rows']}x"
                         f"{identity['cols']}, not {tiling.tiles} (M = {m}, N = {n})")
    return a, w, tiling


class Host:
    """The protocol over a transport, and GEMMs on the board's systolic array.

    Parameters
    ----------
    transport
        ``write(data)``, ``read(count)`` and optionally ``discard()`` coroutines.
    retries : int
        How many times in a row :meth:`gemm` re-asks a board that makes no progress (a STEP
        answered ``BUSY`` and a READ ``EMPTY``; a READ ``EMPTY`` while beats are due) before
        it raises :class:`HostLinkError`.
    """

    def __init__(self, transport, retries=64):
        if not isinstance(retries, int) or retries < 1:
            raise ValueError(f"retries must be a positive number of tries, not {retries!r}")
        self.transport = transport
        self.retries = retries
        self.identity = None
        self._idle = False          # the array is known to be idle, without results

    async def answer(self):
        """Read one response: ``(Status, payload)``; a malformed one raises HostLinkError."""
        head = await self.transport.read(_HEADER_BYTES)
        header = ResponseHeader.from_bits(int.from_bytes(head, "little"))
        if header.sync != RESPONSE_SYNC:
            raise HostLinkError(f"bad response sync byte {head[0]:02x}")
        rest = await self.transport.read(header.length + 2)
        if FRAME_CRC.compute(head[1:] + rest) != FRAME_CRC.residue():
            raise HostLinkError("bad response CRC")
        try:
            return header.status, rest[:-2]
        except ValueError:
            raise HostLinkError(f"unknown status {head[1]}") from None

    async def call(self, command, payload=b"", accept=(Status.OK,)):
        """Send a request, return ``(Status, payload)``; a status outside ``accept`` raises."""
        await self.transport.write(frame(command, payload))
        status, data = await self.answer()
        if status not in accept:
            raise HostLinkError(status, command)
        return status, data

    async def identify(self):
        """Rows, columns, word bits, accumulator bits, drain rows and precision of the array."""
        _, data = await self.call(Command.IDENTIFY)
        view = Identity.from_bits(int.from_bytes(data, "little"))
        self.identity = {name: getattr(view, name) for name, _ in Identity}
        self.identity["precision"] = self.identity["precision"] or "mixed"
        return self.identity

    async def counters(self):
        """``{"cycles", "steps", "beats"}`` since the board's reset."""
        _, data = await self.call(Command.COUNTERS)
        view = Counters.from_bits(int.from_bytes(data, "little"))
        return {name: getattr(view, name) for name, _ in Counters}

    async def reset(self):
        """Bring the link and the array to a known state: no configuration, no steps, no
        results, no error.

        Waits for the line to be quiet and drops stale bytes (when the transport can), then
        sends RESET; tries up to three times.
        """
        error = None
        for _ in range(_RESET_TRIES):
            discard = getattr(self.transport, "discard", None)
            if discard is not None:
                await discard()
            try:
                await self.call(Command.RESET)
            except HostLinkError as failure:
                error = failure
            else:
                self._idle = True
                return
        raise HostLinkError(f"no OK to RESET in {_RESET_TRIES} tries (last: {error})")

    async def read_beat(self):
        """One result beat as ``drain_rows`` lists of ``cols`` signed values, or None."""
        status, data = await self.call(Command.READ, accept=(Status.OK, Status.EMPTY))
        if status == Status.EMPTY:
            return None
        ident = self.identity
        layout = result_layout(ident["acc_width"], ident["cols"], ident["drain_rows"])
        if len(data) != layout.size // 8:
            raise HostLinkError(f"a result beat of {len(data)} bytes, not {layout.size // 8}")
        beat = layout.from_bits(int.from_bytes(data, "little"))
        return [list(row) for row in beat]

    async def gemm(self, a, w, mode):
        """``A @ W`` on the board: configure, stream the steps, collect the result beats.

        Everything is checked (:func:`check_gemm`) and packed before the first frame is
        sent. The array is reset first unless it is known to be idle (the last GEMM
        finished). When anything fails after that, the array is reset (:meth:`reset`) and
        the error raised; when the reset fails too, a note on the error says so and the next
        GEMM resets first.

        Raises
        ------
        TypeError, ValueError
            From :func:`check_gemm`: nothing was sent.
        HostLinkError
            The board refused the configuration (``REJECTED``), made no progress for
            ``retries`` tries, or answered late or malformed.
        """
        ident = self.identity or await self.identify()
        a, w, tiling = check_gemm(a, w, mode, ident)
        rows, cols = ident["rows"], ident["cols"]
        config = config_payload(mode, tiling.k_steps, tiling.tiles)
        layout = step_layout(rows, cols, ident["word_bits"])
        steps = [layout.const({"act": act, "wgt": wgt}).as_bits()
                 .to_bytes(layout.size // 8, "little")
                 for act, wgt in pack_steps(a, w, rows, cols, mode)]
        expected = tiling.tiles * (rows // ident["drain_rows"])
        if not self._idle:
            await self.reset()
        self._idle = False
        try:
            beats = await self._run(config, steps, expected)
        except Exception as error:
            try:
                await self.reset()
            except Exception as failure:
                error.add_note(f"resetting the array failed too ({failure}); the next GEMM "
                               f"resets it first")
            raise
        self._idle = True
        return unpack_results(beats, tiling, ident["drain_rows"])

    async def _run(self, config, steps, expected):
        """CONFIG, every STEP (reading beats while the array is busy), then the last beats."""
        status, _ = await self.call(Command.CONFIG, config,
                                    accept=(Status.OK, Status.BUSY, Status.REJECTED))
        if status == Status.BUSY:
            raise HostLinkError(status, Command.CONFIG, "the array still has steps of a "
                                "configuration the host did not send to run")
        if status == Status.REJECTED:
            raise HostLinkError(status, Command.CONFIG, "the array dropped the configuration "
                                "(k_steps or tiles 0, or k_steps over its bound for the mode)")
        beats = []
        idle = 0

        async def collect():
            nonlocal idle
            beat = await self.read_beat()
            if beat is None:
                idle += 1
                if idle > self.retries:
                    raise HostLinkError(Status.EMPTY, Command.READ,
                                        f"no progress in {self.retries} tries ({len(beats)} "
                                        f"of {expected} result beats read)")
            else:
                idle = 0
                beats.append(beat)
                if len(beats) > expected:
                    raise HostLinkError(Status.OK, Command.READ,
                                        f"more than the {expected} result beats of the GEMM")

        for payload in steps:
            while (await self.call(Command.STEP, payload,
                                   accept=(Status.OK, Status.BUSY)))[0] == Status.BUSY:
                await collect()         # results are holding the array up
            idle = 0
        while len(beats) < expected:
            await collect()
        return beats


class SerialTransport:
    """A serial port (pyserial) as a transport; ``timeout`` seconds per read. ``port`` is a
    device (``/dev/ttyUSB1``, ``COM3``) or a pyserial URL (``socket://host:port``,
    ``loop://``)."""

    def __init__(self, port, baud=115200, timeout=2.0):
        import serial
        self.port = serial.serial_for_url(port, baud, timeout=timeout)

    async def write(self, data):
        self.port.write(data)

    async def read(self, count):
        data = self.port.read(count)
        if len(data) != count:
            raise HostLinkError(f"timeout: {len(data)} of {count} bytes")
        return data

    async def discard(self, quiet=0.05):
        """Wait ``quiet`` seconds (the board answers, at the latest, 40 bit times after the
        line goes quiet), then drop every byte received and not read."""
        await asyncio.sleep(quiet)
        self.port.reset_input_buffer()
