"""cocotb tests of the runner itself, on a stream accumulator (tests/test_runner.py)."""

import random

import cocotb

from sim.runner import params
from sim.streams import StreamSource, reset, start_clock, to_signed

#: Parameters (sim.runner.params) and their defaults: the seed of the words and stalls, and
#: an offset added to the expected sum (1 makes the test fail, to test the runner).
PARAMS = {"seed": 1, "offset": 0}


@cocotb.test()
async def accumulates_every_accepted_word(dut):
    """The running sum equals the sum of the words sent, under random stalls."""
    p = params()
    rng = random.Random(p["seed"])
    start_clock(dut)
    source = StreamSource(dut, "i", stall=0.3, rng=rng)
    await reset(dut)
    words = [rng.randrange(-128, 128) for _ in range(50)]
    await source.send_all([w & 0xFF for w in words])
    await source.send(0)
    assert to_signed(int(dut.total.value), 24) == sum(words) + p["offset"]
