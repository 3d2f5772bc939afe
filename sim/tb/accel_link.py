"""cocotb tests of the accelerator's UART link (rtl.accel.link.AccelLink) driven by
boards.host.AccelHost, against the instruction-level model (golden.accel.AccelModel).

The UART model of the array link's tests (:class:`sim.tb.hostlink.UartTransport`) stands in
for the serial port. The network is the digits MLP at ``precision`` and ``sparsity``,
compiled by golden.accel for the accelerator under test. Parameters: :data:`PARAMS`.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge, Timer

from boards.host import AccelHost, HostLinkError, frame, seal
from rtl.accel.isa import Instruction, Opcode, Space
from rtl.accel.link import Command, RequestHeader, Transfer, Width
from rtl.framing import REQUEST_SYNC, Status
from sim.runner import params
from sim.streams import reset, start_clock
from sim.tb.accel import config_of
from sim.tb.hostlink import UartTransport, answers


#: The clock period.
PERIOD_NS = 10


#: Parameters (sim.runner.params) and their defaults: the accelerator's ``config``, the
#: link's ``divisor``, the network (``precision``, a key of golden.network.PRECISIONS, and
#: ``sparsity``), ``batch`` (images per FILL), ``images`` (test images per inference run) and
#: the ``seed`` of the corrupted frames.
PARAMS = {
    "config": lambda link: link.accelerator.config.parameters(),
    "divisor": lambda link: link.divisor,
    "precision": "2-bit",
    "sparsity": 0.5,
    "batch": 4,
    "images": 10,
    "seed": 16,
}


class EdgeUart(UartTransport):
    """:class:`~sim.tb.hostlink.UartTransport` that waits for each start bit on a falling edge
    of ``tx`` instead of looking at every clock cycle (these tests send kilobytes)."""

    async def _listen(self):
        while True:
            await FallingEdge(self.dut.tx)
            await self._receive()

    async def _receive(self):
        dut, divisor = self.dut, self.divisor
        self.receiving = True
        await Timer((divisor + divisor // 2) * PERIOD_NS, "ns")
        bits = []
        for _ in range(8):
            bits.append(int(dut.tx.value))
            await Timer(divisor * PERIOD_NS, "ns")
        self.received.append(sum(bit << i for i, bit in enumerate(bits)))
        self.receiving = False


class CountingTransport:
    """``transport``, counting the bytes written and read."""

    def __init__(self, transport):
        self.inner, self.bytes = transport, 0

    async def write(self, data):
        self.bytes += len(data)
        await self.inner.write(data)

    async def read(self, count):
        data = await self.inner.read(count)
        self.bytes += len(data)
        return data

    async def discard(self):
        await self.inner.discard()


def network():
    from golden.network import PRECISIONS, digits_network
    p = params()
    return digits_network(PRECISIONS[p["precision"]], p["sparsity"])


def compiled(config, output="class", engines=None):
    from golden.accel import compile_network
    return compile_network(network(), config, params()["batch"], output=output,
                           engines=engines)


def test_images():
    from golden.network import digits_split
    return network().quantize_input(digits_split()[1][:params()["images"]])


def expected(config, program, images):
    """The instruction-level model's outputs of ``images``."""
    from golden.accel import AccelModel
    model = AccelModel(config)
    model.load(program)
    return model.infer(program, images)


async def board(dut):
    start_clock(dut, PERIOD_NS)
    transport = EdgeUart(dut, params()["divisor"])
    await reset(dut)
    counting = CountingTransport(transport)
    return AccelHost(counting), transport


async def answered(host, transport, data, stop=1):
    """The status of the one answer to ``data``; the link works after it (IDENTIFY)."""
    await transport.write(data, stop)
    status, _ = await host.answer()
    assert await host.identify() == config_of(params()), data.hex()
    return status


def instruction(opcode):
    return Instruction.const({"opcode": opcode, "args": {"pad": 0}}).as_bits()


