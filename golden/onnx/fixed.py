"""Is onnxruntime's float requantization of a layer a fixed point the array can run?

onnxruntime requantizes with ``f(acc) = clamp(rint_half_even(float32(acc) * s), 0, 2^b - 1)``
(zero point 0) and the array with ``g(acc) = clamp((acc*M + 2^(shift-1)) >> shift, 0,
2^b - 1)``. Both are non-decreasing step functions of the integer ``acc``, so they are equal
on a range ``[lo, hi]`` exactly when every step lands on the same accumulator: ``f``
reaches ``j`` at the threshold ``T_j`` (found by evaluating ``f`` itself) and ``g`` at
``ceil((j - 1/2) * 2^shift / M)``. Each ``j`` with ``T_j`` in ``(lo, hi]`` bounds
``r = M / 2^shift`` to ``[(j-1/2) / T_j, (j-1/2) / (T_j - 1))``; a threshold beyond ``hi``
only asks that ``g`` not reach ``j`` by ``hi``. :func:`exact_fixed_point` intersects these
intervals in exact rational arithmetic and returns an ``M`` of at most ``multiplier_bits``
bits with a common shift inside every channel's interval, or None: the two are then
provably equal (or provably not) on every accumulator the layer can produce.
"""

from fractions import Fraction

import numpy as np

__all__ = ["thresholds", "exact_fixed_point"]

_F32 = np.float32


def _f(acc, scale, top):
    return np.clip(np.rint(acc.astype(_F32) * _F32(scale)), 0, top).astype(np.int64)


def thresholds(scale, bits):
    """``T_j`` for ``j = 1..2^bits - 1``: the smallest accumulator onnxruntime's float32
    requantization with the positive ``scale`` (zero point 0) maps to ``j`` or more.

    Exact for accumulators below 2^24 (float32 holds them exactly) and beyond, as ``f``
    itself is evaluated around the real threshold and the step checked.
    """
    top = (1 << bits) - 1
    levels = np.arange(1, top + 1)
    guess = np.ceil((levels - 0.5) / float(scale)).astype(np.int64)
    window = np.arange(-4, 5)
    candidates = guess[:, None] + window[None, :]
    reached = _f(candidates, scale, top) >= levels[:, None]
    if not (reached[:, -1].all() and not reached[:, 0].any()):
        raise ArithmeticError(f"scale {scale!r}: a step lies outside the window searched")
    return candidates[np.arange(len(levels)), reached.argmax(axis=1)]


def _interval(scale, bits, lo, hi):
    """The rational interval ``[low, high)`` of ``M / 2^shift`` equal to the float form on
    ``lo..hi``; empty when ``low >= high``."""
    low, high = Fraction(0), None
    for j, t in enumerate(thresholds(scale, bits).tolist(), start=1):
        half = Fraction(2 * j - 1, 2)
        if t > hi:                      # g must not reach j by hi
            if hi > 0:
                bound = half / hi
                high = bound if high is None else min(high, bound)
            break                       # higher levels have higher thresholds
        if t <= lo:                     # g must reach j by lo
            if lo <= 0:
                return Fraction(1), Fraction(0)
            low = max(low, half / lo)
            continue
        low = max(low, half / t)
        if t > 1:
            bound = half / (t - 1)
            high = bound if high is None else min(high, bound)
    return low, high


def exact_fixed_point(scale, bits, lo, hi, multiplier_bits=16, max_shift=47):
    """``(M, shift)`` equal to onnxruntime's float32 requantization on every accumulator.

    Parameters
    ----------
    scale : float32 array (out,)
        onnxruntime's per-channel real multipliers, positive.
    bits : int
        Output precision.
    lo, hi : int arrays (out,)
        Each channel's reachable accumulators.
    multiplier_bits, max_shift : int
        The requantizer's ``M`` width and largest shift (the accelerator's PARAM word).

    Returns
    -------
    (int64 array, int) or None
        None when no such fixed point exists: the intervals are empty or need a finer ``M``.
    """
    intervals = [_interval(s, bits, int(a), int(b)) for s, a, b in zip(scale, lo, hi)]
    if any(high is not None and low >= high for low, high in intervals):
        return None
    top = (1 << multiplier_bits) - 1
    for shift in range(max_shift, 0, -1):
        multipliers = [-(-low.numerator * (1 << shift) // low.denominator)
                       for low, _ in intervals]
        if max(multipliers) <= top:
            break
    else:
        return None
    for m, (low, high) in zip(multipliers, intervals):
        if m == 0 or (high is not None and Fraction(m, 1 << shift) >= high):
            return None
    return np.array(multipliers, dtype=np.int64), shift
