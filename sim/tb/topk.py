"""cocotb tests of the top-k engine (rtl.topk.TopK) against golden.topk.

Parameters: :data:`PARAMS`, each with its default for the engine under test.
"""

import json
import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from amaranth import signed, unsigned

from golden.topk import attention_probabilities, cascade_token_pruning, topk
from rtl.topk import Config, ResultBeat, ScoreBeat
from sim.runner import params
from sim.streams import EngineDriver, reset, start_clock


def default_batches(engine, seed=5):
    """Batches of at most ``n_max`` scores in the engine's range: random, all equal, strictly
    increasing and decreasing, ties, k = 1, k = n, and a run-time k below the maximum."""
    rng = np.random.default_rng(seed)
    bits = engine.score_bits
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if engine.signed_scores else \
        (0, (1 << bits) - 1)
    k_max, n = engine.k_max, engine.n_max

    def batch(name, scores, k, stall=0.0):
        return {"name": name, "scores": [int(s) for s in scores][:n], "k": k, "stall": stall}

    def scores(count):
        return rng.integers(lo, hi, endpoint=True, size=min(count, n))
    ramp = min(64, n, hi - lo + 1)
    return [
        batch("random", scores(100), min(10, k_max), 0.3),
        batch("all equal", [min(7, hi)] * 37, min(5, k_max)),
        batch("strictly increasing", lo + np.arange(ramp), k_max),
        batch("strictly decreasing", hi - np.arange(ramp), k_max, 0.2),
        batch("ties", rng.integers(lo, min(lo + 4, hi + 1), size=50), min(7, k_max), 0.2),
        batch("k = 1", scores(33), 1),
        batch("k = n", scores(k_max), k_max, 0.3),
        batch("run-time k below the maximum", scores(45), min(3, k_max)),
    ]


