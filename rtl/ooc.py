"""Out-of-context wrapper: an engine with every port kept, on four pins.

Synthesizing an engine on its own would either need more pins than any package has or
let yosys remove logic whose outputs go nowhere. :class:`PortWrapper` registers every
input port from one long shift register fed by a pin (``scan_in``), registers every
output port and folds the registered outputs into one pin (``scan_out``) through an XOR
tree, so each input bit is controllable and each output bit observable. The tree has a
register after every level of 4-input XORs, so the wrapper never sets the clock: it adds
one flip-flop per port bit and about a third of a LUT4 and a flip-flop per output bit.
"""

from amaranth import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PortWrapper"]


class PortWrapper(wiring.Component):
    """``engine`` behind a scan chain: ports ``scan_in`` and ``scan_out`` (plus clk and rst).

    Parameters
    ----------
    engine : wiring.Component
        Any component; its signature's members are the ports wrapped.

    Raises
    ------
    ValueError
        ``engine`` is not a component.
    """

    scan_in: In(1)
    scan_out: Out(1)

    def __init__(self, engine):
        if not isinstance(engine, wiring.Component):
            raise ValueError(f"engine must be a wiring.Component, not {engine!r}")
        self._engine = engine
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self._engine
        inputs, outputs = [], []
        for path, member, value in engine.signature.flatten(engine):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        chain = Signal(max(1, sum(len(value) for value in inputs)))
        m.d.sync += chain.eq(Cat(self.scan_in, chain[:-1]))
        offset = 0
        for value in inputs:
            m.d.comb += value.eq(chain[offset:offset + len(value)])
            offset += len(value)
        folded = Signal(max(1, sum(len(value) for value in outputs)), name="captured")
        m.d.sync += folded.eq(Cat(*outputs))
        level = 0
        while len(folded) > 1:
            level += 1
            parity = Signal((len(folded) + 3) // 4, name=f"xor_level{level}")
            m.d.sync += parity.eq(Cat(folded[i:i + 4].xor() for i in range(0, len(folded), 4)))
            folded = parity
        m.d.comb += self.scan_out.eq(folded)
        return m
