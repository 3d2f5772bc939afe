# amaranth: UnusedElaboratable=no
"""The CSC sparse matrix-vector unit, as generated Verilog under cocotb, against golden.csc."""

import json

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from golden import csc
from golden.network import digits_network, digits_split
from rtl.spmv import ColumnPointers, ColumnQueue, SpMV, SpMVPE
from sim.runner import run, simulator_available
from sim.tb.spmv import layer_job, load_payload

ICARUS = pytest.mark.skipif(not simulator_available("icarus"),
                            reason="Icarus Verilog (iverilog) is not installed")


def unit_params(unit, jobs, seed=1):
    return {"n_pes": unit.n_pes, "lanes": unit.lanes, "act_bits": unit.act_bits,
            "acc_width": unit.acc_width, "value_bits": unit.value_bits, "z_bits": unit.z_bits,
            "capacity": unit.entries, "max_rows": unit.rows, "seed": seed, "jobs": jobs}


def random_job(rng, name, rows, cols, sparsity, x_sparsity, stall=0.0, value_bits=8):
    hi = (1 << (value_bits - 1)) - 1
    matrix = rng.integers(-hi - 1, hi, endpoint=True, size=(rows, cols))
    matrix[matrix == 0] = 1
    matrix *= rng.random((rows, cols)) >= sparsity
    x = rng.integers(1, 256, size=cols) * (rng.random(cols) >= x_sparsity)
    return {"name": name, "matrix": matrix.tolist(), "x": x.tolist(), "stall": stall}


def random_jobs(seed=3):
    rng = np.random.default_rng(seed)
    jobs = []
    for sparsity in (0.0, 0.5, 0.9, 0.99):
        for x_sparsity, stall in ((0.0, 0.0), (0.5, 0.3), (0.9, 0.0)):
            jobs.append(random_job(rng, f"w{sparsity} x{x_sparsity}", 40, 48, sparsity, x_sparsity,
                                   stall))
    edge = random_job(rng, "empty column, long gaps", 40, 48, 0.8, 0.2, stall=0.2)
    matrix = np.array(edge["matrix"])
    matrix[:, 5] = 0                      # an empty column
    matrix[:, 7] = 0
    matrix[39, 7] = -9                    # a gap far longer than the 3-bit z range
    edge["matrix"] = matrix.tolist()
    jobs.append(edge)
    jobs.append(random_job(rng, "all-zero activations", 40, 48, 0.5, 1.0))
    jobs.append(random_job(rng, "single row", 1, 48, 0.3, 0.3, stall=0.3))
    jobs.append(random_job(rng, "dense columns longer than the queues", 64, 16, 0.0, 0.0))
    return jobs


def digits_jobs(codebook):
    """The digits MLP layers at 50/80/90% sparsity, fused requantization on hidden layers."""
    x_test = digits_split()[1][:2]
    jobs = []
    for sparsity in (0.5, 0.8, 0.9):
        net = digits_network(8, sparsity, codebook_bits=4 if codebook else None)
        inputs = net.layer_inputs(net.quantize_input(x_test))
        for i, layer in enumerate(net.layers):
            for sample in range(len(x_test)):
                jobs.append(layer_job(f"digits {sparsity} layer {i} sample {sample}", layer,
                                      inputs[i][sample], 0.1 * sample, codebook))
    return jobs


def test_direct_values_random_and_digits():
    unit = SpMV(n_pes=3, rows=64, cols=64, value_bits=8, z_bits=3, lanes=4, queue_depth=4)
    run(unit, "sim.tb.spmv", name="spmv_3pe_direct",
        testcase=["matrices_and_vectors_bit_exact", "reset_mid_vector_then_clean_run"],
        params=unit_params(unit, random_jobs() + digits_jobs(codebook=False)))


