"""GEMM on the output-stationary fusion array: tiling, packing and the exact cycle count.

``C = A @ W`` with ``A`` (M x K) activations and ``W`` (K x N) weights runs as
``ceil(M/R) * ceil(N/C)`` tiles in row-major order; each tile takes
``k_steps = ceil(K / L)`` steps of ``L = lanes(w_bits, a_bits)`` values of ``k``.
A step is one packed activation word per array row (``A[row, k:k+L]``) and one
packed weight word per array column (``W[k:k+L, col]``). Rows, columns and ``k``
beyond the matrices are padded with zeros: padding is the driver's job, and
this module is that driver.

Results leave ``drain_rows`` rows per beat, tile by tile, top group first.

:func:`gemm_cycles` predicts, for a source that always has the next step and a
sink that always takes a beat, the cycles from the first step accepted to the
last result beat taken, from the array's pipeline: a step reaches PE ``(r, c)``
``edge_registers + r + c`` cycles after it is accepted, the PE adds ``pe_latency``
cycles, row ``r``'s results are written to its FIFO ``cols - 1 - c`` cycles later (so
row ``r`` of a tile whose last step was accepted at ``t`` is written at
``t + edge_registers + r + cols - 1 + pe_latency``), a group of rows can leave two
cycles after its last row is written (the row FIFO moves it from its memory to its
output register in between), one beat per cycle, and a tile's first step waits until
fewer than ``fifo_depth`` tiles are started and not fully drained (a tile is
drained at the edge that takes its last beat; the counter is seen one cycle
later).
"""

import math
from dataclasses import dataclass

import numpy as np

from golden.bitfusion import check_bits, lanes, pack_checked, value_range
from golden.checks import flag, integer, integer_array

__all__ = ["Mode", "Tiling", "tile_gemm", "pack_steps", "unpack_results", "gemm_cycles",
           "useful_macs"]


@dataclass(frozen=True)
class Mode:
    """Run-time mode: operand widths (2, 4 or 8) and signedness (True or False).

    Not checked at construction (a host may hold a mode it then refuses); every function
    that takes a mode checks it.
    """
    w_bits: int
    a_bits: int
    w_signed: bool
    a_signed: bool

    @property
    def lanes(self):
        return lanes(self.w_bits, self.a_bits)


def _check_mode(mode):
    if not isinstance(mode, Mode):
        raise TypeError(f"mode must be a golden.systolic.Mode, not {mode!r}")
    check_bits(mode.w_bits, "mode.w_bits")
    check_bits(mode.a_bits, "mode.a_bits")
    flag("mode.w_signed", mode.w_signed)
    flag("mode.a_signed", mode.a_signed)
    return mode


@dataclass(frozen=True)
class Tiling:
    """How a GEMM maps onto an ``rows x cols`` array; every field a positive integer."""
    m: int
    n: int
    k: int
    rows: int
    cols: int
    lanes: int

    def __post_init__(self):
        for name in ("m", "n", "k", "rows", "cols", "lanes"):
            object.__setattr__(self, name, integer(name, getattr(self, name), 1))

    @property
    def tile_rows(self):
        return math.ceil(self.m / self.rows)

    @property
    def tile_cols(self):
        return math.ceil(self.n / self.cols)

    @property
    def tiles(self):
        return self.tile_rows * self.tile_cols

    @property
    def k_steps(self):
        return math.ceil(self.k / self.lanes)


def _operands(a, w, rows, cols, mode):
    """``(a, w, tiling)``: the checked operands as int64 and their tiling."""
    _check_mode(mode)
    rows, cols = integer("rows", rows, 1), integer("cols", cols, 1)
    checked = []
    for name, values, bits, signed in (("activation", a, mode.a_bits, mode.a_signed),
                                       ("weight", w, mode.w_bits, mode.w_signed)):
        lo, hi = value_range(bits, signed)
        kind = "signed" if signed else "unsigned"
        checked.append(integer_array(name, values, lo, hi, ndim=2,
                                     fits=f"{bits} bits {kind} ({lo}..{hi})"))
    a, w = checked
    if a.shape[1] != w.shape[0]:
        raise ValueError(f"A (M x K) and W (K x N) must agree in K, not {a.shape} and {w.shape}")
    if not a.size or not w.size:
        raise ValueError(f"A and W must not be empty, not of shapes {a.shape} and {w.shape}")
    return a, w, Tiling(a.shape[0], w.shape[1], a.shape[1], rows, cols, mode.lanes)


def tile_gemm(a, w, rows, cols, mode):
    """Check the operands of ``A @ W`` and return the :class:`Tiling` on the array.

    Parameters
    ----------
    a, w : 2-D arrays of whole numbers
        ``A`` (M x K) in the range of ``mode.a_bits``/``mode.a_signed``, ``W`` (K x N) in
        that of the weights; neither empty. Whole floats count as integers.
    rows, cols : int
        The array, each at least 1.
    mode : Mode
        Widths 2, 4 or 8, signedness True or False.

    Raises
    ------
    TypeError
        ``mode`` is not a :class:`Mode` or its signedness not a bool; an operand holds
        bools, strings or other non-numbers.
    ValueError
        A width, ``rows`` or ``cols`` is not allowed; an operand is not 2-D, empty, holds
        NaN, infinity, a fraction or a value out of range; or the K of A and W differ.
    """
    return _operands(a, w, rows, cols, mode)[2]


