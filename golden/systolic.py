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

from golden.bitfusion import lanes, pack, value_range

__all__ = ["Mode", "Tiling", "tile_gemm", "pack_steps", "unpack_results", "gemm_cycles",
           "useful_macs"]


@dataclass(frozen=True)
class Mode:
    """Run-time mode: operand widths and signedness."""
    w_bits: int
    a_bits: int
    w_signed: bool
    a_signed: bool

    @property
    def lanes(self):
        return lanes(self.w_bits, self.a_bits)


@dataclass(frozen=True)
class Tiling:
    """How a GEMM maps onto an ``rows x cols`` array."""
    m: int
    n: int
    k: int
    rows: int
    cols: int
    lanes: int

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


def tile_gemm(a, w, rows, cols, mode):
    """Check the operands of ``A @ W`` and return the :class:`Tiling` on the array."""
    a = np.asarray(a)
    w = np.asarray(w)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0]:
        raise ValueError(f"A (M x K) and W (K x N) must agree in K, not {a.shape} and {w.shape}")
    for name, values, bits, signed in (("activation", a, mode.a_bits, mode.a_signed),
                                       ("weight", w, mode.w_bits, mode.w_signed)):
        lo, hi = value_range(bits, signed)
        if values.size and (values.min() < lo or values.max() > hi):
            bad = values[(values < lo) | (values > hi)].flat[0]
            raise ValueError(f"{name} {bad} does not fit {bits} bits "
                             f"{'signed' if signed else 'unsigned'} ({lo}..{hi})")
    return Tiling(a.shape[0], w.shape[1], a.shape[1], rows, cols, mode.lanes)


def pack_steps(a, w, rows, cols, mode):
    """The step beats of ``A @ W``: a list of ``(act_words, wgt_words)``, tile by tile."""
    tiling = tile_gemm(a, w, rows, cols, mode)
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
                act = [pack(a_pad[tm * rows + r, ks], mode.a_bits, mode.a_signed)
                       for r in range(rows)]
                wgt = [pack(w_pad[ks, tn * cols + c], mode.w_bits, mode.w_signed)
                       for c in range(cols)]
                steps.append((act, wgt))
    return steps


def unpack_results(beats, tiling, drain_rows):
    """Reassemble ``C`` (M x N) from result beats (each ``drain_rows`` lists of ``cols`` values)."""
    rows, cols = tiling.rows, tiling.cols
    per_tile = rows // drain_rows
    expected = tiling.tiles * per_tile
    if len(beats) != expected:
        raise ValueError(f"expected {expected} result beats, got {len(beats)}")
    out = np.zeros((tiling.tile_rows * rows, tiling.tile_cols * cols), dtype=np.int64)
    for i, beat in enumerate(beats):
        tile, group = divmod(i, per_tile)
        tm, tn = divmod(tile, tiling.tile_cols)
        for j, row_values in enumerate(beat):
            out[tm * rows + group * drain_rows + j, tn * cols:(tn + 1) * cols] = row_values
    return out[:tiling.m, :tiling.n]


def gemm_cycles(tiling, drain_rows, fifo_depth, pe_latency=5, edge_registers=2):
    """Cycles from the first step accepted to the last result beat taken (ideal source and sink)."""
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
    return tiling.m * tiling.n * tiling.k
