# amaranth: UnusedElaboratable=no
"""The host link: its frames and UART in Python and the Amaranth simulator, and end to end
in cocotb, boards.host.Host over a UART model of the simulated board."""

import asyncio

import numpy as np
import pytest
from amaranth import Module
from amaranth.sim import Simulator

from boards.host import Host, config_payload, frame
from boards.top import BOARDS
from golden.network import PRECISIONS, digits_network, digits_split
from golden.systolic import Mode
from rtl.hostlink import Command, HostLink
from rtl.systolic import SystolicArray
from rtl.uart import UARTRx, UARTTx
from sim.runner import run

DIVISOR = 4
#: The link fuzz test (sim/tb/hostlink.py): its seed, and how many cases of each kind
#: (random bytes, truncated frames, corrupted frames, frames cut at random points).
FUZZ_SEED = 13
FUZZ_CASES = 64


def crc16_modbus(data):
    """CRC-16/MODBUS written out bit by bit from its definition (reflected polynomial 0xA001)."""
    value = 0xFFFF
    for byte in data:
        value ^= byte
        for _ in range(8):
            value = (value >> 1) ^ (0xA001 if value & 1 else 0)
    return value


def test_frame_crc_is_crc16_modbus_of_the_bytes_after_sync():
    assert crc16_modbus(b"123456789") == 0x4B37              # the catalogued check value
    payload = bytes([1, 2, 3, 4, 5])
    data = frame(Command.CONFIG, payload)
    assert data[:4] == bytes([0xA5, 0x01, 5, 0]) and data[4:9] == payload
    assert data[9:] == crc16_modbus(data[1:9]).to_bytes(2, "little")


def test_config_payload_places_the_fields_of_the_configuration_word():
    # docs/host-protocol.md: bits 0-1 w_bits code, 2-3 a_bits code, 4 w_signed, 5 a_signed,
    # 6-21 k_steps, 22-37 tiles (codes 0, 1, 2 for 2, 4, 8 bits).
    word = int.from_bytes(config_payload(Mode(8, 4, True, False), 7, 3), "little")
    assert word == 0b10 | 0b01 << 2 | 1 << 4 | 7 << 6 | 3 << 22
    word = int.from_bytes(config_payload(Mode(2, 8, False, True), 0xFFFF, 1), "little")
    assert word == 0b10 << 2 | 1 << 5 | 0xFFFF << 6 | 1 << 22


@pytest.mark.parametrize("k_steps, tiles", [(0, 1), (1 << 16, 1), (1, 1 << 16)])
def test_config_payload_refuses_counts_the_word_cannot_carry(k_steps, tiles):
    with pytest.raises(ValueError, match="must be between 1 and 65535"):
        config_payload(Mode(8, 8, True, False), k_steps, tiles)


def test_gemm_refuses_a_k_the_accumulator_cannot_hold_before_sending_anything():
    # A 17-bit accumulator holds 65535; a signed 8-bit weight times an unsigned 8-bit
    # activation is at most 128 * 255 = 32640 in magnitude: 2 steps of one product each.
    class Silent:
        written = b""

        async def write(self, data):
            self.written += data

    host = Host(Silent())
    host.identity = {"rows": 2, "cols": 2, "word_bits": 32, "acc_width": 17, "drain_rows": 1,
                     "precision": "mixed"}
    a, w = np.ones((2, 3), dtype=np.int64), np.ones((3, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="K must be at most 2 .* not 3"):
        asyncio.run(host.gemm(a, w, Mode(8, 8, True, False)))
    assert host.transport.written == b""


def uart_bits(byte, stop=1):
    return [0, *((byte >> i) & 1 for i in range(8)), stop]


def simulate_rx(line_bits, ready):
    """Drive ``line_bits`` into a UARTRx with ``bytes.ready`` at ``ready``, then at 1; return
    the bytes transferred and the number of error pulses."""
    dut = UARTRx(DIVISOR)
    seen = {"bytes": [], "overrun": 0, "framing_error": 0}

    async def testbench(ctx):
        ctx.set(dut.bytes.ready, ready)
        for bit in line_bits:
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(DIVISOR)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * DIVISOR)
        ctx.set(dut.bytes.ready, 1)
        await ctx.tick().repeat(4)

    async def monitor(ctx):
        async for _, _, valid, ready, payload, overrun, framing in ctx.tick().sample(
                dut.bytes.valid, dut.bytes.ready, dut.bytes.payload, dut.overrun,
                dut.framing_error):
            if valid and ready:
                seen["bytes"].append(payload)
            seen["overrun"] += overrun
            seen["framing_error"] += framing

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.add_process(monitor)
    sim.run()
    return seen


def test_uart_receiver_drops_a_byte_with_a_low_stop_bit_and_reports_it():
    seen = simulate_rx([*uart_bits(0x5A), *uart_bits(0x33, stop=0), 0, 0, 1, *uart_bits(0x81)],
                       ready=1)
    assert seen == {"bytes": [0x5A, 0x81], "overrun": 0, "framing_error": 1}


def test_uart_receiver_keeps_the_offered_byte_and_reports_an_overrun():
    seen = simulate_rx([*uart_bits(0x5A), *uart_bits(0x33), *uart_bits(0x81)], ready=0)
    assert seen == {"bytes": [0x5A], "overrun": 2, "framing_error": 0}


def test_uart_transmitter_to_receiver_carries_every_byte():
    tx, rx = UARTTx(DIVISOR), UARTRx(DIVISOR)
    m = Module()
    m.submodules.tx, m.submodules.rx = tx, rx
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80]
    received = []

    async def testbench(ctx):
        ctx.set(rx.bytes.ready, 1)
        for byte in data:
            ctx.set(tx.bytes.payload, byte)
            ctx.set(tx.bytes.valid, 1)
            await ctx.tick().until(tx.bytes.ready)
            ctx.set(tx.bytes.valid, 0)
        for _ in range(20 * DIVISOR):
            await ctx.tick()

    async def monitor(ctx):
        async for _, _, valid, payload in ctx.tick().sample(rx.bytes.valid, rx.bytes.payload):
            if valid:
                received.append(payload)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.add_process(monitor)
    sim.run()
    assert received == data


def test_link_runs_a_digits_layer_and_answers_bad_frames():
    # The iCEBreaker's array: 2x2 with one edge register.
    array = SystolicArray(2, 2, "mixed", edge_registers=BOARDS["icebreaker"].edge_registers)
    link = HostLink(array, divisor=DIVISOR)
    net = digits_network(PRECISIONS["mixed"], 0.8)
    inputs = net.layer_inputs(net.quantize_input(digits_split()[1][:2]))
    layer = net.layers[-1]
    identity = {"rows": 2, "cols": 2, "word_bits": 32, "acc_width": 32, "drain_rows": 1,
                "precision": "mixed"}
    run(link, "sim.tb.hostlink", name="hostlink_2x2",
        params={"divisor": DIVISOR, "identity": identity, "seed": FUZZ_SEED,
                "fuzz_cases": FUZZ_CASES,
                "layer": {"a": inputs[-1].tolist(), "w": layer.weight.T.tolist(),
                          "w_bits": layer.w_bits, "a_bits": layer.a_bits}})
