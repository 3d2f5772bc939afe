"""Pruning: fine-grained magnitude, structured (row) and N:M.

Each function returns a boolean keep-mask of the weight's shape; apply it with
``w * mask``. Ties in magnitude are broken toward the lower flat index, so the
masks are deterministic.
"""

import numpy as np

from golden.checks import integer, real, real_array

__all__ = ["sparsity", "magnitude_prune", "structured_prune", "n_m_prune"]


def _check_sparsity(value):
    if not 0 <= real("target", value) < 1:
        raise ValueError(f"target sparsity must be in [0, 1), not {value!r}")
    return float(value)


def sparsity(w):
    """Fraction of exact zeros in ``w`` (finite real numbers; 0.0 when empty)."""
    w = real_array("w", w)
    return float((w == 0).sum() / w.size) if w.size else 0.0


def magnitude_prune(w, target):
    """Keep-mask removing the ``round(target * size)`` smallest-magnitude weights."""
    target = _check_sparsity(target)
    w = real_array("w", w)
    drop = int(round(target * w.size))
    order = np.argsort(np.abs(w).ravel(), kind="stable")
    mask = np.ones(w.size, dtype=bool)
    mask[order[:drop]] = False
    return mask.reshape(w.shape)


def structured_prune(w, target):
    """Keep-mask removing whole rows (output channels) with the smallest L2 norm."""
    target = _check_sparsity(target)
    w = real_array("w", w)
    if w.ndim != 2:
        raise ValueError(f"structured pruning takes a 2-D weight (out, in), not shape {w.shape}")
    drop = int(round(target * w.shape[0]))
    # Ranked by the squared norm (exact for small integers); where the squares of huge
    # weights overflow, by the squared norm of the weights scaled by the largest.
    with np.errstate(over="ignore"):
        energy = np.square(w).sum(axis=1)
    if not np.isfinite(energy).all():
        energy = np.square(w / np.abs(w).max()).sum(axis=1)
    order = np.argsort(energy, kind="stable")
    mask = np.ones(w.shape, dtype=bool)
    mask[order[:drop], :] = False
    return mask


def n_m_prune(w, n, m):
    """Keep-mask keeping the ``n`` largest-magnitude weights of every ``m`` consecutive inputs."""
    w = real_array("w", w)
    m = integer("m", m, 1)
    n = integer("n", n, 0, m)
    if w.ndim != 2 or w.shape[1] % m:
        raise ValueError(f"N:M pruning needs a 2-D weight whose input count is a multiple of "
                         f"M={m}, not shape {w.shape}")
    groups = np.abs(w).reshape(w.shape[0], -1, m)
    order = np.argsort(-groups, axis=2, kind="stable")
    keep = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    return keep.reshape(w.shape)