def test_codebook_values_digits():
    unit = SpMV(n_pes=4, rows=64, cols=64, codebook=True, lanes=8, queue_depth=8)
    run(unit, "sim.tb.spmv", name="spmv_4pe_codebook", testcase="matrices_and_vectors_bit_exact",
        params=unit_params(unit, digits_jobs(codebook=True)))


@ICARUS
def test_direct_values_on_icarus():
    unit = SpMV(n_pes=2, rows=16, cols=16, value_bits=4, z_bits=2, lanes=2, queue_depth=2)
    rng = np.random.default_rng(9)
    jobs = [random_job(rng, f"w{s}", 13, 16, s, 0.4, stall=0.2, value_bits=4)
            for s in (0.0, 0.6, 0.95)]
    run(unit, "sim.tb.spmv", name="spmv_2pe_small", simulator="icarus",
        testcase="matrices_and_vectors_bit_exact", params=unit_params(unit, jobs))


@ICARUS
def test_three_lanes_per_beat_on_icarus():
    """A lane count that is not a power of two: the front end adds the lane to the beat's
    first column (with 2, 4, 8 or 16 lanes it is the column's low bits)."""
    unit = SpMV(n_pes=2, rows=16, cols=17, value_bits=4, z_bits=2, lanes=3, queue_depth=4)
    rng = np.random.default_rng(13)
    jobs = [random_job(rng, f"w{s}", 16, 17, s, 0.3, stall=0.2, value_bits=4)
            for s in (0.0, 0.7)]
    run(unit, "sim.tb.spmv", name="spmv_2pe_three_lanes", simulator="icarus",
        testcase="matrices_and_vectors_bit_exact", params=unit_params(unit, jobs))


def back_to_back_job(rows, cols):
    """Every column holds one weight of every PE (``rows`` = PEs) and every activation is
    non-zero: a PE that takes an activation a cycle takes one column a cycle."""
    matrix = np.arange(rows * cols).reshape(rows, cols) % 13 - 6
    matrix[matrix == 0] = 7
    return {"name": f"back to back {cols}", "matrix": matrix.tolist(),
            "x": (np.arange(cols) % 200 + 1).tolist(), "stall": 0.0}


def spread_job(n_pes, cols):
    """Column ``j`` holds one weight, of PE ``j mod n_pes``, and every activation is non-zero:
    a PE meets a weight every ``n_pes`` columns, so the front end sets the pace."""
    matrix = np.zeros((n_pes, cols), dtype=np.int64)
    matrix[np.arange(cols) % n_pes, np.arange(cols)] = np.arange(cols) % 5 + 1
    return {"name": f"spread {cols}", "matrix": matrix.tolist(),
            "x": (np.arange(cols) % 200 + 1).tolist(), "stall": 0.0}


def test_cycle_model_is_exact_and_pairs_consecutive_activations(tmp_path):
    unit = SpMV(n_pes=3, rows=64, cols=96, value_bits=8, z_bits=3, lanes=4, queue_depth=6)
    rng = np.random.default_rng(11)
    jobs = [back_to_back_job(3, 48), back_to_back_job(3, 96), spread_job(3, 48),
            spread_job(3, 96)]
    jobs += [random_job(rng, f"w{w} x{a}", 61, 96, w, a) for w, a in
             ((0.0, 0.0), (0.5, 0.3), (0.8, 0.5), (0.9, 0.0), (0.97, 0.2))]
    jobs += digits_jobs(codebook=False)[::5]           # requantization on hidden layers
    out = tmp_path / "marks.json"
    run(unit, "sim.tb.spmv", name="spmv_3pe_cycles", testcase="benchmark",
        params={**unit_params(unit, jobs), "out": str(out)})
    marks = {mark["name"]: mark for mark in json.loads(out.read_text())}
    measured = {}
    for job in jobs:
        mark = marks[job["name"]]
        measured[job["name"]] = (mark["first_result"] - mark["first_act"],
                                 mark["last_result"] - mark["first_act"] + 1)
        model = csc.spmv_cycles(job["matrix"], job["x"], unit.n_pes, z_bits=unit.z_bits,
                                lanes=unit.lanes, queue_depth=unit.queue_depth,
                                requantize="bias" in job)
        assert measured[job["name"]] == model, job["name"]
    # Twice the columns, one column a cycle more: 48 more cycles (two cycles each before).
    assert measured["back to back 96"][0] - measured["back to back 48"][0] == 48
    # A PE walks a column a cycle, but the front end hands out two a cycle: 48 more columns
    # of one weight, every third to each PE, take 24 cycles more (48 with one a cycle).
    assert measured["spread 96"][0] - measured["spread 48"][0] == 24


