"""Top-k selection and SpAtten cascade token pruning (docs/design.md 3.4).

:func:`topk` selects the ``k`` largest of ``n`` scores, ties broken toward the
lower index, and returns the selected indices in ascending index order (token
order is kept) with the k-th largest score, the threshold. A batch of fewer than
``k`` scores returns all of them and its smallest score, as the engine does
(docs/topk.md).

:func:`cascade_token_pruning` is SpAtten's cascade token pruning on integer
attention probabilities: every layer adds, for every surviving token, the
attention probability it receives (summed over heads and surviving queries) to
its cumulative importance, then keeps the ``keep[l]`` most important survivors.
A pruned token is never revived.

:func:`batch_cycles` is the engine's exact cycle model (``rtl/topk.py``, docs/topk.md
Timing) for back-to-back batches from a source that always has the next word and a sink
that always takes a beat: every score beat is taken in the cycle it is offered, except a
batch's last beat, which waits until the cycle after the previous batch's last index is
taken; a configuration word, sent before a batch whose ``k`` differs from the one before it
(``k_max`` before the first batch), takes one cycle. The first index of a batch of ``n``
scores is offered ``latency + min(k, n)`` cycles after its last beat is taken, and the
indices follow one per cycle.
"""

import numpy as np

from golden.checks import integer, integer_array

__all__ = ["topk", "batch_cycles", "attention_probabilities", "cascade_token_pruning"]


def topk(scores, k):
    """``(indices, threshold)``: the ``k`` largest scores, lower index first on ties.

    ``scores`` is a 1-D array of at least one whole number (int64 range); ``k`` is a
    positive integer. ``indices`` is int64 and ascending, ``min(k, n)`` of them;
    ``threshold`` is the ``min(k, n)``-th largest score (with ``k >= n``, the smallest).
    """
    scores = integer_array("scores", scores, ndim=1)
    if not len(scores):
        raise ValueError("scores must hold at least one score, not an empty batch")
    k = min(integer("k", k, 1), len(scores))
    # Order by score descending, then index ascending: a lexicographic sort. ``~s``
    # (``-s - 1``) orders like ``-s`` and, unlike it, does not overflow at -2^63.
    order = np.lexsort((np.arange(len(scores)), ~scores))
    return np.sort(order[:k]).astype(np.int64), int(scores[order[k - 1]])


def batch_cycles(batches, par, k_max, latency):
    """When the engine takes each batch's words and gives its indices (see the module).

    Parameters
    ----------
    batches : sequence of (n, k)
        Scores in each batch (1 or more) and its ``k`` (1..k_max).
    par : int
        Scores per beat, at least 1.
    k_max : int
        The engine's largest ``k`` (its ``k`` after reset), at least 1.
    latency : int
        ``TopK.latency``: cycles from a batch's last beat taken to its first index offered,
        less ``min(k, n)`` (the index sort's rounds); at least 1.

    Returns
    -------
    list of dict
        Per batch, cycle numbers counted from 0, the first cycle the source offers a word:
        ``first_score`` and ``last_score`` (its first and last beats taken),
        ``first_index`` and ``last_index`` (its first and last indices taken).
    """
    par = integer("par", par, 1)
    k_max = integer("k_max", k_max, 1)
    latency = integer("latency", latency, 1)
    cycle, k_now, free, timing = 0, k_max, 0, []
    for number, (n, k) in enumerate(batches):
        n = integer(f"batches[{number}] n", n, 1)
        k = integer(f"batches[{number}] k", k, 1, k_max)
        if k != k_now:
            cycle, k_now = cycle + 1, k
        beats = -(-n // par)
        last = max(cycle + beats - 1, free)
        first = cycle if beats > 1 else last
        selected = min(k, n)
        first_index = last + latency + selected
        timing.append({"first_score": first, "last_score": last, "first_index": first_index,
                       "last_index": first_index + selected - 1})
        cycle, free = last + 1, first_index + selected
    return timing


def attention_probabilities(tokens, heads, layers, dim=8, prob_bits=8, seed=0):
    """Integer attention probabilities of a small random transformer.

    Returns an int64 array ``(layers, heads, tokens, tokens)`` of softmax
    probabilities (query, key) quantized to unsigned ``prob_bits`` bits, the
    format a SpAtten accelerator accumulates. Every argument is an integer: the sizes
    at least 1, ``prob_bits`` 1..32, ``seed`` at least 0.
    """
    tokens, heads, layers, dim = (integer(name, value, 1) for name, value in
                                  (("tokens", tokens), ("heads", heads), ("layers", layers),
                                   ("dim", dim)))
    prob_bits = integer("prob_bits", prob_bits, 1, 32)
    seed = integer("seed", seed, 0)
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
        Attention probabilities (query, key) of every layer, whole numbers 0..2^32-1;
        at least one of each dimension.
    keep : sequence of int
        Tokens surviving after each layer, non-increasing, at least 1.

    Returns
    -------
    survivors : list of int64 arrays
        Ascending token indices alive after each layer.
    importance : list of int64 arrays
        The cumulative importance of every token after each layer's accumulation
        (a pruned token keeps the value it had when it was pruned).
    """
    probs = integer_array("probs", probs, 0, (1 << 32) - 1, ndim=4)
    layers, heads, tokens, keys = probs.shape
    if not (layers and heads and tokens) or keys != tokens:
        raise ValueError(f"probs must be (layers, heads, tokens, tokens), each at least 1, "
                         f"not of shape {probs.shape}")
    keep = integer_array("keep", keep, ndim=1)
    if len(keep) != layers:
        raise ValueError(f"keep needs one count per layer ({layers}), not {len(keep)}")
    alive = np.arange(tokens)
    importance = np.zeros(tokens, dtype=np.int64)
    survivors, ranked = [], []
    for layer, count in enumerate(keep):
        if not 1 <= count <= len(alive):
            raise ValueError(f"keep[{layer}] must be between 1 and the {len(alive)} tokens "
                             f"alive, not {count}")
        block = probs[layer][:, alive][:, :, alive]
        importance[alive] += block.sum(axis=(0, 1))
        chosen, _ = topk(importance[alive], count)
        alive = alive[chosen]
        survivors.append(alive.copy())
        ranked.append(importance.copy())
    return survivors, ranked
