"""cocotb tests of the top-k engine (rtl.topk.TopK) against golden.topk.

Parameters (sim.runner.params): par, score_bits, signed, index_bits, value_bits, k_max, seed,
``batches`` (a list of {name, scores, k, stall}), ``cascade`` (probs and keep for the SpAtten
example) and ``out`` (a JSON file for the benchmark's timings).
"""

import json
import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from amaranth import signed, unsigned

from golden.topk import cascade_token_pruning, topk
from rtl.topk import Config, ResultBeat, ScoreBeat
from sim.runner import params
from sim.streams import EngineDriver, reset, start_clock


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
