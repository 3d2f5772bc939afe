# amaranth: UnusedElaboratable=no
"""The accelerator's compiler and instruction-level model (docs/isa.md).

:func:`compile_network` turns a quantized network (:class:`golden.network.QuantizedMLP`) into
a :class:`Program`: the instruction words and the memory images to load once, each layer on
the engine whose cycle model is the cheaper, every word built through the layouts of
:mod:`rtl.accel.isa`, :mod:`rtl.accel.config` and :mod:`rtl.spmv`.

:class:`AccelModel` executes a program instruction by instruction as docs/isa.md says, with
the host's side of the memories and the input and result pages. It models what the engines
compute, integer-exact (its classes and logits equal the layer-by-layer golden network's bit
for bit), and when (:class:`Timing`: the cycle of every instruction and publication, equal
to the RTL's for a host that is always ahead).

Words are read back with :func:`fields`, which reads a layout's own fields and offsets (the
layouts' ``from_bits`` gives the same values, more slowly).
"""

import functools
import math
from dataclasses import dataclass

import numpy as np
from amaranth import Shape
from amaranth.lib import data

from golden.bitfusion import pack_checked, unpack
from golden.checks import integer, integer_array
from golden.csc import PEColumns, decode, load_words, spmv, spmv_cycles
from golden.network import QuantizedMLP
from golden.requant import MAX_SHIFT, requantize
from golden.systolic import Tiling, gemm_cycles
from golden.topk import batch_cycles, topk
from rtl.accel.config import AccelConfig
from rtl.accel.isa import (ADDRESS_BITS, CHUNK_ADDRESS_BITS, CHUNK_BITS, LANE_BITS, Engine,
                           GemmArgs, Instruction, JumpArgs, LoadSpmvArgs, Opcode, OutputWord,
                           Space, SpmvArgs, TopkArgs, WaitArgs)
from rtl.fusion import BitWidth, lanes, mode_const, modes
from rtl.spmv import Entry, Load, LoadKind
from rtl.topk import TopK

__all__ = ["ENGINES", "OUTPUTS", "SPMV_VALUE_BITS", "SPMV_Z_BITS", "fields", "array_cycles",
           "array_mode", "LayerPlan", "Program", "compile_network", "Timing", "AccelModel"]

#: The engines a layer can run on.
ENGINES = ("array", "spmv")
#: What a program gives per image: the class (TOPK k=1 into OUTPUT) or the logits (RESULT).
OUTPUTS = ("class", "logits")
#: The sparse unit's stored weights and zero runs (the accelerator's ``rtl.spmv.SpMV``).
SPMV_VALUE_BITS, SPMV_Z_BITS = 8, 4
#: The memories of the model (``Space.SPMV`` is a port, not a memory).
MEMORIES = (Space.PROGRAM, Space.ACT, Space.WEIGHT, Space.PARAM, Space.CSC, Space.RESULT,
            Space.OUTPUT)


def fields(shape, bits):
    """The value of ``bits`` read as ``shape``: lists for array layouts, dicts for struct
    layouts, ints (signed where the field is) for plain shapes and enums.

    Reads the layout's own fields and offsets; equal to ``shape.from_bits(bits)`` field by
    field.
    """
    return _reader(shape)(bits)


@functools.lru_cache(maxsize=None)
def _reader(shape):
    """A function reading ``bits`` as ``shape`` (see :func:`fields`), built once per shape."""
    if isinstance(shape, data.ArrayLayout):
        element = _reader(shape.elem_shape)
        parts = [(shape[i].offset, (1 << shape[i].width) - 1) for i in range(shape.length)]
        return lambda bits: [element(bits >> offset & mask) for offset, mask in parts]
    if isinstance(shape, data.StructLayout):
        parts = [(name, field.offset, (1 << field.width) - 1, _reader(field.shape))
                 for name, field in shape]
        return lambda bits: {name: read(bits >> offset & mask)
                             for name, offset, mask, read in parts}
    shape = Shape.cast(shape)
    if not shape.signed:
        return int
    top = 1 << (shape.width - 1)
    return lambda bits: bits - 2 * top if bits & top else bits


def _field_bits(field, bits):
    return (bits >> field.offset) & ((1 << field.width) - 1)


def _member_bits(layout, name, bits):
    """The bits of field ``name`` of a struct layout."""
    return _field_bits(layout[name], bits)


def _instruction(opcode, **args):
    """An instruction word: ``opcode`` with the argument member named like it."""
    word = {"opcode": opcode}
    if args:
        word["args"] = {opcode.name.lower(): args}
    return Instruction.const(word).as_bits()


def _words(start, count):
    return f"{start:,}..{start + count - 1:,}"


class _Geometry:
    """The numbers of a configuration the compiler and the model use, computed once."""

    def __init__(self, config):
        self.config = config
        self.rows, self.cols = config.rows, config.cols
        self.padded_cols, self.lanes = config.padded_cols, config.lanes
        self.drain_rows, self.fifo_depth = config.rows_per_beat, config.fifo_depth
        self.layouts = {space: config.word_layout(space) for space in Space}
        self.word_bits = {space: config.word_bits_of(space) for space in Space}
        self.chunks = {space: math.ceil(bits / CHUNK_BITS)
                       for space, bits in self.word_bits.items()}
        #: Chunk addresses per word: ``chunks`` rounded up to a power of two.
        self.chunk_stride = {space: 1 << config.chunk_bits(space) for space in self.chunks}
        spmv_config = config.spmv
        if spmv_config is not None:
            self.local_rows = math.ceil(spmv_config.rows / spmv_config.n_pes)
            # rtl.spmv.SpMV's default weight-memory depth per PE.
            self.entries = min(spmv_config.cols * self.local_rows, 1 << 16)
            self.entry = Entry(SPMV_VALUE_BITS, SPMV_Z_BITS)


# ---------------------------------------------------------------------------------------------
# The compiler.

@dataclass(frozen=True)
class LayerPlan:
    """How the compiler runs one layer.

    Attributes
    ----------
    engine : str
        ``"array"`` or ``"spmv"``.
    estimates : dict
        Cycles of the layer for the whole batch on each engine that can run it
        (``golden.systolic.gemm_cycles``; ``golden.csc.spmv_cycles`` per image times the
        batch), None where it cannot; the engine is the cheaper (the array on a tie) unless
        it was forced.
    mode : (int, int) or None
        ``(w_bits, a_bits)`` of the array's mode (weights signed, activations unsigned).
    inputs, outputs : int
        The input vector's length in the scratchpad (gaps included) and the outputs.
    src, in_stride, dst, out_stride : int
        The instruction's scratchpad operands (``dst`` in RESULT for the output layer).
    """
    engine: str
    estimates: dict
    mode: tuple | None
    inputs: int
    outputs: int
    src: int
    in_stride: int
    dst: int
    out_stride: int


