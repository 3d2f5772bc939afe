"""cocotb tests of the accelerator (rtl.accel.core.Accelerator) against golden.accel.

A *job* is what the compiler makes of a network plus the batches to run through it, as plain
JSON: ``memories`` (``{space name: [[word, value], ...]}`` to load once), ``entries`` (the
sparse unit's entry words, written through ``Space.SPMV`` in order), and ``batches``, each
``{"input": [[word, value], ...]}`` (words of an input page, page-relative) and ``expect``
(``{space name: [[word, value], ...]}``, page-relative words of the published page) and,
when the model gives it, ``cycles`` (the model's cycles from the batch's SYNC to its DONE).

Parameters: :data:`PARAMS`.
"""

import json
import random

import cocotb
from cocotb.triggers import RisingEdge

from rtl.accel.config import AccelConfig, SpmvConfig, TopkConfig
from rtl.accel.isa import CHUNK_BITS, HostRead, HostWrite, Space, Status
from sim.runner import params
from sim.streams import StreamSource, reset, start_clock


def config_of(p):
    """The :class:`AccelConfig` of the parameters' ``config`` (``AccelConfig.parameters()``)."""
    given = dict(p["config"])
    given["spmv"] = SpmvConfig(**given["spmv"]) if given["spmv"] else None
    given["topk"] = TopkConfig(**given["topk"]) if given["topk"] else None
    return AccelConfig(**given)


def network_job(config, network, images, *, batch=None, engines=None, output="class",
                name="digits", stall=0.0):
    """The job of ``network`` (a golden.network.QuantizedMLP) on ``images`` (the first layer's
    integer inputs, (n, inputs)), compiled by golden.accel for ``config``: every batch's input
    page, the words the model publishes for it, and the model's cycle of each publication."""
    from golden.accel import AccelModel, compile_network
    program = compile_network(network, config, batch or config.rows, engines=engines,
                              output=output)
    model = AccelModel(config)
    model.load(program)
    model.start()
    if output == "class":
        space, depth = Space.OUTPUT, config.output_words
        words = range(program.output_dst, program.output_dst + program.batch)
    else:
        space, depth = Space.RESULT, config.result_words
        last = program.output_dst + (program.batch - 1) // config.rows_per_beat * \
            program.output_tile_cols + program.output_tile_cols
        words = range(program.output_dst, last)
    batches = []
    for first in range(0, len(images), program.batch):
        page = program.input_page(images[first:first + program.batch])
        model.fill_input(page)
        assert model.published is not None, "the model published no results"
        base = model.published * depth
        batches.append({
            "input": [[w, v] for w, v in enumerate(page)],
            "expect": {space.name: [[w, model.read(space, base + w)] for w in words]},
        })
        model.results_taken()
    memories = {space.name: sorted(values.items()) for space, values in program.memories.items()
                if space is not Space.SPMV}
    memories["PROGRAM"] = list(enumerate(program.instructions))
    return {"name": name, "memories": memories,
            "entries": list(program.memories.get(Space.SPMV, [])),
            "batches": batches, "published": model.timing.published,
            "engines": [layer.engine for layer in program.layers], "stall": stall,
            "batch": program.batch}


def digits_jobs(config, images=16, batches=2, precisions=None, sparsities=(0.5, 0.9)):
    """Jobs of the digits MLP at every precision (golden.network.PRECISIONS) and sparsity,
    ``batches`` batches of ``images`` test images: all layers on the array, and (with a
    sparse unit) the hidden layers on it, and layer 1 alone on it (its loader words go in
    while the array runs layer 0: two engines at once)."""
    from golden.network import PRECISIONS, digits_network, digits_split
    x_test = digits_split()[1]
    jobs = []
    for precision in precisions or PRECISIONS:
        for sparsity in sparsities:
            network = digits_network(PRECISIONS[precision], sparsity)
            a0 = network.quantize_input(x_test[:images * batches])
            choices = [("array", None)]
            if config.spmv is not None:
                hidden = len(network.layers) - 1
                choices.append(("spmv", ("spmv",) * hidden + ("array",)))
                # The sparse unit loads layer 1 while the array runs layer 0.
                choices.append(("array+spmv", ("array", "spmv") + ("array",) * (hidden - 1)))
            for label, engines in choices:
                jobs.append(network_job(config, network, a0, batch=images, engines=engines,
                                        name=f"digits {precision} {sparsity:.0%} {label}"))
    return jobs


