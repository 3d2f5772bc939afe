"""Output-stationary systolic array of Bit Fusion PEs.

``PE(r, c)`` accumulates ``C[r, c] = sum_k A[r, k] W[k, c]`` of an ``R x C`` tile.
Every accepted *step* brings one packed activation word per row and one packed
weight word per column (``lanes(w_bits, a_bits)`` values of ``k`` each). The
words are skewed (row ``r`` by ``r`` cycles, column ``c`` by ``c``, each by an
:class:`EdgeSkew` of its own), steered to the bricks at the end of the skew (one
:class:`SliceSteer` per row and per column, with the mode skewed beside the word),
registered, and forwarded PE to PE: activations to the right, weights down. The step's mode,
``first``/``last`` flags and valid bit travel with the activations (each PE
forwards its own registered copy), so tiles of different modes follow each other
through the array without a bubble. A row of PEs, with the operands they pass on, is an
:class:`ArrayRow`.

When a PE finishes a tile its sum rides a delay line of ``C-1-c`` cycles, so a
whole row of results arrives at once and is written to that row's result FIFO (one
FIFO per column, in that column's :class:`DrainColumn`).
The next tile keeps computing meanwhile: the delay lines and FIFOs are the
double buffer. The result stream carries ``drain_rows`` rows per beat, tile
by tile, top rows first. A tile starts only when every row FIFO is sure to
have room for it (a credit counter), so back-pressure on the result stream
stalls the operand streams and never loses a result.
"""

import math

from amaranth import Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.fusion import (FusionMode, FusionPE, SliceSteer, StepControl, check_acc_width,
                        lanes, mode_const, modes, step_peak, weight_wide, word_bits)
from rtl.pipeline import delay

__all__ = ["ArrayConfig", "ArrayRow", "DrainColumn", "EdgeSkew", "SystolicArray",
           "default_drain_rows", "default_fifo_depth", "k_step_bound", "k_step_bounds",
           "k_steps_fit", "operand_layout", "peak_macs", "result_layout", "shared"]

#: Width of the K-step and tile counts of a configuration.
COUNT_BITS = 16


#: A configuration: the mode, steps per tile and tile count of a GEMM (38 bits, sent as 5 bytes).
ArrayConfig = data.StructLayout({
    "mode":    FusionMode,
    "k_steps": unsigned(COUNT_BITS),
    "tiles":   unsigned(COUNT_BITS),
})


