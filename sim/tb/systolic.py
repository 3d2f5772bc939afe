"""cocotb tests of the systolic array (rtl.systolic.SystolicArray) against golden.systolic.

Parameters: :data:`PARAMS`, each with its default for the array under test.
"""

import itertools
import json
import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from golden.bitfusion import value_range
from golden.systolic import Mode, gemm_cycles, pack_steps, tile_gemm, unpack_results
from rtl.fusion import mode_const, modes
from rtl.systolic import ArrayConfig, k_step_bound, operand_layout, result_layout
from sim.runner import params
from sim.streams import EngineDriver, reset, start_clock


def odd_shapes(array):
    """(M, N, K) of the cycle-count test: odd shapes; the last has one-step tiles in the
    wide-lane modes, so that draining binds and the credit limit shows in the cycle count."""
    rows, cols = array.rows, array.cols
    return [[2 * rows + 1, cols + 2, 37], [rows, cols, 16], [4 * rows, 3 * cols, 3]]


def digits_layers(array, samples=8):
    """The layers of the digits MLP, pruned to 80%, in the array's precision (mixed: 8x8,
    4x4 and 8x4 bits), on ``samples`` test images: each {name, w_bits, a_bits, a (M x K),
    w (K x N), bias, acc (the network's integer accumulator)}. A layer whose K is over the
    accumulator's bound is left out."""
    from golden.network import PRECISIONS, digits_network, digits_split
    net = digits_network(PRECISIONS["mixed" if array.precision == "mixed"
                                    else f"{array.precision}-bit"], 0.8)
    x_test = digits_split()[1][:samples]
    bounds = array.k_step_bounds()
    layers = []
    for i, (layer, a) in enumerate(zip(net.layers, net.layer_inputs(net.quantize_input(x_test)))):
        mode = Mode(layer.w_bits, layer.a_bits, True, False)
        if -(-a.shape[1] // mode.lanes) <= bounds[(mode.w_bits, mode.a_bits, True, False)]:
            layers.append({"name": f"layer {i} {mode.w_bits}x{mode.a_bits}",
                           "w_bits": layer.w_bits, "a_bits": layer.a_bits, "a": a.tolist(),
                           "w": layer.weight.T.tolist(), "bias": layer.bias.tolist(),
                           "acc": layer.accumulate(a).tolist()})
    return layers


def benchmark_jobs(array):
    """One GEMM per mode for the benchmark, (2R x K) @ (K x 2C) with four steps per tile."""
    return [{"shape": "2Rx2C", "m": 2 * array.rows, "n": 2 * array.cols,
             "k": 4 * Mode(w, a, True, False).lanes, "w_bits": w, "a_bits": a,
             "w_signed": True, "a_signed": False} for w, a in modes(array.precision)]


#: Parameters (sim.runner.params) and their defaults for the array under test: its
#: construction, its modes ((w_bits, a_bits) pairs), the seed of the random GEMMs, the
#: shapes of the cycle-count test, the K bound of the widest mode unsigned, the layers of the
#: network test, and the benchmark's jobs ({shape, m, n, k, w_bits, a_bits, w_signed,
#: a_signed}) and output file (relative to the run's directory).
PARAMS = {
    "rows": lambda array: array.rows,
    "cols": lambda array: array.cols,
    "drain_rows": lambda array: array.drain_rows,
    "fifo_depth": lambda array: array.fifo_depth,
    "edge_registers": lambda array: array.edge_registers,
    "acc_width": lambda array: array.acc_width,
    "word_bits": lambda array: array.word_bits,
    "modes": lambda array: modes(array.precision),
    "seed": 1,
    "shapes": odd_shapes,
    "k_bound_unsigned": lambda array: k_step_bound(array.acc_width, *modes(array.precision)[-1],
                                                   False, False),
    "layers": digits_layers,
    "jobs": benchmark_jobs,
    "out": "benchmark.json",
}


def config_word(mode, k_steps, tiles):
    """The ``config`` payload of a GEMM in ``mode`` (a golden.systolic.Mode)."""
    return ArrayConfig.const({
        "mode": mode_const(mode.w_bits, mode.a_bits, mode.w_signed, mode.a_signed),
        "k_steps": k_steps, "tiles": tiles}).as_bits()


def join(words, p):
    """The ``act`` (one word per row) or ``wgt`` (per column) payload of a step."""
    return operand_layout(p["word_bits"], len(words)).const(words).as_bits()


def split_beat(value, p):
    """A result beat as ``drain_rows`` lists of ``cols`` signed values."""
    beat = result_layout(p["acc_width"], p["cols"], p["drain_rows"]).from_bits(value)
    return [[beat[g][c] for c in range(p["cols"])] for g in range(p["drain_rows"])]


class ArrayDriver(EngineDriver):
    """Streams GEMMs through the array and times them."""

    def __init__(self, dut, rng, stall=0.0):
        super().__init__(dut, ("config", "act", "wgt"), rng, stall)
        self.p = params()
        self.first_step = self.last_step = self.last_beat = None
        self.steps_taken = 0

    def watch(self, dut):
        if dut.act__valid.value and dut.act__ready.value:
            self.last_step = self.cycle
            self.steps_taken += 1
            if self.first_step is None:
                self.first_step = self.cycle
        if dut.result__valid.value and dut.result__ready.value:
            self.last_beat = self.cycle

    async def gemm(self, a, w, mode):
        """Run ``A @ W`` in ``mode``; return (C, cycles from first step to last beat)."""
        rows, cols = self.p["rows"], self.p["cols"]
        tiling = tile_gemm(a, w, rows, cols, mode)
        steps = pack_steps(a, w, rows, cols, mode)
        self.first_step = None
        already = len(self.sink.received)
        await self.config.send(config_word(mode, tiling.k_steps, tiling.tiles))
        acts = cocotb.start_soon(self.act.send_all([join(s[0], self.p) for s in steps]))
        wgts = cocotb.start_soon(self.wgt.send_all([join(s[1], self.p) for s in steps]))
        self.tasks += [acts, wgts]
        beats = tiling.tiles * (rows // self.p["drain_rows"])
        received = await self.sink.wait_for(already + beats)
        await acts
        await wgts
        result = unpack_results([split_beat(v, self.p) for v in received[already:]], tiling,
                                self.p["drain_rows"])
        return result, self.last_beat - self.first_step + 1


def random_operands(rng, mode, m, n, k):
    a = rng.integers(*value_range(mode.a_bits, mode.a_signed), endpoint=True, size=(m, k))
    w = rng.integers(*value_range(mode.w_bits, mode.w_signed), endpoint=True, size=(k, n))
    return a, w


def all_modes():
    for (w_bits, a_bits), w_signed, a_signed in itertools.product(
            params()["modes"], (False, True), (False, True)):
        yield Mode(w_bits, a_bits, w_signed, a_signed)


@cocotb.test()
async def random_gemms_in_every_mode_under_stalls(dut):
    """Odd-shaped GEMMs in every mode and signedness, random stalls on all four streams."""
    p = params()
    rng = np.random.default_rng(p["seed"])
    start_clock(dut)
    await reset(dut)
    driver = ArrayDriver(dut, random.Random(p["seed"]), stall=0.3)
    for mode in all_modes():
        m = int(rng.integers(1, 2 * p["rows"] + 2))
        n = int(rng.integers(1, 2 * p["cols"] + 2))
        k = int(rng.integers(1, 3 * mode.lanes + 2))
        a, w = random_operands(rng, mode, m, n, k)
        got, _ = await driver.gemm(a, w, mode)
        assert np.array_equal(got, a @ w), f"{mode} {m}x{n}x{k} seed {p['seed']}"


@cocotb.test()
async def cycle_count_matches_golden_model(dut):
    """With no stalls the array takes exactly the cycles golden.systolic predicts."""
    p = params()
    rng = np.random.default_rng(p["seed"] + 1)
    start_clock(dut)
    await reset(dut)
    driver = ArrayDriver(dut, random.Random(0))
    for (w_bits, a_bits), shape in zip(p["modes"], itertools.cycle(p["shapes"])):
        mode = Mode(w_bits, a_bits, True, False)
        a, w = random_operands(rng, mode, *shape)
        got, cycles = await driver.gemm(a, w, mode)
        assert np.array_equal(got, a @ w)
        tiling = tile_gemm(a, w, p["rows"], p["cols"], mode)
        want = gemm_cycles(tiling, p["drain_rows"], p["fifo_depth"],
                           edge_registers=p["edge_registers"])
        assert cycles == want, f"{mode} {shape}: {cycles} cycles, model says {want}"


@cocotb.test()
async def digits_mlp_layers_bit_exact(dut):
    """The trained, pruned, quantized digits MLP, layer by layer, under stalls.

    Each layer's result plus its bias must equal the network's integer accumulator
    (``QuantizedLayer.accumulate``, before requantization), given as ``acc``.
    """
    p = params()
    start_clock(dut)
    await reset(dut)
    driver = ArrayDriver(dut, random.Random(p["seed"]), stall=0.2)
    for layer in p["layers"]:
        mode = Mode(layer["w_bits"], layer["a_bits"], True, False)
        a, w = np.array(layer["a"]), np.array(layer["w"])
        got, _ = await driver.gemm(a, w, mode)
        assert np.array_equal(got + np.array(layer["bias"]), np.array(layer["acc"])), \
            f"layer {layer['name']}"


@cocotb.test()
async def result_back_pressure_stalls_the_array_without_loss(dut):
    """A sink that stops for a long time fills the row FIFOs, stops the operand streams at
    exactly ``fifo_depth`` tiles, and loses nothing when it resumes."""
    p = params()
    rng = np.random.default_rng(p["seed"] + 3)
    start_clock(dut)
    await reset(dut)
    mode = Mode(*p["modes"][0], False, True)
    tiles_wanted = p["fifo_depth"] + 3
    a, w = random_operands(rng, mode, tiles_wanted * p["rows"], p["cols"], 2 * mode.lanes)
    driver = ArrayDriver(dut, random.Random(4))
    driver.sink.stop()
    task = cocotb.start_soon(driver.gemm(a, w, mode))
    for _ in range(200):
        await RisingEdge(dut.clk)
    assert driver.steps_taken == p["fifo_depth"] * 2, \
        f"{driver.steps_taken} steps taken with the sink stopped, fifo_depth {p['fifo_depth']}"
    assert dut.act__valid.value and not dut.act__ready.value
    driver.sink.start()
    got, _ = await task
    assert np.array_equal(got, a @ w), f"seed {p['seed']}"


@cocotb.test()
async def reset_mid_gemm_then_a_clean_gemm(dut):
    """Reset while tiles are in flight and results are queued; the next GEMM is exact."""
    p = params()
    rng = np.random.default_rng(p["seed"] + 2)
    start_clock(dut)
    await reset(dut)
    mode = Mode(*p["modes"][0], True, True)
    a, w = random_operands(rng, mode, 3 * p["rows"], 2 * p["cols"], 5 * mode.lanes)
    driver = ArrayDriver(dut, random.Random(1))
    driver.sink.stop()                              # results pile up in the row FIFOs
    task = cocotb.start_soon(driver.gemm(a, w, mode))
    for _ in range(40):
        await RisingEdge(dut.clk)
    task.cancel()
    driver.abort()
    await reset(dut)
    assert not dut.result__valid.value and not dut.error.value
    for output in ("result__valid", "result__payload", "act__ready", "wgt__ready",
                   "config__ready", "error"):
        assert getattr(dut, output).value.is_resolvable, f"{output} is not 0/1 after reset"
    driver = ArrayDriver(dut, random.Random(2), stall=0.2)
    a, w = random_operands(rng, mode, p["rows"] + 1, p["cols"] + 1, 2 * mode.lanes + 1)
    got, _ = await driver.gemm(a, w, mode)
    assert np.array_equal(got, a @ w)


@cocotb.test()
async def configuration_beyond_the_k_bound_is_rejected(dut):
    """K = 0, tiles = 0 or K above the accumulator bound set ``error``; valid work still runs."""
    p = params()
    start_clock(dut)
    await reset(dut)
    driver = ArrayDriver(dut, random.Random(3))
    w_bits, a_bits = p["modes"][-1]
    mode = Mode(w_bits, a_bits, False, False)
    for k_steps, tiles in ((0, 1), (1, 0)):
        await driver.config.send(config_word(mode, k_steps, tiles))
        await RisingEdge(dut.clk)
        assert dut.error.value, (k_steps, tiles)
        await reset(dut)
    bound = p["k_bound_unsigned"]
    if bound < (1 << 16) - 1:
        await driver.config.send(config_word(mode, bound + 1, 1))
        await RisingEdge(dut.clk)
        assert dut.error.value
        assert dut.config__ready.value, "a rejected configuration must not wait for steps"
    a, w = random_operands(np.random.default_rng(4), mode, 2, 2, 3)
    got, _ = await driver.gemm(a, w, mode)
    assert np.array_equal(got, a @ w)


@cocotb.test()
async def benchmark(dut):
    """Run the GEMMs of ``params["jobs"]`` with an ideal source and sink; write their timing."""
    p = params()
    start_clock(dut)
    await reset(dut)
    driver = ArrayDriver(dut, random.Random(0))
    rng = np.random.default_rng(p["seed"])
    results = []
    for job in p["jobs"]:
        mode = Mode(job["w_bits"], job["a_bits"], job["w_signed"], job["a_signed"])
        a, w = random_operands(rng, mode, job["m"], job["n"], job["k"])
        got, cycles = await driver.gemm(a, w, mode)
        assert np.array_equal(got, a @ w), job
        results.append({**job, "cycles": cycles,
                        "step_span": driver.last_step - driver.first_step + 1})
    with open(p["out"], "w") as out:
        json.dump(results, out)


@cocotb.test()
async def back_to_back_gemms_of_different_modes(dut):
    """Configurations queued ahead: GEMMs of different modes follow each other with no gap.

    Each tile has as many steps as result beats, so with an ideal source and sink the
    array takes a step every cycle from the first step of the first GEMM to the last
    step of the last one, configuration changes included.
    """
    p = params()
    rng = np.random.default_rng(p["seed"] + 3)
    start_clock(dut)
    await reset(dut)
    driver = ArrayDriver(dut, random.Random(5))
    rows, cols = p["rows"], p["cols"]
    per_tile = rows // p["drain_rows"]
    jobs = []
    for i, (w_bits, a_bits) in enumerate(p["modes"][::-1][:4] * 2):
        mode = Mode(w_bits, a_bits, bool(i & 1), bool(i & 2))
        k = (per_tile - 1) * mode.lanes + 1            # per_tile steps, the last one padded
        a, w = random_operands(rng, mode, rows + 1, cols, k)
        jobs.append((mode, a, w, tile_gemm(a, w, rows, cols, mode)))
    configs = [config_word(mode, t.k_steps, t.tiles) for mode, _, _, t in jobs]
    steps = [step for mode, a, w, _ in jobs for step in pack_steps(a, w, rows, cols, mode)]
    senders = [cocotb.start_soon(driver.config.send_all(configs)),
               cocotb.start_soon(driver.act.send_all([join(s[0], p) for s in steps])),
               cocotb.start_soon(driver.wgt.send_all([join(s[1], p) for s in steps]))]
    beats = await driver.sink.wait_for(sum(t.tiles * per_tile for *_, t in jobs))
    for sender in senders:
        await sender
    for mode, a, w, tiling in jobs:
        count = tiling.tiles * per_tile
        got = unpack_results([split_beat(v, p) for v in beats[:count]], tiling, p["drain_rows"])
        beats = beats[count:]
        assert np.array_equal(got, a @ w), f"{mode} after a different mode, seed {p['seed']}"
    span = driver.last_step - driver.first_step + 1
    assert span == len(steps), f"{len(steps)} steps took {span} cycles"
