# amaranth: UnusedElaboratable=no
"""The accelerator's host link: its words in Python, and end to end in cocotb, boards.host's
AccelHost over a UART model of a small accelerator behind rtl.accel.link.AccelLink."""

import asyncio
import dataclasses
import types

import pytest

from boards.host import AccelHost, frame
from rtl.accel.config import AccelConfig, SpmvConfig, TopkConfig
from rtl.accel.core import Accelerator
from rtl.accel.isa import Space
from rtl.accel.link import Command, Identity, Transfer, Width, AccelLink
from rtl.framing import FRAME_CRC
from sim.runner import run

DIVISOR = 4
#: A small accelerator that holds the 2-bit digits MLP for batches of 4 images, its middle
#: layer on the array or on the sparse unit.
SMALL = AccelConfig(rows=2, cols=2, spmv=SpmvConfig(n_pes=2, rows=64, cols=64),
                    topk=TopkConfig(n_max=16, k_max=2), program_words=32, act_words=64,
                    input_words=8, weight_words=256, param_words=64, csc_words=256,
                    result_words=32, output_words=16)


def test_transfer_places_its_fields():
    # docs/host-protocol.md: space [2:0], width [4:3], word [18:5], count [31:19].
    word = Transfer.const({"space": Space.OUTPUT, "width": Width.TWO, "word": 0x1234,
                           "count": 0x0ABC}).as_bits()
    assert word == 7 | 1 << 3 | 0x1234 << 5 | 0x0ABC << 19
    assert Transfer.size == 32


def test_accelerator_commands_are_apart_from_the_array_link():
    from rtl.hostlink import Command as ArrayCommand
    assert not {c.value for c in Command} & {c.value for c in ArrayCommand}
    data = frame(Command.STATUS)
    assert data[:4] == bytes([0xA5, 0x12, 0, 0])
    assert data[4:] == FRAME_CRC.compute(data[1:4]).to_bytes(2, "little")


@pytest.mark.parametrize("config", [
    SMALL, dataclasses.replace(SMALL, topk=TopkConfig(n_max=16, k_max=2, par=1)),
    dataclasses.replace(SMALL, drain_rows=2, acc_width=24)])
def test_identity_describes_the_configuration(config):
    link = AccelLink(Accelerator(config), DIVISOR, write_chunks=32)
    data = link.identity.as_bits().to_bytes(Identity.size // 8, "little")
    assert len(data) == 34      # docs/host-protocol.md

    class Board:
        async def write(self, frame_bytes):
            pass

        async def read(self, count):
            answer, self.answer = self.answer[:count], self.answer[count:]
            return answer

    board = Board()
    header = bytes([0x00, len(data), 0]) + data
    board.answer = bytes([0x5A]) + header + FRAME_CRC.compute(header).to_bytes(2, "little")
    host = AccelHost(board)
    assert asyncio.run(host.identify()) == config
    assert host.write_chunks == 32


class RecordingBoard:
    """A transport that answers every request OK with no payload, keeping the requests."""

    def __init__(self):
        self.requests, self.answers = [], b""

    async def write(self, data):
        self.requests.append(data)
        body = bytes([0, 0, 0])
        self.answers += bytes([0x5A]) + body + FRAME_CRC.compute(body).to_bytes(2, "little")

    async def read(self, count):
        data, self.answers = self.answers[:count], self.answers[count:]
        return data


def idle_host(board, write_chunks=8):
    host = AccelHost(board)
    host.config, host.write_chunks = SMALL, write_chunks
    return host


def test_write_splits_whole_words_into_frames_of_the_buffer():
    # PARAM words of the 2x2 array are 96 bits, 3 chunks: 8 chunks per frame hold 2 words.
    board = RecordingBoard()
    host = idle_host(board)
    values = [(3 * i + 2) << 64 | (3 * i + 1) << 32 | 3 * i for i in range(5)]
    asyncio.run(host.write(Space.PARAM, 10, values))
    assert [r[1] for r in board.requests] == [Command.WRITE.value] * 3
    for request, first, count in zip(board.requests, (10, 12, 14), (2, 2, 1)):
        header = Transfer.from_bits(int.from_bytes(request[4:8], "little"))
        assert (header.space, header.width, header.word, header.count) == \
            (Space.PARAM, Width.FOUR, first, 3 * count)
        chunks = request[8:-2]
        assert int.from_bytes(request[2:4], "little") == 4 + len(chunks) == 4 + 12 * count
        want = range(3 * (first - 10), 3 * (first - 10 + count))
        assert [int.from_bytes(chunks[i:i + 4], "little") for i in range(0, len(chunks), 4)] \
            == list(want)


@pytest.mark.parametrize("call, message", [
    (lambda host: host.write(Space.PARAM, 0, [1 << 96]),
     "a PARAM word must be between 0 and 79228162514264337593543950335, not 792"),
    (lambda host: host.load(types.SimpleNamespace(config=AccelConfig())),
     "program must be compiled for the board's accelerator"),
    (lambda host: host.infer([[0] * 64]), "no program is loaded: call load"),
])
def test_the_host_refuses_bad_input_before_sending_anything(call, message):
    board = RecordingBoard()
    with pytest.raises(ValueError, match=message):
        asyncio.run(call(idle_host(board)))
    assert board.requests == []


@pytest.mark.parametrize("value, rule", [(0, "between 1 and 8191"), (8192, "between 1 and 8191")])
def test_link_refuses_a_write_buffer_it_cannot_address(value, rule):
    with pytest.raises(ValueError, match=f"write_chunks must be {rule}, not {value}"):
        AccelLink(Accelerator(SMALL), DIVISOR, write_chunks=value)


def test_link_loads_a_program_runs_batches_and_recovers_from_bad_frames():
    link = AccelLink(Accelerator(SMALL), DIVISOR, write_chunks=64)
    run(link, "sim.tb.accel_link", name="accel_link_2x2")
