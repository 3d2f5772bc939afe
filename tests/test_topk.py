# amaranth: UnusedElaboratable=no
"""The top-k engine, as generated Verilog under cocotb, against golden.topk."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.topk import attention_probabilities
from rtl.topk import ScoreBeat, TopK
from sim.runner import run, simulator_available

ICARUS = pytest.mark.skipif(not simulator_available("icarus"),
                            reason="Icarus Verilog (iverilog) is not installed")


def engine_params(engine, batches, seed=1, **extra):
    return {"par": engine.par, "score_bits": engine.score_bits, "signed": engine.signed_scores,
            "index_bits": engine.index_bits, "k_max": engine.k_max, "seed": seed,
            "batches": batches, **extra}


def batches(engine, seed=5):
    rng = np.random.default_rng(seed)
    lo = -(1 << (engine.score_bits - 1)) if engine.signed_scores else 0
    hi = (1 << (engine.score_bits - 1)) - 1 if engine.signed_scores else (1 << engine.score_bits) - 1
    k_max = engine.k_max

    def batch(name, scores, k, stall=0.0):
        return {"name": name, "scores": [int(s) for s in scores], "k": k, "stall": stall}
    small = 0 if not engine.signed_scores else -9
    n = min(100, engine.n_max)
    return [
        batch("random", rng.integers(lo, hi, endpoint=True, size=n), min(10, k_max), 0.3),
        batch("all equal", [7] * 37, min(5, k_max)),
        batch("strictly increasing", np.arange(min(64, n)) + small, k_max),
        batch("strictly decreasing", 60 - np.arange(min(61, n)), k_max, 0.2),
        batch("ties", rng.integers(small, small + 4, size=50), min(7, k_max), 0.2),
        batch("k = 1", rng.integers(lo, hi, endpoint=True, size=33), 1),
        batch("k = n", rng.integers(lo, hi, endpoint=True, size=k_max), k_max, 0.3),
        batch("run-time k below the maximum", rng.integers(lo, hi, endpoint=True, size=45), 3),
    ]


def cascade():
    probs = attention_probabilities(tokens=24, heads=3, layers=4, seed=11)
    return {"probs": probs.tolist(), "keep": [16, 12, 8, 4]}


def test_signed_engine_batches_cascade_reset_and_errors():
    engine = TopK(n_max=256, k_max=16, par=4, score_bits=20, signed_scores=True)
    tb_batches = batches(engine)
    negatives = np.random.default_rng(3).integers(-5000, -1, size=40)
    tb_batches.append({"name": "negative scores", "scores": negatives.tolist(), "k": 6,
                       "stall": 0.2})
    # A full selection whose last place holds a large index, then one in reverse index order:
    # the index sort needs every round, and its pair (K - 2, K - 1) must swap in the first.
    tb_batches += [
        {"name": "full selection", "scores": list(range(100)), "k": engine.k_max, "stall": 0},
        {"name": "full selection, reversed", "scores": list(range(-64, 0)),
         "k": engine.k_max, "stall": 0},
    ]
    run(engine, "sim.tb.topk", name="topk_256_16_p4_s20",
        testcase=["batches_bit_exact", "reset_mid_batch_then_clean_batch",
                  "k_out_of_range_sets_error", "spatten_cascade_token_pruning",
                  "overlapped_batches", "cycle_model_exact"],
        params=engine_params(engine, tb_batches, cascade=cascade()))


def test_unsigned_engine_with_odd_parallelism():
    # P = 7: two lists of 4 lanes, the last lane of the second always empty, and their
    # selections merged.
    engine = TopK(n_max=128, k_max=8, par=7, score_bits=8, signed_scores=False)
    run(engine, "sim.tb.topk", name="topk_128_8_p7_u8",
        testcase=["batches_bit_exact", "k_out_of_range_sets_error", "overlapped_batches",
                  "cycle_model_exact"],
        params=engine_params(engine, batches(engine, seed=6)))


def test_engine_with_more_lanes_than_slots():
    # P = 8 lanes, K = 3 slots: a beat holds more candidates than the list keeps; batches with
    # k = K and k below it, ties, stalls.
    engine = TopK(n_max=64, k_max=3, par=8, score_bits=10, signed_scores=True)
    run(engine, "sim.tb.topk", name="topk_64_3_p8_s10",
        testcase=["batches_bit_exact", "overlapped_batches", "cycle_model_exact"],
        params=engine_params(engine, batches(engine, seed=8)))


def test_engine_with_four_lists_merged_in_two_levels():
    # P = 16: four lists of 4 lanes, merged pairwise and then once more; K = 5 queues that are
    # not a power of two deep. Ties across lists go to the lower index ("all equal", "ties").
    engine = TopK(n_max=256, k_max=5, par=16, score_bits=12, signed_scores=True)
    assert (engine.lists, engine.list_lanes) == (4, 4)
    run(engine, "sim.tb.topk", name="topk_256_5_p16_s12",
        testcase=["batches_bit_exact", "reset_mid_batch_then_clean_batch", "overlapped_batches",
                  "cycle_model_exact"],
        params=engine_params(engine, batches(engine, seed=9)))


def test_two_lists_keeping_one_score():
    # K = 1 behind two lists: one-place queues and index file.
    engine = TopK(n_max=64, k_max=1, par=8, score_bits=6, signed_scores=False)
    run(engine, "sim.tb.topk", name="topk_64_1_p8_u6",
        testcase=["batches_bit_exact", "overlapped_batches", "cycle_model_exact"],
        params=engine_params(engine, [{**batch, "k": 1} for batch in batches(engine, seed=10)]))


@ICARUS
def test_engine_on_icarus():
    engine = TopK(n_max=64, k_max=4, par=2, score_bits=8, signed_scores=True)
    run(engine, "sim.tb.topk", name="topk_64_4_p2_s8", simulator="icarus",
        testcase=["batches_bit_exact", "reset_mid_batch_then_clean_batch",
                  "overlapped_batches"],
        params=engine_params(engine, batches(engine, seed=7)[:5]))


def test_bad_parameters_name_the_value():
    with pytest.raises(ValueError, match="k_max must be between 1 and 8, not 9"):
        TopK(n_max=8, k_max=9)
    with pytest.raises(ValueError, match="par must be between 1 and 32, not 0"):
        TopK(par=0)


def test_an_empty_batch_returns_nothing_and_the_next_batch_is_selected():
    # docs/topk.md leaves what an empty batch returns unspecified; it must not hang the engine.
    engine = TopK(n_max=8, k_max=2, par=2, score_bits=4, signed_scores=True)
    beat = ScoreBeat(engine.score_shape, engine.par)
    sim = Simulator(engine)
    sim.add_clock(1e-6)
    taken = []

    async def testbench(ctx):
        ctx.set(engine.result.ready, 1)
        for scores, count in (([0, 0], 0), ([3, -2], 2)):
            ctx.set(engine.scores.payload, beat.const({"score": scores, "count": count,
                                                       "last": 1}))
            ctx.set(engine.scores.valid, 1)
            for _ in range(2 * engine.latency):
                ready = ctx.get(engine.scores.ready)
                await ctx.tick()
                if ready:
                    break
            else:
                raise AssertionError(f"the beat of {count} scores was never taken")
            ctx.set(engine.scores.valid, 0)
        for _ in range(2 * engine.latency):
            if ctx.get(engine.result.valid):
                taken.append(ctx.get(engine.result.payload))
            await ctx.tick()

    sim.add_testbench(testbench)
    sim.run()
    assert [(r.index, r.threshold, r.last) for r in taken] == [(0, -2, 0), (1, -2, 1)]
