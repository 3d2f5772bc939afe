"""The accelerator's compiler and instruction-level model (golden/accel.py, docs/isa.md):
the digits network bit-exact on the model, the words it compiles, and the error rules."""

import dataclasses
import numpy as np
import pytest
from amaranth import unsigned
from amaranth.lib import data

from golden.accel import AccelModel, compile_network, fields
from golden.bitfusion import unpack
from golden.csc import spmv_cycles
from golden.network import PRECISIONS, digits_network, digits_split
from golden.systolic import Tiling, gemm_cycles
from golden.topk import topk
from rtl.accel.config import AccelConfig, SpmvConfig, TopkConfig
from rtl.accel.isa import Engine, GemmArgs, Instruction, Opcode, OutputWord, Space
from rtl.fusion import BitWidth, mode_const
from rtl.spmv import Load, LoadKind

DEFAULT = AccelConfig()
#: An odd accelerator: 3x5 fixed 8-bit array (C not a power of two: gaps in the scratchpad,
#: every layer in 8x8 mode), a 2-PE sparse unit taking 2 activations per beat.
ODD = AccelConfig(rows=3, cols=5, precision=8, weight_words=2048,
                  spmv=SpmvConfig(n_pes=2, rows=128, cols=128, lanes=2))
CONFIGS = {"default": DEFAULT, "3x5-8bit": ODD}
ENGINE_SETS = {"array": ("array", "array", "array"), "spmv": ("spmv", "spmv", "array")}
IMAGES = 16


@pytest.fixture(scope="module")
def test_images():
    return digits_split()[1][:IMAGES]


def run_batch(config, program, a0):
    """Load ``program``, run one batch of ``a0``; the model and its published page."""
    model = AccelModel(config)
    model.load(program)
    model.start()
    model.fill_input(program.input_page(a0))
    status = model.status()
    assert not status["error"] and status["results_ready"], status
    return model, status["results_page"]


@pytest.mark.parametrize("engines", ENGINE_SETS)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("sparsity", (0.5, 0.9))
@pytest.mark.parametrize("precision", PRECISIONS)
def test_digits_bit_exact(precision, sparsity, config, engines, test_images):
    network = digits_network(PRECISIONS[precision], sparsity)
    config = CONFIGS[config]
    program = compile_network(network, config, IMAGES, engines=ENGINE_SETS[engines])
    assert [layer.engine for layer in program.layers] == list(ENGINE_SETS[engines])
    a0 = network.quantize_input(test_images)
    model, page = run_batch(config, program, a0)
    classes = program.read_outputs(model.read, page, IMAGES)
    # The class program leaves the logits in RESULT where a logits program reads them.
    logits = dataclasses.replace(program, output="logits").read_outputs(model.read, page,
                                                                        IMAGES)
    assert np.array_equal(logits, network.forward(a0))
    assert np.array_equal(classes, network.predict(test_images))


def test_the_first_sparse_layer_loads_while_the_array_runs(test_images):
    """With the first layer on the sparse unit, its LOAD_SPMV for the next batch runs beside
    the array's layers (after the last sparse layer), the first batch's before the loop: the
    same outputs as the load inside the loop, and each batch shorter by at least the load's
    words."""
    network = digits_network(PRECISIONS["mixed"], 0.9)
    program = compile_network(network, DEFAULT, IMAGES, engines=ENGINE_SETS["spmv"])
    opcodes = [Instruction.from_bits(word).opcode for word in program.instructions]
    assert opcodes == [Opcode.LOAD_SPMV, Opcode.SYNC, Opcode.SPMV, Opcode.WAIT,
                       Opcode.LOAD_SPMV, Opcode.SPMV, Opcode.WAIT, Opcode.LOAD_SPMV,
                       Opcode.GEMM, Opcode.WAIT, Opcode.TOPK, Opcode.WAIT, Opcode.DONE,
                       Opcode.JUMP]
    load = program.instructions[0]
    assert program.instructions[7] == load
    assert Instruction.from_bits(program.instructions[-1]).args.jump.target == 1
    # The same program with the load back in the loop, ahead of the first layer.
    jump = Instruction.const({"opcode": Opcode.JUMP, "args": {"jump": {"target": 0}}})
    serial = dataclasses.replace(program, instructions=[
        program.instructions[1], load, *program.instructions[2:7], *program.instructions[8:-1],
        jump.as_bits()])
    a0 = network.quantize_input(digits_split()[1][:4 * IMAGES])
    intervals = {}
    for name, compiled in (("pipelined", program), ("serial", serial)):
        model = AccelModel(DEFAULT)
        model.load(compiled)
        assert np.array_equal(model.infer(compiled, a0), network.predict(
            digits_split()[1][:4 * IMAGES]))
        intervals[name] = np.diff(model.timing.published)[-1]
    words = Instruction.from_bits(load).args.load_spmv.count
    assert intervals["serial"] - intervals["pipelined"] >= words


