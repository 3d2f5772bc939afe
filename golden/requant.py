"""Requantization with a fixed-point multiplier (docs/design.md 3.2).

``a_next = clamp((acc * M + 2^(shift-1)) >> shift, 0, 2^b_next - 1)``: arithmetic
shift, round half up, ReLU folded into the clamp. ``M / 2^shift`` approximates
the real multiplier ``s_w * s_a / s_out``. This is what the hardware
requantizer implements.
"""

import numpy as np

from golden.checks import integer, integer_array, real_array

__all__ = ["MAX_SHIFT", "quantize_multiplier", "requantize"]

#: Largest shift the requantizer supports.
MAX_SHIFT = 47


def quantize_multiplier(real_multiplier, multiplier_bits=15):
    """``(M, shift)`` with ``M / 2^shift ~= real_multiplier`` and ``0 <= M < 2^multiplier_bits``.

    ``real_multiplier`` may be an array (one per channel): the shift is common to
    all, chosen as large as the largest multiplier allows (at most ``MAX_SHIFT``),
    and ``M`` is an int64 array.
    """
    real = real_array("real_multiplier", real_multiplier)
    multiplier_bits = integer("multiplier_bits", multiplier_bits, 2, 31)
    if real.ndim > 1 or not real.size:
        raise ValueError(f"real_multiplier must be a number or a 1-D array of at least one, "
                         f"not of shape {real.shape}")
    if (real <= 0).any():
        raise ValueError(f"real_multiplier must be positive, not {real.min()!r}")
    top = (1 << multiplier_bits) - 1
    shift = int(min(np.floor(np.log2(top) - np.log2(real.max())), MAX_SHIFT))
    if shift < 1:
        raise ValueError(f"real multiplier {real.max()!r} is too large for a "
                         f"{multiplier_bits}-bit M with a shift of at least 1")
    multiplier = np.rint(real * (1 << shift)).astype(np.int64)
    return (multiplier if real.ndim else int(multiplier)), shift


def requantize(acc, multiplier, shift, out_bits):
    """``clamp((acc * M + 2^(shift-1)) >> shift, 0, 2^out_bits - 1)`` as int64.

    ``acc`` and ``multiplier`` hold whole numbers within int64; ``multiplier`` broadcasts
    against ``acc`` (per channel along the last axis). ``shift`` is 1..47, ``out_bits``
    1..16.
    """
    shift = integer("shift", shift, 1, MAX_SHIFT)
    out_bits = integer("out_bits", out_bits, 1, 16)
    acc = integer_array("acc", acc)
    multiplier = integer_array("multiplier", multiplier)
    try:
        np.broadcast_shapes(acc.shape, multiplier.shape)
    except ValueError:
        raise ValueError(f"multiplier must broadcast against acc, not shape "
                         f"{multiplier.shape} against {acc.shape}") from None
    # Python integers where the int64 product could overflow (very wide accumulators).
    wide = int(np.abs(acc).max(initial=0)) * int(np.abs(multiplier).max(initial=0)) >= 1 << 62
    product = acc.astype(object) * multiplier if wide else acc * multiplier
    rounded = (product + (1 << (shift - 1))) >> shift
    return np.clip(rounded, 0, (1 << out_bits) - 1).astype(np.int64)