def default_jobs(accel):
    """The digits network's jobs for this accelerator (golden.accel)."""
    return digits_jobs(accel.config, images=2 * accel.config.rows, batches=2,
                       precisions=["mixed"], sparsities=(0.9,))


#: Parameters (sim.runner.params) and their defaults for the accelerator under test.
PARAMS = {
    "config": lambda accel: accel.config.parameters(),
    "jobs": default_jobs,
    "seed": 1,
    "out": "benchmark.json",
}


class Host:
    """Drives the accelerator's host port: chunk writes and reads, start, the page handshakes.

    ``stall`` is the probability per cycle of holding a write or of not taking a read chunk
    (back-pressure from the host's side).
    """

    def __init__(self, dut, config, *, stall=0.0, rng=None):
        self.dut, self.config = dut, config
        self.stall, self.rng = stall, rng or random.Random(0)
        self.writes = StreamSource(dut, "host__write", stall=stall, rng=self.rng)
        self.reads = StreamSource(dut, "host__read")
        for name in ("host__read_data__ready", "host__start", "host__input_filled",
                     "host__results_taken"):
            getattr(dut, name).value = 0

    async def write(self, space, word, value):
        """Write ``value`` into word ``word`` of memory ``space``, chunk by chunk."""
        for chunk in range(self.config.chunks(space)):
            await self.writes.send(HostWrite.const({
                "space": space, "address": self.config.chunk_address(space, word, chunk),
                "data": (value >> (CHUNK_BITS * chunk)) & ((1 << CHUNK_BITS) - 1)}).as_bits())

    async def read(self, space, word):
        """The value of word ``word`` of memory ``space`` (RESULT or OUTPUT)."""
        dut = self.dut
        value = 0
        for chunk in range(self.config.chunks(space)):
            await self.reads.send(HostRead.const({
                "space": space,
                "address": self.config.chunk_address(space, word, chunk)}).as_bits())
            while True:
                while self.stall and self.rng.random() < self.stall:
                    await RisingEdge(dut.clk)
                dut.host__read_data__ready.value = 1
                await RisingEdge(dut.clk)
                dut.host__read_data__ready.value = 0
                if dut.host__read_data__valid.value:
                    break
            value |= int(dut.host__read_data__payload.value) << (CHUNK_BITS * chunk)
        return value

    def status(self):
        return Status.from_bits(int(self.dut.host__status.value))

    async def pulse(self, name):
        """Hold ``host__<name>`` high for a cycle; return once the status shows its effect."""
        signal = getattr(self.dut, f"host__{name}")
        signal.value = 1
        await RisingEdge(self.dut.clk)
        signal.value = 0
        await RisingEdge(self.dut.clk)

    async def load(self, job):
        """Every memory image of ``job``, then the sparse unit's entries."""
        for space, words in job["memories"].items():
            for word, value in words:
                await self.write(Space[space], word, value)
        for value in job.get("entries", []):
            await self.write(Space.SPMV, 0, value)

    async def fill(self, words):
        """Fill the input page the accelerator offers, then hand it over."""
        while not self.status().input_free:
            await RisingEdge(self.dut.clk)
        base = self.status().input_page * self.config.input_words
        for word, value in words:
            await self.write(Space.ACT, base + word, value)
        await self.pulse("input_filled")

    async def collect(self, expect, timeout=200_000):
        """Wait for a published page; return ``{space: [[word, value], ...]}`` of the words
        ``expect`` names, read from it, and hand the page back."""
        for _ in range(timeout):
            status = self.status()
            if status.results_ready or status.error:
                break
            await RisingEdge(self.dut.clk)
        assert not status.error, f"the program stopped with an error at {status.error_pc}"
        assert status.results_ready, "no results were published"
        page = status.results_page
        got = {}
        for space, words in expect.items():
            depth = {"RESULT": self.config.result_words, "OUTPUT": self.config.output_words}[space]
            got[space] = [[word, await self.read(Space[space], page * depth + word)]
                          for word, _ in words]
        await self.pulse("results_taken")
        return got


