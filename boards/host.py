"""Host-side driver of the UART host link (docs/host-protocol.md).

:class:`Host` speaks the protocol over any *transport* with two coroutines,
``write(data)`` and ``read(count)``: :class:`SerialTransport` for a board on a
serial port (pyserial), or the cocotb UART model of the simulated board
(``sim/tb/hostlink.py``), so the same code is tested end to end in simulation.

    host = Host(SerialTransport("/dev/ttyUSB1"))
    result = asyncio.run(host.gemm(a, w, Mode(8, 8, True, False)))
"""

import asyncio


from golden.systolic import pack_steps, tile_gemm, unpack_results

__all__ = ["REQUEST_SYNC", "RESPONSE_SYNC", "COMMANDS", "STATUSES", "HostLinkError", "frame",
           "Host", "SerialTransport"]

REQUEST_SYNC, RESPONSE_SYNC = 0xA5, 0x5A
#: Command codes, as rtl.hostlink.Command.
COMMANDS = {"IDENTIFY": 0x00, "CONFIG": 0x01, "STEP": 0x02, "READ": 0x03, "COUNTERS": 0x04}
#: Status codes, as rtl.hostlink.Status.
STATUSES = {0: "OK", 1: "BAD_CHECKSUM", 2: "BAD_COMMAND", 3: "BAD_LENGTH", 4: "TIMEOUT",
            5: "EMPTY", 6: "GARBAGE", 7: "BUSY"}
WIDTH_CODE = {2: 0, 4: 1, 8: 2}


class HostLinkError(Exception):
    """The board answered with an error status (``status`` names it)."""

    def __init__(self, status, command=None):
        self.status = status
        super().__init__(f"the board answered {status}" + (f" to {command}" if command else ""))


def checksum(data):
    """The byte that makes ``data`` plus itself sum to 0 modulo 256."""
    return -sum(data) & 0xFF


def frame(command, payload=b""):
    """A request frame: ``A5 command len_lo len_hi payload... checksum``."""
    body = bytes([command]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return bytes([REQUEST_SYNC]) + body + bytes([checksum(body)])


class Host:
    """The protocol over a transport, and GEMMs on the board's systolic array."""

    def __init__(self, transport):
        self.transport = transport
        self.identity = None

    async def answer(self):
        """Read one response: ``(status name, payload)``; a bad frame raises HostLinkError."""
        sync = await self.transport.read(1)
        if sync != bytes([RESPONSE_SYNC]):
            raise HostLinkError(f"bad response sync byte {sync.hex()}")
        head = await self.transport.read(3)
        length = int.from_bytes(head[1:3], "little")
        rest = await self.transport.read(length + 1)
        if (sum(head) + sum(rest)) & 0xFF:
            raise HostLinkError("bad response checksum")
        return STATUSES.get(head[0], f"status {head[0]}"), rest[:-1]

    async def call(self, command, payload=b"", accept=("OK",)):
        """Send a request, return ``(status, payload)``; a status outside ``accept`` raises."""
        await self.transport.write(frame(COMMANDS[command], payload))
        status, data = await self.answer()
        if status not in accept:
            raise HostLinkError(status, command)
        return status, data

    async def identify(self):
        """Rows, columns, word bits, accumulator bits, drain rows and precision of the array."""
        _, data = await self.call("IDENTIFY")
        names = ("rows", "cols", "word_bits", "acc_width", "drain_rows", "precision")
        self.identity = dict(zip(names, data))
        self.identity["precision"] = self.identity["precision"] or "mixed"
        return self.identity

    async def counters(self):
        """``{"cycles", "steps", "beats"}`` since reset."""
        _, data = await self.call("COUNTERS")
        return {name: int.from_bytes(data[4 * i:4 * i + 4], "little")
                for i, name in enumerate(("cycles", "steps", "beats"))}

    async def read_beat(self):
        """One result beat as ``drain_rows`` lists of ``cols`` signed values, or None."""
        status, data = await self.call("READ", accept=("OK", "EMPTY"))
        if status == "EMPTY":
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
        code = (WIDTH_CODE[mode.w_bits] | WIDTH_CODE[mode.a_bits] << 2
                | int(mode.w_signed) << 4 | int(mode.a_signed) << 5)
        config = code | tiling.k_steps << 6 | tiling.tiles << 22
        while (await self.call("CONFIG", config.to_bytes(5, "little"),
                               accept=("OK", "BUSY")))[0] == "BUSY":
            await asyncio.sleep(0)
        beats = []
        expected = tiling.tiles * (rows // ident["drain_rows"])
        for act, wgt in pack_steps(a, w, rows, cols, mode):
            words = [*act, *wgt]
            payload = b"".join(v.to_bytes(word // 8, "little") for v in words)
            while (await self.call("STEP", payload, accept=("OK", "BUSY")))[0] == "BUSY":
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
