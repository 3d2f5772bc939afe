"""cocotb tests of the UART host link (rtl.hostlink.HostLink) driven by boards.host.Host.

A UART model stands in for the serial port: the same Host class that talks to a board
over pyserial talks to the simulated board top here. Parameters: :data:`PARAMS`.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from boards.host import Host, HostLinkError, frame, seal
from golden.systolic import Mode, tile_gemm
from rtl.fusion import mode_const
from rtl.hostlink import (CONFIG_BYTES, FRAME_CRC, REQUEST_SYNC, RESPONSE_SYNC, Command,
                          RequestHeader, ResponseHeader, Status)
from rtl.systolic import ArrayConfig, k_step_bound
from sim.runner import params
from sim.streams import reset, start_clock


def identity(link):
    """The IDENTIFY answer ``link`` gives, as :meth:`boards.host.Host.identify` returns it."""
    ident = link.identity
    return {"rows": ident.rows, "cols": ident.cols, "word_bits": ident.word_bits,
            "acc_width": ident.acc_width, "drain_rows": ident.drain_rows,
            "precision": ident.precision or "mixed"}


def digits_layer(link, samples=2):
    """The last layer of the digits MLP, pruned to 80% in mixed precision (8-bit weights,
    4-bit activations), on ``samples`` test images: {a (M x K), w (K x N), w_bits, a_bits}."""
    from golden.network import PRECISIONS, digits_network, digits_split
    net = digits_network(PRECISIONS["mixed"], 0.8)
    layer = net.layers[-1]
    a = net.layer_inputs(net.quantize_input(digits_split()[1][:samples]))[-1]
    return {"a": a.tolist(), "w": layer.weight.T.tolist(), "w_bits": layer.w_bits,
            "a_bits": layer.a_bits}


#: Parameters (sim.runner.params) and their defaults for the link under test: ``divisor``
#: (clock cycles per bit, by default the link's own; the link's timeout is its default, 40
#: bit times), ``identity`` (the IDENTIFY answer expected), ``layer`` (the network test's
#: GEMM), and the seed and number of cases of each kind of the fuzz test.
PARAMS = {
    "divisor": lambda link: link.divisor,
    "identity": identity,
    "layer": digits_layer,
    "seed": 13,
    "fuzz_cases": 16,
}

#: Bit times of silence after which the link ends a frame (its default timeout).
TIMEOUT_BITS = 40


class UartTransport:
    """Bytes to ``dut.rx`` and from ``dut.tx``, 8N1 at ``divisor`` clock cycles per bit."""

    def __init__(self, dut, divisor):
        self.dut, self.divisor = dut, divisor
        self.received = []
        self.receiving = False
        self.sent = 0               # bytes written, for tests that check nothing was sent
        dut.rx.value = 1
        cocotb.start_soon(self._listen())

    async def write(self, data, stop=1):
        """Send ``data``; ``stop=0`` sends every byte with a low stop bit (then idles)."""
        for byte in data:
            for bit in [0, *((byte >> i) & 1 for i in range(8)), stop]:
                self.dut.rx.value = bit
                await ClockCycles(self.dut.clk, self.divisor)
            self.sent += 1
        self.dut.rx.value = 1

    async def _listen(self):
        dut, divisor = self.dut, self.divisor
        while True:
            await RisingEdge(dut.clk)
            if dut.tx.value:
                continue
            self.receiving = True
            await ClockCycles(dut.clk, divisor + divisor // 2)
            byte = 0
            for i in range(8):
                byte |= int(dut.tx.value) << i
                await ClockCycles(dut.clk, divisor)
            self.received.append(byte)
            self.receiving = False

    async def read(self, count, timeout_bits=2000):
        for _ in range(timeout_bits):
            if len(self.received) >= count:
                data, self.received = bytes(self.received[:count]), self.received[count:]
                return data
            await ClockCycles(self.dut.clk, self.divisor)
        raise HostLinkError(f"timeout: {len(self.received)} of {count} bytes")

    async def quiet(self, bits=TIMEOUT_BITS + 20, limit=100):
        """Wait until nothing has come for ``bits`` bit times (longer than the link waits
        before it answers a broken frame); return and forget every byte not read."""
        for _ in range(limit):
            count = len(self.received)
            await ClockCycles(self.dut.clk, bits * self.divisor)
            if len(self.received) == count and not self.receiving:
                data, self.received = bytes(self.received), []
                return data
        raise HostLinkError(f"the line is not quiet after {limit * bits} bit times")

    async def discard(self):
        """The transport's ``discard``: :meth:`quiet`, dropping what it returns."""
        await self.quiet()