def test_infer_batches_with_padding_and_logits(test_images):
    network = digits_network(PRECISIONS["mixed"], 0.5)
    x = digits_split()[1][:2 * IMAGES + 5]          # three batches, the last padded
    a0 = network.quantize_input(x)
    model = AccelModel(DEFAULT)
    program = compile_network(network, DEFAULT, IMAGES)
    model.load(program)
    assert np.array_equal(model.infer(program, a0), network.predict(x))
    logits_program = compile_network(network, DEFAULT, IMAGES, output="logits")
    model.reset()                                   # the class program still runs
    model.load(logits_program)
    assert np.array_equal(model.infer(logits_program, a0), network.forward(a0))


def test_a_corrupted_weight_word_changes_the_logits(test_images):
    network = digits_network(PRECISIONS["8-bit"], 0.5)
    program = compile_network(network, DEFAULT, IMAGES, output="logits")
    a0 = network.quantize_input(test_images)
    weights = dict(program.memories[Space.WEIGHT])
    weights[5] ^= 1 << 6                             # layer 0, tile 0, step 5, column 0
    corrupted = dataclasses.replace(program, memories={**program.memories,
                                                       Space.WEIGHT: weights})
    model = AccelModel(DEFAULT)
    model.load(corrupted)
    assert not np.array_equal(model.infer(corrupted, a0), network.forward(a0))


def test_layer_0_words_on_the_default_accelerator():
    network = digits_network(PRECISIONS["8-bit"], 0.5)
    layer = network.layers[0]
    program = compile_network(network, DEFAULT, IMAGES)
    opcodes = [Instruction.from_bits(word).opcode for word in program.instructions]
    assert opcodes == [Opcode.SYNC, Opcode.GEMM, Opcode.WAIT, Opcode.GEMM, Opcode.WAIT,
                       Opcode.GEMM, Opcode.WAIT, Opcode.TOPK, Opcode.WAIT, Opcode.DONE,
                       Opcode.JUMP]
    gemm = Instruction.from_bits(program.instructions[1]).args.gemm
    # 8x8 mode: L = 1 lane, K = 64 -> 64 steps; 16 images on 8 rows -> 2 tile rows; 64
    # outputs on 8 columns -> 8 tile columns; V = 16 lanes: 64 inputs are 4 words per group.
    assert (gemm.mode.w_bits, gemm.mode.a_bits) == (BitWidth.B8, BitWidth.B8)
    assert (gemm.mode.w_signed, gemm.mode.a_signed) == (1, 0)
    assert (gemm.k_steps, gemm.tile_rows, gemm.tile_cols) == (64, 2, 8)
    assert (gemm.src_input, gemm.src, gemm.in_stride) == (1, 0, 4)
    # Outputs above the two 64-word input pages, 8 tiles x 8 lanes = 4 words per group.
    assert (gemm.dst, gemm.out_stride, gemm.weights, gemm.params) == (128, 4, 0, 0)
    assert (gemm.requantize, gemm.shift, gemm.out_bits) == (1, layer.shift, 8)
    wait = Instruction.from_bits(program.instructions[2]).args.wait
    assert wait.engines == Engine.ARRAY
    # WEIGHT word tn * k_steps + s, column c: W[tn*8 + c, s] (one 8-bit lane).
    weight_layout = DEFAULT.word_layout(Space.WEIGHT)
    for tn, s, c in ((0, 0, 0), (3, 17, 5), (7, 63, 7)):
        word = weight_layout.from_bits(program.memories[Space.WEIGHT][tn * 64 + s])
        assert unpack(int(word[c]) & 0xFF, 8, 1, True)[0] == layer.weight[tn * 8 + c, s]
    params = DEFAULT.word_layout(Space.PARAM).from_bits(program.memories[Space.PARAM][2])
    assert params[3].bias == layer.bias[19] and params[3].multiplier == layer.multiplier[19]
    assert (program.input_src, program.input_stride, program.input_words) == (0, 4, 4)