@cocotb.test()
async def identify_load_and_infer_in_batches(dut):
    """IDENTIFY gives the configuration; a compiled program loaded over the link classifies
    10 images in batches of 4 (the last one short) as the model does, within the input and
    output bytes + 16 per inference; then a program with its middle layer on the sparse unit
    (CSC words and the unit's entries written over the link) gives the golden logits."""
    host, _ = await board(dut)
    config = config_of(params())
    assert await host.identify() == config
    images = test_images()
    program = compiled(config)
    await host.load(program)
    before = host.transport.bytes
    classes = await host.infer(images)
    per_image = (host.transport.bytes - before) / len(images)
    want = expected(config, program, images)
    assert np.array_equal(classes, want), (classes, want)
    input_bytes = len(program.input_page(images[:program.batch])) * config.chunks(Space.ACT) * 4
    budget = input_bytes / program.batch + 1 + 16
    dut._log.info(f"{per_image:.1f} link bytes per inference ({input_bytes / program.batch:.0f} "
                  f"input, 1 output; budget {budget:.0f})")
    assert per_image <= budget, (per_image, budget)
    # READ sees both OUTPUT pages: batches 0 and 2 went to page 0, batch 1 to page 1.
    words = await host.read(Space.OUTPUT, 0, 2 * config.output_words)
    pages = [words[:config.output_words], words[config.output_words:]]
    assert pages[0][:2] == list(want[8:]) and pages[1][:4] == list(want[4:8]), (pages, want)
    # A second run streams on: the program still runs, no START.
    assert np.array_equal(await host.infer(images[:3]), want[:3])

    program = compiled(config, output="logits", engines=("array", "spmv", "array"))
    await host.load(program)
    logits = await host.infer(images)
    want = expected(config, program, images)
    assert np.array_equal(logits, want), (logits, want)
    assert np.array_equal(logits, network().forward(images))