def k_step_bound(acc_width, w_bits, a_bits, w_signed, a_signed):
    """Largest number of steps per tile whose sum cannot overflow a signed ``acc_width`` accumulator.

    Every step adds at most ``lanes * max|w| * max|a|``; the bound is how many such
    steps fit in ``2^(acc_width-1) - 1``, capped at the largest count a
    configuration can carry (``2^16 - 1``).
    """
    per_step = step_peak(w_bits, a_bits, w_signed, a_signed)
    return min(((1 << (acc_width - 1)) - 1) // per_step, (1 << COUNT_BITS) - 1)


def k_step_bounds(precision, acc_width):
    """``{(w_bits, a_bits, w_signed, a_signed): largest k_steps}`` of the modes of
    ``precision`` on a signed ``acc_width``-bit accumulator."""
    return {(w, a, ws, as_): k_step_bound(acc_width, w, a, ws, as_)
            for w, a in modes(precision) for ws in (False, True) for as_ in (False, True)}


def k_steps_fit(m, mode, k_steps, bounds):
    """A signal of ``m``: ``k_steps`` is within the bound ``bounds`` (as
    :func:`k_step_bounds`) gives ``mode``; low for a mode not in ``bounds``."""
    fits = Signal()
    with m.Switch(mode):
        for (w, a, ws, as_), bound in bounds.items():
            with m.Case(mode_const(w, a, ws, as_)):
                m.d.comb += fits.eq(k_steps <= bound)
    return fits


def default_drain_rows(rows):
    """Rows per result beat by default: the fewest that divide ``rows`` and drain a tile in at
    most four beats."""
    return min(d for d in range(1, rows + 1) if rows % d == 0 and 4 * d >= rows)


def default_fifo_depth(rows, cols, drain_rows, pe_latency, edge_registers):
    """Tiles a row FIFO holds by default: the shortest tiles the drain keeps up with have one
    step per beat, and a tile's credit comes back ``round_trip`` cycles after its first step."""
    tile_steps = rows // drain_rows
    round_trip = tile_steps + rows + cols + pe_latency + edge_registers
    return max(2, math.ceil(round_trip / tile_steps))


def peak_macs(rows, cols, w_bits, a_bits):
    """Multiply-accumulates per cycle of the whole array in a mode."""
    return rows * cols * lanes(w_bits, a_bits)


def operand_layout(word_bits, count):
    """The payload of ``act`` (``count`` = rows) or ``wgt`` (columns): a packed word each, the
    first in the low bits."""
    return data.ArrayLayout(unsigned(word_bits), count)


def result_layout(acc_width, cols, drain_rows):
    """The payload of ``result``: ``drain_rows`` rows of ``cols`` signed sums, row 0 and column 0
    in the low bits."""
    return data.ArrayLayout(data.ArrayLayout(signed(acc_width), cols), drain_rows)


def shared(platform, component, name):
    """``component`` as a submodule, or what stands for it on ``platform``.

    A generator converts each module that a design repeats once: its platform
    (:class:`gen.emit.ModuleLibrary`) has ``share(component, name)``, which returns an
    instance of the module ``name``, built from the first component given that name, so
    ``name`` must tell apart the components that differ. On any other platform (none in the
    Amaranth simulator) the submodule is ``component`` itself.
    """
    share = getattr(platform, "share", None)
    return component if share is None else share(component, name)


class EdgeSkew(wiring.Component):
    """One row's or column's skew: its packed words, and their steps' control, ``skew`` cycles late.

    Every row and column but the first has its own: yosys merges equal registers within
    a module, and one delay chain shared by all rows and columns would span the array.

    Parameters
    ----------
    word_bits : int
        Width of a packed word.
    skew : int
        Cycles of delay (the row or column index), at least 1.

    Attributes
    ----------
    control : In(StepControl)
        The control of the step whose word is on ``word``.
    word : In(word_bits)
        The packed word.
    skewed_control, skewed_word : Out(StepControl), Out(word_bits)
        ``control`` and ``word``, ``skew`` cycles later.
    """

    def __init__(self, word_bits, skew):
        if not isinstance(skew, int) or skew < 1:
            raise ValueError(f"skew must be a whole number 1 or more, not {skew!r}")
        self._skew = skew
        super().__init__({
            "control":        In(StepControl),
            "word":           In(word_bits),
            "skewed_control": Out(StepControl),
            "skewed_word":    Out(word_bits),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.skewed_control.eq(delay(m, self.control, self._skew, "control")),
                     self.skewed_word.eq(delay(m, self.word, self._skew, "word"))]
        return m


class DrainColumn(wiring.Component):
    """One column's part of the drain: a result FIFO per row, read a group of rows per beat.

    Each column keeps its own FIFOs and its own group pointer, so the read enables and the
    result multiplexer select stay inside the column: one drain for the whole array spreads
    a single select over every result bit. The pointer is kept twice, one-hot for the read
    enables and binary for the multiplexer's select, so neither is decoded from the other.
    The columns of an array are written in the same cycles (each on its own PE's flag) and
    get the same ``ready``, so they move in step.

    The beat leaves through a skid register of the column's own: the FIFOs are read while
    it is empty (a register), not on ``beat.ready``, so the result stream's ``ready``
    reaches one register in each column (whether the skid holds a beat) and never the
    FIFOs' read logic. A beat read while ``beat.ready`` is low waits in the skid and is
    offered from there; with the skid empty the FIFOs' beat is offered directly, so the
    skid adds no cycle: the beats leave in the same cycles as without it. Whether the skid
    holds a beat is kept once for the group pointer, once per group of rows for the read
    enables of its FIFOs and once per 16 bits of the beat for its multiplexer.

    Parameters
    ----------
    rows, drain_rows, acc_width, fifo_depth : int
        As :class:`SystolicArray`.

    Attributes
    ----------
    results : In(data.ArrayLayout(signed(acc_width), rows))
        Each row's finished sum in this column.
    written : In(rows)
        Row ``r``'s sum is written into its FIFO this cycle.
    beat : Out(stream.Signature(data.ArrayLayout(signed(acc_width), drain_rows)))
        The column's rows ``g*drain_rows ..`` of a tile, group after group.
    tile_end : Out(1)
        The beat offered is its tile's last group.
    """

    def __init__(self, rows, drain_rows, acc_width, fifo_depth):
        self._rows, self._drain_rows = rows, drain_rows
        self._acc_width, self._fifo_depth = acc_width, fifo_depth
        super().__init__({
            "results":  In(data.ArrayLayout(signed(acc_width), rows)),
            "written":  In(rows),
            "beat":     Out(stream.Signature(data.ArrayLayout(signed(acc_width), drain_rows))),
            "tile_end": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # Buffered: the memories are read synchronously, so they can be block RAM. A FIFO of
        # depth 2 is an output register and a one-entry inner FIFO that refuses a write in the
        # cycle it refills the register, so results of back-to-back one-step tiles would be
        # lost: a credit limit of 2 gets 3 entries (from 3 on, the inner FIFO has room).
        storage = 3 if self._fifo_depth == 2 else self._fifo_depth
        fifos = []
        for r in range(self._rows):
            row_fifo = m.submodules[f"row_fifo{r}"] = fifo.SyncFIFOBuffered(
                width=self._acc_width, depth=storage)
            m.d.comb += [row_fifo.w_data.eq(self.results[r]), row_fifo.w_en.eq(self.written[r])]
            fifos.append(row_fifo)

        groups = self._rows // self._drain_rows
        group = Signal(groups, init=1)          # one-hot: the group of rows that leaves next
        members = [fifos[g * self._drain_rows:(g + 1) * self._drain_rows] for g in range(groups)]
        ready = Signal(groups)
        # The group's beat at the FIFOs' outputs, and the skid holding one the stream refused.
        read = Signal(self.beat.payload.shape())
        skid = Signal(self.beat.payload.shape())

        def skid_flag(name):
            # Whether the skid holds a beat: set by a beat read while the stream refuses it,
            # cleared by ``ready``. Each copy steps from its own state, so yosys keeps the
            # copies apart.
            flag = Signal(name=name)
            with m.If(self.beat.ready):
                m.d.sync += flag.eq(0)
            with m.Elif(ready.any() & ~flag):
                m.d.sync += flag.eq(1)
            return flag

        skid_valid = skid_flag("skid_valid")
        for g in range(groups):
            m.d.comb += ready[g].eq(group[g] & Cat(f.r_rdy for f in members[g]).all())
            # Each group's FIFOs read on a copy of the flag of their own (one flag reaching
            # every FIFO's output register enable was too slow a net).
            held = skid_flag(f"skid_valid_group{g}")
            for f in members[g]:
                m.d.comb += f.r_en.eq(ready[g] & ~held)
        reading = ready.any() & ~skid_valid
        # The multiplexer's select: a binary copy of the group pointer (no decoding of the
        # one-hot pointer in front of every result bit).
        index = Signal(range(groups))
        with m.Switch(index):
            for g in range(groups):
                with m.Case(g):
                    m.d.comb += read.eq(Cat(f.r_data for f in members[g]))
        with m.If(reading):
            m.d.sync += [group.eq(group.rotate_left(1)),
                         index.eq(Mux(index == groups - 1, 0, index + 1))]
        m.d.comb += [self.beat.valid.eq(skid_valid | ready.any()),
                     # The skid's beat was read before the pointer's last step, and the
                     # pointer stands still while the skid is full.
                     self.tile_end.eq(Mux(skid_valid, group[0], group[-1]))]
        # The beat's multiplexer picks skid or FIFOs on a copy of ``skid_valid`` per 16 bits
        # (one register driving the whole beat's select was too slow a net).
        payload = self.beat.payload.as_value()
        for start in range(0, len(payload), 16):
            end = min(start + 16, len(payload))
            held = skid_flag(f"skid_valid_{start // 16}")
            m.d.comb += payload[start:end].eq(
                Mux(held, skid.as_value()[start:end], read.as_value()[start:end]))
        # The empty skid takes whatever the FIFOs offer (it only counts when the stream
        # refuses a beat read), so ``ready`` reaches one register per column and the skid's
        # enable is a register.
        with m.If(~skid_valid):
            m.d.sync += skid.eq(read)
        return m


class ArrayRow(wiring.Component):
    """One row of an array's PE grid: its PEs, the operands they pass on, their sums lined up.

    The row's activation operand and step control enter PE 0 and move a PE to the right each
    cycle (each PE forwards its own registered control); the weight operands are registered
    as they enter, column ``c``'s into PE ``c``, and the same registers feed the row below.
    PE ``c`` finishes a tile ``c`` cycles after PE 0, so its sum is delayed ``cols - 1 - c``
    cycles and the row's sums leave together. Each sum's flag travels with it: column ``c``'s
    FIFO is written on PE ``c``'s own flag, so no single register drives the write enables of
    every column's FIFO across the array.

    All rows of an array are the same, so a generator converts one whatever the size (see
    :func:`shared`).

    Parameters
    ----------
    cols, precision, acc_width, pe : as :class:`SystolicArray`
    operand_bits : int
        Width of a PE operand (``pe``'s ``w`` and ``a``). The row carries operands as plain
        bits, which the PEs read in their own layout: the fields of a row's worth of
        :data:`~rtl.fusion.BrickOperands` took a third of the time of converting an array.

    Attributes
    ----------
    control : In(StepControl)
        The control of the step whose activation operand is on ``a``.
    a : In(operand_bits)
        The row's activation operand, when PE 0 takes it.
    w : In(data.ArrayLayout(unsigned(operand_bits), cols))
        Each column's weight operand, a cycle before the column's PE takes it.
    w_below : Out(data.ArrayLayout(unsigned(operand_bits), cols))
        ``w`` registered: what the PEs take, and the ``w`` of the row below.
    results : Out(data.ArrayLayout(signed(acc_width), cols))
        The row's sums of a finished tile, every column's at once.
    written : Out(cols)
        Bit ``c``: ``results[c]`` holds a finished tile's sum (for one cycle). All bits are
        equal in every cycle.
    """

    def __init__(self, cols, precision, acc_width, pe, operand_bits):
        self._cols, self._precision, self._acc_width, self._pe = cols, precision, acc_width, pe
        operands = data.ArrayLayout(unsigned(operand_bits), cols)
        super().__init__({
            "control": In(StepControl),
            "a":       In(operand_bits),
            "w":       In(operands),
            "w_below": Out(operands),
            "results": Out(data.ArrayLayout(signed(acc_width), cols)),
            "written": Out(cols),
        })

    def elaborate(self, platform):
        m = Module()
        cols = self._cols
        a_in, ctrl_in = self.a, self.control
        w = delay(m, self.w, 1, "w")
        results, written = [], []
        for c in range(cols):
            pe = self._pe(self._precision, self._acc_width)
            m.submodules[f"pe{c}"] = shared(platform, pe, "pe")
            m.d.comb += [pe.control.eq(ctrl_in), pe.a.eq(a_in), pe.w.eq(w[c])]
            results.append(delay(m, pe.result, cols - 1 - c, f"deskew{c}"))
            written.append(delay(m, pe.result_valid, cols - 1 - c, f"deskew_valid{c}"))
            if c < cols - 1:
                a_in, ctrl_in = delay(m, a_in, 1, f"fwd_a{c}"), pe.forward
        m.d.comb += [self.w_below.eq(w), self.results.eq(Cat(results)),
                     self.written.eq(Cat(written))]
        return m


class SystolicArray(wiring.Component):
    """An ``rows x cols`` output-stationary array of processing elements.

    Parameters
    ----------
    rows, cols : int
        Array shape, each 1..32.
    precision : "mixed", 2, 4 or 8
        PE kind (see :class:`~rtl.fusion.FusionPE`); one of ``pe.precisions``.
    acc_width : int
        Signed accumulator width, from :func:`~rtl.fusion.min_acc_width` (17 for
        ``"mixed"`` and 8, 16 for 4 and 2: one step of every mode fits) to 64.
    drain_rows : int, optional
        Result rows per beat of the result stream; must divide ``rows``. By
        default the smallest divisor of ``rows`` that is at least ``rows / 4``,
        so results drain as fast as a 2x2-bit tile with K = 64 computes.
    fifo_depth : int, optional
        Tiles of results each row FIFO holds (the credit limit), 1..128. By default
        enough to keep the PEs busy with tiles of ``rows / drain_rows`` steps, the
        shortest tiles whose results the drain keeps up with.
    edge_registers : 1 or 2, optional
        Registers between a row's or column's steer and its first PE. With 2 (the
        default) the long hop from the edge to a PE across the array runs from register
        to register, through no logic; 1 saves ``rows + cols`` registers of steered
        slices for small arrays on small devices.
    pe : class, optional
        The processing element, built as ``pe(precision, acc_width)``; its ports are a
        :class:`~rtl.fusion.PESignature`. It tells the array its ``latency``, the
        ``precisions`` it can be built for, and whether its operands are ``steered``
        (slices steered to bricks by a :class:`~rtl.fusion.SliceSteer` on every row and
        column edge) or the packed words themselves. :class:`~rtl.fusion.FusionPE` by
        default; :class:`~rtl.baseline.PlainPE` for the ``a*b`` baseline.

    Attributes
    ----------
    config : In(stream.Signature(ArrayConfig))
        A GEMM (or a single tile): the run-time mode, ``k_steps`` steps per tile and
        ``tiles`` tiles. Accepted with the last step of the previous configuration
        (or any time after it), so GEMMs of different modes follow back to back. A
        configuration with ``k_steps`` or ``tiles`` of 0, or ``k_steps`` above
        :func:`k_step_bound` for its mode, is dropped and sets ``error``.
    act : In(stream.Signature(operand_layout(word_bits, rows)))
        One packed activation word per row per step.
    wgt : In(stream.Signature(operand_layout(word_bits, cols)))
        One packed weight word per column per step. A step is taken when both
        ``act`` and ``wgt`` are valid.
    result : Out(stream.Signature(result_layout(acc_width, cols, drain_rows)))
        Rows ``g*drain_rows .. g*drain_rows + drain_rows - 1`` of a finished tile,
        ``g`` = 0, 1, ... then the next tile.
    error : Out(1)
        Sticky: a configuration was rejected. Cleared by reset.

    Raises
    ------
    ValueError
        A parameter out of range.
    """

    def __init__(self, rows, cols, precision="mixed", acc_width=32, drain_rows=None,
                 fifo_depth=None, edge_registers=2, pe=FusionPE):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or not 1 <= value <= 32:
                raise ValueError(f"{name} must be between 1 and 32, not {value!r}")
        if not all(hasattr(pe, name) for name in ("latency", "precisions", "steered")):
            raise ValueError(f"pe must be a processing element class such as FusionPE, "
                             f"not {pe!r}")
        modes(precision)
        if precision not in pe.precisions:
            allowed = ", ".join(repr(p) for p in pe.precisions)
            raise ValueError(f"precision must be {allowed} for {pe.__name__}, not {precision!r}")
        check_acc_width(precision, acc_width)
        if drain_rows is None:
            drain_rows = default_drain_rows(rows)
        if not isinstance(drain_rows, int) or drain_rows < 1 or rows % drain_rows:
            raise ValueError(f"drain_rows must divide rows={rows}, not {drain_rows!r}")
        if edge_registers not in (1, 2):
            raise ValueError(f"edge_registers must be 1 or 2, not {edge_registers!r}")
        if fifo_depth is None:
            fifo_depth = default_fifo_depth(rows, cols, drain_rows, pe.latency, edge_registers)
        if not isinstance(fifo_depth, int) or not 1 <= fifo_depth <= 128:
            raise ValueError(f"fifo_depth must be between 1 and 128, not {fifo_depth!r}")
        self._rows, self._cols = rows, cols
        self._precision = precision
        self._acc_width = acc_width
        self._drain_rows = drain_rows
        self._fifo_depth = fifo_depth
        self._edge_registers = edge_registers
        self._pe = pe
        word = word_bits(precision)
        super().__init__({
            "config": In(stream.Signature(ArrayConfig)),
            "act":    In(stream.Signature(operand_layout(word, rows))),
            "wgt":    In(stream.Signature(operand_layout(word, cols))),
            "result": Out(stream.Signature(result_layout(acc_width, cols, drain_rows))),
            "error":  Out(1),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    precision = property(lambda self: self._precision)
    acc_width = property(lambda self: self._acc_width)
    drain_rows = property(lambda self: self._drain_rows)
    fifo_depth = property(lambda self: self._fifo_depth)
    edge_registers = property(lambda self: self._edge_registers)
    pe = property(lambda self: self._pe)
    word_bits = property(lambda self: word_bits(self._precision))

    @property
    def latency(self):
        """Cycles from the edge that accepts a tile's last step to its first result beat valid."""
        return self._cols + self._drain_rows + self._pe.latency + self._edge_registers - 1

    def k_step_bounds(self):
        """``{(w_bits, a_bits, w_signed, a_signed): largest k_steps}`` of the supported modes."""
        return k_step_bounds(self._precision, self._acc_width)

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols

        # Configuration: the current GEMM and where its steps are.
        mode = Signal(FusionMode)
        k_steps = Signal(COUNT_BITS)
        tiles_left = Signal(COUNT_BITS)
        step = Signal(COUNT_BITS)
        incoming = self.config.payload
        k_fits = k_steps_fit(m, incoming.mode, incoming.k_steps, self.k_step_bounds())
        # Whether the step to take is a tile's first or last, and whether tiles are left and
        # this is the final one, are kept in registers (set a cycle ahead) so that the
        # handshake does not wait for counter comparisons.
        first = Signal(init=1)
        last = Signal()
        active = Signal()
        final = Signal()
        # Credits: tiles started whose results are not all drained yet.
        outstanding = Signal(range(self._fifo_depth + 1))
        take = Signal()
        m.d.comb += take.eq(active & self.act.valid & self.wgt.valid
                            & (~first | (outstanding < self._fifo_depth)))
        m.d.comb += [self.act.ready.eq(take), self.wgt.ready.eq(take)]
        with m.If(take):
            m.d.sync += first.eq(last)
            with m.If(last):
                m.d.sync += [step.eq(0), last.eq(k_steps == 1), tiles_left.eq(tiles_left - 1),
                             active.eq(~final), final.eq(tiles_left == 2)]
            with m.Else():
                m.d.sync += [step.eq(step + 1), last.eq(step + 2 == k_steps)]
        # The next configuration is taken with the last step of the current one (or any time
        # once it is done), so a GEMM in another mode follows without a bubble.
        m.d.comb += self.config.ready.eq(~active | (take & last & final))
        with m.If(self.config.valid & self.config.ready):
            with m.If(k_fits & (incoming.k_steps != 0) & (incoming.tiles != 0)):
                m.d.sync += [mode.eq(incoming.mode), k_steps.eq(incoming.k_steps),
                             tiles_left.eq(incoming.tiles), step.eq(0), first.eq(1),
                             last.eq(incoming.k_steps == 1), active.eq(1),
                             final.eq(incoming.tiles == 1)]
            with m.Else():
                m.d.sync += self.error.eq(1)
        drained = Signal()
        m.d.sync += outstanding.eq(outstanding + (take & first) - drained)

        # Edges: each row and column skews its words beside their control, steers the
        # slices (for a steered PE) with the mode skewed beside them, and registers them into
        # the array.
        control = Signal(StepControl)
        m.d.comb += [control.mode.eq(mode), control.valid.eq(take), control.first.eq(first),
                     control.last.eq(last)]
        if len(modes(self._precision)) > 1:     # a fixed-precision PE knows its widths
            m.d.comb += control.w_wide.eq(weight_wide(mode))

        def edge(side, index, word, registers):
            """The operand of row/column ``index`` after ``registers`` registers, and its skewed
            control."""
            skewed_control, skewed_word = control, word
            if index:
                skew = EdgeSkew(self.word_bits, index)
                m.submodules[f"skew_{side}{index}"] = shared(platform, skew, f"skew{index}")
                m.d.comb += [skew.control.eq(control), skew.word.eq(word)]
                skewed_control, skewed_word = skew.skewed_control, skew.skewed_word
            operand = skewed_word
            if self._pe.steered:
                steer = SliceSteer(self._precision, side)
                m.submodules[f"steer_{side}{index}"] = shared(platform, steer, f"steer_{side}")
                m.d.comb += [steer.mode.eq(skewed_control.mode), steer.word.eq(skewed_word)]
                operand = steer.bricks
            return delay(m, operand, registers, f"steered_{side}{index}"), skewed_control
        a_edges = []
        for r in range(rows):
            operand, skewed_control = edge("a", r, self.act.payload[r], self._edge_registers)
            a_edges.append((operand, delay(m, skewed_control, self._edge_registers,
                                           f"edge_control{r}")))
        # A column's last edge register is the first row's weight register (see ArrayRow).
        w_edge = [edge("w", c, self.wgt.payload[c], self._edge_registers - 1)[0]
                  for c in range(cols)]

        # The PE grid, row after row: each row takes its activations and control from its edge
        # and its weights from the row above (the first row from the column edges); its sums
        # leave de-skewed, so a whole row is written at once.
        operand_bits = Shape.cast(a_edges[0][0].shape()).width
        w_in = Cat(w_edge)
        results, written = [], []
        for r in range(rows):
            a_in, ctrl_in = a_edges[r]
            row = ArrayRow(cols, self._precision, self._acc_width, self._pe, operand_bits)
            m.submodules[f"row{r}"] = shared(platform, row, "row")
            m.d.comb += [row.control.eq(ctrl_in), row.a.eq(a_in), row.w.eq(w_in)]
            w_in = row.w_below
            results.append(row.results)
            written.append(row.written)

        # Drain: one DrainColumn per column, all in step (same writes, same ready); the
        # first speaks for all of them. (Whole ports are assigned at once: a signal assigned
        # in many slices costs the conversion time in proportion to their number.)
        drains = []
        for c in range(cols):
            drain = DrainColumn(rows, self._drain_rows, self._acc_width, self._fifo_depth)
            m.submodules[f"drain{c}"] = shared(platform, drain, "drain_column")
            m.d.comb += [drain.written.eq(Cat(written[r][c] for r in range(rows))),
                         drain.beat.ready.eq(self.result.ready),
                         drain.results.eq(Cat(results[r][c] for r in range(rows)))]
            drains.append(drain)
        m.d.comb += self.result.payload.eq(Cat(drains[c].beat.payload[j]
                                               for j in range(self._drain_rows)
                                               for c in range(cols)))
        m.d.comb += [self.result.valid.eq(drains[0].beat.valid),
                     drained.eq(self.result.valid & self.result.ready & drains[0].tile_end)]
        return m