def test_2_bit_layer_0_packs_16_lanes():
    network = digits_network(PRECISIONS["2-bit"], 0.5)
    layer = network.layers[0]
    program = compile_network(network, DEFAULT, IMAGES)
    gemm = Instruction.from_bits(program.instructions[1]).args.gemm
    assert (gemm.mode.w_bits, gemm.mode.a_bits, gemm.k_steps) == (BitWidth.B2, BitWidth.B2, 4)
    word = DEFAULT.word_layout(Space.WEIGHT).from_bits(program.memories[Space.WEIGHT][4 + 2])
    lanes = unpack(int(word[6]) & 0xFFFFFFFF, 2, 16, True)          # tile 1, step 2, column 6
    assert np.array_equal(lanes, layer.weight[14, 32:48])


def test_gaps_on_the_3x5_array_and_the_sparse_unit():
    network = digits_network(PRECISIONS["4-bit"], 0.9)
    program = compile_network(network, ODD, IMAGES, engines=ENGINE_SETS["spmv"])
    assert program.batch == 18                       # a multiple of 3 rows
    spmv_args = [Instruction.from_bits(word).args.spmv for word in program.instructions
                 if Instruction.from_bits(word).opcode == Opcode.SPMV]
    assert [(a.cols, a.rows, a.images) for a in spmv_args] == [(64, 64, 18), (64, 32, 18)]
    # Layer 1 on the sparse unit after layer 0 on the array: 100 columns, gaps included.
    program = compile_network(network, ODD, IMAGES, engines=("array", "spmv", "array"))
    spmv_layer = program.layers[1]
    assert (spmv_layer.engine, spmv_layer.inputs, spmv_layer.outputs) == ("spmv", 100, 32)
    x = digits_split()[1][:IMAGES]
    a0 = network.quantize_input(x)
    model, page = run_batch(ODD, program, a0)
    assert np.array_equal(program.read_outputs(model.read, page, IMAGES), network.predict(x))
    array_program = compile_network(network, ODD, IMAGES, engines=ENGINE_SETS["array"])
    gemms = [Instruction.from_bits(word).args.gemm for word in array_program.instructions
             if Instruction.from_bits(word).opcode == Opcode.GEMM]
    # A 4-bit layer on the 8-bit array runs in 8x8 mode; layer 0's 64 outputs are 13 tiles
    # of 5, written at tn * 8 + c: layer 1 reads 12 * 8 + 4 = 100 positions, 1 lane a step.
    assert all((g.mode.w_bits, g.mode.a_bits) == (BitWidth.B8, BitWidth.B8) for g in gemms)
    assert [(g.k_steps, g.tile_cols, g.out_stride) for g in gemms] == \
        [(64, 13, 13), (100, 7, 7), (50, 2, 0)]
    # Layer 1's weights at the gap positions 5..7 of every tile are 0.
    layout = ODD.word_layout(Space.WEIGHT)
    weights = array_program.memories[Space.WEIGHT]
    base = gemms[1].weights
    assert all(layout.from_bits(weights[base + tn * 100 + s])[c] == 0
               for tn in range(7) for s in range(100) if s % 8 >= 5 for c in range(5))
    layer = network.layers[1]
    assert layout.from_bits(weights[base + 2 * 100 + 9])[4] & 0xFF == \
        layer.weight[2 * 5 + 4, 6] & 0xFF                             # position 9 = input 6


