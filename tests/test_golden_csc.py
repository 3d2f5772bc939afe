"""CSC golden encoding round-trips and equals scipy.sparse's CSC (docs/design.md 3.3)."""

import numpy as np
import pytest
import scipy.sparse

from golden import csc

SPARSITIES = (0.0, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99)


def random_matrix(rng, rows, cols, sparsity, bits=8):
    hi = (1 << (bits - 1)) - 1
    w = rng.integers(-hi - 1, hi, endpoint=True, size=(rows, cols))
    w[w == 0] = 1
    return w * (rng.random((rows, cols)) >= sparsity)


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("n_pes, z_bits", [(1, 4), (4, 2), (5, 4), (8, 1)])
def test_round_trip_and_scipy_equivalence(sparsity, n_pes, z_bits):
    seed = int(sparsity * 100) * 100 + n_pes
    rng = np.random.default_rng(seed)
    w = random_matrix(rng, 61, 23, sparsity)
    w[:, 3] = 0                 # an empty column
    w[:, 5] = 0
    w[60, 5] = 7                # a gap longer than the z range at the bottom of a column
    images = csc.encode(w, n_pes, z_bits)
    assert np.array_equal(csc.decode(images, w.shape, z_bits), w), seed
    rows, cols, values = csc.entries(images, z_bits)
    real = values != 0                       # remove the padding entries
    order = np.lexsort((rows[real], cols[real]))
    reference = scipy.sparse.csc_matrix(w)
    reference.sort_indices()
    assert np.array_equal(rows[real][order], reference.indices)
    assert np.array_equal(values[real][order], reference.data)
    assert np.array_equal(np.bincount(cols[real], minlength=w.shape[1]),
                          np.diff(reference.indptr))


def test_long_gap_is_bridged_by_padding():
    w = np.zeros((40, 1), dtype=np.int64)
    w[37, 0] = 5
    image, = csc.encode(w, 1, z_bits=4)
    # 37 zero rows before the entry: two padding entries of 15 skip 32 rows (and sit on rows 15, 31).
    assert image.values.tolist() == [0, 0, 5]
    assert image.z.tolist() == [15, 15, 5]
    assert image.pointers.tolist() == [0, 3]


def test_rows_are_interleaved_across_pes():
    w = np.arange(1, 13).reshape(6, 2)
    images = csc.encode(w, 3)
    assert images[1].values.tolist() == [3, 9, 4, 10]      # rows 1 and 4 of each column
    assert images[1].pointers.tolist() == [0, 2, 4]


def test_malformed_images_are_rejected():
    image = csc.encode(np.eye(4, dtype=np.int64), 1)[0]
    past_end = csc.PEColumns(image.values, image.z, image.pointers + np.array([0, 0, 0, 0, 9]))
    with pytest.raises(ValueError, match="column pointers"):
        csc.entries([past_end])
    overflow = csc.PEColumns(image.values, image.z + 16, image.pointers)
    with pytest.raises(ValueError, match="z 16 does not fit 4 bits"):
        csc.entries([overflow])
    with pytest.raises(ValueError, match="n_pes must be between 1 and 64, not 0"):
        csc.encode(np.eye(2, dtype=np.int64), 0)
