# amaranth: UnusedElaboratable=no
"""Grading of lab 5 (top-k and token pruning): the student's threshold filter against
golden.topk.topk and, for one batch, against the top-k engine (rtl.topk.TopK) in the
Amaranth simulator; the cascade against golden.topk.cascade_token_pruning; the keep schedule
and the attention recall against their definitions; the cascade on the trained attention
model's integer graph, and its accuracy against keep ratio, against
golden.onnx.attention.run_pruned."""

import functools
import math

import numpy as np

from golden.topk import attention_probabilities, cascade_token_pruning, topk
from labs.check import Divergence, Part, StudentError

NUMBER = 5
TITLE = "Top-k and token pruning: a threshold filter, SpAtten's cascade, accuracy against keep"
FILES = ["token_pruning.py"]

#: Keep ratios of the trained model's cascade: ceil(8 * ratio) of its 8 tokens survive.
RATIOS = (1.0, 0.75, 0.6, 0.5, 0.25)

#: The engine of the RTL part and its batch: ties across the threshold, negative scores.
ENGINE = {"n_max": 64, "k_max": 8, "par": 4, "score_bits": 12, "signed_scores": True}
RTL_BATCH = ([5, -3, 9, 5, 0, 9, -7, 5, 2, 5, 11, -3, 5, 0, 9, 1, 5, 2, -1, 9, 3, 5, 8],
             6)


def _batches():
    """(name, scores, k): random, ties at the threshold, all equal, monotone, k = 1, k = n,
    k > n, negative and huge scores."""
    rng = np.random.default_rng(5)
    return [
        ("random", rng.integers(-500, 500, size=40), 7),
        ("ties at the threshold", np.array([3, 7, 5, 7, 5, 1, 5, 7, 5, 0]), 4),
        ("all equal", np.full(12, 9), 5),
        ("increasing", np.arange(16), 6),
        ("decreasing", np.arange(16)[::-1].copy(), 6),
        ("k = 1, the largest twice", np.array([4, 8, 2, 8, 8]), 1),
        ("k = n", rng.integers(0, 4, size=9), 9),
        ("k > n", np.array([6, -2, 6, 3]), 7),
        ("negative", rng.integers(-10, -1, size=30), 11),
        ("large", np.array([2**40, -2**41, 2**40 + 1, 7, 2**40]), 2),
    ]


def _selection(files, function, scores, k, what):
    result = files.call(function, scores.copy(), k)
    if not isinstance(result, tuple) or len(result) != 2:
        raise StudentError(f"{what} must return a pair (indices, threshold), not "
                           f"{result!r:.60}")
    indices = np.asarray(result[0])
    if indices.ndim != 1 or (len(indices) and not np.issubdtype(indices.dtype, np.integer)):
        raise StudentError(f"{what}'s indices must be a 1-D int array, not {indices!r:.60}")
    return indices.tolist(), result[1]


def _compare(scores, k, got, threshold, want, want_threshold, what):
    shown = f"scores {scores.tolist()}" if len(scores) <= 24 else f"{len(scores)} scores"
    if got != want:
        wrong = next((i for i in range(max(len(got), len(want)))
                      if i >= len(got) or i >= len(want) or got[i] != want[i]), None)
        raise Divergence(f"{what} (k={k}, {shown}): expected indices {want}, got "
                         f"{got} (first difference at position {wrong})")
    if isinstance(threshold, bool) or threshold != want_threshold:
        raise Divergence(f"{what} (k={k}, {shown}): expected threshold "
                         f"{want_threshold} (the {min(k, len(scores))}-th largest), got "
                         f"{threshold!r}")


def check_filter(files):
    """``threshold_filter`` gives golden.topk.topk's indices and threshold."""
    function = files.own("threshold_filter", "topk")
    for name, scores, k in _batches():
        got, threshold = _selection(files, function, scores, k, "threshold_filter")
        want, want_threshold = topk(scores, k)
        _compare(scores, k, got, threshold, want.tolist(), want_threshold, name)


def engine_selection(scores, k):
    """(indices, threshold) of ``scores`` at ``k`` from rtl.topk.TopK in the Amaranth
    simulator: a configuration word, the score beats, the result beats."""
    from amaranth.sim import Simulator
    from rtl.topk import Config, ScoreBeat, TopK
    engine = TopK(**ENGINE)
    par = engine.par
    layout = ScoreBeat(engine.score_shape, par)
    beats = [layout.const({"score": chunk + [0] * (par - len(chunk)), "count": len(chunk),
                           "last": start + par >= len(scores)})
             for start in range(0, len(scores), par)
             for chunk in [list(scores[start:start + par])]]
    taken = []

    async def testbench(ctx):
        ctx.set(engine.result.ready, 1)
        ctx.set(engine.config.payload, Config(engine.k_max).const({"k": k}))
        ctx.set(engine.config.valid, 1)
        await ctx.tick().until(engine.config.ready)
        ctx.set(engine.config.valid, 0)
        for beat in beats:
            ctx.set(engine.scores.payload, beat)
            ctx.set(engine.scores.valid, 1)
            await ctx.tick().until(engine.scores.ready)
        ctx.set(engine.scores.valid, 0)
        for _ in range(4 * (engine.latency + k + len(beats))):
            if ctx.get(engine.result.valid):
                taken.append(ctx.get(engine.result.payload))
                if taken[-1].last:
                    return
            await ctx.tick()

    simulator = Simulator(engine)
    simulator.add_clock(1e-6)
    simulator.add_testbench(testbench)
    simulator.run()
    if not taken or not taken[-1].last:
        raise StudentError("the top-k engine gave no last index in the simulator")
    return [int(beat.index) for beat in taken], int(taken[0].threshold)