def test_engine_choice_follows_the_cycle_models():
    network = digits_network(PRECISIONS["mixed"], 0.9)
    program = compile_network(network, DEFAULT, IMAGES)
    first = program.layers[0]
    assert first.estimates["array"] == gemm_cycles(Tiling(16, 64, 64, 8, 8, 1), 2, 7)
    assert first.estimates["spmv"] == 16 * spmv_cycles(network.layers[0].weight, np.ones(64),
                                                       4, requantize=True)[1]
    for plan in program.layers:
        options = {name: cycles for name, cycles in plan.estimates.items() if cycles is not None}
        assert plan.engine == min(options, key=options.get)
    assert program.layers[-1].estimates["spmv"] is None
    # On all-zero calibration activations the sparse unit skips every column: it becomes
    # the cheaper engine for layer 0.
    zeros = np.zeros((4, 64), dtype=np.int64)
    chosen = compile_network(network, DEFAULT, IMAGES, calibration=zeros)
    assert chosen.layers[0].estimates["spmv"] < chosen.layers[0].estimates["array"]
    assert chosen.layers[0].engine == "spmv"


def instruction(opcode, **args):
    word = {"opcode": opcode}
    if args:
        word["args"] = {opcode.name.lower(): args}
    return Instruction.const(word).as_bits()


def bad_programs():
    config = DEFAULT
    wait = instruction(Opcode.WAIT, engines=Engine.ARRAY)
    # Opcode 9 is not an Opcode: the word is built through Instruction's fields with a plain
    # 4-bit opcode.
    raw = data.StructLayout({name: unsigned(field.width) if name == "opcode" else field.shape
                             for name, field in Instruction})
    unknown = raw.const({"opcode": 9}).as_bits()
    past_act = instruction(Opcode.GEMM, mode=mode_const(8, 8, True, False), requantize=1,
                           src=config.act_words - 1, in_stride=1, dst=200, out_stride=1,
                           k_steps=17, tile_rows=1, tile_cols=1, shift=8, out_bits=8)
    k_above_n = instruction(Opcode.TOPK, src=0, tile_cols=1, n=5, k=6, images=1, dst=0)
    return {"unknown opcode": [wait, unknown],
            "GEMM past ACT": [wait, wait, past_act],
            "TOPK k > n": [wait, k_above_n]}


@pytest.mark.parametrize("case", bad_programs())
def test_errors_stop_the_program_and_the_next_one_runs(case, test_images):
    words = bad_programs()[case]
    model = AccelModel(DEFAULT)
    for pc, word in enumerate(words):
        model.write(Space.PROGRAM, pc, word)
    model.start()
    status = model.status()
    assert status["error"] and not status["running"]
    assert status["error_pc"] == len(words) - 1
    network = digits_network(PRECISIONS["mixed"], 0.5)
    program = compile_network(network, DEFAULT, IMAGES)
    model.load(program)
    assert np.array_equal(model.infer(program, network.quantize_input(test_images)),
                          network.predict(test_images))
    assert not model.status()["error"]


def test_the_same_instruction_within_bounds_runs():
    """The GEMM of the error test reads two words: one word lower it is no error."""
    model = AccelModel(DEFAULT)
    model.write(Space.PROGRAM, 0, instruction(
        Opcode.GEMM, mode=mode_const(8, 8, True, False), requantize=1,
        src=DEFAULT.act_words - 2, in_stride=1, dst=200, out_stride=1, k_steps=17,
        tile_rows=1, tile_cols=1, shift=8, out_bits=8))
    model.write(Space.PROGRAM, 1, instruction(Opcode.HALT))
    model.start()
    assert model.status()["error"] is False and model.status()["running"] is False


