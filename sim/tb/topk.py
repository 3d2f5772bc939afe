"""cocotb tests of the top-k engine (rtl.topk.TopK) against golden.topk.

Parameters: :data:`PARAMS`, each with its default for the engine under test.
"""

import json
import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from amaranth import signed, unsigned

from golden.topk import attention_probabilities, batch_cycles, cascade_token_pruning, topk
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
#: construction and ``latency`` (``TopK.latency``, for the cycle model), the seed of the
#: stalls, ``batches`` (each {name, scores, k, stall}), ``cascade`` ({probs, keep}: the
#: SpAtten example), and the benchmark's ``repeats`` of each batch and output file (relative
#: to the run's directory).
PARAMS = {
    "par": lambda engine: engine.par,
    "score_bits": lambda engine: engine.score_bits,
    "signed": lambda engine: engine.signed_scores,
    "index_bits": lambda engine: engine.index_bits,
    "k_max": lambda engine: engine.k_max,
    "latency": lambda engine: engine.latency,
    "seed": 1,
    "batches": default_batches,
    "cascade": default_cascade,
    "repeats": 4,
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
        self.score_cycles, self.result_cycles = [], []

    def watch(self, dut):
        if dut.scores__valid.value and dut.scores__ready.value:
            self.score_cycles.append(self.cycle)
        if dut.result__valid.value and dut.result__ready.value:
            self.result_cycles.append(self.cycle)

    def results(self, words, count):
        """``words`` (result payloads) as (indices, threshold) of a batch of ``count``."""
        layout = ResultBeat(self.p["index_bits"], score_shape(self.p))
        beats = [layout.from_bits(word) for word in words]
        lasts = [beat.last for beat in beats]
        assert lasts == [0] * (count - 1) + [1], f"last flags {lasts}"
        thresholds = {beat.threshold for beat in beats}
        assert len(thresholds) == 1, f"the threshold changed during the output: {thresholds}"
        return np.array([beat.index for beat in beats]), thresholds.pop()

    async def select_all(self, batches, k_now):
        """Run ``batches`` (each {scores, k}) back to back: a configuration before each batch
        whose ``k`` differs from the one before (``k_now`` before the first), each batch's
        first beat offered right after the last beat of the one before, while its indices
        are still coming out. Returns, per batch, (indices, threshold, timing): the cycles
        its first and last score beats and its first and last indices were taken."""
        p = self.p
        self.score_cycles, self.result_cycles = [], []
        already = len(self.sink.received)

        async def send():
            k = k_now
            for batch in batches:
                if batch["k"] != k:
                    k = batch["k"]
                    await self.config.send(config_word(k, p))
                await self.scores.send_all(score_beats(batch["scores"], p))
        sender = cocotb.start_soon(send())
        self.tasks.append(sender)
        counts = [min(batch["k"], len(batch["scores"])) for batch in batches]
        out = await self.sink.wait_for(already + sum(counts), timeout_cycles=1_000_000)
        await sender
        while len(self.result_cycles) < sum(counts):    # the watch of the final edge
            await RisingEdge(self.dut.clk)
        selected, beat, index = [], 0, already
        for batch, count in zip(batches, counts):
            beats = -(-len(batch["scores"]) // p["par"])
            scores = self.score_cycles[beat:beat + beats]
            results = self.result_cycles[index - already:index - already + count]
            timing = {"first_score": scores[0], "last_score": scores[-1],
                      "first_index": results[0], "last_index": results[-1]}
            selected.append((*self.results(out[index:index + count], count), timing))
            beat, index = beat + beats, index + count
        return selected

    async def select(self, scores, k):
        """Run one batch after a configuration word; return (indices, threshold)."""
        p = self.p
        await self.config.send(config_word(k, p))
        already = len(self.sink.received)
        sender = cocotb.start_soon(self.scores.send_all(score_beats(scores, p)))
        self.tasks.append(sender)
        count = min(k, len(scores))
        out = await self.sink.wait_for(already + count, timeout_cycles=100_000)
        await sender
        return self.results(out[already:], count)


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
        indices, threshold = await driver.select(batch["scores"], batch["k"])
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
    indices, threshold = await driver.select(batch["scores"], batch["k"])
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
    indices, threshold = await driver.select(scores, 2)
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
        chosen, _ = await driver.select(scores.tolist(), count)
        alive = alive[chosen]
        assert alive.tolist() == survivors[layer].tolist(), f"layer {layer}"


def one_beat_batches(p):
    """Two batches of one beat each (the first ``par`` scores of the first batch, its k): a
    first beat that is also the last, held while the indices before it are owed."""
    first = p["batches"][0]
    return [{"name": f"one beat {i}", "scores": first["scores"][:p["par"]], "k": first["k"]}
            for i in range(2)]


@cocotb.test()
async def overlapped_batches(dut):
    """Every batch of ``params["batches"]`` and two of one beat, back to back under random
    stalls of every stream (30%): the next batch's scores go in while a batch's indices come
    out, and every batch is selected exactly. Fails if no batch overlapped its predecessor's
    output."""
    p = params()
    start_clock(dut)
    await reset(dut)
    driver = TopKDriver(dut, random.Random(p["seed"]), stall=0.3)
    batches = p["batches"] + one_beat_batches(p)
    selected = await driver.select_all(batches, p["k_max"])
    for batch, (indices, threshold, _) in zip(batches, selected):
        check(indices, threshold, batch["scores"], batch["k"], batch["name"])
    timing = [t for _, _, t in selected]
    overlapped = sum(after["first_score"] <= before["last_index"]
                     for before, after in zip(timing, timing[1:]))
    assert overlapped, f"no batch went in while the one before came out: {timing}"


@cocotb.test()
async def cycle_model_exact(dut):
    """Every batch of ``params["batches"]`` and two of one beat, back to back with an ideal
    source and sink, takes the cycles ``golden.topk.batch_cycles`` predicts: the first and
    last score beat and index of each."""
    p = params()
    start_clock(dut)
    await reset(dut)
    driver = TopKDriver(dut, random.Random(0))
    batches = p["batches"] + one_beat_batches(p)
    selected = await driver.select_all(batches, p["k_max"])
    measured = [t for _, _, t in selected]
    model = batch_cycles([(len(b["scores"]), b["k"]) for b in batches], p["par"],
                         p["k_max"], p["latency"])
    origin = measured[0]["first_score"] - model[0]["first_score"]
    shifted = [{name: cycle - origin for name, cycle in t.items()} for t in measured]
    for batch, got, want in zip(batches, shifted, model):
        assert got == want, f"{batch['name']}: RTL {got}, model {want}"


@cocotb.test()
async def benchmark(dut):
    """Time every batch, ``params["repeats"]`` times back to back (the same scores), with an
    ideal source and sink; write each batch's timing of every repeat to ``params["out"]``."""
    p = params()
    start_clock(dut)
    await reset(dut)
    results = []
    k_now = p["k_max"]
    for batch in p["batches"]:
        driver = TopKDriver(dut, random.Random(0))
        selected = await driver.select_all([batch] * p["repeats"], k_now)
        driver.abort()
        k_now = batch["k"]
        for indices, threshold, _ in selected:
            check(indices, threshold, batch["scores"], batch["k"], batch["name"])
        results.append({"name": batch["name"], "repeats": [t for _, _, t in selected]})
    with open(p["out"], "w") as out:
        json.dump(results, out)