def check_rtl(files):
    """``threshold_filter`` selects what the top-k engine selects, for one batch."""
    function = files.get("threshold_filter")
    scores, k = np.array(RTL_BATCH[0]), RTL_BATCH[1]
    got, threshold = _selection(files, function, scores, k, "threshold_filter")
    want, want_threshold = engine_selection(scores.tolist(), k)
    _compare(scores, k, got, threshold, want, want_threshold,
             "the engine rtl.topk.TopK in the Amaranth simulator")


def check_cascade(files):
    """``cascade`` keeps golden.topk.cascade_token_pruning's survivors, layer by layer."""
    function = files.own("cascade", "cascade_token_pruning", "topk")
    for tokens, heads, layers, keep, seed in ((12, 2, 3, [9, 6, 3], 1),
                                              (24, 3, 4, [16, 12, 8, 4], 11),
                                              (10, 1, 4, [10, 7, 7, 1], 2)):
        probs = attention_probabilities(tokens, heads, layers, prob_bits=4, seed=seed)
        got = files.call(function, probs.copy(), list(keep))
        want, importance = cascade_token_pruning(probs, keep)
        if not isinstance(got, (list, tuple)) or len(got) != layers:
            raise StudentError(f"cascade must return a list of {layers} index arrays, one "
                               f"per layer, not {got!r:.60}")
        for layer in range(layers):
            alive = np.asarray(got[layer]).tolist()
            if alive != want[layer].tolist():
                ranked = importance[layer][want[layer - 1] if layer else slice(None)]
                raise Divergence(f"{tokens} tokens, {heads} head{'s' if heads > 1 else ''}, "
                                 f"keep {keep}: after layer {layer} expected tokens "
                                 f"{want[layer].tolist()}, got {alive} (cumulative importance"
                                 f" of the tokens alive before it: {ranked.tolist()})")


def check_schedule(files):
    """``schedule``: layer l keeps ceil(tokens * ratio ** ((l + 1) / layers))."""
    function = files.get("schedule")
    for tokens, layers, ratio in ((64, 6, 0.5), (24, 4, 0.25), (10, 1, 0.3), (8, 2, 1.0),
                                  (100, 3, 0.1)):
        got = files.call(function, tokens, layers, ratio)
        want = [math.ceil(tokens * ratio ** ((layer + 1) / layers)) for layer in range(layers)]
        if not isinstance(got, (list, tuple)) or list(got) != want:
            raise Divergence(f"schedule(tokens={tokens}, layers={layers}, ratio={ratio}): "
                             f"expected {want}, got {got!r:.80}")


def reference_recall(probs, keep):
    received = probs[-1].sum(axis=(0, 1))
    survivors, _ = cascade_token_pruning(probs, keep)
    return float(received[survivors[-1]].sum() / received.sum())


