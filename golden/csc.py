"""Compressed sparse column encoding for an EIE-style unit (docs/design.md 3.3).

Row ``r`` of the matrix belongs to processing element ``r mod N`` and is its
local row ``r // N``. Each PE stores, column by column, the non-zero entries
of its rows as ``(value, z)``: ``z`` counts the zero local rows skipped since the
previous entry of the column (since local row 0 for the first). ``z`` has
``z_bits`` bits; a longer gap is bridged by padding entries ``(0, 2^z_bits - 1)``.
A column pointer array per PE gives where each column starts; ``p[j+1] - p[j]``
is the entry count of column ``j``.

Values are either the signed integers themselves or, with weight sharing,
indices into a per-layer codebook whose entry 0 is 0 (so padding stays 0).
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["PEColumns", "LoadWord", "encode", "decode", "entries", "load_words", "spmv",
           "ideal_cycles"]


@dataclass(frozen=True)
class PEColumns:
    """The CSC image of one PE.

    Attributes
    ----------
    values : int64 (entries,)
        Signed weights, or codebook indices.
    z : int64 (entries,)
        Zero local rows skipped before each entry, 0..2^z_bits-1.
    pointers : int64 (cols + 1,)
        Column ``j`` is ``values[pointers[j]:pointers[j+1]]``.
    """
    values: np.ndarray
    z: np.ndarray
    pointers: np.ndarray


def _check_matrix(w):
    w = np.asarray(w)
    if w.ndim != 2 or not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"the matrix must be 2-D integers, not {w.dtype} of shape {w.shape}")
    return w.astype(np.int64)


def _check_z_bits(z_bits):
    if not isinstance(z_bits, (int, np.integer)) or not 1 <= z_bits <= 16:
        raise ValueError(f"z_bits must be between 1 and 16, not {z_bits!r}")
    return int(z_bits)


def encode(w, n_pes, z_bits=4):
    """CSC images of the integer matrix ``w`` (rows x cols) for ``n_pes`` PEs.

    With weight sharing, pass the index matrix (0 where the weight is 0).
    Returns a list of :class:`PEColumns`, one per PE.
    """
    w = _check_matrix(w)
    z_bits = _check_z_bits(z_bits)
    if not isinstance(n_pes, (int, np.integer)) or not 1 <= n_pes <= 64:
        raise ValueError(f"n_pes must be between 1 and 64, not {n_pes!r}")
    z_max = (1 << z_bits) - 1
    images = []
    for pe in range(n_pes):
        local = w[pe::n_pes]
        values, zs, pointers = [], [], [0]
        for column in local.T:
            position = -1
            for row in np.flatnonzero(column):
                gap = row - position - 1
                while gap > z_max:
                    values.append(0)
                    zs.append(z_max)
                    position += z_max + 1
                    gap = row - position - 1
                values.append(int(column[row]))
                zs.append(gap)
                position = row
            pointers.append(len(values))
        images.append(PEColumns(np.array(values, dtype=np.int64), np.array(zs, dtype=np.int64),
                                np.array(pointers, dtype=np.int64)))
    return images


def entries(images, z_bits=4):
    """Every stored entry as ``(row, col, value)`` arrays, padding included, PE by PE.

    Raises ValueError on a malformed image: a pointer out of order or past the
    end, a ``z`` outside 0..2^z_bits-1.
    """
    z_bits = _check_z_bits(z_bits)
    n_pes = len(images)
    rows, cols, values = [], [], []
    for pe, image in enumerate(images):
        pointers = np.asarray(image.pointers)
        count = len(image.values)
        if len(image.z) != count:
            raise ValueError(f"PE {pe}: {count} values but {len(image.z)} z fields")
        if pointers[0] != 0 or (np.diff(pointers) < 0).any() or pointers[-1] != count:
            raise ValueError(f"PE {pe}: column pointers must rise from 0 to the entry count "
                             f"{count}, not {pointers.tolist()}")
        z = np.asarray(image.z)
        if ((z < 0) | (z >= 1 << z_bits)).any():
            bad = int(z[(z < 0) | (z >= 1 << z_bits)][0])
            raise ValueError(f"PE {pe}: z {bad} does not fit {z_bits} bits (0..{(1 << z_bits) - 1})")
        for j in range(len(pointers) - 1):
            position = -1
            for e in range(pointers[j], pointers[j + 1]):
                position += int(z[e]) + 1
                rows.append(position * n_pes + pe)
                cols.append(j)
                values.append(int(image.values[e]))
    return (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64),
            np.array(values, dtype=np.int64))


def decode(images, shape, z_bits=4):
    """The dense ``shape`` matrix the images encode (rows past ``shape`` are an error)."""
    rows, cols, values = entries(images, z_bits)
    if len(rows) and (rows.max() >= shape[0] or cols.max() >= shape[1]):
        raise ValueError(f"an entry falls outside the {shape[0]}x{shape[1]} matrix")
    if any(len(image.pointers) != shape[1] + 1 for image in images):
        raise ValueError(f"every PE needs {shape[1] + 1} column pointers")
    dense = np.zeros(shape, dtype=np.int64)
    dense[rows, cols] = values
    return dense


# ---------------------------------------------------------------------------------------------
# Loader words of the sparse matrix-vector unit (rtl/spmv.py).

#: Codebook entries and the width of their values.
CODEBOOK_SIZE, CODEBOOK_VALUE_BITS = 16, 8
#: Width of a bias and of a requantization multiplier.
BIAS_BITS, MULTIPLIER_BITS = 32, 16


class LoadWord(NamedTuple):
    """One loader word of the sparse unit, as field values (packed by ``rtl.spmv.Load``).

    Attributes
    ----------
    kind : str
        The name of its ``rtl.spmv.LoadKind``: ``"ENTRY"``, ``"POINTER"``, ``"CODEBOOK"``,
        ``"BIAS"``, ``"MULTIPLIER"`` or ``"SETUP"``.
    pe, addr : int
        The PE and the address in the memory the kind names (0 for the set-up word).
    fields : int or dict
        The data: ``{"value", "z"}`` for an entry, ``{"rows", "requantize", "shift",
        "out_bits"}`` for the set-up word, else the (signed) integer itself.
    """
    kind: str
    pe: int
    addr: int
    fields: object


def _fits(values, lo, hi, what):
    values = np.asarray(values, dtype=np.int64)
    bad = (values < lo) | (values > hi)
    if bad.any():
        raise ValueError(f"{what} {int(values[bad].flat[0])} does not fit ({lo}..{hi})")


def load_words(matrix, n_pes, *, z_bits=4, value_bits=8, codebook=None, capacity=None,
               bias=None, multiplier=None, shift=None, out_bits=None):
    """The loader words that put ``matrix`` into an ``n_pes``-PE unit.

    Parameters
    ----------
    matrix : int array (rows, cols)
        Signed ``value_bits`` weights or, with ``codebook``, 4-bit codebook indices
        (0 where the weight is 0).
    codebook : int array (16,), optional
        Signed 8-bit weight of each index; entry 0 must be 0.
    capacity : int, optional
        Weight-memory depth per PE; an image that does not fit is an error.
    bias, multiplier : int arrays (rows,), optional
        Bias (accumulator units, signed 32-bit) and requantization multiplier (16-bit) of every
        row; with ``shift`` (1..47) and ``out_bits`` (1..15) they switch on the fused
        requantizer.

    Returns
    -------
    list of LoadWord
        In order: setup, codebook, pointers and entries of every PE, bias and multipliers.
        Every field fits its width in ``rtl.spmv``.
    """
    matrix = _check_matrix(matrix)
    rows, cols = matrix.shape
    if codebook is not None:
        codebook = np.asarray(codebook, dtype=np.int64)
        if codebook.shape != (CODEBOOK_SIZE,) or codebook[0] != 0:
            raise ValueError(f"the codebook needs {CODEBOOK_SIZE} values with entry 0 = 0")
        _fits(codebook, -(1 << (CODEBOOK_VALUE_BITS - 1)), (1 << (CODEBOOK_VALUE_BITS - 1)) - 1,
              "codebook value")
        _fits(matrix, 0, CODEBOOK_SIZE - 1, "codebook index")
    else:
        if value_bits not in (2, 4, 8):
            raise ValueError(f"value_bits must be 2, 4 or 8, not {value_bits!r}")
        _fits(matrix, -(1 << (value_bits - 1)), (1 << (value_bits - 1)) - 1, "weight")
    if rows >= 1 << 16:
        raise ValueError(f"the matrix must have at most 65535 rows (the set-up word's field), "
                         f"not {rows}")
    images = encode(matrix, n_pes, z_bits)
    entries(images, z_bits)          # the images must decode
    requantize = bias is not None
    if requantize:
        if multiplier is None or shift is None or out_bits is None:
            raise ValueError("requantization needs bias, multiplier, shift and out_bits")
        if not isinstance(shift, (int, np.integer)) or not 1 <= shift <= 47:
            raise ValueError(f"shift must be between 1 and 47, not {shift!r}")
        if not isinstance(out_bits, (int, np.integer)) or not 1 <= out_bits <= 15:
            raise ValueError(f"out_bits must be between 1 and 15, not {out_bits!r}")
    setup = {"rows": rows, "requantize": int(requantize), "shift": int(shift or 1),
             "out_bits": int(out_bits or 8)}
    words = [LoadWord("SETUP", 0, 0, setup)]
    if codebook is not None:
        words += [LoadWord("CODEBOOK", 0, i, int(v)) for i, v in enumerate(codebook)]
    for pe, image in enumerate(images):
        if capacity is not None and len(image.values) > capacity:
            raise ValueError(f"PE {pe} needs {len(image.values)} entries but its weight memory "
                             f"holds {capacity}")
        words += [LoadWord("POINTER", pe, j, int(p)) for j, p in enumerate(image.pointers)]
        words += [LoadWord("ENTRY", pe, e, {"value": int(v), "z": int(z)})
                  for e, (v, z) in enumerate(zip(image.values, image.z))]
    if requantize:
        bias = np.asarray(bias, dtype=np.int64)
        multiplier = np.asarray(multiplier, dtype=np.int64)
        _fits(bias, -(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1, "bias")
        _fits(multiplier, 0, (1 << MULTIPLIER_BITS) - 1, "multiplier")
        for r in range(rows):
            words.append(LoadWord("BIAS", r % n_pes, r // n_pes, int(bias[r])))
            words.append(LoadWord("MULTIPLIER", r % n_pes, r // n_pes, int(multiplier[r])))
    return words


def spmv(matrix, x, codebook=None, bias=None, multiplier=None, shift=None, out_bits=None):
    """What the unit computes: ``W x``, or ``requantize(W x + bias)`` with requantization."""
    from golden.requant import requantize
    weights = np.asarray(codebook)[matrix] if codebook is not None else np.asarray(matrix)
    y = weights.astype(np.int64) @ np.asarray(x, dtype=np.int64)
    if bias is None:
        return y
    return requantize(y + np.asarray(bias, dtype=np.int64), np.asarray(multiplier), shift, out_bits)


def ideal_cycles(matrix, x, n_pes, z_bits=4):
    """docs/design.md 4: (sum over non-zero x_j of the entries of column j) / N, padding excluded."""
    nnz = (np.asarray(matrix) != 0).sum(axis=0)
    return float(nnz[np.asarray(x) != 0].sum() / n_pes)
