"""Compressed sparse column encoding for an EIE-style unit (DESIGN.md 3.3).

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

import numpy as np

__all__ = ["PEColumns", "encode", "decode", "entries"]


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