def _share(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise StudentError(f"{what} must be a number, not {value!r:.60}")
    return float(value)


def check_curve(files):
    """``recall`` and ``recall_curve`` against the golden cascade."""
    recall, curve = files.get("recall"), files.get("recall_curve")
    probs = attention_probabilities(tokens=32, heads=2, layers=4, seed=3)
    keep = [24, 16, 12, 6]
    got = _share(files.call(recall, probs.copy(), keep), "recall")
    want = reference_recall(probs, keep)
    if abs(got - want) > 1e-9:
        raise Divergence(f"recall(32 tokens, 2 heads, 4 layers, keep {keep}): expected "
                         f"{want:.4f}, got {got:.4f}")
    ratios = (1.0, 0.5, 0.2)
    table = files.call(curve, probs.copy(), ratios)
    if not isinstance(table, dict) or set(table) != set(ratios):
        raise StudentError(f"recall_curve must return {{ratio: recall}} for the ratios "
                           f"{ratios}, not {table!r:.60}")
    for ratio in ratios:
        schedule = [math.ceil(32 * ratio ** ((layer + 1) / 4)) for layer in range(4)]
        want = reference_recall(probs, schedule)
        got = _share(table[ratio], "a recall_curve value")
        if abs(got - want) > 1e-9:
            raise Divergence(f"recall_curve at keep ratio {ratio} (keep {schedule}): "
                             f"expected {want:.4f}, got {got:.4f}")


@functools.cache
def trained_graph():
    """The attention model trained without pruning, as golden.onnx.attention gives it."""
    try:
        from golden.onnx.attention import digits_attention
        return digits_attention(False)
    except ImportError as error:
        raise StudentError(f"the trained model needs onnx, onnxruntime and scikit-learn "
                           f"({error.name} is missing): pip install -e '.[labs]'") from None


def _keep(ratio, layers):
    """The cascade of keep ``ratio`` on 8 tokens (as ``schedule``), and its description."""
    keep = [math.ceil(8 * ratio ** ((layer + 1) / layers)) for layer in range(layers)]
    return keep, f"keep ratio {ratio} (tokens kept after each layer {keep})"


def _pruned_run(files, function, graph, images, keep):
    """The student's ``(logits, survivors)``, checked for shape."""
    got = files.call(function, graph, images.copy(), list(keep))
    if not isinstance(got, tuple) or len(got) != 2:
        raise StudentError(f"prune_tokens must return a pair (logits, survivors), not "
                           f"{got!r:.60}")
    logits, survivors = np.asarray(got[0]), got[1]
    if logits.shape != (len(images), 10):
        raise StudentError(f"prune_tokens' logits must be ({len(images)}, 10), not of shape "
                           f"{logits.shape}")
    if not isinstance(survivors, (list, tuple)) or len(survivors) != len(keep) or any(
            np.shape(alive) != (len(images), count) for alive, count in zip(survivors, keep)):
        raise StudentError(f"prune_tokens' survivors must be a list of {len(keep)} arrays, "
                           f"layer l's of shape ({len(images)}, keep[l]), for keep {keep}")
    return logits, [np.asarray(alive) for alive in survivors]


def _row(values):
    return "[" + ", ".join(f"{value:.3f}" for value in values) + "]"


def check_model(files):
    """``prune_tokens`` on the trained model's integer graph keeps run_pruned's tokens of
    every test image after every layer, and gives its logits."""
    from golden.onnx.attention import run_pruned
    function = files.own("prune_tokens", "run_pruned", "topk", "cascade_token_pruning")
    graph, images, _ = trained_graph()
    layers = sum(1 for op in graph.ops if op.kind == "softmax")
    for ratio in RATIOS:
        keep, shown = _keep(ratio, layers)
        want_logits, want, probabilities, _ = run_pruned(graph, images, keep)
        logits, survivors = _pruned_run(files, function, graph, images, keep)
        for layer in range(layers):
            wrong = np.flatnonzero((survivors[layer] != want[layer]).any(axis=1))
            if len(wrong):
                image = wrong[0]
                before = want[layer - 1][image] if layer else np.arange(8)
                importance = sum(p[image].sum(axis=0) for p in probabilities[:layer + 1])
                raise Divergence(f"{shown}: after layer {layer}, test image {image}: expected "
                                 f"tokens {want[layer][image].tolist()}, got "
                                 f"{survivors[layer][image].tolist()} (cumulative importance "
                                 f"of its tokens {before.tolist()}: "
                                 f"{importance[before].tolist()})")
        wrong = np.flatnonzero((logits != want_logits).any(axis=1))
        if len(wrong):
            image = wrong[0]
            raise Divergence(f"{shown}: test image {image} (its survivors right): expected "
                             f"logits {_row(want_logits[image])}, got {_row(logits[image])} "
                             f"(are the pruned tokens cut from each layer's output?)")


def check_accuracy(files):
    """``accuracy_curve`` on the trained model gives run_pruned's test accuracy at each keep
    ratio."""
    from golden.onnx.attention import run_pruned
    function = files.get("accuracy_curve")
    graph, images, labels = trained_graph()
    layers = sum(1 for op in graph.ops if op.kind == "softmax")
    table = files.call(function, graph, images.copy(), labels.copy(), RATIOS)
    if not isinstance(table, dict) or set(table) != set(RATIOS):
        raise StudentError(f"accuracy_curve must return {{ratio: accuracy}} for the ratios "
                           f"{RATIOS}, not {table!r:.60}")
    for ratio in RATIOS:
        keep, shown = _keep(ratio, layers)
        logits, *_ = run_pruned(graph, images, keep)
        want = float((logits.argmax(axis=1) == labels).mean())
        got = _share(table[ratio], "an accuracy_curve value")
        if abs(got - want) > 1e-9:
            raise Divergence(f"accuracy_curve at {shown}, {len(images)} test images: "
                             f"expected {want:.4f}, got {got:.4f}")


PARTS = [
    Part("threshold filter", 3, check_filter, timeout=30),
    Part("engine (RTL)", 2, check_rtl, timeout=120),
    Part("cascade", 2, check_cascade, timeout=30),
    Part("schedule", 1, check_schedule, timeout=30),
    Part("recall curve", 2, check_curve, timeout=60),
    Part("trained model", 3, check_model, timeout=120),
    Part("accuracy curve", 1, check_accuracy, timeout=120),
]