def default_cascade(engine, layers=4, heads=3):
    """SpAtten cascade token pruning over up to 24 tokens (fewer when the scores are too narrow
    to hold their sums): attention probabilities with as many bits as keep every cumulative
    importance within the scores, and the tokens kept after each layer (2/3, 1/2, 1/3 and 1/6
    of them, at least 1, at most ``k_max``)."""
    magnitude_bits = engine.score_bits - engine.signed_scores
    tokens = min(24, engine.n_max)
    while tokens > 1 and (layers * heads * tokens).bit_length() >= magnitude_bits:
        tokens -= 1
    room = magnitude_bits - (layers * heads * tokens).bit_length()
    probs = attention_probabilities(tokens, heads, layers, prob_bits=max(1, room), seed=11)
    keep = [max(1, min(engine.k_max, tokens * sixths // 6)) for sixths in (4, 3, 2, 1)]
    return {"probs": probs.tolist(), "keep": keep}


#: Parameters (sim.runner.params) and their defaults for the engine under test: its
#: construction, the seed of the stalls, ``batches`` (each {name, scores, k, stall}),
#: ``cascade`` ({probs, keep}: the SpAtten example) and the benchmark's output file
#: (relative to the run's directory).
PARAMS = {
    "par": lambda engine: engine.par,
    "score_bits": lambda engine: engine.score_bits,
    "signed": lambda engine: engine.signed_scores,
    "index_bits": lambda engine: engine.index_bits,
    "k_max": lambda engine: engine.k_max,
    "seed": 1,
    "batches": default_batches,
    "cascade": default_cascade,
    "out": "benchmark.json",
}


def score_shape(p):
    return signed(p["score_bits"]) if p["signed"] else unsigned(p["score_bits"])


def score_beats(scores, p):
    """Scores as :class:`rtl.topk.ScoreBeat` words: ``par`` lanes, the valid count and ``last``."""
    par = p["par"]
    layout = ScoreBeat(score_shape(p), par)
    beats = []
    for start in range(0, len(scores), par):
        chunk = [int(s) for s in scores[start:start + par]]
        beats.append(layout.const({"score": chunk + [0] * (par - len(chunk)),
                                   "count": len(chunk),
                                   "last": start + par >= len(scores)}).as_bits())
    return beats


def config_word(k, p):
    """``k`` as a :class:`rtl.topk.Config` word."""
    return Config(p["k_max"]).const({"k": k}).as_bits()


class TopKDriver(EngineDriver):
    def __init__(self, dut, rng, stall=0.0):
        super().__init__(dut, ("config", "scores"), rng, stall)
        self.p = params()

    def watch(self, dut):
        if dut.scores__valid.value and dut.scores__ready.value:
            self.marks.setdefault("first_score", self.cycle)
            self.marks["last_score"] = self.cycle
        if dut.result__valid.value and dut.result__ready.value:
            self.marks["last_result"] = self.cycle

    async def select(self, scores, k):
        """Run one batch; return (indices, threshold, timing marks)."""
        p = self.p
        await self.config.send(config_word(k, p))
        self.marks = {}
        already = len(self.sink.received)
        sender = cocotb.start_soon(self.scores.send_all(score_beats(scores, p)))
        self.tasks.append(sender)
        count = min(k, len(scores))
        out = await self.sink.wait_for(already + count, timeout_cycles=100_000)
        await sender
        layout = ResultBeat(p["index_bits"], score_shape(p))
        beats = [layout.from_bits(beat) for beat in out[already:]]
        lasts = [beat.last for beat in beats]
        assert lasts == [0] * (count - 1) + [1], f"last flags {lasts}"
        indices = [beat.index for beat in beats]
        thresholds = {beat.threshold for beat in beats}
        assert len(thresholds) == 1, f"the threshold changed during the output: {thresholds}"
        return np.array(indices), thresholds.pop(), dict(self.marks)


def check(indices, threshold, scores, k, what):
    want, want_threshold = topk(np.array(scores), k)
    assert indices.tolist() == want.tolist() and threshold == want_threshold, \
        f"{what}: got {indices.tolist()[:12]} / {threshold}, want {want.tolist()[:12]} / {want_threshold}"


@cocotb.test()
async def batches_bit_exact(dut):
    """Every batch of ``params["batches"]`` (random, ties, monotone, negative, k = 1..n),
    then, with ``k_max`` of 2 or more, a batch of ``k_max - 1`` scores at ``k = k_max``
    (fewer scores than k: all of them come back, with the smallest as the threshold)."""
    p = params()
    start_clock(dut)
    await reset(dut)
    short = []
    if p["k_max"] >= 2:
        scores = p["batches"][0]["scores"][:p["k_max"] - 1]
        short.append({"name": "fewer scores than k", "scores": scores, "k": p["k_max"]})
    for batch in p["batches"] + short:
        driver = TopKDriver(dut, random.Random(p["seed"]), stall=batch.get("stall", 0.0))
        indices, threshold, _ = await driver.select(batch["scores"], batch["k"])
        driver.abort()
        check(indices, threshold, batch["scores"], batch["k"], batch["name"])


@cocotb.test()
async def reset_mid_batch_then_clean_batch(dut):
    """A reset while a batch streams in leaves an engine that selects the next batch exactly."""
    p = params()
    start_clock(dut)
    await reset(dut)
    batch = p["batches"][0]
    driver = TopKDriver(dut, random.Random(1))
    task = cocotb.start_soon(driver.select(batch["scores"], batch["k"]))
    for _ in range(len(batch["scores"]) // (2 * p["par"]) + 2):
        await RisingEdge(dut.clk)
    task.cancel()
    driver.abort()
    await reset(dut)
    assert not dut.result__valid.value and not dut.error.value
    driver = TopKDriver(dut, random.Random(2), stall=0.3)
    indices, threshold, _ = await driver.select(batch["scores"], batch["k"])
    check(indices, threshold, batch["scores"], batch["k"], "after reset")


@cocotb.test()
async def k_out_of_range_sets_error(dut):
    """k = 0 or k > k_max is refused with ``error``; the engine keeps working."""
    p = params()
    start_clock(dut)
    await reset(dut)
    driver = TopKDriver(dut, random.Random(3))
    for bad in (0, p["k_max"] + 1):
        if bad.bit_length() > Config(p["k_max"]).size:
            continue
        await driver.config.send(config_word(bad, p))
        await RisingEdge(dut.clk)
        assert dut.error.value, bad
        await reset(dut)
    scores = [(-1) ** i * i for i in range(3 * p["par"] + 1)]
    scores = [s if p["signed"] else abs(s) for s in scores]
    indices, threshold, _ = await driver.select(scores, 2)
    check(indices, threshold, scores, 2, "after error")


@cocotb.test()
async def spatten_cascade_token_pruning(dut):
    """Layer by layer, the engine picks the surviving tokens from the cumulative importance."""
    p = params()
    probs = np.array(p["cascade"]["probs"])
    keep = p["cascade"]["keep"]
    survivors, importance = cascade_token_pruning(probs, keep)
    start_clock(dut)
    await reset(dut)
    alive = np.arange(probs.shape[2])
    driver = TopKDriver(dut, random.Random(4), stall=0.2)
    for layer, count in enumerate(keep):
        scores = importance[layer][alive]
        chosen, _, _ = await driver.select(scores.tolist(), count)
        alive = alive[chosen]
        assert alive.tolist() == survivors[layer].tolist(), f"layer {layer}"


@cocotb.test()
async def benchmark(dut):
    """Time every batch with an ideal source and sink; write the marks to ``params["out"]``."""
    p = params()
    start_clock(dut)
    await reset(dut)
    results = []
    for batch in p["batches"]:
        driver = TopKDriver(dut, random.Random(0))
        indices, threshold, marks = await driver.select(batch["scores"], batch["k"])
        driver.abort()
        check(indices, threshold, batch["scores"], batch["k"], batch["name"])
        results.append({"name": batch["name"], **marks})
    with open(p["out"], "w") as out:
        json.dump(results, out)
