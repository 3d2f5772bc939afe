"""cocotb tests of the sparse matrix-vector unit (rtl.spmv.SpMV) against golden.csc.

Parameters: :data:`PARAMS`, each with its default for the unit under test.
"""

import json
import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from golden.csc import load_words, spmv
from rtl.spmv import Activations, Entry, Load, LoadKind, Results
from sim.runner import params
from sim.streams import EngineDriver, reset, start_clock


def default_jobs(unit, seed=3):
    """Random matrices (up to 40 x 48) at 0, 50 and 90% weight sparsity, then, when the unit
    holds 64 x 64, the three layers of the digits MLP pruned to 80% in the unit's weights
    (8-bit with a 4-bit codebook, else ``value_bits``), requantization fused on the hidden
    layers, on two test images."""
    rng = np.random.default_rng(seed)
    rows, cols = min(unit.rows, 40), min(unit.cols, 48)
    jobs = []
    for sparsity, x_sparsity, stall in ((0.0, 0.0, 0.0), (0.5, 0.5, 0.3), (0.9, 0.2, 0.0)):
        if unit.codebook:
            matrix = rng.integers(1, 16, size=(rows, cols))
        else:
            top = (1 << (unit.value_bits - 1)) - 1
            matrix = rng.integers(-top - 1, top, endpoint=True, size=(rows, cols))
            matrix[matrix == 0] = 1
        matrix *= rng.random((rows, cols)) >= sparsity
        x = rng.integers(1, 1 << unit.act_bits, size=cols) * (rng.random(cols) >= x_sparsity)
        job = {"name": f"random w{sparsity:.0%} x{x_sparsity:.0%}", "matrix": matrix.tolist(),
               "x": x.tolist(), "stall": stall}
        if unit.codebook:
            job["codebook"] = [0, *rng.integers(-128, 128, size=15).tolist()]
        jobs.append(job)
    if unit.rows < 64 or unit.cols < 64:
        return jobs
    from golden.network import digits_network, digits_split
    net = digits_network(8 if unit.codebook else unit.value_bits, 0.8,
                         codebook_bits=4 if unit.codebook else None)
    inputs = net.layer_inputs(net.quantize_input(digits_split()[1][:2]))
    for i, layer in enumerate(net.layers):
        for sample, x in enumerate(inputs[i]):
            jobs.append(layer_job(f"digits 80% layer {i} image {sample}", layer, x,
                                  0.2 * sample, unit.codebook))
    return jobs


def layer_job(name, layer, x, stall, codebook):
    """The job of a network layer (``golden.network``) on activations ``x``: its weights (or
    codebook indices and codebook) and, when it requantizes, its bias, multipliers and shift."""
    job = {"name": name, "x": x.tolist(), "stall": stall}
    if codebook:
        job.update(matrix=layer.weight_index.tolist(), codebook=layer.codebook.tolist())
    else:
        job["matrix"] = layer.weight.tolist()
    if layer.out_bits is not None:
        job.update(bias=layer.bias.tolist(), multiplier=layer.multiplier.tolist(),
                   shift=layer.shift, out_bits=layer.out_bits)
    return job


#: Parameters (sim.runner.params) and their defaults for the unit under test: its
#: construction (``capacity``: weight-memory entries per PE, ``max_rows``: its row count), the
#: seed of the stalls, ``jobs`` (each {name, matrix, x, stall, and optionally codebook, bias,
#: multiplier, shift, out_bits}) and the benchmark's output file (relative to the run's
#: directory).
PARAMS = {
    "n_pes": lambda unit: unit.n_pes,
    "lanes": lambda unit: unit.lanes,
    "act_bits": lambda unit: unit.act_bits,
    "acc_width": lambda unit: unit.acc_width,
    "value_bits": lambda unit: unit.value_bits,
    "z_bits": lambda unit: unit.z_bits,
    "capacity": lambda unit: unit.entries,
    "max_rows": lambda unit: unit.rows,
    "seed": 1,
    "jobs": default_jobs,
    "out": "benchmark.json",
}


def load_payload(word, entry):
    """The bits of the loader word ``word`` (a ``golden.csc.LoadWord``) through ``rtl.spmv.Load``.

    ``entry`` is the unit's :class:`rtl.spmv.Entry` layout, which packs an entry's fields.
    """
    kind = LoadKind[word.kind]
    fields = entry.const(word.fields).as_bits() if kind is LoadKind.ENTRY else word.fields
    return Load.const({"kind": kind, "pe": word.pe, "addr": word.addr,
                       "data": {kind.name.lower(): fields}}).as_bits()