@dataclass(frozen=True)
class Program:
    """A compiled network: instructions, memory images, and where its input and output are.

    Attributes
    ----------
    config : AccelConfig
    instructions : list of int
        128-bit instruction words, from PROGRAM word 0.
    memories : dict
        ``{Space: {word: value}}`` to write once; ``Space.SPMV`` holds an ordered list of
        loader words (every sparse layer's entries) written through the port.
    batch : int
        Images per run (per input page): a multiple of ``config.rows``.
    output : str
        ``"class"`` or ``"logits"``.
    input_src, input_stride : int
        Image group ``g``'s input starts at input-page word ``input_src + g * input_stride``.
    input_words : int
        Words of an image group's input (``ceil(inputs / V)``).
    output_dst, output_tile_cols, outputs : int
        The class of image ``i`` is OUTPUT word ``output_dst + i`` of the published page; its
        logits (``output="logits"``) are RESULT words ``output_dst + (i div d) *
        output_tile_cols ..``, bank ``i mod d``, ``outputs`` of them.
    layers : tuple of LayerPlan
    """
    config: AccelConfig
    instructions: list
    memories: dict
    batch: int
    output: str
    input_src: int
    input_stride: int
    input_words: int
    output_dst: int
    output_tile_cols: int
    outputs: int
    layers: tuple

    @property
    def inputs(self):
        """Activations per image of the first layer."""
        return self.layers[0].inputs

    def input_page(self, a0):
        """The words of an input page holding the images ``a0`` (at most ``batch`` rows of
        ``inputs`` unsigned 8-bit values; the images past them are zero), from page word 0."""
        a0 = integer_array("a0", a0, 0, (1 << LANE_BITS) - 1, ndim=2)
        if a0.shape[1] != self.inputs or not 1 <= len(a0) <= self.batch:
            raise ValueError(f"a0 must have shape (n, {self.inputs}) with n 1..{self.batch}, "
                             f"not {a0.shape}")
        geometry = _Geometry(self.config)
        rows, lane_count = geometry.rows, geometry.lanes
        width = self.input_words * lane_count
        images = np.zeros((self.batch, width), dtype=np.int64)
        images[:len(a0), :a0.shape[1]] = a0
        layout = geometry.layouts[Space.ACT]
        words = [0] * (self.input_src + self.batch // rows * self.input_stride)
        for g in range(self.batch // rows):
            group = images[g * rows:(g + 1) * rows]
            for w in range(self.input_words):
                lanes_of = group[:, w * lane_count:(w + 1) * lane_count].tolist()
                words[self.input_src + g * self.input_stride + w] = \
                    layout.const(lanes_of).as_bits()
        return words

    def read_outputs(self, read, page, count):
        """The classes (int64, ``count``) or logits (int64, ``count`` x ``outputs``) of the
        first ``count`` images of published page ``page``; ``read(space, word)`` gives a word
        (an :meth:`AccelModel.read`, or the host driver's)."""
        config = self.config
        count = integer("count", count, 1, self.batch)
        page = integer("page", page, 0, 1)
        if self.output == "class":
            base = page * config.output_words + self.output_dst
            return np.array([fields(OutputWord, read(Space.OUTPUT, base + i))["index"]
                             for i in range(count)], dtype=np.int64)
        geometry = _Geometry(config)
        d, cols = geometry.drain_rows, geometry.cols
        layout = geometry.layouts[Space.RESULT]
        base = page * config.result_words + self.output_dst
        logits = np.zeros((count, self.outputs), dtype=np.int64)
        for i in range(count):
            for t in range(self.output_tile_cols):
                bank = fields(layout, read(Space.RESULT,
                                           base + i // d * self.output_tile_cols + t))[i % d]
                n = min(cols, self.outputs - t * cols)
                logits[i, t * cols:t * cols + n] = bank[:n]
        return logits


def _check_engines(engines, depth):
    if engines is None:
        return None
    if not isinstance(engines, (tuple, list)) or len(engines) != depth or \
            any(engine not in ENGINES for engine in engines):
        raise ValueError(f"engines must be one of {ENGINES} per layer ({depth}), not "
                         f"{engines!r}")
    return tuple(engines)


def array_cycles(config, tiling):
    """:func:`golden.systolic.gemm_cycles` of ``tiling`` on the array of the accelerator
    ``config`` (its drain rows, FIFO depth, PE latency and edge registers)."""
    return gemm_cycles(tiling, config.rows_per_beat, config.fifo_depth, config.pe_latency,
                       config.edge_registers)


def array_mode(precision, w_bits, a_bits):
    """The smallest ``(w_bits, a_bits)`` mode of an array of ``precision`` (2, 4, 8 or
    "mixed") holding a layer's ``w_bits x a_bits``, or None (rtl.fusion.modes lists an
    array's modes)."""
    holding = [(w, a) for w, a in modes(precision) if w >= w_bits and a >= a_bits]
    return min(holding, key=lambda mode: (mode[0] * mode[1], mode)) if holding else None


def _gather(values, positions):
    """``values[..., positions]`` with 0 where a position is -1 (a gap)."""
    out = np.zeros(values.shape[:-1] + (len(positions),), dtype=np.int64)
    kept = positions >= 0
    out[..., kept] = values[..., positions[kept]]
    return out


def _describe(i, layer, engine, mode):
    out, inputs = layer.weight.shape
    mode_text = f", {mode[0]}x{mode[1]} mode" if engine == "array" and mode else ""
    return f"layer {i} ({out} x {inputs}, {engine}{mode_text})"


class _Allocation:
    """The compiler's running allocation: memory images, words used, the program."""

    def __init__(self, geometry):
        self.geometry = geometry
        self.memories = {space: {} for space in (Space.WEIGHT, Space.PARAM, Space.CSC)}
        self.memories[Space.SPMV] = []
        self.used = {Space.WEIGHT: 0, Space.PARAM: 0, Space.CSC: 0}
        spmv_config = geometry.config.spmv
        self.entries_used = [0] * (spmv_config.n_pes if spmv_config else 0)
        self.program = []

    def take(self, space, count, what):
        """The first of ``count`` words of ``space`` (an error naming ``what`` when they
        do not fit)."""
        start = self.used[space]
        depth = self.geometry.config.depth(space)
        if start + count > depth:
            raise ValueError(f"{what} needs {space.name} words {_words(start, count)} but the "
                             f"memory has {depth:,}")
        self.used[space] = start + count
        return start


def _fits(what, name, value, lo, hi):
    if not lo <= value <= hi:
        raise ValueError(f"{what} needs {name} {value:,} but the field holds {lo}..{hi:,}")


def compile_network(network, config, batch, *, engines=None, output="class", calibration=None):
    """The program and memory images that run ``network`` on the accelerator ``config``.

    Parameters
    ----------
    network : QuantizedMLP
        Dense or pruned layers; the last gives the logits.
    config : AccelConfig
    batch : int
        Images per run, at least 1; rounded up to a multiple of ``config.rows``.
    engines : tuple of str, optional
        ``"array"`` or ``"spmv"`` per layer; by default each layer takes the engine with the
        fewer cycles (the output layer always runs on the array, which gives accumulators).
    output : str
        ``"class"`` (TOPK k=1 into OUTPUT; needs ``config.topk``) or ``"logits"`` (RESULT).
    calibration : int array (n, inputs), optional
        First-layer inputs whose activations the sparse unit's estimate is taken on; by
        default every activation is taken as non-zero.

    Returns
    -------
    Program

    Raises
    ------
    ValueError
        An argument outside the above, or a layer that does not fit a memory, a field, the
        sparse unit or the top-k engine: one line naming the layer and the sizes.
    """
    if not isinstance(network, QuantizedMLP):
        raise TypeError(f"network must be a golden.network.QuantizedMLP, not {network!r}")
    if not isinstance(config, AccelConfig):
        raise TypeError(f"config must be a rtl.accel.config.AccelConfig, not {config!r}")
    batch = integer("batch", batch, 1)
    if output not in OUTPUTS:
        raise ValueError(f"output must be 'class' or 'logits', not {output!r}")
    if output == "class" and config.topk is None:
        raise ValueError("output='class' needs a top-k engine (config.topk), not None; "
                         "ask for output='logits'")
    layers = network.layers
    engines = _check_engines(engines, len(layers))
    geometry = _Geometry(config)
    rows = geometry.rows
    images = -(-batch // rows) * rows
    groups = images // rows
    activations = None if calibration is None else network.layer_inputs(calibration)
    plans = _plan(network, geometry, images, engines, activations)
    allocation = _Allocation(geometry)
    program = allocation.program

    # The scratchpad: the input pages at the bottom, hidden outputs ping-pong above.
    first = _describe(0, layers[0], plans[0]["engine"], plans[0]["mode"])
    input_words = plans[0]["in_words"]
    if groups * input_words > config.input_words:
        raise ValueError(f"{first} needs input page words {_words(0, groups * input_words)} "
                         f"for {images} images but a page has {config.input_words:,}")
    region = max((groups * plan["out_words"] for plan in plans[:-1]), default=0)
    base = 2 * config.input_words
    src, in_stride, src_input = 0, input_words, True
    program.append(_instruction(Opcode.SYNC))
    finished = []
    for i, (layer, plan) in enumerate(zip(layers, plans)):
        last = i == len(layers) - 1
        what = _describe(i, layer, plan["engine"], plan["mode"])
        _fits(what, "in_stride", in_stride, 1, 255)
        if last:
            dst, out_stride = 0, 0
        else:
            dst, out_stride = base + i % 2 * region, plan["out_words"]
            _fits(what, "out_stride", out_stride, 1, 255)
            if dst + groups * out_stride > config.act_words:
                raise ValueError(f"{what} needs ACT words {_words(dst, groups * out_stride)} "
                                 f"for its outputs but the memory has {config.act_words:,}")
            if layer.out_bits > LANE_BITS:
                raise ValueError(f"{what} needs {layer.out_bits}-bit outputs but a scratchpad "
                                 f"lane holds {LANE_BITS}")
        operands = {"src_input": src_input, "src": src, "in_stride": in_stride, "dst": dst,
                    "out_stride": out_stride}
        if plan["engine"] == "array":
            _compile_gemm(allocation, what, layer, plan, operands, groups, last)
            engine = Engine.ARRAY
        else:
            _compile_spmv(allocation, what, layer, plan, operands, images)
            if finished and finished[-1].engine == "array":
                # The sparse unit takes this layer's words while the array runs the layer
                # before: LOAD_SPMV goes ahead of that layer's WAIT.
                program[-3], program[-2] = program[-2], program[-3]
            engine = Engine.SPMV
        program.append(_instruction(Opcode.WAIT, engines=engine))
        if engine is Engine.SPMV:
            after_sparse = len(program)
        finished.append(LayerPlan(plan["engine"], plan["estimates"], plan["mode"],
                                  plan["inputs"], layer.weight.shape[0], src, in_stride, dst,
                                  out_stride))
        src, in_stride, src_input = dst, out_stride, False

    tile_cols = math.ceil(layers[-1].weight.shape[0] / geometry.cols)
    outputs = layers[-1].weight.shape[0]
    if output == "class":
        what = _describe(len(layers) - 1, layers[-1], "array", plans[-1]["mode"])
        topk_config = config.topk
        if outputs > topk_config.n_max:
            raise ValueError(f"{what} gives {outputs:,} scores but the top-k engine takes "
                             f"n_max={topk_config.n_max:,}")
        _fits(what, "TOPK images", images, 1, 4095)
        if images > config.output_words:
            raise ValueError(f"{what} needs OUTPUT words {_words(0, images)} for the classes "
                             f"but a page has {config.output_words:,}")
        program.append(_instruction(Opcode.TOPK, src=0, tile_cols=tile_cols, n=outputs, k=1,
                                    images=images, dst=0))
        program.append(_instruction(Opcode.WAIT, engines=Engine.TOPK))
    program.append(_instruction(Opcode.DONE))
    loop = 0
    if plans[0]["engine"] == "spmv":
        # Software pipelining: the first layer's LOAD_SPMV for the next batch goes right
        # after the last sparse layer, beside the array's layers of this batch; the first
        # batch's comes before the loop.
        load = program.pop(1)
        program.insert(after_sparse - 1, load)
        program.insert(0, load)
        loop = 1
    program.append(_instruction(Opcode.JUMP, target=loop))
    if len(program) > config.program_words:
        raise ValueError(f"the program of {len(layers)} layers needs PROGRAM words "
                         f"{_words(0, len(program))} but the memory has "
                         f"{config.program_words:,}")
    memories = {space: dict(words) if space != Space.SPMV else list(words)
                for space, words in allocation.memories.items()}
    return Program(config, list(program), memories, images, output, 0, input_words,
                   input_words, 0, tile_cols, outputs, tuple(finished))


def _plan(network, geometry, images, engines, activations):
    """Per layer: the engine, its mode, the estimates, the input positions and the words of
    an image group's output."""
    config = geometry.config
    rows, cols, padded, lane_count = (geometry.rows, geometry.cols, geometry.padded_cols,
                                      geometry.lanes)
    layers = network.layers
    positions = np.arange(layers[0].weight.shape[1])
    plans = []
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        outputs = layer.weight.shape[0]
        matrix = _gather(layer.weight, positions)
        mode = array_mode(config.precision, layer.w_bits, layer.a_bits)
        estimates = {"array": None, "spmv": None}
        if mode is not None:
            tiling = Tiling(images, outputs, len(positions), rows, cols, lanes(*mode))
            estimates["array"] = gemm_cycles(tiling, geometry.drain_rows, geometry.fifo_depth)
        if config.spmv is not None and not last:
            estimates["spmv"] = _spmv_estimate(matrix, config.spmv, images,
                                               None if activations is None else
                                               _gather(activations[i], positions))
        if engines is not None:
            engine = engines[i]
        else:
            known = [name for name in ENGINES if estimates[name] is not None]
            engine = min(known, key=lambda name: estimates[name]) if known else "array"
        what = _describe(i, layer, engine, mode)
        if engine == "array" and mode is None:
            raise ValueError(f"{what} needs a {layer.w_bits}x{layer.a_bits} mode but the "
                             f"{config.precision}-bit array has none holding it")
        if engine == "spmv" and last:
            raise ValueError(f"{what} is the output layer: the sparse unit cannot give its "
                             f"accumulators, run it on the array")
        if engine == "spmv" and config.spmv is None:
            raise ValueError(f"{what} needs the sparse unit but config.spmv is None")
        plan = {"engine": engine, "mode": mode, "estimates": estimates, "positions": positions,
                "matrix": matrix, "inputs": len(positions),
                "in_words": math.ceil(len(positions) / lane_count)}
        if engine == "array":
            tile_cols = math.ceil(outputs / cols)
            place = np.arange(tile_cols * padded)
            tile, column = np.divmod(place, padded)
            output = tile * cols + column
            positions = np.where((column < cols) & (output < outputs), output, -1)
            positions = positions[:np.flatnonzero(positions >= 0)[-1] + 1]
            plan["out_words"] = math.ceil(tile_cols * padded / lane_count)
        else:
            n_pes = config.spmv.n_pes
            positions = np.arange(outputs)
            plan["out_words"] = math.ceil(math.ceil(outputs / n_pes) * n_pes / lane_count)
        plans.append(plan)
    return plans


def _spmv_estimate(matrix, spmv_config, images, x):
    """The sparse unit's cycles for the batch: per image on ``x`` (its mean), else with every
    activation non-zero."""
    options = {"z_bits": SPMV_Z_BITS, "lanes": spmv_config.lanes, "requantize": True}
    if x is None:
        vectors = [np.ones(matrix.shape[1], dtype=np.int64)]
    else:
        vectors = list(x)
    total = sum(spmv_cycles(matrix, vector, spmv_config.n_pes, **options)[1]
                for vector in vectors)
    return round(total * images / len(vectors))


def _compile_gemm(allocation, what, layer, plan, operands, groups, last):
    geometry = allocation.geometry
    config = geometry.config
    cols = geometry.cols
    w_bits, a_bits = plan["mode"]
    lane_count = lanes(w_bits, a_bits)
    outputs = layer.weight.shape[0]
    k_steps = math.ceil(plan["inputs"] / lane_count)
    tile_cols = math.ceil(outputs / cols)
    _fits(what, "k_steps", k_steps, 1, min(4095, config.k_step_bound(w_bits, a_bits)))
    _fits(what, "tile_rows", groups, 1, 255)
    _fits(what, "tile_cols", tile_cols, 1, 255)
    multiplier = layer.multiplier if layer.multiplier is not None else \
        np.zeros(outputs, dtype=np.int64)
    if multiplier.max(initial=0) >= 1 << 16:
        raise ValueError(f"{what} needs multiplier {int(multiplier.max()):,} but PARAM holds "
                         f"16 bits (0..65,535)")

    weights = allocation.take(Space.WEIGHT, tile_cols * k_steps, what)
    params = allocation.take(Space.PARAM, tile_cols, what)
    # W (K x N) by scratchpad position, zero past the matrix: golden.systolic.pack_steps' order.
    matrix = np.zeros((k_steps * lane_count, tile_cols * cols), dtype=np.int64)
    matrix[:plan["inputs"], :outputs] = plan["matrix"].T
    weight_layout = geometry.layouts[Space.WEIGHT]
    for tn in range(tile_cols):
        for s in range(k_steps):
            ks = slice(s * lane_count, (s + 1) * lane_count)
            words = [pack_checked(matrix[ks, tn * cols + c], w_bits) for c in range(cols)]
            allocation.memories[Space.WEIGHT][weights + tn * k_steps + s] = \
                weight_layout.const(words).as_bits()
    bias = np.zeros(tile_cols * cols, dtype=np.int64)
    bias[:outputs] = layer.bias
    scale = np.zeros(tile_cols * cols, dtype=np.int64)
    scale[:outputs] = multiplier
    param_layout = geometry.layouts[Space.PARAM]
    for tn in range(tile_cols):
        columns = slice(tn * cols, (tn + 1) * cols)
        allocation.memories[Space.PARAM][params + tn] = param_layout.const(
            [{"bias": int(b), "multiplier": int(m)}
             for b, m in zip(bias[columns], scale[columns])]).as_bits()

    if last:
        words = math.ceil(groups * geometry.rows / geometry.drain_rows) * tile_cols
        if words > config.result_words:
            raise ValueError(f"{what} needs RESULT words {_words(0, words)} for its logits but "
                             f"a page has {config.result_words:,}")
    gemm = dict(operands, mode=mode_const(w_bits, a_bits, True, False),
                requantize=not last, weights=weights, params=params, k_steps=k_steps,
                tile_rows=groups, tile_cols=tile_cols, shift=0 if last else layer.shift,
                out_bits=0 if last else layer.out_bits)
    allocation.program.append(_instruction(Opcode.GEMM, **gemm))


def _load_bits(word, entry):
    """The bits of a ``golden.csc.LoadWord`` through ``rtl.spmv.Load``."""
    kind = LoadKind[word.kind]
    value = entry.const(word.fields).as_bits() if kind is LoadKind.ENTRY else word.fields
    return Load.const({"kind": kind, "pe": word.pe, "addr": word.addr,
                       "data": {kind.name.lower(): value}}).as_bits()


def _compile_spmv(allocation, what, layer, plan, operands, images):
    geometry = allocation.geometry
    unit = geometry.config.spmv
    outputs = layer.weight.shape[0]
    inputs = plan["inputs"]
    if outputs > unit.rows or inputs > unit.cols:
        raise ValueError(f"{what} needs a {outputs:,} x {inputs:,} matrix but the sparse unit "
                         f"holds {unit.rows:,} x {unit.cols:,}")
    _fits(what, "SPMV images", images, 1, 4095)
    if layer.multiplier.max(initial=0) >= 1 << 16:
        raise ValueError(f"{what} needs multiplier {int(layer.multiplier.max()):,} but the "
                         f"sparse unit holds 16 bits (0..65,535)")
    words = load_words(plan["matrix"], unit.n_pes, z_bits=SPMV_Z_BITS,
                       value_bits=SPMV_VALUE_BITS, max_rows=unit.rows, bias=layer.bias,
                       multiplier=layer.multiplier, shift=layer.shift, out_bits=layer.out_bits)
    # Every layer's entries sit at its own offset of each PE's weight memory.
    offsets = list(allocation.entries_used)
    for pe in range(unit.n_pes):
        count = sum(1 for word in words if word.kind == "ENTRY" and word.pe == pe)
        if offsets[pe] + count > geometry.entries:
            raise ValueError(f"{what} needs entries {_words(offsets[pe], count)} of PE {pe} "
                             f"but its weight memory has {geometry.entries:,}")
        allocation.entries_used[pe] += count
    streamed = []
    for word in words:
        if word.kind == "ENTRY":
            moved = word._replace(addr=word.addr + offsets[word.pe])
            allocation.memories[Space.SPMV].append(_load_bits(moved, geometry.entry))
        elif word.kind == "POINTER":
            streamed.append(word._replace(fields=word.fields + offsets[word.pe]))
        else:
            streamed.append(word)
    csc = allocation.take(Space.CSC, len(streamed), what)
    for n, word in enumerate(streamed):
        allocation.memories[Space.CSC][csc + n] = _load_bits(word, geometry.entry)
    allocation.program.append(_instruction(Opcode.LOAD_SPMV, csc=csc, count=len(streamed)))
    allocation.program.append(_instruction(Opcode.SPMV, cols=inputs, rows=outputs, images=images,
                                       **operands))


# ---------------------------------------------------------------------------------------------
# The instruction-level model.

class _Fault(Exception):
    """The instruction being executed is in error (docs/isa.md, Errors)."""


def _require(condition):
    if not condition:
        raise _Fault


class _SparseUnit:
    """What the sparse unit holds as its loader words leave it (docs/spmv.md, Words)."""

    def __init__(self, geometry):
        unit = geometry.config.spmv
        self.geometry = geometry
        self.n_pes, self.rows, self.cols = unit.n_pes, unit.rows, unit.cols
        shape = (unit.n_pes, geometry.entries)
        self.values = np.zeros(shape, dtype=np.int64)
        self.z = np.zeros(shape, dtype=np.int64)
        self.pointers = np.zeros((unit.n_pes, unit.cols + 1), dtype=np.int64)
        self.bias = np.zeros((unit.n_pes, geometry.local_rows), dtype=np.int64)
        self.multiplier = np.zeros((unit.n_pes, geometry.local_rows), dtype=np.int64)
        self.reset()

    def reset(self):
        """The set-up word after reset (the memories keep their contents)."""
        self.setup = {"rows": self.rows, "requantize": 0, "shift": 1, "out_bits": 8}

    def load(self, bits):
        """Take one ``rtl.spmv.Load`` word; a word for a PE, address or kind the unit does not
        have writes nothing."""
        word = fields(Load, bits)
        data_bits = _member_bits(Load, "data", bits)
        try:
            kind = LoadKind(word["kind"])
        except ValueError:
            return
        pe, addr = word["pe"], word["addr"]
        if kind is LoadKind.SETUP:
            self.setup = fields(Load["data"].shape["setup"].shape, data_bits)
            return
        value = fields(Load["data"].shape[kind.name.lower()].shape, data_bits)
        if pe >= self.n_pes:
            return
        if kind is LoadKind.ENTRY and addr < self.values.shape[1]:
            entry = fields(self.geometry.entry, value & ((1 << self.geometry.entry.size) - 1))
            self.values[pe, addr], self.z[pe, addr] = entry["value"], entry["z"]
        elif kind is LoadKind.POINTER and addr <= self.cols:
            self.pointers[pe, addr] = value
        elif kind in (LoadKind.BIAS, LoadKind.MULTIPLIER) and addr < self.bias.shape[1]:
            (self.bias if kind is LoadKind.BIAS else self.multiplier)[pe, addr] = value

    def matrix(self, cols, rows):
        """``(W, bias, multiplier)`` of the first ``rows`` rows and ``cols`` columns loaded
        (golden.csc.decode of the entries the pointers name); malformed pointers are a fault."""
        images = []
        for pe in range(self.n_pes):
            pointers = self.pointers[pe, :cols + 1]
            start, end = int(pointers[0]), int(pointers[-1])
            _require(start <= end <= self.values.shape[1])
            images.append(PEColumns(self.values[pe, start:end], self.z[pe, start:end],
                                    pointers - start))
        try:
            dense = decode(images, (self.bias.shape[1] * self.n_pes, cols), SPMV_Z_BITS)
        except ValueError:
            raise _Fault from None
        order = np.arange(rows)
        return (dense[:rows], self.bias[order % self.n_pes, order // self.n_pes],
                self.multiplier[order % self.n_pes, order // self.n_pes])



class Timing:
    """The cycle model of a program (docs/accel.md, Timing).

    Cycles count from the one in which the host pulses ``start``; the host is always ahead
    (an input page is filled before a SYNC needs it, a published page taken before the next
    DONE). The controller executes an instruction two cycles after the one before it
    finished (fetch, then execute); an engine instruction is handed over at the first
    executing cycle in which its engine is idle, and the engine is idle again ``busy``
    cycles later.

    Attributes
    ----------
    published : list of int
        The cycle in which each DONE's ``results_ready`` is first seen.
    trace : list of dict
        Per instruction: ``pc``, ``opcode`` (its name), ``executed`` (the cycle it finished
        executing: handed over, or its wait over) and, for an engine instruction,
        ``engine_cycles`` (the engine alone, ideal source and sink: ``gemm_cycles``, the sum
        of ``spmv_cycles``, the words loaded, or the top-k engine's cycles from its first
        score to its last index) and ``idle`` (the cycle its engine is idle again).
    """

    #: Cycles from handing a GEMM over to its engine being idle, beyond ``gemm_cycles``: the
    #: first step taken 2 cycles after, the last beat written 6 after it is taken.
    GEMM_EXTRA = 8
    #: Cycles before the first activation beat is offered to the sparse unit; and per vector,
    #: the cycle in which the unit turns to take its first beat.
    SPMV_START, SPMV_TURN = 3, 1
    #: Cycles from handing LOAD_SPMV over to the first word taken, and to idle after the last.
    LOAD_EXTRA = 2
    #: Cycles from handing TOPK over to its first scores offered.
    TOPK_START = 2

    def __init__(self, config):
        self.config = config
        self.topk_latency = None if config.topk is None else TopK(
            n_max=config.topk.n_max, k_max=config.topk.k_max, par=config.topk_par,
            score_bits=config.acc_width, signed_scores=True).latency
        self.start()

    def start(self):
        """Cycle 0: the host starts the program (the first instruction executes at 2)."""
        self.execute = 2
        self.idle = {engine: 0 for engine in (Engine.ARRAY, Engine.SPMV, Engine.TOPK)}
        self.published, self.trace = [], []

    def hand_over(self, pc, opcode, engine, busy, engine_cycles):
        cycle = max(self.execute, self.idle[engine])
        self.idle[engine] = cycle + busy
        self.trace.append({"pc": pc, "opcode": opcode.name, "executed": cycle,
                           "engine_cycles": engine_cycles, "idle": cycle + busy})
        self.execute = cycle + 2

    def wait(self, pc, opcode, engines=tuple(Engine)):
        cycle = max([self.execute, *(self.idle[engine] for engine in engines)])
        self.trace.append({"pc": pc, "opcode": opcode.name, "executed": cycle})
        self.execute = cycle + 2
        return cycle

    def gemm(self, pc, tiling):
        cycles = array_cycles(self.config, tiling)
        self.hand_over(pc, Opcode.GEMM, Engine.ARRAY, cycles + self.GEMM_EXTRA, cycles)

    def spmv(self, pc, vector_cycles):
        self.hand_over(pc, Opcode.SPMV, Engine.SPMV,
                       self.SPMV_START + sum(t + self.SPMV_TURN for t in vector_cycles),
                       sum(vector_cycles))

    def load_spmv(self, pc, count):
        self.hand_over(pc, Opcode.LOAD_SPMV, Engine.SPMV, count + self.LOAD_EXTRA, count)

    def topk(self, pc, n, k, images):
        c = self.config
        marks = batch_cycles([(n, k)] * images, c.topk_par, c.topk.k_max, self.topk_latency)
        # batch_cycles spends a first cycle on k when it is not k_max; the select engine
        # always sets k in the cycle before its first scores.
        cycles = marks[-1]["last_index"] + 1 - (k != c.topk.k_max)
        self.hand_over(pc, Opcode.TOPK, Engine.TOPK, self.TOPK_START + cycles, cycles)

class AccelModel:
    """The accelerator, instruction by instruction (docs/isa.md).

    Parameters
    ----------
    config : AccelConfig

    Attributes
    ----------
    memories : dict
        ``{Space: list of int}``: every memory's words (RESULT and OUTPUT both pages).
    pc, running, error, error_pc
        The controller: the next instruction, whether a program runs (started, not halted
        or stopped on an error), and the instruction in error.

    The host port (docs/accel.md): :meth:`write_chunk`, :meth:`read_chunk`, :meth:`start`,
    :meth:`input_filled`, :meth:`results_taken` and :meth:`status`, and :meth:`reset`. The
    program runs after each of these until it blocks (a SYNC without a filled page, a DONE
    with an untaken page) or stops. :meth:`write` and :meth:`read` reach whole words of any
    memory (``read`` is the model's view: the host port reads only RESULT and OUTPUT).
    """

    def __init__(self, config):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be a rtl.accel.config.AccelConfig, not {config!r}")
        self.config = config
        self.geometry = _Geometry(config)
        self.memories = {space: [0] * config.depth(space) for space in MEMORIES}
        self.sparse = _SparseUnit(self.geometry) if config.spmv is not None else None
        self._staged = 0                      # the SPMV port's lower chunks
        self.pc, self.running, self.error, self.error_pc = 0, False, False, 0
        self.timing = Timing(config)
        self._reset_pages()

    def _reset_pages(self):
        self.filled = [False, False]          # input pages filled by the host, not yet taken
        self.working = None                   # the input page the program works on
        self.host_page = 0                    # the input page the host fills next
        self.take_page = 0                    # the input page the next SYNC takes
        self.filling = 0                      # the RESULT/OUTPUT page being filled
        self.published = None                 # the page published and not taken

    # ---- Host operations -----------------------------------------------------------------
    def _check_word(self, space, word):
        space = Space(space)
        if space is Space.SPMV:
            return space
        depth = self.config.depth(space)
        integer(f"{space.name} word", word, 0, depth - 1)
        return space

    def write(self, space, word, value):
        """Write a whole word (``Space.SPMV``: a loader word into the sparse unit; ``word``
        is not looked at)."""
        space = self._check_word(space, word)
        value = integer(f"a {space.name} word", value, 0,
                        (1 << self.geometry.word_bits[space]) - 1)
        if space is Space.SPMV:
            if self.sparse is None:
                raise ValueError("Space.SPMV needs a sparse unit, but config.spmv is None")
            self.sparse.load(value)
        else:
            self.memories[space][word] = value

    def read(self, space, word):
        """Read a whole word (``Space.SPMV`` is write-only)."""
        space = self._check_word(space, word)
        if space is Space.SPMV:
            raise ValueError("Space.SPMV is write-only")
        return self.memories[space][word]

    def write_chunk(self, space, address, value):
        """The host port's write: chunk ``address mod 2^b`` of word ``address div 2^b``
        (docs/isa.md, Memories). Only the chunk's bits of the word change; bits above the
        word are ignored; a word past the depth, and RESULT and OUTPUT, are not written.
        Through ``Space.SPMV`` chunk 0 is kept and chunk 1 sends the word."""
        space = Space(space)
        value = integer("value", value, 0, (1 << CHUNK_BITS) - 1)
        word, chunk = divmod(integer("address", address, 0, (1 << CHUNK_ADDRESS_BITS) - 1),
                             self.geometry.chunk_stride[space])
        if space in (Space.RESULT, Space.OUTPUT) or chunk >= self.geometry.chunks[space] or \
                space is not Space.SPMV and word >= self.config.depth(space):
            return
        mask = ((1 << CHUNK_BITS) - 1) << (chunk * CHUNK_BITS)
        old = self._staged if space is Space.SPMV else self.memories[space][word]
        new = (old & ~mask | value << (chunk * CHUNK_BITS)) & \
            ((1 << self.geometry.word_bits[space]) - 1)
        if space is Space.SPMV and chunk < self.geometry.chunks[space] - 1:
            self._staged = new
        elif space is Space.SPMV:
            if self.sparse is not None:
                self.sparse.load(new)
        else:
            self.memories[space][word] = new

    def read_chunk(self, space, address):
        """The host port's read: chunk ``address mod 2^b`` of word ``address div 2^b`` of
        RESULT or OUTPUT (both pages); 0 from any other memory, or past the depth."""
        space = Space(space)
        word, chunk = divmod(integer("address", address, 0, (1 << CHUNK_ADDRESS_BITS) - 1),
                             self.geometry.chunk_stride[space])
        if space not in (Space.RESULT, Space.OUTPUT) or word >= self.config.depth(space):
            return 0
        return self.memories[space][word] >> (chunk * CHUNK_BITS) & ((1 << CHUNK_BITS) - 1)

    def status(self):
        """The host's view, field by field of ``rtl.accel.isa.Status``."""
        return {"running": self.running, "error": self.error,
                "input_free": self._input_free(), "input_page": self.host_page,
                "results_ready": self.published is not None,
                "results_page": self.published if self.published is not None else 0,
                "error_pc": self.error_pc}

    def _input_free(self):
        return not self.filled[self.host_page] and self.working != self.host_page

    def start(self):
        """Start the program at instruction 0, when none is running (``host__start``): clears
        ``error`` and the pages."""
        if self.running:
            return
        self.pc, self.running, self.error, self.error_pc = 0, True, False, 0
        self._reset_pages()
        self.timing.start()
        self.run()

    def reset(self):
        """The accelerator's reset: idle, no error, the pages afresh, the sparse unit's set-up
        word as after reset; the memories keep their words."""
        self.pc, self.running, self.error, self.error_pc = 0, False, False, 0
        self._staged = 0
        self._reset_pages()
        if self.sparse is not None:
            self.sparse.reset()

    def input_filled(self):
        """The host has filled input page ``status()["input_page"]`` (``host__input_filled``)."""
        if not self._input_free():
            raise ValueError(f"input page {self.host_page} is not free to fill")
        self.filled[self.host_page] = True
        self.host_page ^= 1
        self.run()

    def results_taken(self):
        """The host has read the published page (``host__results_taken``)."""
        if self.published is None:
            raise ValueError("no result page is published")
        self.published = None
        self.run()

    def fill_input(self, words):
        """Write ``words`` to the input page the host may fill, from its word 0, and submit it."""
        base = self.host_page * self.config.input_words
        if len(words) > self.config.input_words:
            raise ValueError(f"an input page holds {self.config.input_words} words, not "
                             f"{len(words)}")
        for w, value in enumerate(words):
            self.write(Space.ACT, base + w, value)
        self.input_filled()

    # ---- Programs --------------------------------------------------------------------------
    def load(self, program):
        """Write a :class:`Program`'s memories and instructions."""
        if not isinstance(program, Program):
            raise TypeError(f"program must be a golden.accel.Program, not {program!r}")
        if program.config != self.config:
            raise ValueError(f"program was compiled for {program.config}, not this model's "
                             f"{self.config}")
        for space, words in program.memories.items():
            if space is Space.SPMV:
                for value in words:
                    self.write(Space.SPMV, 0, value)
            else:
                for word, value in words.items():
                    self.write(space, word, value)
        for word, value in enumerate(program.instructions):
            self.write(Space.PROGRAM, word, value)

    def infer(self, program, a0):
        """The classes (or logits) of the images ``a0`` ((n, inputs) unsigned 8-bit), batch by
        batch, the last padded with zero images; after :meth:`load`. Starts the program unless
        one runs (:meth:`reset` first to run another)."""
        a0 = integer_array("a0", a0, 0, (1 << LANE_BITS) - 1, ndim=2)
        if a0.shape[1] != program.inputs or not len(a0):
            raise ValueError(f"a0 must have shape (n, {program.inputs}) with n at least 1, "
                             f"not {a0.shape}")
        self.start()
        out = []
        for first in range(0, len(a0), program.batch):
            images = a0[first:first + program.batch]
            self.fill_input(program.input_page(images))
            if self.error:
                raise ValueError(f"the program stopped on an error at instruction "
                                 f"{self.error_pc}")
            if self.published is None:
                raise ValueError(f"the program published no results (it stopped at "
                                 f"instruction {self.pc})")
            out.append(program.read_outputs(self.read, self.published, len(images)))
            self.results_taken()
        return np.concatenate(out)

    def run(self, limit=1_000_000):
        """Execute instructions until the program blocks or stops (at most ``limit``)."""
        for _ in range(limit):
            if not self.running or not self.step():
                return

    def step(self):
        """Execute the instruction at ``pc``; False when it blocks (nothing changes)."""
        pc = self.pc
        try:
            _require(pc < self.config.program_words)
            bits = self.memories[Space.PROGRAM][pc]
            try:
                opcode = Opcode(_member_bits(Instruction, "opcode", bits))
            except ValueError:
                raise _Fault from None
            args = _member_bits(Instruction, "args", bits)
            advanced = self._execute(opcode, args)
        except _Fault:
            self.running, self.error, self.error_pc = False, True, pc % (1 << ADDRESS_BITS)
            if self.sparse is not None:
                self.sparse.reset()
            return False
        if advanced and opcode is not Opcode.JUMP:
            self.pc = pc + 1
        return advanced

    def _execute(self, opcode, args):
        timing, pc = self.timing, self.pc
        if opcode is Opcode.HALT:
            self.running = False
        elif opcode is Opcode.SYNC:
            if not self.filled[self.take_page]:
                return False
            self.filled[self.take_page] = False
            self.working, self.take_page = self.take_page, self.take_page ^ 1
            timing.wait(pc, opcode)
        elif opcode is Opcode.DONE:
            if self.published is not None:
                return False
            self.published, self.filling = self.filling, self.filling ^ 1
            timing.published.append(timing.wait(pc, opcode) + 1)
        elif opcode is Opcode.WAIT:
            engines = Engine(fields(WaitArgs, args)["engines"])
            timing.wait(pc, opcode, [engine for engine in Engine if engine in engines])
        elif opcode is Opcode.JUMP:
            # A target past the program faults when it is fetched, as in the RTL.
            self.pc = fields(JumpArgs, args)["target"]
            timing.wait(pc, opcode, ())
        elif opcode is Opcode.GEMM:
            self._gemm(fields(GemmArgs, args))
        elif opcode is Opcode.SPMV:
            self._spmv(fields(SpmvArgs, args))
        elif opcode is Opcode.LOAD_SPMV:
            self._load_spmv(fields(LoadSpmvArgs, args))
        elif opcode is Opcode.TOPK:
            self._topk(fields(TopkArgs, args))
        return True

    # ---- Scratchpad access ---------------------------------------------------------------
    def _source(self, src_input, src, last):
        """The ACT address of ``src`` (a fault when ``last``, the highest word read relative
        to ``src``, falls outside its memory or page)."""
        config = self.config
        if src_input:
            _require(src + last < config.input_words)
            return (self.working or 0) * config.input_words + src
        _require(src + last < config.act_words)
        return src

    def _vector(self, word, count):
        """ACT words ``word .. word + count - 1`` as (banks, count * V) lanes."""
        layout = self.geometry.layouts[Space.ACT]
        return np.concatenate([np.array(fields(layout, self.memories[Space.ACT][w]),
                                        dtype=np.int64) for w in range(word, word + count)],
                              axis=1)

    def _write_lanes(self, word, lane, values, banks):
        """Lanes ``lane ..`` of the ``banks`` (bool per bank) of ACT word ``word`` and on."""
        layout = self.geometry.layouts[Space.ACT]
        width = self.geometry.lanes
        n = 0
        while n < values.shape[1]:
            w, first = divmod(lane + n, width)
            take = min(width - first, values.shape[1] - n)
            current = np.array(fields(layout, self.memories[Space.ACT][word + w]),
                               dtype=np.int64)
            current[banks, first:first + take] = values[banks, n:n + take]
            self.memories[Space.ACT][word + w] = layout.const(current.tolist()).as_bits()
            n += take

    # ---- Engines -------------------------------------------------------------------------
    def _gemm(self, g):
        config, geometry = self.config, self.geometry
        rows, cols, width, d = geometry.rows, geometry.cols, geometry.lanes, geometry.drain_rows
        mode = g["mode"]
        try:
            w_bits, a_bits = BitWidth(mode["w_bits"]).bits, BitWidth(mode["a_bits"]).bits
        except ValueError:
            raise _Fault from None
        _require((w_bits, a_bits) in modes(config.precision))
        w_signed, a_signed = bool(mode["w_signed"]), bool(mode["a_signed"])
        lane_count = lanes(w_bits, a_bits)
        k_steps, tile_rows, tile_cols = g["k_steps"], g["tile_rows"], g["tile_cols"]
        _require(1 <= k_steps <= config.k_step_bound(w_bits, a_bits, w_signed, a_signed))
        _require(tile_rows >= 1 and tile_cols >= 1)
        if g["requantize"]:
            _require(1 <= g["shift"] <= MAX_SHIFT and 1 <= g["out_bits"] <= LANE_BITS)
        words_in = ((k_steps - 1) * lane_count) // width + 1
        src = self._source(g["src_input"], g["src"],
                           (tile_rows - 1) * g["in_stride"] + words_in - 1)
        _require(g["weights"] + tile_cols * k_steps <= config.weight_words)
        _require(g["params"] + tile_cols <= config.param_words)
        padded = geometry.padded_cols
        if g["requantize"]:
            _require(g["dst"] + (tile_rows - 1) * g["out_stride"] +
                     ((tile_cols - 1) * padded) // width < config.act_words)
        else:
            _require(g["dst"] + (tile_rows * rows - 1) // d * tile_cols + tile_cols
                     <= config.result_words)

        self.timing.gemm(self.pc, Tiling(tile_rows * rows, tile_cols * cols,
                                         k_steps * lane_count, rows, cols, lane_count))
        weight_layout = geometry.layouts[Space.WEIGHT]
        lane_mask = (1 << (lane_count * w_bits)) - 1
        weights = []
        for tn in range(tile_cols):
            steps = []
            for s in range(k_steps):
                words = fields(weight_layout,
                               self.memories[Space.WEIGHT][g["weights"] + tn * k_steps + s])
                steps.append([unpack(word & lane_mask, w_bits, lane_count, w_signed)
                              for word in words])
            weights.append(np.array(steps).transpose(0, 2, 1).reshape(-1, cols))   # (K, C)
        param_layout = geometry.layouts[Space.PARAM]
        params = [fields(param_layout, self.memories[Space.PARAM][g["params"] + tn])
                  for tn in range(tile_cols)]
        a_mask = (1 << a_bits) - 1
        top = 1 << (config.acc_width - 1)
        for tm in range(tile_rows):
            a = self._vector(src + tm * g["in_stride"], words_in)[:, :k_steps * lane_count]
            a = a & a_mask
            if a_signed:
                a = np.where(a >> (a_bits - 1) != 0, a - (1 << a_bits), a)
            for tn in range(tile_cols):
                acc = (a @ weights[tn] + top) % (2 * top) - top      # the acc-bit accumulator
                bias = np.array([p["bias"] for p in params[tn]], dtype=np.int64)
                value = acc + bias
                if g["requantize"]:
                    multiplier = np.array([p["multiplier"] for p in params[tn]], dtype=np.int64)
                    q = requantize(value, multiplier, g["shift"], g["out_bits"])
                    lane = tn * padded
                    self._write_lanes(g["dst"] + tm * g["out_stride"] + lane // width,
                                      lane % width, q, np.ones(rows, dtype=bool))
                else:
                    self._write_results(g["dst"], tile_cols, tm * rows, tn,
                                        (value + top) % (2 * top) - top)

    def _write_results(self, dst, tile_cols, first, tn, values):
        geometry = self.geometry
        layout = geometry.layouts[Space.RESULT]
        d = geometry.drain_rows
        base = self.filling * self.config.result_words + dst
        for r, row in enumerate(values.tolist()):
            image = first + r
            word = base + image // d * tile_cols + tn
            banks = fields(layout, self.memories[Space.RESULT][word])
            banks[image % d] = row
            self.memories[Space.RESULT][word] = layout.const(banks).as_bits()

    def _spmv(self, s):
        config, geometry = self.config, self.geometry
        _require(self.sparse is not None)
        cols, rows, images = s["cols"], s["rows"], s["images"]
        _require(1 <= cols <= self.sparse.cols and 1 <= rows <= self.sparse.rows and images >= 1)
        width, banks, n_pes = geometry.lanes, geometry.rows, self.sparse.n_pes
        groups = math.ceil(images / banks)
        words_in = math.ceil(cols / width)
        outputs = math.ceil(rows / n_pes) * n_pes
        src = self._source(s["src_input"], s["src"], (groups - 1) * s["in_stride"] + words_in - 1)
        _require(s["dst"] + (groups - 1) * s["out_stride"] + (outputs - 1) // width
                 < config.act_words)
        matrix, bias, multiplier = self.sparse.matrix(cols, rows)
        setup = self.sparse.setup
        vector_cycles = []
        for g in range(groups):
            x = self._vector(src + g * s["in_stride"], words_in)[:, :cols]
            y = np.zeros((banks, outputs), dtype=np.int64)
            present = np.arange(banks) < images - g * banks
            for r in np.flatnonzero(present):
                requantizer = {"bias": bias, "multiplier": multiplier,
                               "shift": setup["shift"], "out_bits": setup["out_bits"]}
                try:        # a set-up word golden.csc refuses (shift 0, ...) is a fault
                    y[r, :rows] = spmv(matrix, x[r], **(requantizer if setup["requantize"]
                                                         else {}))
                except ValueError:
                    raise _Fault from None
                vector_cycles.append(spmv_cycles(
                    matrix, x[r], n_pes, z_bits=SPMV_Z_BITS, lanes=config.spmv.lanes,
                    requantize=bool(setup["requantize"]))[1])
            self._write_lanes(s["dst"] + g * s["out_stride"], 0, y % (1 << LANE_BITS), present)
        self.timing.spmv(self.pc, vector_cycles)

    def _load_spmv(self, a):
        _require(self.sparse is not None and a["count"] >= 1)
        _require(a["csc"] + a["count"] <= self.config.csc_words)
        for word in range(a["csc"], a["csc"] + a["count"]):
            self.sparse.load(self.memories[Space.CSC][word])
        self.timing.load_spmv(self.pc, a["count"])

    def _topk(self, t):
        config, geometry = self.config, self.geometry
        engine = config.topk
        _require(engine is not None)
        n, k, images = t["n"], t["k"], t["images"]
        _require(1 <= n <= engine.n_max and 1 <= k <= min(engine.k_max, n) and images >= 1)
        cols, d = geometry.cols, geometry.drain_rows
        words = math.ceil(n / cols)            # per image, each C / topk_par beats
        _require(t["src"] + (images - 1) // d * t["tile_cols"] + words <= config.result_words)
        _require(t["dst"] + images * k <= config.output_words)
        self.timing.topk(self.pc, n, k, images)
        layout = geometry.layouts[Space.RESULT]
        results = self.filling * config.result_words + t["src"]
        output = self.filling * config.output_words + t["dst"]
        for i in range(images):
            scores = []
            for w in range(words):
                word = results + i // d * t["tile_cols"] + w
                scores += fields(layout, self.memories[Space.RESULT][word])[i % d]
            for j, index in enumerate(topk(np.array(scores[:n], dtype=np.int64), k)[0]):
                self.memories[Space.OUTPUT][output + i * k + j] = \
                    OutputWord.const({"index": int(index), "zero": 0}).as_bits()
