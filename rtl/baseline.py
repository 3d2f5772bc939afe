"""The comparison baseline: the same systolic array with plain ``a*b`` multiply-accumulate PEs.

:class:`PlainArray` is a :class:`~rtl.systolic.SystolicArray` with 8-bit operands whose PEs
multiply with ``*`` (synthesis maps them to DSP blocks where the device has them) instead of
fused BitBricks, and whose edge passes the words through unsteered. Same ports, same timing,
same drain: synthesized beside a fusion array, the difference is the PE.
"""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.fusion import FusionMode, FusionPE, StepControl
from rtl.systolic import SystolicArray

__all__ = ["PlainPE", "PlainArray"]


class PlainPE(wiring.Component):
    """An 8-bit ``a*b`` multiply-accumulate PE with :class:`~rtl.fusion.FusionPE`'s ports and latency.

    The operands are 8-bit words, extended to 9 bits signed or unsigned by the mode's flags,
    so the PE computes the fusion PE's 8x8 mode.
    """

    latency = FusionPE.latency

    def __init__(self, acc_width=32):
        self._acc_width = acc_width
        super().__init__({
            "mode":         In(FusionMode),
            "w":            In(8),
            "a":            In(8),
            "valid":        In(1),
            "first":        In(1),
            "last":         In(1),
            "result":       Out(signed(acc_width)),
            "result_valid": Out(1),
            "forward":      Out(StepControl),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.forward.eq(Cat(self.mode, self.valid, self.first, self.last))
        w = Cat(self.w, self.w[7] & self.mode.w_signed).as_signed()
        a = Cat(self.a, self.a[7] & self.mode.a_signed).as_signed()
        # Registered operands, the product, then product registers up to the fusion PE's
        # latency.
        depth = self.latency - 1
        w_reg, a_reg = Signal.like(w), Signal.like(a)
        product = [Signal(signed(18), name=f"product{i}") for i in range(depth - 1)]
        valid, first, last = [Signal(depth, name=n) for n in ("valid", "first", "last")]
        m.d.sync += [w_reg.eq(w), a_reg.eq(a), product[0].eq(w_reg * a_reg),
                     *(product[i].eq(product[i - 1]) for i in range(1, depth - 1)),
                     valid.eq(Cat(self.valid, valid)), first.eq(Cat(self.first, first)),
                     last.eq(Cat(self.last, last))]
        valid, first, last, product = valid[-1], first[-1], last[-1], product[-1]
        acc = Signal(signed(self._acc_width))
        total = Signal(signed(self._acc_width))
        m.d.comb += total.eq(Mux(first, 0, acc) + product)
        m.d.sync += self.result_valid.eq(valid & last)
        with m.If(valid):
            m.d.sync += acc.eq(total)
            with m.If(last):
                m.d.sync += self.result.eq(total)
        return m


class PlainArray(SystolicArray):
    """An ``rows x cols`` array of :class:`PlainPE` (8-bit operands, 8x8 mode only)."""

    def __init__(self, rows, cols, acc_width=32, drain_rows=None, fifo_depth=None,
                 edge_registers=2):
        super().__init__(rows, cols, precision=8, acc_width=acc_width, drain_rows=drain_rows,
                         fifo_depth=fifo_depth, edge_registers=edge_registers)

    def _operand(self, m, side, index, mode, word):
        return word

    def _processing_element(self):
        return PlainPE(self.acc_width)
