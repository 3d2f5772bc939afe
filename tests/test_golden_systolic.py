"""golden.systolic: tiling, packing and padding of GEMMs, result reassembly, the cycle model."""

import itertools

import numpy as np
import pytest

from golden.bitfusion import fused_dot, unpack, value_range
from golden.systolic import Mode, Tiling, gemm_cycles, pack_steps, tile_gemm, unpack_results

MODES = [Mode(w, a, ws, as_) for w, a, ws, as_ in
         itertools.product((2, 4, 8), (2, 4, 8), (False, True), (False, True))]


def random_gemm(rng, mode, m, n, k):
    a = rng.integers(*value_range(mode.a_bits, mode.a_signed), endpoint=True, size=(m, k))
    w = rng.integers(*value_range(mode.w_bits, mode.w_signed), endpoint=True, size=(k, n))
    return a, w


def run_on_model_array(steps, tiling, mode, drain_rows):
    """What an output-stationary array computes from the step beats, as result beats.

    Every PE (r, c) sums, brick by brick (golden.bitfusion.fused_dot), the lanes of the
    words it receives, over the steps of its tile; the tile then leaves ``drain_rows``
    rows per beat.
    """
    beats = []
    for t in range(tiling.tiles):
        tile_steps = steps[t * tiling.k_steps:(t + 1) * tiling.k_steps]
        acc = np.zeros((tiling.rows, tiling.cols), dtype=np.int64)
        for act, wgt in tile_steps:
            for r, c in itertools.product(range(tiling.rows), range(tiling.cols)):
                acc[r, c] += fused_dot(unpack(wgt[c], mode.w_bits, mode.lanes, mode.w_signed),
                                       unpack(act[r], mode.a_bits, mode.lanes, mode.a_signed),
                                       mode.w_bits, mode.a_bits, mode.w_signed, mode.a_signed)
        beats += [acc[g:g + drain_rows].tolist() for g in range(0, tiling.rows, drain_rows)]
    return beats


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_packed_steps_hold_the_zero_padded_operands_tile_by_tile(mode):
    seed = MODES.index(mode)
    rng = np.random.default_rng(seed)
    rows, cols = 3, 4
    m, n, k = 7, 9, 2 * mode.lanes + 1           # multiples of neither the array nor the lanes
    a, w = random_gemm(rng, mode, m, n, k)
    tiling = tile_gemm(a, w, rows, cols, mode)
    assert (tiling.tile_rows, tiling.tile_cols, tiling.k_steps) == (3, 3, 3)
    steps = pack_steps(a, w, rows, cols, mode)
    assert len(steps) == tiling.tiles * tiling.k_steps
    a_seen = np.zeros((9, 3 * mode.lanes), dtype=np.int64)
    w_seen = np.zeros((3 * mode.lanes, 12), dtype=np.int64)
    for index, (act, wgt) in enumerate(steps):
        tile, s = divmod(index, tiling.k_steps)
        tm, tn = divmod(tile, tiling.tile_cols)
        ks = slice(s * mode.lanes, (s + 1) * mode.lanes)
        assert len(act) == rows and len(wgt) == cols
        for r, word in enumerate(act):
            assert 0 <= word < 1 << 32, f"seed {seed}"
            a_seen[tm * rows + r, ks] = unpack(word, mode.a_bits, mode.lanes, mode.a_signed)
        for c, word in enumerate(wgt):
            w_seen[ks, tn * cols + c] = unpack(word, mode.w_bits, mode.lanes, mode.w_signed)
    a_want = np.zeros_like(a_seen)
    a_want[:m, :k] = a
    w_want = np.zeros_like(w_seen)
    w_want[:k, :n] = w
    assert np.array_equal(a_seen, a_want), f"seed {seed}"
    assert np.array_equal(w_seen, w_want), f"seed {seed}"


@pytest.mark.parametrize("mode", [Mode(2, 2, True, False), Mode(8, 4, True, True),
                                  Mode(4, 8, False, True), Mode(8, 8, False, False)], ids=str)
