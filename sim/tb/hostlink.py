"""cocotb tests of the UART host link (rtl.hostlink.HostLink) driven by boards.host.Host.

A UART model stands in for the serial port: the same Host class that talks to a board
over pyserial talks to the simulated board top here. Parameters: divisor (clock cycles
per bit) and ``layer`` ({a, w, w_bits, a_bits}) for the network test.
"""

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from boards.host import Host, HostLinkError, frame, seal
from golden.systolic import Mode, tile_gemm
from rtl.hostlink import (CONFIG_BYTES, FRAME_CRC, REQUEST_SYNC, Command, RequestHeader,
                          Status)
from sim.runner import params
from sim.streams import reset, start_clock


class UartTransport:
    """Bytes to ``dut.rx`` and from ``dut.tx``, 8N1 at ``divisor`` clock cycles per bit."""

    def __init__(self, dut, divisor):
        self.dut, self.divisor = dut, divisor
        self.received = []
        dut.rx.value = 1
        cocotb.start_soon(self._listen())

    async def write(self, data, stop=1):
        """Send ``data``; ``stop=0`` sends every byte with a low stop bit (then idles)."""
        for byte in data:
            for bit in [0, *((byte >> i) & 1 for i in range(8)), stop]:
                self.dut.rx.value = bit
                await ClockCycles(self.dut.clk, self.divisor)
        self.dut.rx.value = 1

    async def _listen(self):
        dut, divisor = self.dut, self.divisor
        while True:
            await RisingEdge(dut.clk)
            if dut.tx.value:
                continue
            await ClockCycles(dut.clk, divisor + divisor // 2)
            byte = 0
            for i in range(8):
                byte |= int(dut.tx.value) << i
                await ClockCycles(dut.clk, divisor)
            self.received.append(byte)

    async def read(self, count, timeout_bits=2000):
        for _ in range(timeout_bits):
            if len(self.received) >= count:
                data, self.received = bytes(self.received[:count]), self.received[count:]
                return data
            await ClockCycles(self.dut.clk, self.divisor)
        raise HostLinkError(f"timeout: {len(self.received)} of {count} bytes")


async def board(dut):
    start_clock(dut)
    transport = UartTransport(dut, params()["divisor"])
    await reset(dut)
    return Host(transport), transport


@cocotb.test()
async def identify_and_counters(dut):
    """IDENTIFY reports the array; COUNTERS count cycles."""
    host, _ = await board(dut)
    ident = await host.identify()
    assert ident == params()["identity"], ident
    first = await host.counters()
    second = await host.counters()
    # Between the two snapshots: the first answer (4 + 12 + 2 bytes) and the second request
    # (4 + 2 bytes), ten bits each.
    assert second["cycles"] - first["cycles"] >= 24 * 10 * params()["divisor"], (first, second)
    assert first["steps"] == first["beats"] == 0


@cocotb.test()
async def the_board_and_the_host_compute_the_same_crc(dut):
    """The host's frame is accepted; the board's answer ends with the host's CRC of it."""
    _, transport = await board(dut)
    await transport.write(frame(Command.IDENTIFY))
    raw = await transport.read(4 + 6 + 2)
    assert raw[:4] == bytes([0x5A, Status.OK.value, 6, 0]), raw.hex()
    assert raw[-2:] == FRAME_CRC.compute(raw[1:-2]).to_bytes(2, "little"), raw.hex()


@cocotb.test()
async def digits_layer_over_the_link(dut):
    """A layer of the pruned, quantized digits MLP runs on the array over the UART, bit-exact."""
    host, _ = await board(dut)
    layer = params()["layer"]
    a, w = np.array(layer["a"]), np.array(layer["w"])
    mode = Mode(layer["w_bits"], layer["a_bits"], True, False)
    got = await host.gemm(a, w, mode)
    assert np.array_equal(got, a @ w)
    ident = params()["identity"]
    tiling = tile_gemm(a, w, ident["rows"], ident["cols"], mode)
    counters = await host.counters()
    assert counters["steps"] == tiling.tiles * tiling.k_steps, counters
    assert counters["beats"] == tiling.tiles * ident["rows"] // ident["drain_rows"], counters


async def expect(host, transport, data, status, stop=1):
    """Send ``data``, expect one answer with ``status``, then check the link still works."""
    await transport.write(data, stop)
    got, _ = await host.answer()
    assert got == status, f"{data.hex()}: {got}, want {status}"
    assert (await host.identify())["rows"] == params()["identity"]["rows"]


@cocotb.test()
async def bad_frames_are_answered_and_the_link_recovers(dut):
    """Garbage, a short frame, an unknown command, a wrong length, a length beyond any request."""
    host, transport = await board(dut)
    config = frame(Command.CONFIG, bytes(CONFIG_BYTES))
    await expect(host, transport, bytes([0x00, 0x13, 0x37]), Status.GARBAGE)
    await expect(host, transport, bytes([0x00]) + config, Status.GARBAGE)   # no gap: swallowed
    await expect(host, transport, config[:6], Status.TIMEOUT)
    # Byte 1 of a frame is the command: an unknown code under a correct CRC.
    identify = frame(Command.IDENTIFY)
    await expect(host, transport, identify[:1] + seal(bytes([0x77]) + identify[2:-2]),
                 Status.BAD_COMMAND)
    await expect(host, transport, frame(Command.CONFIG, bytes(CONFIG_BYTES - 2)),
                 Status.BAD_LENGTH)
    await expect(host, transport, frame(Command.READ), Status.EMPTY)
    header = RequestHeader.const({"sync": REQUEST_SYNC, "command": Command.STEP,
                                  "length": 0x7FFF}).as_bits().to_bytes(4, "little")
    await expect(host, transport, header[:1] + seal(header[1:] + bytes(8)), Status.BAD_LENGTH)


@cocotb.test()
async def a_frame_whose_crc_does_not_match_is_refused(dut):
    """A flipped CRC byte, a flipped payload byte, the CRC bytes swapped: BAD_CRC, no effect."""
    host, transport = await board(dut)
    config = frame(Command.CONFIG, bytes([0x3F, 0x10, 0x00, 0x01, 0x00]))
    assert config[-1] != config[-2]
    for corrupt in (config[:-1] + bytes([config[-1] ^ 0x80]),
                    config[:5] + bytes([config[5] ^ 0x01]) + config[6:],
                    config[:-2] + config[-1:] + config[-2:-1]):
        await expect(host, transport, corrupt, Status.BAD_CRC)
    # None of them reached the array: no configuration, so a step is refused as BUSY.
    step = bytes((params()["identity"]["rows"] + params()["identity"]["cols"])
                 * params()["identity"]["word_bits"] // 8)
    status, _ = await host.call(Command.STEP, step, accept=(Status.OK, Status.BUSY))
    assert status == Status.BUSY


@cocotb.test()
async def a_byte_with_a_low_stop_bit_is_a_framing_error(dut):
    """Bytes with a low stop bit are dropped and answered FRAMING_ERROR once the line is quiet."""
    host, transport = await board(dut)
    await expect(host, transport, frame(Command.IDENTIFY)[:3], Status.FRAMING_ERROR, stop=0)
    await expect(host, transport, bytes([0xA5]), Status.FRAMING_ERROR, stop=0)


@cocotb.test()
async def bytes_sent_during_an_answer_are_an_overrun(dut):
    """A request sent before the previous answer is read back: OVERRUN after the answer."""
    host, transport = await board(dut)
    await transport.write(frame(Command.IDENTIFY) + frame(Command.COUNTERS))
    status, data = await host.answer()
    assert status == Status.OK and len(data) == 6
    status, _ = await host.answer()
    assert status == Status.OVERRUN
    assert (await host.identify())["rows"] == params()["identity"]["rows"]