def test_pages_block_sync_and_done(test_images):
    network = digits_network(PRECISIONS["4-bit"], 0.5)
    program = compile_network(network, DEFAULT, IMAGES)
    a0 = network.quantize_input(test_images)
    model = AccelModel(DEFAULT)
    model.load(program)
    model.start()
    assert (model.pc, model.running) == (0, True)          # SYNC: no page filled yet
    assert model.status()["input_page"] == 0
    model.fill_input(program.input_page(a0))
    assert model.status()["results_page"] == 0 and model.pc == 0   # back at SYNC, page 1 empty
    model.fill_input(program.input_page(a0[::-1]))
    done = len(program.instructions) - 2
    assert model.pc == done                                 # DONE: page 0 not collected
    first = program.read_outputs(model.read, 0, IMAGES)
    model.results_taken()
    assert model.status()["results_page"] == 1 and model.pc == 0
    second = program.read_outputs(model.read, 1, IMAGES)
    expected = network.predict(test_images)
    assert np.array_equal(first, expected) and np.array_equal(second, expected[::-1])


def test_host_chunks():
    model = AccelModel(DEFAULT)
    # A WEIGHT word is 256 bits: 8 chunks; a PARAM word 384 bits: 12 chunks at a stride of 16.
    model.write(Space.WEIGHT, 3, (1 << 256) - 1)
    model.write_chunk(Space.WEIGHT, 3 * 8 + 2, 0x12345678)
    assert model.read(Space.WEIGHT, 3) == \
        ((1 << 256) - 1) & ~(0xFFFFFFFF << 64) | 0x12345678 << 64
    model.write_chunk(Space.PARAM, 2 * 16 + 11, 0xFFFFFFFF)
    assert model.read(Space.PARAM, 2) == 0xFFFFFFFF << 352
    model.write_chunk(Space.PARAM, 2 * 16 + 12, 0xFFFFFFFF)         # past the word: ignored
    model.write_chunk(Space.PARAM, DEFAULT.param_words * 16, 1)    # past the depth: dropped
    assert model.read(Space.PARAM, 2) == 0xFFFFFFFF << 352
    # The host reads RESULT and OUTPUT (both pages); any other memory reads 0.
    assert model.read_chunk(Space.WEIGHT, 3 * 8 + 2) == 0
    model.write(Space.RESULT, DEFAULT.result_words + 1, 7 << 32)
    assert model.read_chunk(Space.RESULT, (DEFAULT.result_words + 1) * 16 + 1) == 7
    # SPMV: chunk 0 is kept, chunk 1 sends the Load word into the sparse unit.
    load = Load.const({"kind": LoadKind.BIAS, "pe": 1, "addr": 5,
                       "data": {"bias": -3}}).as_bits()
    model.write_chunk(Space.SPMV, 0, load & 0xFFFFFFFF)
    assert model.sparse.bias[1, 5] == 0
    model.write_chunk(Space.SPMV, 1, load >> 32)
    assert model.sparse.bias[1, 5] == -3


@pytest.mark.parametrize("change, message", [
    ({"weight_words": 600},
     "layer 1 (32 x 64, array, 8x8 mode) needs WEIGHT words 512..767 but the memory has 600"),
    ({"act_words": 130},
     "layer 0 (64 x 64, array, 8x8 mode) needs ACT words 128..135 for its outputs but the "
     "memory has 130"),
    ({"input_words": 4},
     "layer 0 (64 x 64, array, 8x8 mode) needs input page words 0..7 for 16 images but a "
     "page has 4"),
])
def test_a_network_that_does_not_fit(change, message):
    network = digits_network(PRECISIONS["8-bit"], 0.5)
    config = dataclasses.replace(DEFAULT, **change)
    with pytest.raises(ValueError) as error:
        compile_network(network, config, IMAGES)
    assert str(error.value) == message


