# amaranth: UnusedElaboratable=no
"""Grading of lab 5 (top-k and token pruning): the student's threshold filter against
golden.topk.topk and, for one batch, against the top-k engine (rtl.topk.TopK) in the
Amaranth simulator; the cascade against golden.topk.cascade_token_pruning; the keep schedule
and the attention recall against their definitions."""

import math

import numpy as np

from golden.topk import attention_probabilities, cascade_token_pruning, topk
from labs.check import Divergence, Part, StudentError

NUMBER = 5
TITLE = "Top-k and token pruning: a threshold filter, SpAtten's cascade, recall against keep"
FILES = ["token_pruning.py"]

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
    """``recall`` and ``accuracy_curve`` against the golden cascade."""
    recall, curve = files.get("recall"), files.get("accuracy_curve")
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
        raise StudentError(f"accuracy_curve must return {{ratio: recall}} for the ratios "
                           f"{ratios}, not {table!r:.60}")
    for ratio in ratios:
        schedule = [math.ceil(32 * ratio ** ((layer + 1) / 4)) for layer in range(4)]
        want = reference_recall(probs, schedule)
        got = _share(table[ratio], "an accuracy_curve value")
        if abs(got - want) > 1e-9:
            raise Divergence(f"accuracy_curve at keep ratio {ratio} (keep {schedule}): "
                             f"expected {want:.4f}, got {got:.4f}")


PARTS = [
    Part("threshold filter", 3, check_filter, timeout=30),
    Part("engine (RTL)", 2, check_rtl, timeout=120),
    Part("cascade", 2, check_cascade, timeout=30),
    Part("schedule", 1, check_schedule, timeout=30),
    Part("recall curve", 2, check_curve, timeout=60),
]
