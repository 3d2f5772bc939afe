"""Top-k selection and SpAtten cascade token pruning (docs/design.md 3.4).

:func:`topk` selects the ``k`` largest of ``n`` scores, ties broken toward the
lower index, and returns the selected indices in ascending index order (token
order is kept) with the k-th largest score, the threshold.

:func:`cascade_token_pruning` is SpAtten's cascade token pruning on integer
attention probabilities: every layer adds, for every surviving token, the
attention probability it receives (summed over heads and surviving queries) to
its cumulative importance, then keeps the ``keep[l]`` most important survivors.
A pruned token is never revived.
"""

import numpy as np

__all__ = ["topk", "attention_probabilities", "cascade_token_pruning"]


def topk(scores, k):
    """``(indices, threshold)``: the ``k`` largest scores, lower index first on ties.

    ``indices`` is int64 and ascending; ``threshold`` is the k-th largest score.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1 or not np.issubdtype(scores.dtype, np.integer):
        raise ValueError(f"scores must be a 1-D integer array, not {scores.dtype} {scores.shape}")
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be between 1 and n={len(scores)}, not {k!r}")
    scores = scores.astype(np.int64)
    # Order by score descending, then index ascending: a lexicographic sort.
    order = np.lexsort((np.arange(len(scores)), -scores))
    chosen = order[:k]
    return np.sort(chosen).astype(np.int64), int(scores[order[k - 1]])


def attention_probabilities(tokens, heads, layers, dim=8, prob_bits=8, seed=0):
    """Integer attention probabilities of a small random transformer.

    Returns an int64 array ``(layers, heads, tokens, tokens)`` of softmax
    probabilities (query, key) quantized to unsigned ``prob_bits`` bits, the
    format a SpAtten accelerator accumulates.
    """
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(layers, heads, tokens, dim))
    k = rng.normal(size=(layers, heads, tokens, dim)) + rng.normal(size=(1, 1, tokens, 1)) * 1.5
    logits = q @ k.swapaxes(-1, -2) / np.sqrt(dim)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    return np.rint(probs * ((1 << prob_bits) - 1)).astype(np.int64)


def cascade_token_pruning(probs, keep):
    """SpAtten cascade token pruning.

    Parameters
    ----------
    probs : int64 (layers, heads, tokens, tokens)
        Attention probabilities (query, key) of every layer.
    keep : sequence of int
        Tokens surviving after each layer, non-increasing.

    Returns
    -------
    survivors : list of int64 arrays
        Ascending token indices alive after each layer.
    importance : list of int64 arrays
        The cumulative importance of every token after each layer's accumulation
        (a pruned token keeps the value it had when it was pruned).
    """
    probs = np.asarray(probs, dtype=np.int64)
    layers, _, tokens, _ = probs.shape
    if len(keep) != layers:
        raise ValueError(f"keep needs one count per layer ({layers}), not {len(keep)}")
    alive = np.arange(tokens)
    importance = np.zeros(tokens, dtype=np.int64)
    survivors, ranked = [], []
    for layer, count in enumerate(keep):
        if not 1 <= count <= len(alive):
            raise ValueError(f"layer {layer} keeps {count} tokens but {len(alive)} are alive")
        block = probs[layer][:, alive][:, :, alive]
        importance[alive] += block.sum(axis=(0, 1))
        chosen, _ = topk(importance[alive], count)
        alive = alive[chosen]
        survivors.append(alive.copy())
        ranked.append(importance.copy())
    return survivors, ranked