def test_the_output_layer_cannot_run_on_the_sparse_unit():
    network = digits_network(PRECISIONS["8-bit"], 0.5)
    with pytest.raises(ValueError, match=r"^layer 2 \(10 x 32, spmv\) is the output layer"):
        compile_network(network, DEFAULT, IMAGES, engines=("array", "array", "spmv"))


def test_fields_reads_what_from_bits_reads():
    network = digits_network(PRECISIONS["mixed"], 0.5)
    program = compile_network(network, DEFAULT, IMAGES)
    gemm = Instruction.from_bits(program.instructions[1]).args.gemm
    args = fields(Instruction, program.instructions[1])["args"]
    read = fields(GemmArgs, args)                     # the union member named like the opcode
    assert {name: read[name] for name in ("src", "dst", "k_steps", "tile_cols", "shift")} == \
        {name: getattr(gemm, name) for name in ("src", "dst", "k_steps", "tile_cols", "shift")}
    param = program.memories[Space.PARAM][1]
    assert fields(DEFAULT.word_layout(Space.PARAM), param)[5] == \
        {"bias": network.layers[0].bias[13], "multiplier": network.layers[0].multiplier[13]}
    page = program.input_page(network.quantize_input(digits_split()[1][:IMAGES]))
    act = DEFAULT.word_layout(Space.ACT)
    assert fields(act, page[5]) == [[int(lane) for lane in bank]
                                    for bank in act.from_bits(page[5])]