@pytest.mark.parametrize("drain_rows", [1, 2, 4])
def test_packing_then_an_array_then_unpacking_is_the_matrix_product(mode, drain_rows):
    seed = drain_rows * 100 + MODES.index(mode)
    rng = np.random.default_rng(seed)
    a, w = random_gemm(rng, mode, 9, 5, 3 * mode.lanes - 1)
    tiling = tile_gemm(a, w, 4, 2, mode)
    beats = run_on_model_array(pack_steps(a, w, 4, 2, mode), tiling, mode, drain_rows)
    assert np.array_equal(unpack_results(beats, tiling, drain_rows), a @ w), f"seed {seed}"


def test_unpack_rejects_a_wrong_beat_count():
    tiling = Tiling(5, 5, 5, 4, 4, 1)
    with pytest.raises(ValueError, match="expected 8 result beats, got 7"):
        unpack_results([[[0] * 4] * 2] * 7, tiling, 2)


def test_operands_that_do_not_fit_the_mode_or_disagree_in_k_are_rejected():
    mode = Mode(4, 2, True, False)
    with pytest.raises(ValueError, match=r"activation 4 does not fit 2 bits unsigned \(0..3\)"):
        tile_gemm(np.array([[1, 4]]), np.zeros((2, 1), dtype=int), 2, 2, mode)
    with pytest.raises(ValueError, match=r"weight -9 does not fit 4 bits signed \(-8..7\)"):
        tile_gemm(np.ones((1, 2), dtype=int), np.array([[-9], [0]]), 2, 2, mode)
    with pytest.raises(ValueError, match="must agree in K"):
        tile_gemm(np.ones((2, 3), dtype=int), np.ones((2, 3), dtype=int), 2, 2, mode)


def test_one_step_on_one_pe_takes_the_pipeline_once():
    # Accepted at 0, through two edge registers to the PE input at 2, PE result 5 cycles
    # later at 7 (written to the row FIFO), in the FIFO's output register at 8, taken at 9:
    # ten cycles counting both ends.
    assert gemm_cycles(Tiling(1, 1, 1, 1, 1, 1), drain_rows=1, fifo_depth=2) == 10


def test_64_cube_on_8x8_in_2x2_mode_is_its_steps_plus_fill_and_drain():
    # 64 tiles x 4 steps back to back; the last step (accepted at 255) reaches PE row 7 after
    # the skew and the two edge registers, the PE takes 5 cycles, the row is written
    # 1 + 8 + 7 + 5 cycles after the step (1 + C + r + pe_latency) and the last pair of rows
    # leaves two cycles after (through the row FIFO's output register).
    tiling = Tiling(64, 64, 64, 8, 8, 16)
    assert gemm_cycles(tiling, drain_rows=2, fifo_depth=7) == 255 + 1 + 8 + 7 + 5 + 2 + 1


@pytest.mark.parametrize("k_steps", [4, 5, 9])
def test_compute_bound_tiles_add_k_steps_cycles_each(k_steps):
    # Four beats of results per tile and at least four steps: the drain keeps up.
    cycles = [gemm_cycles(Tiling(8 * t, 8, k_steps, 8, 8, 1), 2, 7) for t in range(1, 12)]
    assert np.all(np.diff(cycles) == k_steps)


def test_drain_bound_tiles_add_one_cycle_per_beat_when_the_fifo_covers_the_round_trip():
    # One-step tiles of eight one-row beats: with FIFOs deep enough, the result stream sets
    # the pace; with room for two tiles, a tile that waits for credit also waits for the
    # pipeline, and the pace drops.
    def pace(fifo_depth):
        cycles = [gemm_cycles(Tiling(8 * t, 8, 1, 8, 8, 1), 1, fifo_depth) for t in range(1, 30)]
        return np.diff(cycles)[-10:]
    assert np.all(pace(7) == 8) and np.all(pace(12) == 8)
    assert pace(2).mean() > 8


def test_a_shallow_fifo_stalls_the_next_tile_until_a_tile_drains():
    # With room for one tile, the next tile's first step is taken the cycle after the previous
    # tile's last beat, so consecutive tiles no longer overlap compute and drain.
    deep = gemm_cycles(Tiling(16, 8, 4, 8, 8, 1), 2, 7)
    shallow = gemm_cycles(Tiling(16, 8, 4, 8, 8, 1), 2, 1)
    single = gemm_cycles(Tiling(8, 8, 4, 8, 8, 1), 2, 1)
    assert deep == single + 4
    assert shallow == 2 * single
