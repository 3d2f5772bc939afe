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

from golden.checks import integer, integer_array, real_array

__all__ = ["PEColumns", "LoadWord", "encode", "decode", "entries", "load_words", "spmv",
           "ideal_cycles", "spmv_cycles", "pe_loads", "balanced_order"]


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


def _check_matrix(w, name="w"):
    return integer_array(name, w, ndim=2)


def _check_z_bits(z_bits):
    return integer("z_bits", z_bits, 1, 16)


def encode(w, n_pes, z_bits=4):
    """CSC images of the integer matrix ``w`` (rows x cols) for ``n_pes`` PEs.

    ``w`` holds whole numbers (int64 range); with weight sharing, pass the index matrix
    (0 where the weight is 0). ``n_pes`` is 1..64, ``z_bits`` 1..16. Returns a list of
    :class:`PEColumns`, one per PE.
    """
    w = _check_matrix(w)
    z_bits = _check_z_bits(z_bits)
    n_pes = integer("n_pes", n_pes, 1, 64)
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
    end, a ``z`` outside 0..2^z_bits-1; TypeError when ``images`` is not a sequence of
    :class:`PEColumns`.
    """
    z_bits = _check_z_bits(z_bits)
    if isinstance(images, PEColumns) or not all(isinstance(i, PEColumns) for i in images):
        raise TypeError("images must be a sequence of golden.csc.PEColumns, one per PE")
    n_pes = len(images)
    rows, cols, values = [], [], []
    for pe, image in enumerate(images):
        image_values = integer_array(f"PE {pe} values", image.values, ndim=1)
        pointers = integer_array(f"PE {pe} pointers", image.pointers, ndim=1)
        z = integer_array(f"PE {pe} z", image.z, ndim=1)
        count = len(image_values)
        if len(z) != count:
            raise ValueError(f"PE {pe}: {count} values but {len(z)} z fields")
        if not len(pointers) or pointers[0] != 0 or (np.diff(pointers) < 0).any() \
                or pointers[-1] != count:
            raise ValueError(f"PE {pe}: column pointers must rise from 0 to the entry count "
                             f"{count}, not {pointers.tolist()}")
        if ((z < 0) | (z >= 1 << z_bits)).any():
            bad = int(z[(z < 0) | (z >= 1 << z_bits)][0])
            raise ValueError(f"PE {pe}: z {bad} does not fit {z_bits} bits (0..{(1 << z_bits) - 1})")
        for j in range(len(pointers) - 1):
            position = -1
            for e in range(pointers[j], pointers[j + 1]):
                position += int(z[e]) + 1
                rows.append(position * n_pes + pe)
                cols.append(j)
                values.append(int(image_values[e]))
    return (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64),
            np.array(values, dtype=np.int64))


def decode(images, shape, z_bits=4):
    """The dense ``shape`` matrix the images encode (rows past ``shape`` are an error)."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"shape must be (rows, cols), not {shape!r}")
    shape = (integer("shape[0]", shape[0], 0), integer("shape[1]", shape[1], 0))
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


#: Rows the set-up word's ``rows`` field can count.
SETUP_ROWS_MAX = (1 << 16) - 1