def act_beats(x, lanes, act_bits):
    """The activation vector as (payload) beats of ``lanes`` values, ``last`` on the final one."""
    layout = Activations(act_bits, lanes)
    x = [int(v) for v in x] + [0] * (-len(x) % lanes)
    return [layout.const({"x": x[start:start + lanes], "last": start + lanes >= len(x)}).as_bits()
            for start in range(0, len(x), lanes)]


class SpMVDriver(EngineDriver):
    def __init__(self, dut, rng, stall=0.0):
        super().__init__(dut, ("load", "act"), rng, stall)
        self.p = params()

    def watch(self, dut):
        if dut.act__valid.value and dut.act__ready.value:
            self.marks.setdefault("first_act", self.cycle)
        if dut.result__valid.value:
            self.marks.setdefault("first_result", self.cycle)
            if dut.result__ready.value:
                self.marks["last_result"] = self.cycle

    async def run(self, job):
        """Load the job's matrix, stream its vector, return (y, timing marks)."""
        p = self.p
        matrix = np.array(job["matrix"])
        options = {key: job[key] for key in ("codebook", "bias", "multiplier", "shift", "out_bits")
                   if job.get(key) is not None}
        words = load_words(matrix, p["n_pes"], z_bits=p["z_bits"], value_bits=p["value_bits"],
                           capacity=p["capacity"], max_rows=p["max_rows"], **options)
        entry = Entry(p["value_bits"], p["z_bits"], codebook="codebook" in options)
        await self.load.send_all([load_payload(word, entry) for word in words])
        self.marks = {}
        already = len(self.sink.received)
        beats_out = -(-matrix.shape[0] // p["n_pes"])
        sender = cocotb.start_soon(self.act.send_all(act_beats(job["x"], p["lanes"], p["act_bits"])))
        self.tasks.append(sender)
        received = await self.sink.wait_for(already + beats_out, timeout_cycles=200_000)
        await sender
        results = Results(p["acc_width"], p["n_pes"])
        y = [value for beat in received[already:] for value in results.from_bits(beat)]
        return np.array(y[:matrix.shape[0]]), dict(self.marks)


def expected(job):
    options = {key: job.get(key) for key in ("codebook", "bias", "multiplier", "shift", "out_bits")}
    return spmv(np.array(job["matrix"]), job["x"], **options)


@cocotb.test()
async def matrices_and_vectors_bit_exact(dut):
    """Every job of ``params["jobs"]``, one after another on the same unit."""
    p = params()
    start_clock(dut)
    await reset(dut)
    for job in p["jobs"]:
        driver = SpMVDriver(dut, random.Random(p["seed"]), stall=job.get("stall", 0.0))
        y, _ = await driver.run(job)
        driver.abort()
        want = expected(job)
        assert np.array_equal(y, want), f"{job['name']}: got {y.tolist()[:8]}..., " \
                                        f"want {want.tolist()[:8]}..."


@cocotb.test()
async def reset_mid_vector_then_clean_run(dut):
    """Reset while a vector is half consumed; the unit then loads and runs a job exactly."""
    p = params()
    start_clock(dut)
    await reset(dut)
    job = p["jobs"][0]
    driver = SpMVDriver(dut, random.Random(1))
    driver.sink.stop()
    task = cocotb.start_soon(driver.run(job))
    for _ in range(len(job["x"]) + 60):
        await RisingEdge(dut.clk)
    task.cancel()
    driver.abort()
    await reset(dut)
    assert not dut.result__valid.value
    driver = SpMVDriver(dut, random.Random(2), stall=0.2)
    y, _ = await driver.run(job)
    assert np.array_equal(y, expected(job))


@cocotb.test()
async def benchmark(dut):
    """Time every job with an ideal source and sink; write the marks to ``params["out"]``."""
    p = params()
    start_clock(dut)
    await reset(dut)
    results = []
    for job in p["jobs"]:
        driver = SpMVDriver(dut, random.Random(0))
        y, marks = await driver.run(job)
        driver.abort()
        assert np.array_equal(y, expected(job)), job["name"]
        results.append({"name": job["name"], **marks})
    with open(p["out"], "w") as out:
        json.dump(results, out)
