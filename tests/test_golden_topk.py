"""Top-k golden equals a stable-argsort reference; cascade token pruning (docs/design.md 3.4);
the engine's cycle model (docs/topk.md Timing)."""

import numpy as np
import pytest

from golden.topk import attention_probabilities, batch_cycles, cascade_token_pruning, topk


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


def test_cycle_model_overlaps_batches_and_holds_only_a_last_beat():
    # P = 4, k_max = 8, latency 23 (TopK(256, 8, 4).latency). Batch 0: a configuration (k = 2)
    # at cycle 0, beats at 1 and 2, indices offered 23 + 2 cycles after the last beat.
    # Batch 1 (same k, no configuration): its one beat is its last, so it waits for the
    # cycle after batch 0's last index. Batch 2 (k = 8): a configuration, then 25 beats, the
    # first taken while batch 1's indices are out.
    timing = batch_cycles([(5, 2), (3, 2), (100, 8)], par=4, k_max=8, latency=23)
    assert timing == [
        {"first_score": 1, "last_score": 2, "first_index": 27, "last_index": 28},
        {"first_score": 29, "last_score": 29, "first_index": 54, "last_index": 55},
        {"first_score": 31, "last_score": 56, "first_index": 87, "last_index": 94},
    ]


def test_cycle_model_period_is_the_longer_of_input_and_output():
    # n = 1024, k = 32, P = 8, latency 77 (TopK(1024, 32, 8)): a batch's 128 beats are
    # shorter than its latency + 2k = 141 cycles of output, so each last beat waits for the
    # output before it: a batch every 141 cycles. Twice the scores: every 256 cycles.
    timing = batch_cycles([(1024, 32)] * 4, par=8, k_max=32, latency=77)
    assert [t["first_score"] for t in timing] == [0, 128, 269, 410]
    assert [t["last_score"] for t in timing] == [127, 268, 409, 550]
    timing = batch_cycles([(2048, 32)] * 3, par=8, k_max=32, latency=77)
    assert [t["last_score"] for t in timing] == [255, 511, 767]
    assert timing[-1]["last_index"] == 767 + 77 + 2 * 32 - 1


def test_cycle_model_refuses_a_k_beyond_k_max_and_an_empty_batch():
    with pytest.raises(ValueError, match=r"batches\[1\] k must be between 1 and 8, not 9"):
        batch_cycles([(4, 2), (4, 9)], par=4, k_max=8, latency=13)
    with pytest.raises(ValueError, match=r"batches\[0\] n must be an integer of at least 1, not 0"):
        batch_cycles([(0, 2)], par=4, k_max=8, latency=13)
