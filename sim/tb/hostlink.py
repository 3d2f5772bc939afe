"""cocotb tests of the UART host link (rtl.hostlink.HostLink) driven by boards.host.Host.

A UART model stands in for the serial port: the same Host class that talks to a board
over pyserial talks to the simulated board top here. Parameters: divisor (clock cycles
per bit) and ``layer`` ({a, w, w_bits, a_bits}) for the network test.
"""

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from boards.host import COMMANDS, Host, HostLinkError, checksum, frame
from golden.systolic import Mode
from sim.runner import params
from sim.streams import reset, start_clock


class UartTransport:
    """Bytes to ``dut.rx`` and from ``dut.tx``, 8N1 at ``divisor`` clock cycles per bit."""

    def __init__(self, dut, divisor):
        self.dut, self.divisor = dut, divisor
        self.received = []
        dut.rx.value = 1
        cocotb.start_soon(self._listen())

    async def write(self, data):
        for byte in data:
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                self.dut.rx.value = bit
                await ClockCycles(self.dut.clk, self.divisor)

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
    assert second["cycles"] > first["cycles"] > 0 and first["steps"] == 0


@cocotb.test()
async def digits_layer_over_the_link(dut):
    """A layer of the pruned, quantized digits MLP runs on the array over the UART, bit-exact."""
    host, _ = await board(dut)
    layer = params()["layer"]
    a, w = np.array(layer["a"]), np.array(layer["w"])
    got = await host.gemm(a, w, Mode(layer["w_bits"], layer["a_bits"], True, False))
    assert np.array_equal(got, a @ w)
    counters = await host.counters()
    assert counters["steps"] > 0 and counters["beats"] > 0


@cocotb.test()
async def bad_frames_are_answered_and_the_link_recovers(dut):
    """Garbage, a short frame, a bad checksum, an unknown command, a wrong length."""
    host, transport = await board(dut)

    async def expect(data, status):
        await transport.write(data)
        got, _ = await host.answer()
        assert got == status, f"{data.hex()}: {got}, want {status}"
        assert (await host.identify())["rows"] == params()["identity"]["rows"]

    await expect(bytes([0x00, 0x13, 0x37]), "GARBAGE")
    await expect(frame(COMMANDS["CONFIG"], bytes(5))[:6], "TIMEOUT")
    bad = bytearray(frame(COMMANDS["CONFIG"], bytes(5)))
    bad[-1] ^= 0xFF
    await expect(bytes(bad), "BAD_CHECKSUM")
    await expect(frame(0x77), "BAD_COMMAND")
    await expect(frame(COMMANDS["CONFIG"], bytes(3)), "BAD_LENGTH")
    await expect(frame(COMMANDS["READ"]), "EMPTY")
    body = bytes([COMMANDS["STEP"], 0xFF, 0x7F])           # longer than any payload
    await transport.write(bytes([0xA5]) + body + bytes([checksum(body)]))
    got, _ = await host.answer()
    assert got == "BAD_LENGTH"
