"""The accelerator's instruction set and memory words, defined once (docs/isa.md).

The hardware (:mod:`rtl.accel.core`), the compiler and the instruction-level model
(:mod:`golden.accel`) and the host driver all build and read these layouts; nobody shifts
bits of their own. An instruction is 128 bits: a 4-bit :class:`Opcode` and a union of
arguments, one member per opcode. Field widths are fixed, so one encoding serves every
configuration; the generator's memory depths bound the values a program may use.
"""

from amaranth import signed, unsigned
from amaranth.lib import data, enum

from rtl.fusion import FusionMode

__all__ = ["INSTRUCTION_BITS", "Opcode", "Engine", "Space", "GemmArgs", "SpmvArgs",
           "LoadSpmvArgs", "TopkArgs", "WaitArgs", "JumpArgs", "Arguments", "Instruction",
           "Param", "LANE_BITS", "MAX_SHIFT", "INDEX_BITS", "act_word", "weight_word", "param_word",
           "result_word", "OutputWord", "CHUNK_BITS", "ADDRESS_BITS", "CHUNK_ADDRESS_BITS",
           "HostWrite", "HostRead", "Status"]

#: Width of an instruction word.
INSTRUCTION_BITS = 128
#: Width of a word address field (every memory is at most 2^14 words deep).
ADDRESS_BITS = 14
#: The host reads and writes every memory in chunks of this many bits.
CHUNK_BITS = 32


class Opcode(enum.Enum, shape=4):
    """What an instruction does (docs/isa.md, Instructions)."""
    HALT = 0       #: stop; the accelerator is idle until the host starts it again
    SYNC = 1       #: wait for a filled input page, then work on it (the host fills the other)
    DONE = 2       #: publish this batch's results to the host, then go on
    WAIT = 3       #: wait until the engines in ``wait.engines`` have finished their work
    JUMP = 4       #: go on at ``jump.target``
    GEMM = 5       #: a dense layer on the systolic array, with the output stage
    SPMV = 6       #: a sparse layer on the CSC unit, one vector per image
    LOAD_SPMV = 7  #: stream CSC loader words from the CSC memory into the sparse unit
    TOPK = 8       #: the top k of each image's result vector into the output memory


class Engine(enum.Flag, shape=3):
    """The engines an instruction can wait for."""
    ARRAY = 1   #: the systolic array, its operand reader and the output stage
    SPMV = 2    #: the sparse unit, its loader, activation reader and result writer
    TOPK = 4    #: the top-k engine, its score reader and index writer


class Space(enum.Enum, shape=3):
    """The memories the host reads and writes (docs/isa.md, Memories)."""
    PROGRAM = 0    #: instruction words
    ACT = 1        #: the activation scratchpad (the input pages at its bottom)
    WEIGHT = 2     #: packed weight words of the dense layers
    PARAM = 3      #: bias and multiplier of every output column of the dense layers
    CSC = 4        #: loader words of the sparse layers (rtl.spmv.Load)
    SPMV = 5       #: write only: a loader word straight into the sparse unit (its entries)
    RESULT = 6     #: accumulators of the layers that end without requantization (logits)
    OUTPUT = 7     #: the indices chosen by TOPK


#: A dense layer: ``tile_rows x tile_cols`` tiles of ``k_steps`` steps each.
GemmArgs = data.StructLayout({
    "mode":       FusionMode,               # the array's run-time mode
    "requantize": 1,                        # 1: to ACT at out_bits; 0: accumulators to RESULT
    "src_input":  1,                        # src is in the current input page
    "src":        unsigned(ADDRESS_BITS),   # ACT word of image group 0, k-step 0
    "in_stride":  unsigned(8),              # ACT words between image groups' inputs
    "dst":        unsigned(ADDRESS_BITS),   # ACT word (requantize) or RESULT word of the output
    "out_stride": unsigned(8),              # ACT words between image groups' outputs
    "weights":    unsigned(ADDRESS_BITS),   # WEIGHT word of tile column 0, step 0
    "params":     unsigned(ADDRESS_BITS),   # PARAM word of tile column 0
    "k_steps":    unsigned(12),             # steps per tile, 1..4095
    "tile_rows":  unsigned(8),              # image groups of ``rows`` images, 1..255
    "tile_cols":  unsigned(8),              # column groups of ``cols`` outputs, 1..255
    "shift":      unsigned(6),              # requantization shift, 1..47
    "out_bits":   unsigned(4),              # output precision, 1..8
})