@cocotb.test()
async def bad_frames_are_answered_and_the_link_recovers(dut):
    """Garbage, a short frame, an unknown command (the array link's IDENTIFY), wrong lengths,
    a length beyond any request, low stop bits, frames with 1 to 3 flipped bits: each is one
    error answer; a corrupted WRITE changes nothing and a corrupted FILL hands no page over."""
    host, transport = await board(dut)
    config = await host.identify()
    status_frame = frame(Command.STATUS)
    oversized = RequestHeader.const({"sync": REQUEST_SYNC, "command": Command.FILL,
                                     "length": 0xFFF0}).as_bits().to_bytes(4, "little")
    cases = [
        (bytes([0x00, 0x13, 0x37]), 1, Status.GARBAGE),
        (bytes([0x00]) + status_frame, 1, Status.GARBAGE),       # no gap: swallowed
        (status_frame[:3], 1, Status.TIMEOUT),
        (bytes([0xA5]) + seal(bytes([0x00, 0, 0])), 1, Status.BAD_COMMAND),
        (frame(Command.READ, bytes(3)), 1, Status.BAD_LENGTH),
        (frame(Command.FILL, bytes(6)), 1, Status.BAD_LENGTH),
        (oversized + bytes(8), 1, Status.BAD_LENGTH),
        (status_frame[:3], 0, Status.FRAMING_ERROR),
    ]
    for data, stop, status in cases:
        assert await answered(host, transport, data, stop) == status, data.hex()

    program = compiled(config)
    await host.load(program)
    rng = random.Random(params()["seed"])
    halt = Transfer.const({"space": Space.PROGRAM, "width": Width.FOUR, "word": 0, "count": 4})
    write = frame(Command.WRITE, halt.as_bits().to_bytes(4, "little")
                  + instruction(Opcode.HALT).to_bytes(16, "little"))
    fill = frame(Command.FILL, bytes(4 * config.chunks(Space.ACT)))
    await host.start()
    for case in range(8):
        for whole in (write, fill):
            corrupt = bytearray(whole)
            for bit in rng.sample(range(8, 8 * len(corrupt)), rng.randint(1, 3)):
                corrupt[bit // 8] ^= 1 << bit % 8
            await transport.write(bytes(corrupt))
            statuses = answers(await transport.quiet())
            assert statuses and Status.OK not in statuses, (case, corrupt.hex(), statuses)
    # Nothing was written or handed over: the program waits for its first page.
    state = await host.status()
    assert state["running"] and state["input_free"] and state["input_page"] == 0 \
        and not state["results_ready"], state
    images = test_images()
    assert np.array_equal(await host.infer(images), expected(config, program, images))


@cocotb.test()
async def a_host_slow_to_collect_holds_the_program(dut):
    """Three batches filled and none collected: the program waits at DONE, a fourth FILL is
    BUSY; once the host collects, every batch's classes are right."""
    host, _ = await board(dut)
    config = await host.identify()
    program = compiled(config)
    await host.load(program)
    images = test_images()
    want = expected(config, program, images)
    await host.start()
    batches = [images[i:i + program.batch] for i in range(0, len(images), program.batch)]
    assert len(batches) == 3
    for batch in batches:
        assert await host.fill(batch)
    await ClockCycles(dut.clk, 20_000)
    state = await host.status()
    assert state["results_ready"] and not state["input_free"], state
    assert not await host.fill(batches[0])
    got = [await host.collect(len(batch)) for batch in batches]
    assert np.array_equal(np.concatenate(got), want), (got, want)


@cocotb.test()
async def errors_are_statuses_and_the_next_program_runs(dut):
    """COLLECT with no program: EMPTY; COLLECT waiting for a program that never publishes,
    given up by the host: BUSY (then OVERRUN for the frame sent meanwhile); a program that
    stops on a bad opcode: FAULT naming its instruction; START while one runs: BUSY; READ of
    PROGRAM, READ and WRITE past a memory: BAD_ARGUMENT; then a good program runs."""
    host, transport = await board(dut)
    config = await host.identify()
    collect = Transfer.const({"space": Space.OUTPUT, "width": Width.ONE, "word": 0,
                              "count": 1}).as_bits().to_bytes(4, "little")
    await host.call(Command.COLLECT, collect, accept=(Status.EMPTY,))
    loop = Instruction.const({"opcode": Opcode.JUMP, "args": {"jump": {"target": 1}}})
    await host.write(Space.PROGRAM, 0, [instruction(Opcode.SYNC), loop.as_bits()])
    await host.start()
    await host.call(Command.FILL, bytes(4))
    await transport.write(frame(Command.COLLECT, collect))
    await ClockCycles(dut.clk, 100 * params()["divisor"])
    await transport.write(frame(Command.STATUS))
    assert answers(await transport.quiet()) == [Status.BUSY, Status.OVERRUN]
    await host.reset()
    await host.write(Space.PROGRAM, 0, [instruction(Opcode.SYNC), 15, instruction(Opcode.HALT)])
    await host.start()
    await host.call(Command.START, accept=(Status.BUSY,))
    await host.call(Command.FILL, bytes(4))
    try:
        await host.request(Command.COLLECT, collect)
    except HostLinkError as error:
        assert error.status == Status.FAULT and "instruction 1" in str(error), error
    else:
        raise AssertionError("a program stopped on an error was not reported")
    for space, word, count in ((Space.PROGRAM, 0, 1), (Space.RESULT, 2 * config.result_words - 1,
                                                       config.chunks(Space.RESULT) + 1)):
        read = Transfer.const({"space": space, "width": Width.FOUR, "word": word,
                               "count": count}).as_bits().to_bytes(4, "little")
        await host.call(Command.READ, read, accept=(Status.BAD_ARGUMENT,))
    past = Transfer.const({"space": Space.PARAM, "width": Width.FOUR,
                           "word": config.param_words - 1,
                           "count": 2 * config.chunks(Space.PARAM)})
    await host.call(Command.WRITE, past.as_bits().to_bytes(4, "little")
                    + bytes(8 * config.chunks(Space.PARAM)), accept=(Status.BAD_ARGUMENT,))
    program = compiled(config)
    await host.load(program)
    images = test_images()[:5]
    assert np.array_equal(await host.infer(images), expected(config, program, images))