def topk_alone(config, scores, k, tile_cols):
    """Run TOPK alone on the model: image ``i``'s scores (``scores[i]``) written into RESULT
    words ``(i div d) * tile_cols + t`` (bank ``i mod d``, ``C`` a word), then TOPK, WAIT and
    HALT. The indices in OUTPUT (images x k) and the TOPK's trace entry."""
    images, n = scores.shape
    C, d = config.cols, config.rows_per_beat
    layout = config.word_layout(Space.RESULT)
    model = AccelModel(config)
    for group in range(-(-images // d)):
        for t in range(tile_cols):
            banks = [[0] * C for _ in range(d)]
            for b in range(d):
                i = group * d + b
                if i < images:
                    row = scores[i, t * C:(t + 1) * C]
                    banks[b][:len(row)] = [int(v) for v in row]
            model.write(Space.RESULT, group * tile_cols + t, layout.const(banks).as_bits())
    for pc, word in enumerate([
            instruction(Opcode.TOPK, src=0, tile_cols=tile_cols, n=n, k=k, images=images, dst=0),
            instruction(Opcode.WAIT, engines=Engine.TOPK), instruction(Opcode.HALT)]):
        model.write(Space.PROGRAM, pc, word)
    model.start()
    assert not model.status()["error"] and not model.status()["running"]
    indices = np.array([fields(OutputWord, model.read(Space.OUTPUT, w))["index"]
                        for w in range(images * k)]).reshape(images, k)
    return indices, model.timing.trace[0]


#: 3 images of 29 scores (4 words of C = 8: not a multiple of C nor of 2), many ties.
TOPK_SCORES = np.random.default_rng(5).integers(-4, 4, (3, 29))


@pytest.mark.parametrize("par", [None, 1, 2, 4, 8])
def test_topk_selection_does_not_depend_on_scores_per_beat(par):
    """The indices are golden.topk's (ties to the lower index, ascending) whatever the top-k
    engine's scores per beat; the default 8x8 array (d = 2 banks a word)."""
    config = dataclasses.replace(DEFAULT, topk=TopkConfig(par=par))
    assert config.topk_par == (8 if par is None else par)
    for k in (1, 3, 8):
        indices, _ = topk_alone(config, TOPK_SCORES, k, tile_cols=4)
        for image, got in zip(TOPK_SCORES, indices):
            assert list(got) == list(topk(image, k)[0])


@pytest.mark.parametrize("par, cycles", [(None, 93), (8, 93), (2, 77), (1, 105)])
def test_topk_cycles_with_fewer_scores_per_beat(par, cycles):
    """TOPK k = 1 (not k_max = 8) of 3 images of n = 29 on the default array: the engine's
    cycles from its first score to its last index, as golden.topk.batch_cycles counts them
    (docs/accel.md, Timing), worked out by hand. The engine's latency is 1 + 2 * (layers of
    Batcher's network for the lanes of a list) + 2 * k_max + the merge stages: P = 8, two
    lists of 4 lanes, 3 layers, 2 gather stages and one merge of 3: 28; P = 2, 1 layer: 19;
    P = 1, none: 17. An image is ceil(29 / P) beats (4, 15, 29), its index offered latency
    + 1 after its last beat, and its last beat waits for the index before it:
    - P = 8: last beats at 3, max(4 + 3, 33) = 33, max(34 + 3, 63) = 63; last index 63 + 29.
    - P = 2: last beats at 14, max(15 + 14, 35) = 35, max(36 + 14, 56) = 56; 56 + 20 = 76.
    - P = 1: last beats at 28, max(29 + 28, 47) = 57, max(58 + 28, 76) = 86; 86 + 18 = 104.
    The k set in the cycle before the first score is not counted; cycles = last index + 1."""
    config = dataclasses.replace(DEFAULT, topk=TopkConfig(par=par))
    _, trace = topk_alone(config, TOPK_SCORES, 1, tile_cols=4)
    assert trace["opcode"] == "TOPK" and trace["engine_cycles"] == cycles
    assert trace["idle"] - trace["executed"] == 2 + cycles        # TOPK_START


@pytest.mark.parametrize("par, message", [
    (0, "topk_par must be between 1 and 32, not 0"),
    (2.0, "topk_par must be between 1 and 32, not 2.0"),
    (True, "topk_par must be between 1 and 32, not True"),
    (3, "topk_par must divide the array's cols (8), not 3"),
    (16, "topk_par must divide the array's cols (8), not 16"),
])
def test_topk_par_checks(par, message):
    with pytest.raises(ValueError) as error:
        AccelConfig(topk=TopkConfig(par=par))
    assert str(error.value) == message


def test_topk_par_defaults_to_the_columns():
    assert AccelConfig().topk_par == 8 and AccelConfig(cols=5).topk_par == 5
    assert AccelConfig(cols=6, topk=TopkConfig(par=3)).topk_par == 3
    assert AccelConfig(topk=None).topk_par is None


def test_drain_rows_default_follows_the_rows_through_replace():
    # The field keeps what was asked: a configuration derived with other rows takes their
    # default (1 for 4 rows, 2 for 8), as a new one would; an explicit value stays.
    assert AccelConfig().rows_per_beat == 2 and AccelConfig(rows=4).rows_per_beat == 1
    assert dataclasses.replace(AccelConfig(), rows=4).rows_per_beat == 1
    assert dataclasses.replace(AccelConfig(), rows=5).rows_per_beat == 5   # no error
    assert dataclasses.replace(AccelConfig(drain_rows=4), rows=4).rows_per_beat == 4
    assert dataclasses.replace(AccelConfig(), rows=4) == AccelConfig(rows=4)
    with pytest.raises(ValueError, match=r"drain_rows must divide the array's rows \(8\), not 3"):
        AccelConfig(drain_rows=3)


def test_a_default_drain_rows_equals_the_value_it_stands_for():
    # What the host reads back from a board (drain_rows as a number) is the configuration
    # it was built from (drain_rows None).
    assert AccelConfig() == AccelConfig(drain_rows=2) != AccelConfig(drain_rows=1)
    assert hash(AccelConfig()) == hash(AccelConfig(drain_rows=2))
