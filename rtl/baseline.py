"""The comparison baseline: the same systolic array with plain ``a*b`` multiply-accumulate PEs.

:class:`PlainArray` is a :class:`~rtl.systolic.SystolicArray` of :class:`PlainPE`: 8-bit
operands multiplied with ``*`` (synthesis maps them to DSP blocks where the device has them)
instead of fused BitBricks, and an edge that passes the words through unsteered. Same ports,
same timing, same drain: synthesized beside a fusion array, the difference is the PE.
"""

from amaranth import Cat, Module, unsigned
from amaranth.lib import wiring

from rtl.fusion import FusionPE, PESignature, check_acc_width
from rtl.pipeline import accumulate, delay
from rtl.systolic import SystolicArray

__all__ = ["PlainPE", "PlainArray"]


class PlainPE(wiring.Component):
    """An 8-bit ``a*b`` multiply-accumulate PE with :class:`~rtl.fusion.FusionPE`'s latency.

    Its ports are a :class:`~rtl.fusion.PESignature` of 8-bit words. The operands are
    extended to 9 bits signed or unsigned by the mode's flags, so the PE computes the fusion
    PE's 8x8 mode.

    Parameters
    ----------
    precision : 8
        The only precision it has (the argument lets an array build any PE alike).
    acc_width : int
        Width of the signed accumulator, 17..64.

    Raises
    ------
    ValueError
        ``precision`` or ``acc_width`` out of range.
    """

    latency = FusionPE.latency
    #: Precisions the PE can be built for.
    precisions = (8,)
    #: Its operands are the packed words themselves: an array steers nothing.
    steered = False

    def __init__(self, precision=8, acc_width=32):
        if precision not in self.precisions:
            raise ValueError(f"precision must be 8, not {precision!r}")
        check_acc_width(precision, acc_width)
        self._acc_width = acc_width
        super().__init__(PESignature(unsigned(8), acc_width))

    @property
    def precision(self):
        return 8

    @property
    def acc_width(self):
        return self._acc_width

    def elaborate(self, platform):
        m = Module()
        mode = self.control.mode
        m.d.sync += self.forward.eq(self.control)
        # Stage 1 registers the operands, stage 2 the product, stages 3 and 4 carry it to the
        # fusion PE's latency, stage 5 accumulates.
        w = delay(m, Cat(self.w, self.w[7] & mode.w_signed).as_signed(), 1, "w")
        a = delay(m, Cat(self.a, self.a[7] & mode.a_signed).as_signed(), 1, "a")
        product = delay(m, w * a, self.latency - 2, "product")
        accumulate(m, product, delay(m, self.control, self.latency - 1, "control"),
                   self.result, self.result_valid)
        return m


class PlainArray(SystolicArray):
    """An ``rows x cols`` array of :class:`PlainPE` (8-bit operands, 8x8 mode only).

    Parameters as :class:`~rtl.systolic.SystolicArray`, without ``precision`` and ``pe``.
    """

    def __init__(self, rows, cols, acc_width=32, drain_rows=None, fifo_depth=None,
                 edge_registers=2):
        super().__init__(rows, cols, precision=8, acc_width=acc_width, drain_rows=drain_rows,
                         fifo_depth=fifo_depth, edge_registers=edge_registers, pe=PlainPE)
