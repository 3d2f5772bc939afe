"""Bit Fusion arithmetic (docs/design.md 3.1), brick by brick.

A fusion PE holds 16 BitBricks, each a 2-bit x 2-bit multiplier. An operand of
``b`` bits is cut into ``b/2`` slices of 2 bits; a slice is signed (-2..1) only
when it is the top slice of a signed operand, else unsigned (0..3). The product
of two operands is the sum of the brick products of slice ``p`` of w and slice
``q`` of a, shifted left by ``2*(p+q)``. One product of ``w_bits x a_bits`` takes
``(w_bits/2)*(a_bits/2)`` bricks, so a PE computes ``lanes(w_bits, a_bits)``
products per cycle and adds their sum (a dot product) to its accumulator.

Operands travel packed little-endian: lane ``i`` of a word occupies bits
``[i*b, (i+1)*b)``.
"""

import numpy as np

from golden.checks import flag, integer, integer_array

__all__ = ["BITS", "BRICKS", "lanes", "value_range", "check_bits", "slices",
           "brick_product", "brick_shift", "fused_product", "fused_dot", "pack", "pack_checked",
           "unpack"]

#: Operand precisions a fusion PE supports.
BITS = (2, 4, 8)
#: BitBricks in one fusion PE.
BRICKS = 16


def check_bits(bits, what="bits"):
    """``bits`` as an int, if it is one of :data:`BITS` (ValueError/TypeError otherwise)."""
    value = integer(what, bits)
    if value not in BITS:
        raise ValueError(f"{what} must be 2, 4 or 8, not {bits!r}")
    return value


def lanes(w_bits, a_bits):
    """Products per cycle of one PE in mode ``w_bits x a_bits``: ``16 / ((w/2)*(a/2))``."""
    w_bits, a_bits = check_bits(w_bits, "w_bits"), check_bits(a_bits, "a_bits")
    return BRICKS // ((w_bits // 2) * (a_bits // 2))


def value_range(bits, signed):
    """``(lo, hi)``: the integers a ``bits``-bit operand (1..32 bits) can hold."""
    bits = integer("bits", bits, 1, 32)
    if flag("signed", signed):
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _check_values(values, bits, signed, what):
    lo, hi = value_range(bits, signed)
    kind = "signed" if signed else "unsigned"
    return integer_array(what, values, lo, hi, fits=f"{bits} bits {kind} ({lo}..{hi})")


def slices(x, bits, signed):
    """The ``bits/2`` 2-bit slices of ``x``, least significant first.

    Every slice is 0..3 except the top slice of a signed operand, which is -2..1,
    so that ``x == sum(slice_p << 2*p)``. Works elementwise on arrays.
    """
    x = _check_values(x, check_bits(bits), signed, "x")
    count = bits // 2
    out = [(x >> (2 * p)) & 3 for p in range(count)]
    if signed:
        top = out[-1]
        out[-1] = np.where(top >= 2, top - 4, top)
    return out


def brick_product(w_slice, a_slice, w_signed, a_signed):
    """One BitBrick: a 2-bit slice of w times a 2-bit slice of a.

    ``w_signed``/``a_signed`` say whether each slice is read as two's complement
    (-2..1) or unsigned (0..3); the slice values must be in that range.
    """
    w_slice = _check_values(w_slice, 2, w_signed, "w slice")
    a_slice = _check_values(a_slice, 2, a_signed, "a slice")
    return w_slice * a_slice


def brick_shift(p, q):
    """Where the brick product of w slice ``p`` and a slice ``q`` lands: ``2*(p+q)`` bits up."""
    return 2 * (p + q)


def fused_product(w, a, w_bits, a_bits, w_signed, a_signed):
    """``w * a`` computed as Bit Fusion does: brick products shifted by ``2*(p+q)``.

    Works elementwise on arrays. It equals plain integer multiplication for every
    operand pair of every mode (tests/test_golden_bitfusion.py checks them all).
    """
    w_bits, a_bits = check_bits(w_bits, "w_bits"), check_bits(a_bits, "a_bits")
    w = _check_values(w, w_bits, w_signed, "w")
    a = _check_values(a, a_bits, a_signed, "a")
    try:
        shape = np.broadcast_shapes(w.shape, a.shape)
    except ValueError:
        raise ValueError(f"w and a must broadcast together, not shapes {w.shape} and "
                         f"{a.shape}") from None
    w_slices = slices(w, w_bits, w_signed)
    a_slices = slices(a, a_bits, a_signed)
    total = np.zeros(shape, dtype=np.int64)
    for p, w_slice in enumerate(w_slices):
        w_top = w_signed and p == len(w_slices) - 1
        for q, a_slice in enumerate(a_slices):
            a_top = a_signed and q == len(a_slices) - 1
            total = total + (brick_product(w_slice, a_slice, w_top, a_top) << brick_shift(p, q))
    return total


def fused_dot(w_values, a_values, w_bits, a_bits, w_signed, a_signed):
    """One PE step: the sum of the ``lanes(w_bits, a_bits)`` lane products.

    ``w_values`` and ``a_values`` hold at most that many lanes (missing lanes are 0).
    Returns a Python int.
    """
    count = lanes(w_bits, a_bits)
    w_values = _check_values(w_values, w_bits, w_signed, "w_values").ravel()
    a_values = _check_values(a_values, a_bits, a_signed, "a_values").ravel()
    if len(w_values) != len(a_values) or len(w_values) > count:
        raise ValueError(f"a {w_bits}x{a_bits} step takes up to {count} lanes of each operand, "
                         f"not {len(w_values)} weights and {len(a_values)} activations")
    products = fused_product(w_values, a_values, w_bits, a_bits, w_signed, a_signed)
    return int(products.sum())


def pack(values, bits, signed=None):
    """Pack lanes into one word: lane ``i`` at bits ``[i*bits, (i+1)*bits)``.

    Negative values are stored in two's complement. ``signed`` (default: whether
    any value is negative) sets the range each value is checked against; ``bits`` is
    1..32.
    """
    bits = integer("bits", bits, 1, 32)
    values = integer_array("values", values).ravel()
    if signed is None:
        signed = bool((values < 0).any())
    return pack_checked(_check_values(values, bits, signed, "values"), bits)


def pack_checked(values, bits):
    """:func:`pack` of lanes the caller has already checked: a 1-D int64 array that fits."""
    mask = (1 << bits) - 1
    word = 0
    for i, value in enumerate(values.tolist()):
        word |= (value & mask) << (i * bits)
    return word


def unpack(word, bits, count, signed):
    """The ``count`` lanes of ``bits`` bits (1..32) of ``word`` as an int64 array.

    ``word`` must fit the ``count * bits`` bits it is read as.
    """
    bits = integer("bits", bits, 1, 32)
    count = integer("count", count, 0)
    word = integer("word", word, 0)
    if word >> (count * bits):
        raise ValueError(f"word {word:#x} does not fit {count} lanes of {bits} bits")
    mask = (1 << bits) - 1
    out = np.array([(word >> (i * bits)) & mask for i in range(count)], dtype=np.int64)
    if flag("signed", signed):
        out = np.where(out >> (bits - 1) != 0, out - (1 << bits), out)
    return out