def test_packer_rejects_malformed_images():
    matrix = np.eye(8, dtype=np.int64) * 3
    with pytest.raises(ValueError, match="PE 0 needs 4 entries but its weight memory holds 3"):
        csc.load_words(matrix, 2, capacity=3)
    with pytest.raises(ValueError, match="weight 9 does not fit"):
        csc.load_words(matrix * 3, 2, value_bits=4)
    with pytest.raises(ValueError, match="codebook index 16 does not fit"):
        csc.load_words(matrix * 16 // 3, 2, codebook=np.arange(16) * (np.arange(16) > 0))
    with pytest.raises(ValueError, match="z 9 does not fit 3 bits"):
        image = csc.encode(matrix, 1, z_bits=3)[0]
        csc.entries([csc.PEColumns(image.values, image.z + 9, image.pointers)], z_bits=3)


def pe_run(pe, words, pointers, vectors, codebook=None):
    """Load ``words`` into ``pe`` alone, then for each vector hand out its non-zero activations
    as the unit's front end does (two of consecutive columns when the hand-out before read the
    first one's pointer; the ``pointers`` read in the cycle after each is taken, as the unit's
    memory gives them),
    wait until the PE is idle (the unit turns to read-out a cycle after ``busy`` falls) and read
    every local row out (``readout.row`` one cycle ahead of ``take`` and ``readout.acc``);
    returns the rows read per vector."""
    got = []

    async def testbench(ctx):
        if codebook is not None:
            ctx.set(pe.table, [int(v) for v in codebook])
        for word in words:
            ctx.set(pe.load.payload.as_value(), load_payload(word, pe.entry_layout))
            ctx.set(pe.load.valid, 1)
            await ctx.tick()
        ctx.set(pe.load.valid, 0)
        for x in vectors:
            columns, read = [int(j) for j in np.flatnonzero(x)], None
            while columns:
                j = columns.pop(0)
                pair = read == j - 1 and columns[:1] == [j + 1]
                if pair:
                    columns.pop(0)
                read = j + pair
                ctx.set(pe.act.payload, {"x": [int(x[j]), int(x[j + 1]) if pair else 0],
                                         "pair": int(pair)})
                ctx.set(pe.act.valid, 1)
                await ctx.tick().until(pe.act.ready)
                ctx.set(pe.pointers, {"start": int(pointers[read]),
                                      "end": int(pointers[read + 1])})
            ctx.set(pe.act.valid, 0)
            await ctx.tick()
            while ctx.get(pe.busy):
                await ctx.tick()
            await ctx.tick()                  # the last product, not busy, is added
            rows = []
            ctx.set(pe.readout.row, 0)        # the row to read in the next cycle
            await ctx.tick()
            for row in range(pe.local_rows):
                ctx.set(pe.readout.row, row + 1)
                ctx.set(pe.readout.take, 1)
                rows.append(ctx.get(pe.readout.acc))
                await ctx.tick()
            ctx.set(pe.readout.take, 0)
            await ctx.tick()
            got.append(rows)

    sim = Simulator(pe)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return got


@pytest.mark.parametrize("codebook", [False, True], ids=["direct", "codebook"])
def test_pe_alone_walks_columns_with_padding(codebook):
    seed = 21 + codebook
    rng = np.random.default_rng(seed)
    rows, cols = 19, 7
    if codebook:
        table = np.concatenate([[0], rng.integers(-128, 128, size=15)])
        matrix = rng.integers(1, 16, size=(rows, cols)) * (rng.random((rows, cols)) < 0.3)
    else:
        table = None
        matrix = rng.integers(1, 8, size=(rows, cols)) * rng.choice([-1, 1], size=(rows, cols))
        matrix *= rng.random((rows, cols)) < 0.3
    matrix[:, 2] = 0                          # an empty column
    matrix[:, 4] = 0
    matrix[[0, 9, 18], 4] = [3, 2, 1]         # gaps longer than 2-bit zero runs: padding
    matrix[:, 5] = 0
    matrix[[1, 2, 3, 7, 8], 5] = 1            # a run of entries, a padding entry inside
    image, = csc.encode(matrix, 1, z_bits=2)
    assert (image.values == 0).sum() >= 3, "the walk must meet padding entries"
    pe = SpMVPE(cols=cols, local_rows=rows, entries=len(image.values), value_bits=4,
                codebook=codebook, z_bits=2, act_bits=8, queue_depth=2, acc_width=24)
    words = [word for word in csc.load_words(matrix, 1, z_bits=2, value_bits=4, codebook=table)
             if word.kind == "ENTRY"]
    vectors = [rng.integers(0, 256, size=cols) * (rng.random(cols) < 0.7),
               np.full(cols, 255), np.zeros(cols, dtype=np.int64)]
    weights = table[matrix] if codebook else matrix
    got = pe_run(pe, words, image.pointers, vectors, table)
    for x, rows_read in zip(vectors, got):
        assert rows_read == (weights @ x).tolist(), seed


@pytest.mark.parametrize("order", ["column-major", "two columns interleaved", "shuffled"])
def test_column_pointers_keep_every_pe_pointer_whatever_the_word_order(order):
    """A loader word changes one PE's pointer in its column's word (read, then written two
    cycles later): words for one column back to back (the write one cycle back is missed by
    the read) or one apart (two cycles back), in any order, rewrites, words of other kinds and
    out of range must leave exactly what the last word for each pointer said."""
    rng = np.random.default_rng(5 + len(order))
    n_pes, cols, bits = 3, 6, 9
    memory = ColumnPointers(n_pes=n_pes, cols=cols, pointer_bits=bits)
    if order == "two columns interleaved":       # (j, pe 0), (j+1, pe 0), (j, pe 1), ...
        places = [(j + step % 2, step // 2) for j in range(0, cols + 1, 2)
                  for step in range(2 * n_pes) if j + step % 2 <= cols]
    else:
        places = [(j, pe) for j in range(cols + 1) for pe in range(n_pes)]
    words = [csc.LoadWord("POINTER", pe, j, int(rng.integers(0, 1 << bits))) for j, pe in places]
    words += [csc.LoadWord("POINTER", int(rng.integers(0, n_pes)), int(rng.integers(0, cols + 1)),
                           int(rng.integers(0, 1 << bits))) for _ in range(12)]     # rewrites
    if order == "shuffled":
        words = [words[i] for i in rng.permutation(len(words))]
    words[5:5] = [csc.LoadWord("POINTER", n_pes, 2, 1), csc.LoadWord("POINTER", 0, cols + 1, 1),
                  csc.LoadWord("BIAS", 0, 2, 7), csc.LoadWord("MULTIPLIER", 1, 2, 7)]
    expected = np.zeros((n_pes, cols + 1), dtype=np.int64)
    for word in words:
        if word.kind == "POINTER" and word.pe < n_pes and word.addr <= cols:
            expected[word.pe, word.addr] = word.fields
    read = []

    async def testbench(ctx):
        for word in words:
            ctx.set(memory.load.payload.as_value(), load_payload(word, None))
            ctx.set(memory.load.valid, 1)
            await ctx.tick()
        ctx.set(memory.load.valid, 0)
        while ctx.get(memory.busy):
            await ctx.tick()
        for j in range(cols):
            ctx.set(memory.column, j)
            await ctx.tick()
            read.append([(ctx.get(span.start), ctx.get(span.end)) for span in memory.spans])

    sim = Simulator(memory)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert read == [[(expected[pe, j], expected[pe, j + 1]) for pe in range(n_pes)]
                    for j in range(cols)]


@pytest.mark.parametrize("last_kind, cycles", [("POINTER", 5), ("BIAS", 2)])
def test_first_beat_waits_for_the_pointers_written(last_kind, cycles):
    """The datasheet: the vector's first beat is taken no earlier than two cycles after the
    last loader word, five after the last ``POINTER`` word (written three cycles after it is
    taken, by the read-modify-write of its column's word)."""
    matrix = np.array([[1, 0, 2], [0, 3, 0]])
    unit = SpMV(n_pes=2, rows=2, cols=3, value_bits=4, lanes=4)
    words = sorted(csc.load_words(matrix, 2, value_bits=4, bias=np.array([0, 0]),
                                  multiplier=np.array([1, 1]), shift=1, out_bits=8),
                   key=lambda word: word.kind == last_kind)
    assert words[-1].kind == last_kind
    waited = []

    async def testbench(ctx):
        for word in words:
            ctx.set(unit.load.payload.as_value(), load_payload(word, unit.entry_layout))
            ctx.set(unit.load.valid, 1)
            await ctx.tick().until(unit.load.ready)
        ctx.set(unit.load.valid, 0)
        ctx.set(unit.act.payload, {"x": [1, 1, 1, 0], "last": 1})
        ctx.set(unit.act.valid, 1)
        count = 1
        while not ctx.get(unit.act.ready):
            await ctx.tick()
            count += 1
        waited.append(count)

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert waited == [cycles]


def test_pe_converts_to_verilog_alone():
    pe = SpMVPE(cols=16, local_rows=8, entries=64, value_bits=4, z_bits=2)
    text = verilog.convert(pe, name="spmv_pe")
    for port in ("act__valid", "act__ready", "load__payload", "busy", "readout__acc"):
        assert port in text


@pytest.mark.parametrize("parameters, message", [
    ({"n_pes": 0}, "n_pes must be between 1 and 64, not 0"),
    ({"value_bits": 3}, "value_bits must be 2, 4 or 8, not 3"),
    ({"cols": 256, "acc_width": 20}, "acc_width must be between 24 and 48, not 20"),
    ({"queue_depth": 1}, "queue_depth must be between 2 and 256, not 1"),
])
def test_bad_parameters_name_the_value(parameters, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        SpMV(**parameters)


def test_column_queue_keeps_only_what_it_is_told_to_and_never_overwrites_its_head():
    queue = ColumnQueue(8, 3)
    taken = []

    async def testbench(ctx):
        async def step(write=None, keep=False, take=False):
            ctx.set(queue.w_write, write is not None)
            ctx.set(queue.w_data, write or 0)
            ctx.set(queue.w_en, keep)
            ctx.set(queue.r_en, take)
            if take and ctx.get(queue.r_rdy):
                taken.append(ctx.get(queue.r_data))
            await ctx.tick()
        await step(write=1)                       # written, not kept
        assert ctx.get(queue.level) == 0 and not ctx.get(queue.r_rdy)
        await step(write=2, keep=True)
        await step(write=3, keep=True)
        await step(write=9)                       # the next free slot, not kept
        await step(write=4, keep=True)            # full now
        assert ctx.get(queue.level) == 3
        await step(write=5, keep=True)            # no room: neither written nor kept
        await step(take=True)
        await step(write=6, keep=True, take=True)
        await step(take=True)
        await step(take=True)
        await step(take=True)
        assert ctx.get(queue.level) == 0

    sim = Simulator(queue)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert taken == [2, 3, 4, 6]
