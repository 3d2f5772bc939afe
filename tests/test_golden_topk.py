"""Top-k golden equals a stable-argsort reference; cascade token pruning (docs/design.md 3.4)."""

import numpy as np
import pytest

from golden.topk import attention_probabilities, cascade_token_pruning, topk


def reference(scores, k):
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:k]), int(scores[order[k - 1]])


@pytest.mark.parametrize("seed", range(20))
def test_matches_stable_argsort_with_ties_and_negatives(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    scores = rng.integers(-8, 8, size=n)           # many ties, negatives
    for k in sorted({1, n, int(rng.integers(1, n + 1))}):
        got, threshold = topk(scores, k)
        want, want_threshold = reference(scores, k)
        assert np.array_equal(got, want) and threshold == want_threshold, (seed, k)


def test_ties_go_to_the_lower_index():
    indices, threshold = topk(np.array([5, 7, 5, 5, 7]), 3)
    assert indices.tolist() == [0, 1, 4] and threshold == 5


def test_a_batch_shorter_than_k_returns_every_score_and_its_smallest():
    # docs/topk.md: fewer than k scores return all of them; the threshold is the smallest.
    indices, threshold = topk(np.array([4, -2, 9]), 5)
    assert indices.tolist() == [0, 1, 2] and threshold == -2


def test_k_below_one_and_an_empty_batch_are_rejected():
    with pytest.raises(ValueError, match="k must be an integer of at least 1, not 0"):
        topk(np.array([1, 2, 3]), 0)
    with pytest.raises(ValueError, match="scores must hold at least one score"):
        topk(np.array([], dtype=np.int64), 1)


def test_cascade_pruning_accumulates_and_never_revives():
    probs = attention_probabilities(tokens=24, heads=3, layers=4, seed=5)
    keep = [20, 14, 9, 5]
    survivors, importance = cascade_token_pruning(probs, keep)
    assert [len(s) for s in survivors] == keep
    for before, after in zip(survivors, survivors[1:]):
        assert set(after) <= set(before)
    # Layer 0 ranks all tokens by the attention they receive from every head and query.
    first = probs[0].sum(axis=(0, 1))
    assert np.array_equal(importance[0], first)
    assert np.array_equal(survivors[0], reference(first, keep[0])[0])
    # Later layers add only what surviving queries give surviving keys.
    alive = survivors[0]
    second = first.copy()
    second[alive] += probs[1][:, alive][:, :, alive].sum(axis=(0, 1))
    assert np.array_equal(importance[1], second)
    assert np.array_equal(survivors[1], alive[reference(second[alive], keep[1])[0]])
