"""Lab 1: a BitBrick and the shift-add of a Bit Fusion multiplier, in Amaranth.

Your file: fill in the three TODO blocks, then run ``python -m labs check 1``. The handout is
labs/01_bitbrick/README.md.
"""

from amaranth import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.fusion import BitWidth, FusionMode

#: The widest operand, in bits, and its 2-bit slices.
OPERAND_BITS = 8
SLICES = OPERAND_BITS // 2


class BitBrick(wiring.Component):
    """A 2-bit x 2-bit multiplier of two slice values, each signed 3-bit.

    Attributes
    ----------
    w, a : In(signed(3))
        Slice values: -2..1 for the top slice of a signed operand, else 0..3.
    product : Out(signed(5))
        ``w * a``, from -6 to 9.
    """

    w: In(signed(3))
    a: In(signed(3))
    product: Out(signed(5))

    def elaborate(self, platform):
        m = Module()
        # TODO 1: drive self.product with w * a. Build it from partial products of w, one per
        # bit of a (Mux(a[i], w, 0)), as a 2-bit multiplier in LUTs would; mind the weight of
        # a's sign bit in two's complement.
        m.d.comb += self.product.eq(0)
        return m


def operand_slice(word, p, width, is_signed):
    """Slice ``p`` (0 = least significant) of an operand, as a signed 3-bit value.

    Parameters
    ----------
    word : Value, 8 bits
        The operand in its low ``width`` bits; the bits above belong to something else.
    p : int
        Which 2-bit slice, 0..3.
    width : Value of BitWidth
        The operand's width in this mode (B2, B4 or B8).
    is_signed : Value, 1 bit
        The operand is two's complement.

    Returns
    -------
    Value
        ``word[2p:2p+2]`` read as -2..1 when it is the top slice of a signed operand, as 0..3
        otherwise, and 0 when the operand has no slice ``p``.
    """
    # TODO 2: return the slice value. Decide (from p and width: compare width with
    # BitWidth.B2, B4, B8) whether slice p is the operand's top slice and whether the
    # operand has a slice p at all; raw.as_signed() reads two bits as -2..1.
    raw = word[2 * p:2 * p + 2]
    return 0


class FusedMultiplier(wiring.Component):
    """One product ``w * a`` of a run-time mode, from 16 BitBricks.

    Brick ``(p, q)`` multiplies slice ``p`` of ``w`` by slice ``q`` of ``a``; its product
    is shifted left by ``2*(p+q)`` and the 16 shifted products are added.

    Attributes
    ----------
    w, a : In(8)
        The operands, in the low ``w_bits``/``a_bits`` bits (the bits above are not theirs).
    mode : In(FusionMode)
        Widths and signedness of the operands.
    product : Out(signed(17))
        ``w * a``.
    """

    w: In(OPERAND_BITS)
    a: In(OPERAND_BITS)
    mode: In(FusionMode)
    product: Out(signed(17))

    def elaborate(self, platform):
        m = Module()
        terms = []
        for p in range(SLICES):
            for q in range(SLICES):
                brick = m.submodules[f"brick_{p}_{q}"] = BitBrick()
                # TODO 3: feed the brick slice p of w and slice q of a (operand_slice, with the
                # mode's widths and signedness), and add its product, shifted to where it
                # belongs in w * a, to terms.
        m.d.comb += self.product.eq(sum(terms))
        return m