class SplitTransport:
    """``transport`` with every write cut at random points, with pauses of up to
    ``max_pause`` bit times (short of the link's timeout) between the pieces."""

    def __init__(self, transport, rng, max_pause=TIMEOUT_BITS - 15):
        self.inner, self.rng, self.max_pause = transport, rng, max_pause

    async def write(self, data):
        cuts = sorted(self.rng.sample(range(1, len(data)), self.rng.randint(0, len(data) - 1)))
        for start, end in zip([0, *cuts], [*cuts, len(data)]):
            await self.inner.write(data[start:end])
            await ClockCycles(self.inner.dut.clk, self.rng.randint(0, self.max_pause)
                              * self.inner.divisor)

    async def read(self, count):
        return await self.inner.read(count)

    async def discard(self):
        await self.inner.discard()


class FailingTransport:
    """``transport`` that fails once, on the ``nth`` STEP frame (counting from 1): it sends
    the first ``cut`` bytes of that frame, then raises HostLinkError."""

    def __init__(self, transport, nth, cut):
        self.inner, self.nth, self.cut = transport, nth, cut
        self.commands = []

    async def write(self, data):
        self.commands.append(Command(data[1]))
        if self.commands.count(Command.STEP) == self.nth and self.commands[-1] == Command.STEP:
            self.nth = None
            await self.inner.write(data[:self.cut])
            raise HostLinkError("timeout: the cable was pulled")
        await self.inner.write(data)

    async def read(self, count):
        return await self.inner.read(count)

    async def discard(self):
        await self.inner.discard()


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


def raw_config(w_bits, a_bits, w_signed, a_signed, k_steps, tiles):
    """A CONFIG payload with any counts (config_payload refuses the ones the word cannot
    carry; these are ones it can, that the array must refuse)."""
    word = ArrayConfig.const({"mode": mode_const(w_bits, a_bits, w_signed, a_signed),
                              "k_steps": k_steps, "tiles": tiles}).as_bits()
    return word.to_bytes(CONFIG_BYTES, "little")


def step_bytes():
    ident = params()["identity"]
    return (ident["rows"] + ident["cols"]) * ident["word_bits"] // 8


def small_gemm(rng):
    """A random 4x4 signed GEMM of a few tiles, and its mode."""
    m, k, n = rng.randint(1, 5), rng.randint(1, 9), rng.randint(1, 5)
    a = np.array([[rng.randint(-8, 7) for _ in range(k)] for _ in range(m)])
    w = np.array([[rng.randint(-8, 7) for _ in range(n)] for _ in range(k)])
    return a, w, Mode(4, 4, True, True)


@cocotb.test()
async def the_array_refuses_a_configuration_and_the_link_answers_rejected(dut):
    """K over the accumulator bound (unsigned 8x8 on 32 bits: 33026 steps), no steps, no
    tiles: REJECTED, and the array stays idle; RESET clears a configuration being run."""
    host, _ = await board(dut)
    ident = params()["identity"]
    bound = k_step_bound(ident["acc_width"], 8, 8, False, False)
    assert bound == 33025
    for k_steps, tiles in ((bound + 1, 1), (0, 1), (1, 0)):
        await host.call(Command.CONFIG, raw_config(8, 8, False, False, k_steps, tiles),
                        accept=(Status.REJECTED,))
        # Dropped: no configuration, so a step is refused.
        status, _ = await host.call(Command.STEP, bytes(step_bytes()),
                                    accept=(Status.OK, Status.BUSY))
        assert status == Status.BUSY, (k_steps, tiles)
    # At the bound it is taken (the sticky error flag from before does not make it REJECTED).
    await host.call(Command.CONFIG, raw_config(8, 8, False, False, bound, 1))
    await host.call(Command.STEP, bytes(step_bytes()))
    status, _ = await host.call(Command.CONFIG, raw_config(8, 8, False, False, 1, 1),
                                accept=(Status.OK, Status.BUSY))
    assert status == Status.BUSY                    # 33024 steps still to run
    await host.call(Command.RESET)
    status, _ = await host.call(Command.STEP, bytes(step_bytes()), accept=(Status.OK, Status.BUSY))
    assert status == Status.BUSY                    # reset: no configuration
    await host.call(Command.CONFIG, raw_config(8, 8, False, False, 1, 1))
    # The driver raises on REJECTED (here its idea of the accumulator is wider than the
    # board's, so it lets K = 33026 through) and leaves the array reset.
    host.identity = dict(ident, acc_width=40)
    a = np.ones((1, bound + 1), dtype=np.int64)
    try:
        await host.gemm(a, a.T, Mode(8, 8, False, False))
    except HostLinkError as error:
        assert error.status == Status.REJECTED, error
    else:
        raise AssertionError("a configuration the array drops was not reported")
    host.identity = dict(ident)
    a, w, mode = small_gemm(random.Random(1))
    assert np.array_equal(await host.gemm(a, w, mode), a @ w)


