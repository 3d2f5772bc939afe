"""Host-side driver of the UART host link (docs/host-protocol.md).

:class:`Host` speaks the protocol over any *transport* with two coroutines,
``write(data)`` and ``read(count)``: :class:`SerialTransport` for a board on a
serial port (pyserial), or the cocotb UART model of the simulated board
(``sim/tb/hostlink.py``), so the same code is tested end to end in simulation.
Every word it sends or reads is built or parsed through its definition in
``rtl/hostlink.py`` (and ``rtl/systolic.py`` for the configuration).

    host = Host(SerialTransport("/dev/ttyUSB1"))
    result = asyncio.run(host.gemm(a, w, Mode(8, 8, True, False)))
"""

import asyncio

from golden.systolic import pack_steps, tile_gemm, unpack_results
from rtl.fusion import BitWidth
from rtl.hostlink import (CONFIG_BYTES, FRAME_CRC, REQUEST_SYNC, RESPONSE_SYNC, Command, Counters,
                          Identity, RequestHeader, ResponseHeader, Status)
from rtl.systolic import ArrayConfig, k_step_bound

__all__ = ["HostLinkError", "seal", "frame", "config_payload", "Host", "SerialTransport"]

_HEADER_BYTES = RequestHeader.size // 8


class HostLinkError(Exception):
    """The board answered with an error status (``status``, a :class:`Status`, names it), or
    its answer was malformed (``status`` is then a description)."""

    def __init__(self, status, command=None):
        self.status = status
        name = status.name if isinstance(status, Status) else status
        super().__init__(f"the board answered {name}"
                         + (f" to {command.name}" if command is not None else ""))


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
        "mode": {"w_bits": BitWidth.of(mode.w_bits), "a_bits": BitWidth.of(mode.a_bits),
                 "w_signed": mode.w_signed, "a_signed": mode.a_signed},
        "k_steps": k_steps, "tiles": tiles}).as_bits()
    return word.to_bytes(CONFIG_BYTES, "little")


class Host:
    """The protocol over a transport, and GEMMs on the board's systolic array."""

    def __init__(self, transport):
        self.transport = transport
        self.identity = None

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
        """``{"cycles", "steps", "beats"}`` since reset."""
        _, data = await self.call(Command.COUNTERS)
        view = Counters.from_bits(int.from_bytes(data, "little"))
        return {name: getattr(view, name) for name, _ in Counters}

    async def read_beat(self):
        """One result beat as ``drain_rows`` lists of ``cols`` signed values, or None."""
        status, data = await self.call(Command.READ, accept=(Status.OK, Status.EMPTY))
        if status == Status.EMPTY:
            return None
        ident = self.identity
        size = ident["acc_width"] // 8
        values = [int.from_bytes(data[i:i + size], "little", signed=True)
                  for i in range(0, len(data), size)]
        cols = ident["cols"]
        return [values[g * cols:(g + 1) * cols] for g in range(ident["drain_rows"])]

    async def gemm(self, a, w, mode):
        """``A @ W`` on the board: configure, stream the steps, collect the result beats."""
        ident = self.identity or await self.identify()
        rows, cols, word = ident["rows"], ident["cols"], ident["word_bits"]
        tiling = tile_gemm(a, w, rows, cols, mode)
        bound = k_step_bound(ident["acc_width"], mode.w_bits, mode.a_bits, mode.w_signed,
                             mode.a_signed)
        if tiling.k_steps > bound:
            # The array would drop the configuration (and the results would never come).
            raise ValueError(f"K must be at most {bound * mode.lanes} in this mode on a "
                             f"{ident['acc_width']}-bit accumulator, not {tiling.k}")
        config = config_payload(mode, tiling.k_steps, tiling.tiles)
        busy = (Status.OK, Status.BUSY)
        while (await self.call(Command.CONFIG, config, accept=busy))[0] == Status.BUSY:
            await asyncio.sleep(0)
        beats = []
        expected = tiling.tiles * (rows // ident["drain_rows"])
        for act, wgt in pack_steps(a, w, rows, cols, mode):
            words = [*act, *wgt]
            payload = b"".join(v.to_bytes(word // 8, "little") for v in words)
            while (await self.call(Command.STEP, payload, accept=busy))[0] == Status.BUSY:
                beat = await self.read_beat()          # results are holding the array up
                if beat is not None:
                    beats.append(beat)
        while len(beats) < expected:
            beat = await self.read_beat()
            if beat is not None:
                beats.append(beat)
        return unpack_results(beats, tiling, ident["drain_rows"])


class SerialTransport:
    """A serial port (pyserial) as a transport; ``timeout`` seconds per read."""

    def __init__(self, port, baud=115200, timeout=2.0):
        import serial
        self.port = serial.Serial(port, baud, timeout=timeout)

    async def write(self, data):
        self.port.write(data)

    async def read(self, count):
        data = self.port.read(count)
        if len(data) != count:
            raise HostLinkError(f"timeout: {len(data)} of {count} bytes")
        return data