#: A sparse layer: ``images`` vectors of ``cols`` activations into ``rows`` outputs each.
SpmvArgs = data.StructLayout({
    "src_input":  1,
    "src":        unsigned(ADDRESS_BITS),   # ACT word of image 0's input
    "in_stride":  unsigned(8),              # ACT words between image groups' inputs
    "dst":        unsigned(ADDRESS_BITS),   # ACT word of image 0's output
    "out_stride": unsigned(8),              # ACT words between image groups' outputs
    "cols":       unsigned(12),             # activations per vector, 1..4095
    "rows":       unsigned(12),             # outputs per vector, 1..4095
    "images":     unsigned(12),             # vectors, 1..4095
})

#: Loader words ``csc .. csc + count - 1`` of the CSC memory into the sparse unit.
LoadSpmvArgs = data.StructLayout({
    "csc":   unsigned(ADDRESS_BITS),
    "count": unsigned(ADDRESS_BITS + 1),    # 1..2^14
})

#: The ``k`` largest of each image's ``n`` accumulators in RESULT, indices into OUTPUT.
TopkArgs = data.StructLayout({
    "src":       unsigned(ADDRESS_BITS),    # RESULT word of image 0 (a GEMM's dst)
    "tile_cols": unsigned(8),               # RESULT words per image (the GEMM's tile_cols)
    "n":         unsigned(12),              # scores per image, 1..n_max
    "k":         unsigned(8),               # 1..k_max
    "images":    unsigned(12),              # 1..4095
    "dst":       unsigned(ADDRESS_BITS),    # OUTPUT word of image 0's first index
})

WaitArgs = data.StructLayout({"engines": Engine})
JumpArgs = data.StructLayout({"target": unsigned(ADDRESS_BITS)})

#: The arguments of an instruction: the member named like its opcode (lower case).
Arguments = data.UnionLayout({
    "gemm":      GemmArgs,
    "spmv":      SpmvArgs,
    "load_spmv": LoadSpmvArgs,
    "topk":      TopkArgs,
    "wait":      WaitArgs,
    "jump":      JumpArgs,
    "pad":       unsigned(INSTRUCTION_BITS - 4),
})

#: An instruction word.
Instruction = data.StructLayout({
    "opcode": Opcode,
    "args":   Arguments,
})

#: The output stage's parameters of one output column: added bias, requantization multiplier.
Param = data.StructLayout({
    "bias":       signed(32),
    "multiplier": unsigned(16),
})

#: Bits of an activation lane of the scratchpad (and the widest requantized output).
LANE_BITS = 8
#: Largest requantization shift of a GEMM.
MAX_SHIFT = 47
#: Bits of an index in an OUTPUT word (the rest of the 32-bit word is 0).
INDEX_BITS = 16


def act_word(rows, lanes):
    """An ``ACT`` word: ``rows`` banks (bank 0 lowest) of ``lanes`` 8-bit lanes (lane 0 lowest)."""
    return data.ArrayLayout(data.ArrayLayout(unsigned(LANE_BITS), lanes), rows)


def weight_word(cols, word_bits):
    """A ``WEIGHT`` word: one packed weight word per array column, column 0 lowest."""
    return data.ArrayLayout(unsigned(word_bits), cols)


def param_word(cols):
    """A ``PARAM`` word: a :data:`Param` per array column, column 0 lowest."""
    return data.ArrayLayout(Param, cols)


def result_word(drain_rows, cols, acc_width):
    """A ``RESULT`` word: ``drain_rows`` banks of ``cols`` signed accumulators, lowest first."""
    return data.ArrayLayout(data.ArrayLayout(signed(acc_width), cols), drain_rows)


#: An ``OUTPUT`` word.
OutputWord = data.StructLayout({"index": unsigned(INDEX_BITS), "zero": unsigned(16)})

#: Width of a host chunk address: word address and chunk within the word.
CHUNK_ADDRESS_BITS = 24

#: A host write: chunk ``address`` of memory ``space`` (docs/isa.md, Memories).
HostWrite = data.StructLayout({
    "space":   Space,
    "address": unsigned(CHUNK_ADDRESS_BITS),
    "data":    unsigned(CHUNK_BITS),
})

#: A host read request; the chunk comes back on the read data stream.
HostRead = data.StructLayout({
    "space":   Space,
    "address": unsigned(CHUNK_ADDRESS_BITS),
})

#: What the host sees of the accelerator (docs/accel.md, Host port).
Status = data.StructLayout({
    "running":       1,                        # a program runs (started, not halted)
    "error":         1,                        # the program stopped on an error
    "input_free":    1,                        # the host may fill input page ``input_page``
    "input_page":    1,
    "results_ready": 1,                        # page ``results_page`` is published
    "results_page":  1,
    "error_pc":      unsigned(ADDRESS_BITS),   # the instruction in error
})
