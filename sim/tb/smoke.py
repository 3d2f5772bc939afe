"""cocotb tests of the runner itself, on :class:`StreamAccumulator` (tests/test_runner.py,
tests/test_sim_run.py)."""

import random

import cocotb
from amaranth import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sim.runner import params
from sim.streams import StreamSource, reset, start_clock, to_signed

#: Parameters (sim.runner.params) and their defaults: the seed of the words and stalls, and
#: an offset added to the expected sum (1 makes the test fail, to test the runner).
PARAMS = {"seed": 1, "offset": 0}


class StreamAccumulator(wiring.Component):
    """Adds every word accepted on ``i`` to a running sum, ``total``."""

    i: In(stream.Signature(signed(8)))
    total: Out(signed(24))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        with m.If(self.i.valid):
            m.d.sync += self.total.eq(self.total + self.i.payload)
        return m


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
