"""The accelerator's parameters and the numbers derived from them, in one place.

The hardware (:mod:`rtl.accel.core`), the compiler and model (:mod:`golden.accel`), the
generator and the host driver all read a configuration from an :class:`AccelConfig`.
"""

import math
from dataclasses import dataclass, field, fields

from rtl.accel.isa import (ADDRESS_BITS, CHUNK_BITS, INSTRUCTION_BITS, LANE_BITS, OutputWord,
                           Space, act_word, param_word, result_word, weight_word)
from rtl.fusion import FusionPE, check_acc_width, lanes, modes, word_bits
from rtl.spmv import Load
from rtl.systolic import (SystolicArray, default_drain_rows, default_fifo_depth,
                           k_step_bound)

__all__ = ["SpmvConfig", "TopkConfig", "AccelConfig"]


def _check(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, not {value!r}")


def _power_of_two(value):
    return 1 << max(0, (value - 1).bit_length())


@dataclass(frozen=True)
class SpmvConfig:
    """The sparse unit of an accelerator (``rtl.spmv.SpMV`` parameters; 8-bit weights and
    activations). ``n_pes`` is a power of two 1..32, ``lanes`` a power of two 1..16."""
    n_pes: int = 4
    rows: int = 256
    cols: int = 256
    lanes: int = 4

    def __post_init__(self):
        _check("spmv_n_pes", self.n_pes, 1, 32)
        _check("spmv_rows", self.rows, 1, 4095)
        _check("spmv_cols", self.cols, 1, 4095)
        _check("spmv_lanes", self.lanes, 1, 16)
        for name in ("n_pes", "lanes"):
            value = getattr(self, name)
            if value & (value - 1):
                raise ValueError(f"spmv_{name} must be a power of two, not {value!r}")


@dataclass(frozen=True)
class TopkConfig:
    """The top-k engine of an accelerator: most scores per image ``n_max`` (2..4095), the
    largest ``k``, ``k_max`` (1..min(n_max, 256)), and its scores per beat ``par``, a divisor
    of the array's columns ``C`` (None: ``C``, a result word's bank per beat; fewer lanes
    take a bank in ``C / par`` beats, a smaller engine). Its scores are the array's
    accumulators."""
    n_max: int = 256
    k_max: int = 8
    par: int | None = None

    def __post_init__(self):
        _check("topk_n_max", self.n_max, 2, 4095)
        _check("topk_k_max", self.k_max, 1, min(self.n_max, 256))
        if self.par is not None:
            _check("topk_par", self.par, 1, 32)


#: Memory depths: (field, default, lowest).
DEPTHS = (("program_words", 256, 2), ("act_words", 512, 2), ("input_words", 64, 1),
          ("weight_words", 1024, 1), ("param_words", 64, 1), ("csc_words", 1024, 1),
          ("result_words", 64, 1), ("output_words", 256, 1))


@dataclass(frozen=True)
class AccelConfig:
    """An accelerator: the array (required), the optional engines and the memory depths.

    Parameters
    ----------
    rows, cols : int
        The systolic array, 1..32 each.
    precision : 'mixed', 2, 4 or 8
        The array's PEs.
    acc_width : int
        The array's accumulator, as :class:`rtl.systolic.SystolicArray` (32 at most with a
        top-k engine, whose scores are these accumulators).
    spmv : SpmvConfig or None
    topk : TopkConfig or None
    program_words, act_words, input_words, weight_words, param_words, csc_words,
    result_words, output_words : int
        Memory depths in words (docs/isa.md, Memories); ``result_words`` and ``output_words``
        per page, ``input_words`` per input page (two at the bottom of ``act_words``). Each is
        at most 2^14 (``result_words`` and ``output_words`` 2^13, two pages).
    drain_rows : int or None
        ``d``: rows of the array per result beat, a divisor of ``rows`` (None: the array's
        default, :func:`rtl.systolic.default_drain_rows`, as :attr:`rows_per_beat` gives
        it; the field keeps None, and compares equal to that default). A ``RESULT`` word
        holds ``d`` rows and the output stage has ``d * cols`` lanes: fewer rows per beat, a
        smaller accelerator whose tiles drain in more beats.
    """
    rows: int = 8
    cols: int = 8
    precision: object = "mixed"
    acc_width: int = 32
    spmv: SpmvConfig | None = field(default_factory=SpmvConfig)
    topk: TopkConfig | None = field(default_factory=TopkConfig)
    program_words: int = 256
    act_words: int = 512
    input_words: int = 64
    weight_words: int = 1024
    param_words: int = 64
    csc_words: int = 1024
    result_words: int = 64
    output_words: int = 256
    drain_rows: int | None = None

    def __post_init__(self):
        _check("rows", self.rows, 1, 32)
        _check("cols", self.cols, 1, 32)
        modes(self.precision)
        check_acc_width(self.precision, self.acc_width)
        if self.spmv is not None and not isinstance(self.spmv, SpmvConfig):
            raise TypeError(f"spmv must be a SpmvConfig or None, not {self.spmv!r}")
        if self.topk is not None and not isinstance(self.topk, TopkConfig):
            raise TypeError(f"topk must be a TopkConfig or None, not {self.topk!r}")
        if self.topk is not None and self.acc_width > 32:
            raise ValueError(f"acc_width must be at most 32 with a top-k engine, not "
                             f"{self.acc_width}")
        if self.topk is not None and self.cols % self.topk_par:
            raise ValueError(f"topk_par must divide the array's cols ({self.cols}), not "
                             f"{self.topk_par!r}")
        for name, _, lo in DEPTHS:
            paged = name in ("result_words", "output_words")
            _check(name, getattr(self, name), lo, 1 << (ADDRESS_BITS - paged))
        if self.drain_rows is not None:
            _check("drain_rows", self.drain_rows, 1, self.rows)
            if self.rows % self.drain_rows:
                raise ValueError(f"drain_rows must divide the array's rows ({self.rows}), not "
                                 f"{self.drain_rows}")
        if 2 * self.input_words > self.act_words:
            raise ValueError(f"act_words must be at least twice input_words "
                             f"({2 * self.input_words}: two input pages), not {self.act_words}")

    # Two configurations are equal when they build the same accelerator: ``drain_rows`` None
    # equals the default it stands for.
    def _identity(self):
        return tuple(self.rows_per_beat if f.name == "drain_rows" else getattr(self, f.name)
                     for f in fields(self))

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self):
        return hash(self._identity())

    # ---- Derived numbers -----------------------------------------------------------------
    @property
    def rows_per_beat(self):
        """``d``: ``drain_rows``, or the array's default for its rows when that is None (the
        field keeps what was asked, so that ``dataclasses.replace`` with other rows takes
        their default)."""
        return default_drain_rows(self.rows) if self.drain_rows is None else self.drain_rows

    @property
    def topk_par(self):
        """``P``: scores per beat of the top-k engine (``topk.par``, by default ``C``); None
        without one."""
        if self.topk is None:
            return None
        return self.cols if self.topk.par is None else self.topk.par

    #: Registers between the array's edges and its first PEs (the array's default).
    edge_registers = 2

    @property
    def pe_latency(self):
        """Cycles of the array's processing element (``FusionPE.latency``)."""
        return FusionPE.latency

    @property
    def fifo_depth(self):
        """Tiles each row FIFO of the array holds (the array's default)."""
        return default_fifo_depth(self.rows, self.cols, self.rows_per_beat, FusionPE.latency,
                                  self.edge_registers)

    @property
    def word_bits(self):
        """Width of the array's packed operand words."""
        return word_bits(self.precision)

    @property
    def padded_cols(self):
        """``Cp``: the array's columns rounded up to a power of two."""
        return _power_of_two(self.cols)

    @property
    def lanes(self):
        """``V``: 8-bit lanes of a scratchpad word per bank."""
        most = max(lanes(w, a) for w, a in modes(self.precision))
        sparse = (self.spmv.n_pes, self.spmv.lanes) if self.spmv else ()
        return max(self.padded_cols, most, *sparse)

    def k_step_bound(self, w_bits, a_bits, w_signed=True, a_signed=False):
        """Most steps per tile of a GEMM in a mode (``rtl.systolic.k_step_bound``)."""
        return k_step_bound(self.acc_width, w_bits, a_bits, w_signed, a_signed)

    def array(self):
        """A new systolic array of this configuration."""
        return SystolicArray(self.rows, self.cols, self.precision, self.acc_width,
                             drain_rows=self.rows_per_beat, edge_registers=self.edge_registers,
                             pe=FusionPE)

    def word_layout(self, space):
        """The layout of a word of memory ``space`` (a :class:`rtl.accel.isa.Space`)."""
        space = Space(space)
        return {
            Space.PROGRAM: None,
            Space.ACT:     act_word(self.rows, self.lanes),
            Space.WEIGHT:  weight_word(self.cols, self.word_bits),
            Space.PARAM:   param_word(self.cols),
            Space.CSC:     Load,
            Space.SPMV:    Load,
            Space.RESULT:  result_word(self.rows_per_beat, self.cols, self.acc_width),
            Space.OUTPUT:  OutputWord,
        }[space]

    def word_bits_of(self, space):
        """Bits of a word of memory ``space``."""
        layout = self.word_layout(space)
        return INSTRUCTION_BITS if layout is None else layout.size

    def chunks(self, space):
        """32-bit host chunks per word of memory ``space``."""
        return math.ceil(self.word_bits_of(space) / CHUNK_BITS)

    def chunk_bits(self, space):
        """``b``: a host chunk address is ``word * 2^b + chunk`` (docs/isa.md, Memories)."""
        return (self.chunks(space) - 1).bit_length()

    def chunk_address(self, space, word, chunk):
        """The host's chunk address of chunk ``chunk`` of word ``word`` of memory ``space``."""
        return word * (1 << self.chunk_bits(space)) + chunk

    def depth(self, space):
        """Words of memory ``space`` the host can address (both pages of RESULT and OUTPUT;
        0 for SPMV, a port, not a memory)."""
        space = Space(space)
        return {Space.PROGRAM: self.program_words, Space.ACT: self.act_words,
                Space.WEIGHT: self.weight_words, Space.PARAM: self.param_words,
                Space.CSC: self.csc_words, Space.SPMV: 0,
                Space.RESULT: 2 * self.result_words, Space.OUTPUT: 2 * self.output_words}[space]

    def parameters(self):
        """Every parameter as plain values (for manifests)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (SpmvConfig, TopkConfig)):
                value = {g.name: getattr(value, g.name) for g in fields(value)}
            out[f.name] = value
        out["drain_rows"] = self.rows_per_beat
        return out