@cocotb.test()
async def a_failure_in_the_middle_of_a_gemm_leaves_the_array_reset(dut):
    """The transport fails half-way through the third STEP frame of a GEMM: gemm resets the
    array and raises; no configuration, no results remain; the next GEMM is exact. Bad input
    (NaN, K over the bound) is refused before a byte is sent."""
    host, transport = await board(dut)
    await host.identify()
    rng = random.Random(2)
    a = np.array([[rng.randint(-8, 7) for _ in range(12)] for _ in range(4)])
    w = np.array([[rng.randint(-8, 7) for _ in range(4)] for _ in range(12)])
    mode = Mode(4, 4, True, True)       # 4 lanes: 3 steps per tile, 4 tiles
    failing = FailingTransport(transport, nth=5, cut=7)
    host.transport = failing
    try:
        await host.gemm(a, w, mode)
    except HostLinkError as error:
        assert "cable" in str(error), error
    else:
        raise AssertionError("the failure was not raised")
    # RESET first (the host had not run a GEMM), CONFIG, four STEPs, the broken one, RESET.
    assert failing.commands[:2] == [Command.RESET, Command.CONFIG], failing.commands
    assert failing.commands[-1] == Command.RESET, failing.commands
    host.transport = transport
    # Four steps went in (the first tile is done, its two beats long since in the FIFO), no
    # beat was read; after the reset there is no configuration and no beat.
    counters = await host.counters()
    assert (counters["steps"], counters["beats"]) == (4, 0), counters
    status, _ = await host.call(Command.STEP, bytes(step_bytes()), accept=(Status.OK, Status.BUSY))
    assert status == Status.BUSY
    status, _ = await host.call(Command.READ, accept=(Status.OK, Status.EMPTY))
    assert status == Status.EMPTY
    sent = transport.sent
    for bad in ([[float("nan"), 1.0]], [[2.5, 1.0]]):
        try:
            await host.gemm(bad, [[1], [3]], Mode(8, 8, True, False))
        except ValueError:
            pass
        else:
            raise AssertionError(f"{bad} was not refused")
    assert transport.sent == sent, "bad input reached the link"
    assert np.array_equal(await host.gemm(a, w, mode), a @ w)


def answers(data):
    """The statuses of the response frames ``data`` holds; each must be well formed."""
    statuses = []
    while data:
        header = ResponseHeader.from_bits(int.from_bytes(data[:4], "little"))
        assert header.sync == RESPONSE_SYNC, data.hex()
        end = 4 + header.length + 2
        assert len(data) >= end and FRAME_CRC.compute(data[1:end]) == FRAME_CRC.residue(), \
            data.hex()
        statuses.append(header.status)
        data = data[end:]
    return statuses


@cocotb.test()
async def fuzz_the_link_then_run_an_exact_gemm(dut):
    """Random byte streams, truncated frames, frames with 1 to 3 flipped bits: every answer is
    a well-formed error (a truncated frame exactly one TIMEOUT), nothing reaches the array;
    frames cut at random points with pauses short of the timeout are answered as whole ones;
    then GEMMs through such cut frames are exact."""
    seed = params()["seed"]
    rng = random.Random(seed)
    host, transport = await board(dut)
    ident = await host.identify()
    cases = params()["fuzz_cases"]

    def valid_frame():
        command = rng.choice(list(Command))
        length = {Command.CONFIG: CONFIG_BYTES, Command.STEP: step_bytes()}.get(command, 0)
        return frame(command, bytes(rng.randrange(256) for _ in range(length)))

    seen = {}

    async def answered(data):
        await transport.write(data)
        got = answers(await transport.quiet())
        for status in got:
            seen[status.name] = seen.get(status.name, 0) + 1
        return got

    for case in range(cases):
        noise = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        if rng.random() < 0.5:
            noise = bytes([REQUEST_SYNC]) + noise
        got = await answered(noise)
        assert got and Status.OK not in got, (seed, case, noise.hex(), got)

        whole = valid_frame()
        cut = whole[:rng.randint(1, len(whole) - 1)]
        got = await answered(cut)
        assert got == [Status.TIMEOUT], (seed, case, cut.hex(), got)

        corrupt = bytearray(valid_frame())
        for bit in rng.sample(range(8, 8 * len(corrupt)), rng.randint(1, 3)):
            corrupt[bit // 8] ^= 1 << bit % 8
        got = await answered(bytes(corrupt))
        assert got and Status.OK not in got, (seed, case, corrupt.hex(), got)

    dut._log.info(f"seed {seed}, {cases} cases of each kind, answers: {seen}")
    counters = await host.counters()
    assert counters["steps"] == counters["beats"] == 0, (seed, counters)
    split = SplitTransport(transport, rng)
    host.transport = split
    for case in range(cases):
        assert await host.identify() == ident, (seed, case)
        await host.call(Command.READ, accept=(Status.EMPTY,))
    for case in range(4):
        a, w, mode = small_gemm(rng)
        assert np.array_equal(await host.gemm(a, w, mode), a @ w), (seed, case, a, w)
