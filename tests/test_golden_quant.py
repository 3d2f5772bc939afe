"""Quantization, pruning and requantization golden models (docs/design.md 3.2)."""

import numpy as np
import pytest

from golden.prune import magnitude_prune, n_m_prune, sparsity, structured_prune
from golden.quant import (asymmetric_dequantize, asymmetric_quantize, kmeans_codebook,
                          quantize_activations, quantize_weights)
from golden.requant import quantize_multiplier, requantize


@pytest.mark.parametrize("bits", (2, 4, 8))
def test_weights_stay_in_signed_range_and_track_the_float(bits):
    w = np.random.default_rng(bits).normal(size=(16, 40))
    q, scale = quantize_weights(w, bits, per_channel=True)
    assert q.min() >= -(1 << (bits - 1)) and q.max() <= (1 << (bits - 1)) - 1
    assert scale.shape == (16,)
    assert np.all(np.abs(q * scale[:, None] - w) <= scale[:, None] / 2 + 1e-12)
    q_tensor, s_tensor = quantize_weights(w, bits, per_channel=False)
    assert np.ndim(s_tensor) == 0 and np.abs(q_tensor).max() == (1 << (bits - 1)) - 1


def test_rounding_is_half_to_even():
    q, _ = quantize_weights(np.array([[0.5, 1.5, 2.5, -0.5, 127.0]]), 8)
    assert q.tolist() == [[0, 2, 2, 0, 127]]
    assert quantize_activations(np.array([0.5, 1.5, 300.0, -3.0]), 8, 1.0).tolist() == [0, 2, 255, 0]


def test_asymmetric_round_trip_error_is_half_a_step():
    r = np.linspace(-1.0, 3.0, 1001)
    q, scale, zero = asymmetric_quantize(r, -1.0, 3.0, 4)
    assert q.min() == 0 and q.max() == 15
    assert np.abs(asymmetric_dequantize(q, scale, zero) - r).max() <= scale / 2 + 1e-12


def test_kmeans_codebook_of_a_small_tensor_by_hand():
    # 2 bits: 0 and three centroids started at 1, 6.5 and 12. {1, 2} and {10, 11, 12}
    # settle at 1.5 and 11; 6.5 keeps no member. Rounded half to even: 2, 6, 11.
    codebook, index = kmeans_codebook(np.array([[0, 1, 2, 10, 11, 12]]), 2)
    assert codebook.tolist() == [0, 2, 6, 11]
    assert index.tolist() == [[0, 1, 1, 3, 3, 3]]
    # 1 bit: 0 and the mean of the non-zero weights, 7.2, rounded.
    codebook, index = kmeans_codebook(np.array([[0, 1, 2, 10, 11, 12]]), 1)
    assert codebook.tolist() == [0, 7] and index.tolist() == [[0, 1, 1, 1, 1, 1]]


def test_kmeans_codebook_keeps_zero_and_improves_with_bits():
    w = np.random.default_rng(3).integers(-127, 128, size=(32, 32))
    w[w % 5 == 0] = 0
    errors = []
    for bits in (2, 3, 4):
        codebook, index = kmeans_codebook(w, bits)
        assert codebook.shape == (1 << bits,) and codebook[0] == 0
        assert np.all(index[w == 0] == 0) and np.all(index[w != 0] >= 1)
        errors.append(np.abs(codebook[index] - w).mean())
    assert errors[0] > errors[1] > errors[2]


def test_pruning_masks_of_small_tensors_by_hand():
    # The two smallest magnitudes go; a tie goes to the lower index.
    assert magnitude_prune(np.array([[3, -1, 2, 0.5]]), 0.5).tolist() == [[True, False, True,
                                                                          False]]
    assert magnitude_prune(np.array([[1, -1, 2, 3]]), 0.25).tolist() == [[False, True, True,
                                                                         True]]
    # Row norms 5, 1.4, 6: the second row goes.
    assert structured_prune(np.array([[3.0, 4], [1, 1], [0, 6]]), 1 / 3).tolist() == \
        [[True, True], [False, False], [True, True]]
    # 2:4 keeps -3 and 2.
    assert n_m_prune(np.array([[1, -3, 2, 0.5]]), 2, 4).tolist() == [[False, True, True, False]]


def test_pruning_hits_the_target_exactly():
    w = np.random.default_rng(4).normal(size=(20, 48))
    for target in (0.0, 0.5, 0.9):
        assert sparsity(w * magnitude_prune(w, target)) == pytest.approx(target)
    mask = structured_prune(w, 0.25)
    assert sorted(set(mask.sum(axis=1))) == [0, 48] and (mask.sum(axis=1) == 0).sum() == 5
    mask = n_m_prune(w, 2, 4)
    assert np.all(mask.reshape(20, -1, 4).sum(axis=2) == 2)
    kept = np.abs(w * mask).reshape(20, -1, 4).min(axis=2, initial=np.inf, where=mask.reshape(20, -1, 4))
    dropped = np.abs(w).reshape(20, -1, 4).max(axis=2, initial=0, where=~mask.reshape(20, -1, 4))
    assert np.all(kept >= dropped)
    with pytest.raises(ValueError, match="sparsity must be in \\[0, 1\\), not 1.5"):
        magnitude_prune(w, 1.5)


@pytest.mark.parametrize("seed", range(5))
def test_requantize_matches_float_within_one_lsb(seed):
    rng = np.random.default_rng(seed)
    real = rng.uniform(1e-4, 0.05, size=8)
    multiplier, shift = quantize_multiplier(real)
    acc = rng.integers(-(1 << 20), 1 << 20, size=(200, 8))
    got = requantize(acc, multiplier, shift, 8)
    want = np.clip(np.rint(acc * real), 0, 255)
    assert np.abs(got - want).max() <= 1, seed


def test_requantize_by_hand():
    # M = 3, shift = 2: acc * 0.75, rounded half up, clamped to 0..255.
    acc = np.array([5, 6, -3, 1000, 2, 6, 10, -2])
    assert requantize(acc, 3, 2, 8).tolist() == [4, 5, 0, 255, 2, 5, 8, 0]
    # M = 1, shift = 2: 0.5, 1.5, 2.5 and -0.5 round half up (not to even): 1, 2, 3, 0.
    assert requantize(np.array([2, 6, 10, -2]), 1, 2, 8).tolist() == [1, 2, 3, 0]
    # 2^40 * 2^30 overflows int64; the result saturates, it does not wrap.
    assert requantize(np.array([1 << 40]), 1 << 30, 47, 16).tolist() == [65535]


def test_quantize_multiplier_by_hand():
    # The largest shift with M = real * 2^shift below 2^15: 0.25 * 2^16 = 16384.
    assert quantize_multiplier(0.25) == (16384, 16)
    # Per channel, one shift for all, set by the largest multiplier.
    multiplier, shift = quantize_multiplier(np.array([0.5, 0.25]))
    assert multiplier.tolist() == [16384, 8192] and shift == 15


def test_requantize_rejects_bad_parameters():
    with pytest.raises(ValueError, match="shift must be between 1 and 47, not 0"):
        requantize(np.array([1]), 3, 0, 8)
    with pytest.raises(ValueError, match="real multiplier"):
        quantize_multiplier(1e9)