def check(got, expect, what):
    for space, words in expect.items():
        for (word, want), (_, value) in zip(words, got[space]):
            assert value == want, (f"{what}: {space} word {word} is {value:#x}, the golden "
                                   f"model has {want:#x}")


async def run_job(dut, host, job, what):
    """Load ``job``, start it, run its batches (the next input filled while a batch runs);
    returns the cycle of each batch's publication."""
    await host.load(job)
    await host.pulse("start")
    published = []
    batches = job["batches"]
    filler = cocotb.start_soon(_fill_all(host, batches))
    cycle = _Cycles(dut)
    for i, batch in enumerate(batches):
        got = await host.collect(batch["expect"])
        published.append(cycle.at_publication)
        check(got, batch["expect"], f"{what}, batch {i}")
    await filler
    cycle.stop()
    return published


async def _fill_all(host, batches):
    for batch in batches:
        await host.fill(batch["input"])


class _Cycles:
    """Counts clock cycles and remembers the last cycle at which results were published."""

    def __init__(self, dut):
        self.dut, self.now, self.at_publication = dut, 0, None
        self._task = cocotb.start_soon(self._count())

    async def _count(self):
        ready = 0
        while True:
            await RisingEdge(self.dut.clk)
            self.now += 1
            status = Status.from_bits(int(self.dut.host__status.value))
            if status.results_ready and not ready:
                self.at_publication = self.now
            ready = status.results_ready

    def stop(self):
        self._task.cancel()


@cocotb.test()
async def networks_bit_exact(dut):
    """Every job's batches give the golden model's outputs, bit for bit, and the cycles
    between publications are the model's."""
    p = params()
    config = config_of(p)
    start_clock(dut)
    for job in p["jobs"]:
        await reset(dut)
        host = Host(dut, config, stall=job.get("stall", 0.0), rng=random.Random(p["seed"]))
        published = await run_job(dut, host, job, job["name"])
        model = job["published"]
        assert [b - a for a, b in zip(published, published[1:])] == \
            [b - a for a, b in zip(model, model[1:])], \
            f"{job['name']}: publications at cycles {published}, the model's {model}"


def _with_program(job, instructions):
    """``job`` with its PROGRAM replaced by ``instructions`` (words)."""
    memories = dict(job["memories"])
    memories["PROGRAM"] = list(enumerate(instructions))
    return {**job, "memories": memories}


@cocotb.test()
async def reset_mid_program_then_clean_run(dut):
    """A reset in the middle of a batch leaves the accelerator idle, and the next start runs
    the job bit-exact."""
    p = params()
    config = config_of(p)
    job = p["jobs"][0]
    start_clock(dut)
    await reset(dut)
    host = Host(dut, config)
    await host.load(job)
    await host.pulse("start")
    await host.fill(job["batches"][0]["input"])
    for _ in range(40):                       # into the first layer
        await RisingEdge(dut.clk)
    assert host.status().running and not host.status().results_ready
    await reset(dut)
    assert not host.status().running and not host.status().error
    await run_job(dut, host, job, "after a reset mid-program")