def _signed(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _weights(matrix, codebook, value_bits):
    """The checked matrix (weights, or indices with ``codebook``) and codebook."""
    if codebook is None:
        value_bits = integer("value_bits", value_bits)
        if value_bits not in (2, 4, 8):
            raise ValueError(f"value_bits must be 2, 4 or 8, not {value_bits!r}")
        lo, hi = _signed(value_bits)
        return integer_array("weight", matrix, lo, hi, ndim=2), None
    codebook = integer_array("codebook value", codebook, *_signed(CODEBOOK_VALUE_BITS), ndim=1)
    if codebook.shape != (CODEBOOK_SIZE,) or codebook[0] != 0:
        raise ValueError(f"the codebook needs {CODEBOOK_SIZE} values with entry 0 = 0, not "
                         f"{codebook.tolist()}")
    return integer_array("codebook index", matrix, 0, CODEBOOK_SIZE - 1, ndim=2), codebook


def _requantizer(rows, bias, multiplier, shift, out_bits):
    """``(bias, multiplier, shift, out_bits)`` checked, or None when all four are None."""
    given = {"bias": bias, "multiplier": multiplier, "shift": shift, "out_bits": out_bits}
    missing = [name for name, value in given.items() if value is None]
    if len(missing) == len(given):
        return None
    if missing:
        raise ValueError(f"requantization needs bias, multiplier, shift and out_bits "
                         f"together, but {', '.join(missing)} is None")
    shift = integer("shift", shift, 1, 47)
    out_bits = integer("out_bits", out_bits, 1, 15)
    bias = integer_array("bias", bias, *_signed(BIAS_BITS), ndim=1)
    multiplier = integer_array("multiplier", multiplier, 0, (1 << MULTIPLIER_BITS) - 1, ndim=1)
    for name, values in (("bias", bias), ("multiplier", multiplier)):
        if len(values) != rows:
            raise ValueError(f"{name} needs one value per row ({rows}), not {len(values)}")
    return bias, multiplier, shift, out_bits


def load_words(matrix, n_pes, *, z_bits=4, value_bits=8, codebook=None, capacity=None,
               max_rows=None, bias=None, multiplier=None, shift=None, out_bits=None):
    """The loader words that put ``matrix`` into an ``n_pes``-PE unit.

    Parameters
    ----------
    matrix : int array (rows, cols)
        Signed ``value_bits`` weights or, with ``codebook``, 4-bit codebook indices
        (0 where the weight is 0); whole numbers, at most 65535 rows (the set-up word's
        ``rows`` field).
    n_pes : int
        Processing elements, 1..64.
    z_bits : int
        Width of the zero-run field, 1..16.
    value_bits : int
        2, 4 or 8 (not looked at with ``codebook``).
    codebook : int array (16,), optional
        Signed 8-bit weight of each index; entry 0 must be 0.
    capacity : int, optional
        Weight-memory depth per PE; an image that does not fit is an error.
    max_rows : int, optional
        Rows the unit holds (``rtl.spmv.SpMV.rows``); a taller matrix is an error.
    bias, multiplier : int arrays (rows,), optional
        Bias (accumulator units, signed 32-bit) and requantization multiplier (16-bit) of every
        row; with ``shift`` (1..47) and ``out_bits`` (1..15) they switch on the fused
        requantizer. The four go together.

    Returns
    -------
    list of LoadWord
        In order: setup, codebook, pointers and entries of every PE, bias and multipliers.
        Every field fits its width in ``rtl.spmv``.

    Raises
    ------
    ValueError, TypeError
        Any argument outside what is allowed above (the message names it).
    """
    matrix, codebook = _weights(matrix, codebook, value_bits)
    rows, cols = matrix.shape
    limit, why = SETUP_ROWS_MAX, "the set-up word's rows field"
    if max_rows is not None and integer("max_rows", max_rows, 1) < limit:
        limit, why = int(max_rows), "max_rows, the rows the unit holds"
    if not 1 <= rows <= limit:
        raise ValueError(f"matrix must have 1 to {limit} rows ({why}), not {rows}")
    if capacity is not None:
        capacity = integer("capacity", capacity, 0)
    requantizer = _requantizer(rows, bias, multiplier, shift, out_bits)
    images = encode(matrix, n_pes, z_bits)
    n_pes = len(images)
    setup = {"rows": rows, "requantize": int(requantizer is not None),
             "shift": requantizer[2] if requantizer else 1,
             "out_bits": requantizer[3] if requantizer else 8}
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
    if requantizer:
        bias, multiplier = requantizer[:2]
        for r in range(rows):
            words.append(LoadWord("BIAS", r % n_pes, r // n_pes, int(bias[r])))
            words.append(LoadWord("MULTIPLIER", r % n_pes, r // n_pes, int(multiplier[r])))
    return words


def spmv(matrix, x, codebook=None, bias=None, multiplier=None, shift=None, out_bits=None):
    """What the unit computes: ``W x``, or ``requantize(W x + bias)`` with requantization.

    ``matrix`` holds whole-number weights (int64 range) or, with ``codebook`` (a 1-D
    array of whole numbers), indices into it; ``x`` one whole number per column. The
    requantizer settings are those of :func:`load_words`. ``W x`` is exact; a result
    outside int64 is an error.
    """
    from golden.requant import requantize
    if codebook is None:
        weights = _check_matrix(matrix, "matrix")
    else:
        codebook = integer_array("codebook", codebook, ndim=1)
        if not len(codebook):
            raise ValueError("codebook must hold at least one value")
        weights = codebook[integer_array("codebook index", matrix, 0, len(codebook) - 1,
                                         ndim=2)]
    x = integer_array("x", x, ndim=1)
    if len(x) != weights.shape[1]:
        raise ValueError(f"x needs one value per column ({weights.shape[1]}), not {len(x)}")
    requantizer = _requantizer(weights.shape[0], bias, multiplier, shift, out_bits)
    bias = requantizer[0] if requantizer else np.zeros(weights.shape[0], dtype=np.int64)
    def magnitude(values):
        return max(abs(int(values.min(initial=0))), abs(int(values.max(initial=0))))
    peak = magnitude(weights) * magnitude(x) * weights.shape[1]
    if peak + (1 << 31) < 1 << 63:
        y = weights @ x + bias
    else:           # in Python integers, then checked against int64
        y = integer_array("W x", weights.astype(object) @ x.astype(object) + bias)
    if requantizer is None:
        return y
    return requantize(y, requantizer[1], requantizer[2], requantizer[3])


def ideal_cycles(matrix, x, n_pes, z_bits=4):
    """docs/design.md 4: (sum over non-zero x_j of the entries of column j) / N, padding excluded."""
    matrix = _check_matrix(matrix, "matrix")
    x = integer_array("x", x, ndim=1)
    if len(x) != matrix.shape[1]:
        raise ValueError(f"x needs one value per column ({matrix.shape[1]}), not {len(x)}")
    n_pes = integer("n_pes", n_pes, 1, 64)
    nnz = (matrix != 0).sum(axis=0)
    return float(nnz[x != 0].sum() / n_pes)


def _row_loads(matrix, activity, name="matrix"):
    """Each row's load: its non-zero weights, each counted with its column's ``activity``."""
    matrix = _check_matrix(matrix, name)
    if activity is None:
        return (matrix != 0).sum(axis=1).astype(np.float64)
    activity = real_array("activity", activity, ndim=1)
    if len(activity) != matrix.shape[1]:
        raise ValueError(f"activity needs one value per column ({matrix.shape[1]}), "
                         f"not {len(activity)}")
    if (activity < 0).any():
        raise ValueError(f"activity must not be negative, not {float(activity.min())!r}")
    return (matrix != 0) @ activity


def pe_loads(matrix, n_pes, activity=None):
    """The load of each PE when row ``r`` goes to PE ``r mod n_pes``: its non-zero weights, each
    counted with its column's ``activity`` (1 when None; ``(x != 0).astype(float)`` counts
    the weights a vector ``x`` meets). Returns float64 (n_pes,)."""
    loads = _row_loads(matrix, activity)
    n_pes = integer("n_pes", n_pes, 1, 64)
    return np.bincount(np.arange(len(loads)) % n_pes, weights=loads, minlength=n_pes)


def balanced_order(matrix, n_pes, activity=None):
    """A row order of ``matrix`` that evens out the PEs' loads under the unit's ``r mod N`` rule.

    The unit gives row ``r`` to PE ``r mod N``; fed ``matrix[order]``, PE ``p`` holds the rows
    ``order[p], order[p + N], ...``. The rows are dealt heaviest first, each to the PE with the
    lightest load that still has a local row free (so no PE gets more than ``ceil(rows /
    N)`` rows, as under ``r mod N``); a row's load is its non-zero weights, each counted
    with its column's ``activity``, the fraction of inputs in which that activation is
    non-zero (measured on calibration data, say; every column counts 1 when None).

    The unit's outputs come out in this order, ``y[order]``: reorder the layer's biases and
    multipliers with its rows, and feed the outputs to the next layer with that layer's
    columns in the same order, ``next_matrix[:, order]``; the network's outputs are then
    unchanged (a last layer's outputs go back with ``y[np.argsort(order)]``).

    Parameters
    ----------
    matrix : int array (rows, cols)
        The layer's weights (only which are zero matters).
    n_pes : int
        Processing elements, 1..64.
    activity : real array (cols,), optional
        Non-negative weight of each column.

    Returns
    -------
    int64 array (rows,)
        A permutation of ``0 .. rows-1``: row ``k`` of the reordered matrix is ``order[k]``.
    """
    loads = _row_loads(matrix, activity)
    n_pes = integer("n_pes", n_pes, 1, 64)
    rows = len(loads)
    free = [len(range(pe, rows, n_pes)) for pe in range(n_pes)]
    dealt = [[] for _ in range(n_pes)]
    total = np.zeros(n_pes)
    for row in sorted(range(rows), key=lambda r: (-loads[r], r)):
        pe = min((pe for pe in range(n_pes) if len(dealt[pe]) < free[pe]),
                 key=lambda pe: (total[pe], pe))
        dealt[pe].append(row)
        total[pe] += loads[row]
    order = np.empty(rows, dtype=np.int64)
    for pe, members in enumerate(dealt):
        order[pe::n_pes] = members
    return order


#: Cycles from the sparse unit's first read-out cycle to its first result beat, without and
#: with requantization (docs/spmv.md, Operation and timing).
RESULT_CYCLES = {False: 2, True: 8}


def spmv_cycles(matrix, x, n_pes, *, z_bits=4, lanes=4, queue_depth=8, requantize=False):
    """The sparse unit's cycle count for ``y = W x``, with a source that always has the next
    activation beat and a sink that always takes a result beat (docs/spmv.md, Operation and
    timing).

    Cycle 0 is the one that takes the vector's first beat. The front end hands out the
    lowest non-zero activation of the beat held to every PE while each is ready, with the
    next lane's too when that is non-zero and the hand-out before read the pointer that
    starts the lower one's column (two pointer reads then serve two columns); a beat is
    taken in the cycle its last non-zero is handed out (a beat of zeros costs a cycle). A PE
    is ready (a register) while in the previous cycle each of its two column queues' level
    plus the hand-outs reading their pointers, the one then taken among them, was below
    ``queue_depth``. It registers the hand-out, reads the pointers, registers them and
    queues each column that holds entries of the PE (three cycles), the column read (a
    pair's second) in the first queue, a pair's first in the second a cycle later; the walk
    takes the first queue's oldest column from the next cycle on, else the second's, else
    (both empty) the column read just registered, and reads a pair of entries per cycle; the
    registered pair sends one weight per cycle on (two cycles for a pair of two weights,
    during which the walk waits). The unit turns to read-out in the cycle after the last beat's activations are
    handed out and every PE has nothing queued, read or paired (its last weight may still
    be multiplied and added then); the first result comes ``RESULT_CYCLES`` later, then one
    per cycle.

    Parameters
    ----------
    matrix : int array (rows, cols)
        The weights (or codebook indices: only which are zero matters).
    x : int array (cols,)
        The activations (only which are zero matters).
    n_pes, z_bits, lanes, queue_depth : int
        The unit's PEs (1..64), zero-run width (1..16), activations per beat (1..16) and
        column queue depth (2..256).
    requantize : bool
        The set-up word switches the requantizer on.

    Returns
    -------
    (int, int)
        Compute cycles (from the first beat taken to the first result beat) and total
        cycles (to the last result beat, inclusive).
    """
    matrix = _check_matrix(matrix, "matrix")
    x = integer_array("x", x, ndim=1)
    if len(x) != matrix.shape[1]:
        raise ValueError(f"x needs one value per column ({matrix.shape[1]}), not {len(x)}")
    n_pes = integer("n_pes", n_pes, 1, 64)
    lanes = integer("lanes", lanes, 1, 16)
    queue_depth = integer("queue_depth", queue_depth, 2, 256)
    images = encode(matrix, n_pes, z_bits)
    padded = np.concatenate([x != 0, np.zeros(-len(x) % lanes, dtype=bool)])
    beats = padded.reshape(-1, lanes)
    pes = [_PECycles(image, queue_depth) for image in images]
    pending, beat, cycle = [], 0, 0               # the columns of the beat held
    read = None                                   # the last hand-out read p[read], p[read+1]
    while True:
        handed = None                             # the columns handed out in this cycle
        if pending and all(pe.ready() for pe in pes):
            column = pending[0]
            if column == (None if read is None else read + 1) and pending[1:2] == [column + 1]:
                handed, read = tuple(pending[:2]), column + 1
            else:
                handed, read = (column,), column
        busy = [pe.step(handed) for pe in pes]
        if beat == len(beats) and not pending and not any(busy):
            break
        if handed is not None:
            pending = pending[len(handed):]
        if not pending and beat < len(beats):    # the next beat is taken in this cycle
            pending = [beat * lanes + j for j in np.flatnonzero(beats[beat])]
            beat += 1
        cycle += 1
    first = cycle + 1 + RESULT_CYCLES[bool(requantize)]
    return first, first + -(-matrix.shape[0] // n_pes)


class _PECycles:
    """One PE of :func:`spmv_cycles`: registers as the RTL's, one :meth:`step` per cycle."""

    def __init__(self, image, depth):
        self.real = image.values != 0
        self.pointers = image.pointers
        self.depth = depth
        self.fetched = self.pointed = None        # hand-outs reading their pointers
        self.late = None                          # a pair's first column, to the second queue
        self.queues = ([], [])                    # (start, end) of queued columns
        self.skip = False                         # a column walked at once still counts
        self.walk = None                          # [next entry, end] of the walk
        self.read = self.fetched_pair = self.pair = None   # the pair read, then registered twice
        self.half = False
        self.room = True                          # the ready register

    def ready(self):
        return self.room

    def _pair(self, entry, end):
        """Whether the pair read at ``entry`` (of a column ending at ``end``) carries a weight
        in its first and its second entry."""
        return bool(self.real[entry]), entry + 1 < end and bool(self.real[entry + 1])

    def _take(self, queued, offered):
        """The column the walk takes (or None): the first queue's oldest, else the second's,
        else the column read just offered (taken out of ``offered``; it still counts toward
        the first queue's room in the next cycle)."""
        for queue, waiting in zip(self.queues, queued):
            if waiting:
                return list(queue.pop(0))
        self.skip = offered[0] is not None
        column, offered[0] = offered[0], None
        return None if column is None else list(column)

    def step(self, handed):
        """One cycle; ``handed`` holds the columns handed out to the PE (or is None). Returns
        whether the PE was busy in this cycle."""
        busy = (self.fetched is not None or self.pointed is not None or any(self.queues)
                or self.late is not None
                or self.walk is not None or self.read is not None
                or self.fetched_pair is not None or self.pair is not None)
        pair = self.pair
        stall = pair is not None and not self.half and pair[0] and pair[1]
        queued = [len(queue) for queue in self.queues]    # what the walk can take
        in_flight = sum(columns is not None for columns in (self.fetched, self.pointed, handed))
        self.room = (queued[0] + self.skip + in_flight < self.depth
                     and queued[1] + in_flight + (self.late is not None) < self.depth)
        self.skip = False
        # The columns offered: the column read (a pair's second) to the walk or the first
        # queue, a pair's first to the second queue, in the next cycle.
        offered = [None, None]
        for k, column in enumerate(reversed(self.pointed or ())):
            start, end = self.pointers[column], self.pointers[column + 1]
            if end > start:
                offered[k] = (start, end)
        self.pointed, self.fetched = self.fetched, handed
        late, self.late, offered[1] = self.late, offered[1], None
        if pair is not None:
            self.half = stall
        if not stall:
            walk = self.walk
            self.pair, self.fetched_pair = self.fetched_pair, self.read
            self.read = None if walk is None else self._pair(*walk)
            if walk is None or walk[0] + 2 >= walk[1]:
                self.walk = self._take(queued, offered)
            else:
                walk[0] += 2
        for queue, column in zip(self.queues, (offered[0], late)):
            if column is not None:
                queue.append(column)
        return busy
