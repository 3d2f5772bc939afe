"""Requantization with a fixed-point multiplier (docs/design.md 3.2).

``a_next = clamp((acc * M + 2^(shift-1)) >> shift, 0, 2^b_next - 1)``: arithmetic
shift, round half up, ReLU folded into the clamp. ``M / 2^shift`` approximates
the real multiplier ``s_w * s_a / s_out``. This is what the hardware
requantizer implements.
"""

import numpy as np

__all__ = ["MAX_SHIFT", "quantize_multiplier", "requantize"]

#: Largest shift the requantizer supports.
MAX_SHIFT = 47


def quantize_multiplier(real_multiplier, multiplier_bits=15):
    """``(M, shift)`` with ``M / 2^shift ~= real_multiplier`` and ``0 <= M < 2^multiplier_bits``.

    ``real_multiplier`` may be an array (one per channel): the shift is common to
    all, chosen as large as the largest multiplier allows (at most ``MAX_SHIFT``),
    and ``M`` is an int64 array.
    """
    real = np.asarray(real_multiplier, dtype=np.float64)
    if not 2 <= multiplier_bits <= 31:
        raise ValueError(f"multiplier_bits must be between 2 and 31, not {multiplier_bits!r}")
    if (real <= 0).any() or not np.isfinite(real).all():
        raise ValueError(f"real multipliers must be positive and finite, not {real.min()!r}")
    top = (1 << multiplier_bits) - 1
    shift = int(np.floor(np.log2(top / real.max())))
    if shift < 1:
        raise ValueError(f"real multiplier {real.max()!r} is too large for a "
                         f"{multiplier_bits}-bit M with a shift of at least 1")
    shift = min(shift, MAX_SHIFT)
    multiplier = np.rint(real * (1 << shift)).astype(np.int64)
    return (multiplier if real.ndim else int(multiplier)), shift


def requantize(acc, multiplier, shift, out_bits):
    """``clamp((acc * M + 2^(shift-1)) >> shift, 0, 2^out_bits - 1)`` as int64.

    ``multiplier`` broadcasts against ``acc`` (per channel along the last axis).
    """
    if not 1 <= shift <= MAX_SHIFT:
        raise ValueError(f"shift must be between 1 and {MAX_SHIFT}, not {shift!r}")
    if not 1 <= out_bits <= 16:
        raise ValueError(f"out_bits must be between 1 and 16, not {out_bits!r}")
    acc = np.asarray(acc, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    # Python integers where the int64 product could overflow (very wide accumulators).
    wide = int(np.abs(acc).max(initial=0)) * int(np.abs(multiplier).max(initial=0)) >= 1 << 62
    product = acc.astype(object) * multiplier if wide else acc * multiplier
    rounded = (product + (1 << (shift - 1))) >> shift
    return np.clip(rounded, 0, (1 << out_bits) - 1).astype(np.int64)