@cocotb.test()
async def bad_address_stops_with_error_then_next_program_runs(dut):
    """A GEMM whose source runs past the scratchpad stops the program with ``error`` and its
    address in ``error_pc`` (no hang); an unknown opcode likewise; HALT stops it without an
    error; the next program, started after them, runs bit-exact."""
    from golden.accel import fields
    from rtl.accel.isa import GemmArgs, Instruction, Opcode
    p = params()
    config = config_of(p)
    job = p["jobs"][0]
    gemm_pc = next(word for word, value in job["memories"]["PROGRAM"]
                   if Instruction.from_bits(value).opcode == Opcode.GEMM)
    start_clock(dut)
    await reset(dut)
    host = Host(dut, config)
    await host.load(job)
    words = dict(job["memories"]["PROGRAM"])
    gemm = fields(GemmArgs, Instruction.from_bits(words[gemm_pc]).args.gemm.as_value().value)
    bad_gemm = Instruction.const({"opcode": Opcode.GEMM, "args": {"gemm": {
        **gemm, "src_input": 0, "src": config.act_words - 1}}}).as_bits()
    unknown = 15                              # opcode bits [3:0] = 15, no such opcode
    for broken, what in ((bad_gemm, "GEMM past ACT"), (unknown, "opcode 15")):
        await host.write(Space.PROGRAM, gemm_pc, broken)
        await host.pulse("start")
        await host.fill(job["batches"][0]["input"])
        for _ in range(20_000):
            if not host.status().running:
                break
            await RisingEdge(dut.clk)
        status = host.status()
        assert status.error and not status.running, f"{what}: the program did not stop"
        assert status.error_pc == gemm_pc, f"{what}: error_pc {status.error_pc}, not {gemm_pc}"
    await host.write(Space.PROGRAM, gemm_pc, words[gemm_pc])
    # HALT stops the program without an error.
    await host.write(Space.PROGRAM, 0, Instruction.const({"opcode": Opcode.HALT,
                                                         "args": {"pad": 0}}).as_bits())
    await host.pulse("start")
    for _ in range(10):
        await RisingEdge(dut.clk)
    assert not host.status().running and not host.status().error, "HALT did not stop it"
    await host.write(Space.PROGRAM, 0, words[0])
    await run_job(dut, host, {**job, "memories": {}, "entries": []}, "the next program")
    assert not host.status().error


@cocotb.test()
async def slow_host_back_pressure(dut):
    """A host that holds its writes and takes its reads slowly (stalls 60% of the cycles)
    still gets every output bit-exact: DONE waits for the page to be taken."""
    p = params()
    config = config_of(p)
    start_clock(dut)
    await reset(dut)
    host = Host(dut, config, stall=0.6, rng=random.Random(p["seed"]))
    await run_job(dut, host, p["jobs"][0], "slow host")


@cocotb.test()
async def weight_writes_wait_for_the_array(dut):
    """Host writes into WEIGHT (one address for reads and writes) while the GEMM engine runs:
    they wait (some write is held), the array reads what it should (the outputs stay
    bit-exact), and the writes land (the next batch, on weights written while the first
    ran, is bit-exact too). The words are written with their own values."""
    p = params()
    config = config_of(p)
    start_clock(dut)
    await reset(dut)
    job = p["jobs"][0]
    host = Host(dut, config, rng=random.Random(p["seed"]))
    await host.load(job)
    await host.pulse("start")
    held = 0

    async def watch():
        nonlocal held
        while True:
            await RisingEdge(dut.clk)
            if dut.host__write__valid.value and not dut.host__write__ready.value:
                write = HostWrite.from_bits(int(dut.host__write__payload.value))
                held += write.space == Space.WEIGHT
    watcher = cocotb.start_soon(watch())
    weights = job["memories"]["WEIGHT"]
    for i, batch in enumerate(job["batches"]):
        await host.fill(batch["input"])
        for word, value in weights:        # while the batch's GEMMs read WEIGHT
            await host.write(Space.WEIGHT, word, value)
        check(await host.collect(batch["expect"]), batch["expect"], f"batch {i}")
    watcher.cancel()
    assert held, "no WEIGHT write waited for the array: the writes never met a GEMM"


@cocotb.test()
async def benchmark(dut):
    """Run every job as ``networks_bit_exact`` does, without stopping at a mismatch; write each
    job's publication cycles and whether every output was the model's to ``params["out"]``."""
    p = params()
    config = config_of(p)
    start_clock(dut)
    results = []
    for job in p["jobs"]:
        await reset(dut)
        host = Host(dut, config)
        try:
            published = await run_job(dut, host, job, job["name"])
            exact = True
        except AssertionError:
            published, exact = [], False
        results.append({"name": job["name"], "published": published, "bit_exact": exact})
    with open(p["out"], "w") as out:
        json.dump(results, out)
