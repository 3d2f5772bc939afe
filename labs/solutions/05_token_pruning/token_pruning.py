"""Lab 5: top-k as a threshold filter, and SpAtten's cascade token pruning.

Reference solution. The student's starter is labs/05_token_pruning/token_pruning.py.
"""

import math

import numpy as np

from golden.onnx.attention import TOKENS, digits_attention, graph_tensor
from golden.topk import attention_probabilities


def threshold_filter(scores, k):
    """The ``k`` largest of ``scores`` as the top-k engine gives them.

    The threshold is the ``k``-th largest score (the smallest score when ``k`` is at least
    the batch's length). Every score above it is selected; of the scores equal to it, the
    lowest indices, as many as are still needed to make ``k``.

    Returns
    -------
    (indices, threshold)
        The selected indices in ascending order (an int array of ``min(k, len(scores))``),
        and the threshold.
    """
    scores = np.asarray(scores)
    k = min(k, len(scores))
    threshold = int(np.sort(scores)[::-1][k - 1])
    above = scores > threshold
    ties = np.flatnonzero(scores == threshold)[:k - np.count_nonzero(above)]
    selected = above.copy()
    selected[ties] = True
    return np.flatnonzero(selected), threshold


def cascade(probs, keep):
    """SpAtten's cascade token pruning: the tokens alive after each layer.

    ``probs`` is ``(layers, heads, tokens, tokens)`` (query, key) integer attention
    probabilities. In layer ``l`` each token alive gets, added to its cumulative importance,
    the probability it receives as a key from every alive query of every head; then the
    ``keep[l]`` most important alive tokens survive (``threshold_filter``). A pruned token is
    never revived. Returns a list of ascending index arrays, one per layer.
    """
    probs = np.asarray(probs)
    alive = np.arange(probs.shape[2])
    importance = np.zeros(probs.shape[2], dtype=np.int64)
    survivors = []
    for layer, count in enumerate(keep):
        block = probs[layer][:, alive][:, :, alive]
        importance[alive] += block.sum(axis=(0, 1))
        chosen, _ = threshold_filter(importance[alive], count)
        alive = alive[chosen]
        survivors.append(alive)
    return survivors


def schedule(tokens, layers, ratio):
    """Tokens kept after each layer for a final keep ``ratio``: a geometric cascade, layer
    ``l`` (from 0) keeping ``ceil(tokens * ratio ** ((l + 1) / layers))``."""
    return [math.ceil(tokens * ratio ** ((layer + 1) / layers)) for layer in range(layers)]


def recall(probs, keep):
    """The share of the last layer's attention, computed without pruning (every head and
    query), that falls on the tokens the cascade keeps to the end."""
    probs = np.asarray(probs)
    received = probs[-1].sum(axis=(0, 1))
    return float(received[cascade(probs, keep)[-1]].sum() / received.sum())


def recall_curve(probs, ratios):
    """``{ratio: recall}`` of the cascade ``schedule`` of each keep ratio."""
    layers, _, tokens, _ = np.shape(probs)
    return {ratio: recall(probs, schedule(tokens, layers, ratio)) for ratio in ratios}


def prune_tokens(graph, images, keep):
    """Run the integer attention ``graph`` on ``images`` (n, 8, 8) with cascade token
    pruning: after layer ``l``, the ``keep[l]`` alive tokens of each image with the largest
    cumulative importance (the uint8 probability each has received as a key from the alive
    queries of every layer so far) survive (``threshold_filter``); the others are cut from
    the layer's output, so the later layers and the pooling never see them.

    Returns
    -------
    (logits, survivors)
        The float logits (n, 10), and per layer an (n, keep[l]) int array of each image's
        surviving tokens, ascending.
    """
    layers = len(keep)
    probs_name = [graph_tensor(graph, f"p{layer}") for layer in range(layers)]
    out_name = [graph_tensor(graph, f"h{layer + 1}") for layer in range(layers)]
    (name, _, dtype), = graph.inputs
    env = {name: np.asarray(images, dtype=dtype)}
    n = len(images)
    rows = np.arange(n)[:, None]
    alive = np.tile(np.arange(TOKENS), (n, 1))
    importance = np.zeros((n, TOKENS), dtype=np.int64)
    layer, survivors = 0, []
    for op in graph.ops:
        env[op.output] = op(*(env[i] for i in op.inputs))
        if layer == layers:
            continue
        if op.output == probs_name[layer]:          # (n, alive, alive): query, key
            importance[rows, alive] += env[op.output].sum(axis=1)
        elif op.output == out_name[layer]:          # (n, alive, width): the layer's output
            chosen = np.stack([threshold_filter(importance[i, alive[i]], keep[layer])[0]
                               for i in range(n)])
            alive = alive[rows, chosen]
            env[op.output] = env[op.output][rows, chosen]
            survivors.append(alive)
            layer += 1
    (out, out_dtype), = graph.outputs
    return env[out].astype(out_dtype), survivors


def accuracy_curve(graph, images, labels, ratios):
    """``{ratio: accuracy}``: the share of ``images`` classified as their ``labels`` with the
    cascade ``schedule`` of each keep ratio (``prune_tokens``)."""
    layers = sum(1 for op in graph.ops if op.kind == "softmax")
    curve = {}
    for ratio in ratios:
        logits, _ = prune_tokens(graph, images, schedule(TOKENS, layers, ratio))
        curve[ratio] = float((logits.argmax(axis=1) == labels).mean())
    return curve


if __name__ == "__main__":
    probs = attention_probabilities(tokens=64, heads=4, layers=6, seed=0)
    for ratio, value in recall_curve(probs, (1.0, 0.75, 0.5, 0.25, 0.1)).items():
        print(f"keep {ratio:5.0%}: {value:.1%} of the last layer's attention kept")
    ratios = (1.0, 0.75, 0.5, 0.25)
    curves = {pruning: accuracy_curve(*digits_attention(pruning), ratios)
              for pruning in (False, True)}
    print("\ntrained attention model (2 layers), 360 held-out digits:")
    for ratio in ratios:
        print(f"keep {ratio:5.0%} (tokens after each layer {schedule(TOKENS, 2, ratio)}): "
              f"accuracy {curves[False][ratio]:.1%} trained without pruning, "
              f"{curves[True][ratio]:.1%} with pruning")
