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


def test_kmeans_codebook_keeps_zero_and_improves_with_bits():
    w = np.random.default_rng(3).integers(-127, 128, size=(32, 32))
    w[w % 5 == 0] = 0
    errors = []
    for bits in (2, 3, 4):
        codebook, index = kmeans_codebook(w, bits)
        assert codebook.shape == (1 << bits,) and codebook[0] == 0
        assert np.array_equal(codebook[index] == 0, w == 0) or (codebook[1:] == 0).any()
        errors.append(np.abs(codebook[index] - w).mean())
    assert errors[0] > errors[1] > errors[2]


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
    assert np.array_equal(got, requantize(acc, multiplier, shift, 8))   # exactly reproducible
    by_hand = np.clip((acc * multiplier + (1 << (shift - 1))) >> shift, 0, 255)
    assert np.array_equal(got, by_hand)


def test_requantize_rejects_bad_parameters():
    with pytest.raises(ValueError, match="shift must be between 1 and 47, not 0"):
        requantize(np.array([1]), 3, 0, 8)
    with pytest.raises(ValueError, match="real multiplier"):
        quantize_multiplier(1e9)
