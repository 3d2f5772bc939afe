# amaranth: UnusedElaboratable=no
"""The out-of-context wrapper: every input bit reachable from scan_in, every output bit seen on
scan_out (so yosys can remove nothing), in the Amaranth simulator."""

import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from rtl.ooc import PortWrapper


class Inverter(wiring.Component):
    """``y = ~x``, ``width`` bits: its outputs' parity follows its inputs bit for bit."""

    def __init__(self, width):
        super().__init__({"x": In(width), "y": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(~self.x)
        return m


@pytest.mark.parametrize("width", [1, 4, 5, 70])
def test_scan_out_is_the_parity_of_every_output_bit_a_fixed_number_of_cycles_later(width):
    # Random bits stream through the scan chain; every cycle the inverter's outputs are the
    # complement of the chain, so scan_out must follow the chain's parity (flipped when the
    # width is odd) with one fixed delay: the output registers and the tree's levels.
    wrapper = PortWrapper(Inverter(width))
    rng = random.Random(width)
    stream = [rng.randrange(2) for _ in range(300)]
    seen = []

    async def testbench(ctx):
        for bit in stream:
            ctx.set(wrapper.scan_in, bit)
            await ctx.tick()
            seen.append(ctx.get(wrapper.scan_out))

    sim = Simulator(wrapper)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    # After tick t, the chain holds stream[t - width + 1 .. t] (zeros before the start).
    padded = [0] * width + stream
    parity = [(sum(padded[t + 1:t + 1 + width]) + width) % 2 for t in range(len(stream))]
    levels = 0
    while 4 ** levels < width:
        levels += 1
    delay = 1 + levels                       # the output register, then one per tree level
    assert seen[delay:] == parity[:-delay]
    assert 0 < sum(parity) < len(parity)     # the stream exercises both values


def test_wrapping_something_that_is_not_a_component_is_a_one_line_error():
    # The class instead of an instance: a component's signature cannot be read from it.
    with pytest.raises(ValueError) as error:
        PortWrapper(Inverter)
    assert str(error.value).startswith("engine must be a wiring.Component, not <class '")
