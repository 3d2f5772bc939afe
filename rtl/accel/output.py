"""The output stage: bias, requantization and ReLU on the array's result beats (docs/accel.md).

``v = acc + bias``; with requantization ``clamp((v * M + 2^(shift-1)) >> shift, 0,
2^out_bits - 1)`` (golden.requant.requantize; ReLU is the clamp at 0). One value per lane of
a beat, every lane in parallel, a register after every step. The output has at most 8 bits,
so no lane shifts its whole product: ``(p + 2^(shift-1)) >> shift`` is ``p >> shift`` plus
bit ``shift - 1`` of ``p``, and only bits ``shift - 1 .. shift + 7`` of a non-negative product
below ``2^(shift + 8)`` reach the output; a negative product gives 0, a larger one the top.
"""

from amaranth import Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from rtl.accel.isa import LANE_BITS, param_word
from rtl.pipeline import delay

__all__ = ["OutputSetting", "OutputStage"]

#: The output stage's settings, fixed for the length of a GEMM.
OutputSetting = data.StructLayout({
    "shift":    unsigned(6),     # 1..47
    "out_bits": unsigned(4),     # 1..8
})


class OutputStage(wiring.Component):
    """Adds each column's bias to a result beat and requantizes it, :attr:`latency` cycles later.

    Parameters
    ----------
    drain_rows, cols : int
        Rows per beat and columns of the array.
    acc_width : int
        Width of the array's signed accumulators.

    Attributes
    ----------
    valid : In(1)
        ``sums`` holds a beat (the stage never stalls: one beat per cycle).
    sums : In(data.ArrayLayout(data.ArrayLayout(signed(acc_width), cols), drain_rows))
        The beat's accumulators, row 0 and column 0 first.
    params : In(param_word(cols))
        Each column's bias and multiplier, for the beat on ``sums``.
    setting : In(OutputSetting)
        ``shift`` and ``out_bits``; held while beats are in the stage.
    out_valid : Out(1)
        The outputs below belong to a beat, :attr:`latency` cycles after it was valid.
    biased : Out(data.ArrayLayout(data.ArrayLayout(signed(acc_width + 1), cols), drain_rows))
        ``acc + bias`` of every lane.
    requantized : Out(data.ArrayLayout(data.ArrayLayout(unsigned(8), cols), drain_rows))
        The requantized value of every lane.
    """

    #: Cycles from a beat on ``sums`` to its outputs.
    latency = 5

    def __init__(self, drain_rows, cols, acc_width):
        self._drain_rows, self._cols, self._acc_width = drain_rows, cols, acc_width

        def beat(shape):
            return data.ArrayLayout(data.ArrayLayout(shape, cols), drain_rows)
        super().__init__({
            "valid":       In(1),
            "sums":        In(beat(signed(acc_width))),
            "params":      In(param_word(cols)),
            "setting":     In(OutputSetting),
            "out_valid":   Out(1),
            "biased":      Out(beat(signed(acc_width + 1))),
            "requantized": Out(beat(unsigned(LANE_BITS))),
        })

    def elaborate(self, platform):
        m = Module()
        d, C, W = self._drain_rows, self._cols, self._acc_width
        setting = self.setting
        product_bits = W + 1 + 17
        # Per GEMM: the largest output, 2^out_bits - 1, and the product bits at and above
        # shift + 8, where any set bit of a non-negative product means the clamp's top.
        top = Signal(unsigned(LANE_BITS + 1))
        high = Signal(product_bits)
        m.d.sync += [top.eq((Const(1, LANE_BITS + 1) << setting.out_bits) - 1),
                     high.eq(Const(-1, product_bits) << (setting.shift + LANE_BITS))]

        for r in range(d):
            for c in range(C):
                param = self.params[c]
                biased = Signal(signed(W + 1), name=f"biased_{r}_{c}")
                multiplier = Signal.like(param.multiplier, name=f"multiplier_{r}_{c}")
                product = Signal(signed(product_bits), name=f"product_{r}_{c}")
                registered = Signal(signed(product_bits), name=f"registered_{r}_{c}")
                # (p + 2^(shift-1)) >> shift = (p >> shift) + bit shift-1 of p: the bits
                # shift-1 .. shift+7 of the product, and whether it is negative or too large.
                window = Signal(LANE_BITS + 1, name=f"window_{r}_{c}")
                negative = Signal(name=f"negative_{r}_{c}")
                large = Signal(name=f"large_{r}_{c}")
                clamped = Signal(unsigned(LANE_BITS), name=f"clamped_{r}_{c}")
                m.d.sync += [
                    biased.eq(self.sums[r][c] + param.bias),
                    multiplier.eq(param.multiplier),
                    product.eq(biased * multiplier),
                    registered.eq(product),
                    window.eq(registered.as_unsigned() >> (setting.shift - 1).as_unsigned()),
                    negative.eq(registered[-1]),
                    large.eq((registered.as_unsigned() & high).any()),
                ]
                rounded = window[1:] + window[0]
                with m.If(negative):
                    m.d.sync += clamped.eq(0)
                with m.Elif(large | (rounded > top)):
                    m.d.sync += clamped.eq(top)
                with m.Else():
                    m.d.sync += clamped.eq(rounded)
                m.d.comb += [self.biased[r][c].eq(delay(m, biased, self.latency - 1,
                                                        f"biased_{r}_{c}_late")),
                             self.requantized[r][c].eq(clamped)]
        m.d.comb += self.out_valid.eq(delay(m, self.valid, self.latency, "valid"))
        return m