def pack_steps(a, w, rows, cols, mode):
    """The step beats of ``A @ W``: a list of ``(act_words, wgt_words)``, tile by tile.

    The arguments are those of :func:`tile_gemm`, checked the same way.
    """
    a, w, tiling = _operands(a, w, rows, cols, mode)
    lane_count = mode.lanes
    k_pad = tiling.k_steps * lane_count
    a_pad = np.zeros((tiling.tile_rows * rows, k_pad), dtype=np.int64)
    a_pad[:tiling.m, :tiling.k] = a
    w_pad = np.zeros((k_pad, tiling.tile_cols * cols), dtype=np.int64)
    w_pad[:tiling.k, :tiling.n] = w
    steps = []
    for tm in range(tiling.tile_rows):
        for tn in range(tiling.tile_cols):
            for s in range(tiling.k_steps):
                ks = slice(s * lane_count, (s + 1) * lane_count)
                # The operands were checked above: pack them without checking each word.
                act = [pack_checked(a_pad[tm * rows + r, ks], mode.a_bits) for r in range(rows)]
                wgt = [pack_checked(w_pad[ks, tn * cols + c], mode.w_bits) for c in range(cols)]
                steps.append((act, wgt))
    return steps


def unpack_results(beats, tiling, drain_rows):
    """Reassemble ``C`` (M x N) from result beats (each ``drain_rows`` lists of ``cols`` values).

    ``drain_rows`` divides ``tiling.rows``; the beats hold whole numbers (int64 range).
    """
    drain_rows = _check_drain(tiling, drain_rows)
    rows, cols = tiling.rows, tiling.cols
    per_tile = rows // drain_rows
    expected = tiling.tiles * per_tile
    try:
        count = len(beats)
    except TypeError:
        raise TypeError(f"beats must be a sequence of result beats, not {beats!r}") from None
    if count != expected:
        raise ValueError(f"expected {expected} result beats, got {count}")
    beats = integer_array("beats", beats, ndim=3)
    if beats.shape[1:] != (drain_rows, cols):
        raise ValueError(f"each beat must hold {drain_rows} rows of {cols} values, not "
                         f"shape {beats.shape[1:]}")
    out = np.zeros((tiling.tile_rows * rows, tiling.tile_cols * cols), dtype=np.int64)
    for i, beat in enumerate(beats):
        tile, group = divmod(i, per_tile)
        tm, tn = divmod(tile, tiling.tile_cols)
        for j, row_values in enumerate(beat):
            out[tm * rows + group * drain_rows + j, tn * cols:(tn + 1) * cols] = row_values
    return out[:tiling.m, :tiling.n]


def _check_drain(tiling, drain_rows):
    if not isinstance(tiling, Tiling):
        raise TypeError(f"tiling must be a golden.systolic.Tiling, not {tiling!r}")
    drain_rows = integer("drain_rows", drain_rows, 1, tiling.rows)
    if tiling.rows % drain_rows:
        raise ValueError(f"drain_rows must divide the {tiling.rows} rows, not {drain_rows}")
    return drain_rows


def gemm_cycles(tiling, drain_rows, fifo_depth, pe_latency=5, edge_registers=2):
    """Cycles from the first step accepted to the last result beat taken (ideal source and sink).

    ``drain_rows`` divides ``tiling.rows``; ``fifo_depth`` is at least 1, ``pe_latency``
    and ``edge_registers`` at least 0.
    """
    drain_rows = _check_drain(tiling, drain_rows)
    fifo_depth = integer("fifo_depth", fifo_depth, 1)
    pe_latency = integer("pe_latency", pe_latency, 0)
    edge_registers = integer("edge_registers", edge_registers, 0)
    rows, cols, k_steps = tiling.rows, tiling.cols, tiling.k_steps
    per_tile = rows // drain_rows
    starts, drained = [], []
    beat_edge = -1
    for n in range(tiling.tiles):
        start = 0 if n == 0 else starts[-1] + k_steps
        if n >= fifo_depth:
            start = max(start, drained[n - fifo_depth] + 1)
        starts.append(start)
        last_step = start + k_steps - 1
        for g in range(per_tile):
            last_row = (g + 1) * drain_rows - 1
            written = last_step + edge_registers + last_row + cols - 1 + pe_latency
            beat_edge = max(written + 2, beat_edge + 1)
        drained.append(beat_edge)
    return beat_edge - starts[0] + 1


def useful_macs(tiling):
    """Multiply-accumulates of the GEMM itself (no padding)."""
    if not isinstance(tiling, Tiling):
        raise TypeError(f"tiling must be a golden.systolic.Tiling, not {tiling!r}")
    return tiling.m * tiling.n * tiling.k
