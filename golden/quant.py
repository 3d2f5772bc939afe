"""Linear quantization and weight sharing (docs/design.md 3.2).

- Weights: symmetric, signed, per tensor or per output channel (axis 0):
  ``q = clamp(round_half_even(w / s), -2^(b-1), 2^(b-1) - 1)`` with
  ``s = max|w| / (2^(b-1) - 1)``.
- Activations after ReLU: unsigned, ``q = clamp(round_half_even(x / s), 0, 2^b - 1)``.
- The general asymmetric form over a clip range ``[alpha, beta]`` with ``2^b`` levels
  (Gholami et al., "A survey of quantization methods", eq. 2):
  ``S = (beta - alpha) / (2^b - 1)``, ``Z = round(alpha / S)``,
  ``q = clamp(round(r / S) - Z, 0, 2^b - 1)``, ``r~ = S (q + Z)``.
- Weight sharing (Deep Compression): a k-means codebook of ``2^b`` integer
  centroids per layer; weights are stored as ``b``-bit indices. Index 0 is kept
  for the value 0, so pruned weights and padding stay exactly zero.

Rounding is round-half-to-even everywhere (``np.rint``).
"""

import numpy as np

from golden.bitfusion import check_bits
from golden.checks import flag, integer, integer_array, real, real_array

__all__ = ["weight_scale", "quantize_weights", "activation_scale", "quantize_activations",
           "asymmetric_params", "asymmetric_quantize", "asymmetric_dequantize",
           "kmeans_codebook"]


def _nonempty(name, values):
    values = real_array(name, values)
    if not values.size:
        raise ValueError(f"{name} must hold at least one value, not shape {values.shape}")
    return values


def weight_scale(w, bits, per_channel=True):
    """Symmetric scale ``max|w| / (2^(b-1) - 1)``, per output channel (rows) or per tensor.

    ``w`` holds finite real numbers (at least one); ``bits`` is 2, 4 or 8.
    """
    bits = check_bits(bits)
    w = _nonempty("w", w)
    if flag("per_channel", per_channel):
        if w.ndim < 2:
            raise ValueError(f"per-channel scales need a 2-D weight (out, in), not shape {w.shape}")
        peak = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
    else:
        peak = np.array(np.abs(w).max())
    scale = peak / ((1 << (bits - 1)) - 1)
    return np.where(scale > 0, scale, 1.0)


def quantize_weights(w, bits, per_channel=True):
    """Signed ``bits``-bit weights and their scale(s): ``(q int64, s)``; ``w ~= q * s``."""
    scale = weight_scale(w, bits, per_channel)
    w, bits = real_array("w", w), int(bits)
    divisor = scale.reshape(-1, *([1] * (w.ndim - 1))) if per_channel else scale
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.rint(w / divisor), lo, hi).astype(np.int64), scale


def activation_scale(x, bits, percentile=100.0):
    """Unsigned scale that maps the ``percentile`` of ``x`` to the top level ``2^b - 1``.

    ``x`` holds finite real numbers (at least one); ``percentile`` is in (0, 100].
    """
    bits = check_bits(bits)
    if not 0 < real("percentile", percentile) <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {percentile!r}")
    peak = float(np.percentile(_nonempty("x", x), percentile))
    return peak / ((1 << bits) - 1) if peak > 0 else 1.0


def quantize_activations(x, bits, scale):
    """Unsigned ``bits``-bit activations ``clamp(round(x / s), 0, 2^b - 1)`` as int64.

    ``x`` holds finite real numbers; ``scale`` is a finite positive number.
    """
    bits = check_bits(bits)
    if not real("scale", scale) > 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    q = np.rint(real_array("x", x) / scale)
    return np.clip(q, 0, (1 << bits) - 1).astype(np.int64)


def asymmetric_params(alpha, beta, bits):
    """``(S, Z)`` of the asymmetric quantizer with the finite clip range ``[alpha, beta]``.

    ``bits`` is 1..16.
    """
    bits = integer("bits", bits, 1, 16)
    alpha, beta = real("alpha", alpha), real("beta", beta)
    if not beta > alpha:
        raise ValueError(f"clip range must have beta > alpha, not [{alpha!r}, {beta!r}]")
    scale = (beta - alpha) / ((1 << bits) - 1)
    if not np.isfinite(scale) or not np.isfinite(alpha / scale):
        raise ValueError(f"clip range [{alpha!r}, {beta!r}] is too wide for a finite scale")
    return scale, int(np.rint(alpha / scale))


def asymmetric_quantize(r, alpha, beta, bits):
    """``(q, S, Z)``: ``q = clamp(round(r / S) - Z, 0, 2^b - 1)`` (survey eq. 2)."""
    scale, zero = asymmetric_params(alpha, beta, bits)
    q = np.rint(real_array("r", r) / scale) - zero
    return np.clip(q, 0, (1 << int(bits)) - 1).astype(np.int64), scale, zero


def asymmetric_dequantize(q, scale, zero):
    """``r~ = S (q + Z)``: ``q`` integers, ``scale`` finite, ``zero`` an integer."""
    q = integer_array("q", q)
    return real("scale", scale) * (q.astype(np.float64) + integer("zero", zero))


def kmeans_codebook(w, bits, iterations=30):
    """Integer k-means codebook of ``2^bits`` entries for the integer weights ``w``.

    Index 0 is reserved for 0 (pruned weights, padding); the non-zero weights are
    clustered into the other ``2^bits - 1`` centroids, initialised linearly over
    their range (deterministic), and rounded to integers. ``w`` holds whole numbers
    within signed 32 bits; ``bits`` is 1..16 and ``iterations`` at least 0.

    Returns
    -------
    codebook : int64 array, shape (2^bits,)
    index : int64 array, shape of w
        ``codebook[index]`` is the shared approximation of ``w``; 0 where ``w == 0``.
    """
    bits = integer("bits", bits, 1, 16)
    iterations = integer("iterations", iterations, 0)
    w = integer_array("w", w, -(1 << 31), (1 << 31) - 1)
    codebook = np.zeros(1 << bits, dtype=np.int64)
    index = np.zeros(w.shape, dtype=np.int64)
    nonzero = w[w != 0].astype(np.float64)
    if nonzero.size == 0:
        return codebook, index
    centroids = np.linspace(nonzero.min(), nonzero.max(), (1 << bits) - 1)
    for _ in range(iterations):
        nearest = np.abs(nonzero[:, None] - centroids[None, :]).argmin(axis=1)
        for c in range(len(centroids)):
            members = nonzero[nearest == c]
            if members.size:
                centroids[c] = members.mean()
    codebook[1:] = np.rint(centroids).astype(np.int64)
    # A centroid may round to 0; it stays a legal (if redundant) entry.
    values = w[w != 0]
    index[w != 0] = 1 + np.abs(values[:, None] - codebook[None, 1:]).argmin(axis=1)
    return codebook, index
