"""EIE-style sparse matrix-vector unit on compressed sparse columns (docs/design.md 3.3).

``y = W x``: row ``r`` of ``W`` belongs to PE ``r mod N`` (its local row ``r // N``).
Each :class:`SpMVPE` keeps its rows of every column as ``(value, z)`` entries in a weight
memory and a column-pointer memory (``golden.csc`` encodes the images and
``golden.csc.load_words`` gives the loader words that carry them, field by field; software
packs them through :data:`Load`).

The activation front end takes ``P`` activations per beat, finds the non-zero
ones with a leading-one detector (a chunk of zeros costs one cycle), and
broadcasts each non-zero ``(j, x_j)`` to every PE, one per cycle. A PE reads the
column's start and end pointers as it takes the activation and queues the
column only when it has entries of this PE, so an empty column costs it nothing.
It walks a queued column two entries per cycle (its weight memory is two banks,
even and odd entries) and sends one weight per cycle to its multiplier: a pair
holding two weights takes two cycles, a pair with a zero-weight (padding) entry
one. Each product is added into the accumulator of its row.

When the vector has been consumed, the accumulators leave on the result
stream, one local row of every PE per beat (rows ``k*N .. k*N+N-1``), cleared as
they go, optionally through bias + requantization + ReLU (docs/design.md 3.2),
a pipeline of its own. ``golden.csc.spmv_cycles`` gives the unit's cycle count.
"""

import math

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.pipeline import lowest_set

__all__ = ["LoadKind", "Setup", "LoadData", "Load", "Entry", "Codebook", "Activations",
           "Results", "QueuedActivation", "Phase", "Readout", "SpMVPE", "SpMV",
           "accumulator_bound_bits"]

#: Widths of the loader's address and data fields.
ADDR_BITS = 16
DATA_BITS = 32
#: Codebook size with weight sharing (4-bit indices).
CODEBOOK_BITS = 4
#: Width of a codebook value and of a requantization multiplier.
CODEBOOK_VALUE_BITS = 8
MULTIPLIER_BITS = 16


class LoadKind(enum.Enum, shape=3):
    """What a loader word writes; the member of :data:`LoadData` named like the kind is its data."""
    ENTRY = 0        #: weight entry ``addr`` of PE ``pe``: an :class:`Entry`
    POINTER = 1      #: column pointer ``addr`` of PE ``pe``
    CODEBOOK = 2     #: codebook entry ``addr`` (signed 8-bit)
    BIAS = 3         #: bias of local row ``addr`` of PE ``pe`` (signed)
    MULTIPLIER = 4   #: requantization multiplier of local row ``addr`` of PE ``pe``
    SETUP = 5        #: a :data:`Setup` word


#: The set-up word: the matrix's row count and the fused requantizer's settings.
Setup = data.StructLayout({
    "rows":       unsigned(16),
    "requantize": 1,
    "shift":      unsigned(6),
    "out_bits":   unsigned(4),
})

#: The data of a loader word, one member per :class:`LoadKind` (``entry`` holds the bits of
#: the unit's :class:`Entry`, from bit 0).
LoadData = data.UnionLayout({
    "entry":      unsigned(DATA_BITS),
    "pointer":    unsigned(DATA_BITS),
    "codebook":   signed(CODEBOOK_VALUE_BITS),
    "bias":       signed(DATA_BITS),
    "multiplier": unsigned(MULTIPLIER_BITS),
    "setup":      Setup,
})

#: A loader word: what it writes, where, and the data.
Load = data.StructLayout({
    "kind": LoadKind,
    "pe":   unsigned(6),
    "addr": unsigned(ADDR_BITS),
    "data": LoadData,
})

#: The codebook of weight sharing: 16 signed 8-bit weights, entry 0 zero by convention.
Codebook = data.ArrayLayout(signed(CODEBOOK_VALUE_BITS), 1 << CODEBOOK_BITS)


class Entry(data.StructLayout):
    """A weight-memory entry: the stored value, then ``z``, the zero local rows skipped before it.

    Parameters
    ----------
    value_bits : int
        Width of the value: a signed weight, or with ``codebook`` an unsigned codebook index.
    z_bits : int
        Width of ``z``.
    codebook : bool
        The value is an index into the :data:`Codebook`.
    """

    def __init__(self, value_bits, z_bits, codebook=False):
        super().__init__({
            "value": unsigned(value_bits) if codebook else signed(value_bits),
            "z":     unsigned(z_bits),
        })


class Activations(data.StructLayout):
    """A beat of the activation stream: ``lanes`` unsigned activations (``x[0]`` first), ``last``."""

    def __init__(self, act_bits, lanes):
        super().__init__({"x": data.ArrayLayout(unsigned(act_bits), lanes), "last": 1})


class Results(data.ArrayLayout):
    """A beat of the result stream: one signed ``acc_width``-bit value per PE (PE 0 first)."""

    def __init__(self, acc_width, n_pes):
        super().__init__(signed(acc_width), n_pes)


class QueuedActivation(data.StructLayout):
    """A non-zero activation ``x`` of column ``j``, as it waits in a PE's queue."""

    def __init__(self, col_bits, act_bits):
        super().__init__({"j": unsigned(col_bits), "x": unsigned(act_bits)})


class Phase(enum.Enum, shape=2):
    """What the unit is doing; every PE follows it."""
    LOAD = 0         #: taking loader words
    COMPUTE = 1      #: taking the vector, PEs walking columns
    OUTPUT = 2       #: reading the accumulators out, one local row of every PE per cycle


class Readout(wiring.Signature):
    """How the unit reads a PE's accumulators out (from the unit's side).

    Members
    -------
    row : Out(range(local_rows))
        The local row read this cycle.
    take : Out(1)
        ``row`` is read: clear its accumulator at this cycle's end.
    acc, bias : In(signed(acc_width))
        The accumulator and the bias of ``row``, this cycle.
    multiplier : In(16)
        The requantization multiplier of ``row``, this cycle.
    """

    def __init__(self, local_rows, acc_width):
        super().__init__({
            "row":        Out(range(local_rows)),
            "take":       Out(1),
            "acc":        In(signed(acc_width)),
            "bias":       In(signed(acc_width)),
            "multiplier": In(MULTIPLIER_BITS),
        })


def _check(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, not {value!r}")


def _check_value_bits(value_bits, codebook):
    if codebook:
        if value_bits != CODEBOOK_BITS:
            raise ValueError(f"value_bits must be {CODEBOOK_BITS} with a codebook, "
                             f"not {value_bits!r}")
    elif value_bits not in (2, 4, 8):
        raise ValueError(f"value_bits must be 2, 4 or 8, not {value_bits!r}")


def accumulator_bound_bits(cols, weight_bits, act_bits):
    """Signed bits that hold ``cols * max|w| * (2^act_bits - 1)``, the largest ``|W x|``.

    ``weight_bits`` is the width of a signed weight (8 for codebook weights).
    """
    return (cols * (1 << (weight_bits - 1)) * ((1 << act_bits) - 1)).bit_length() + 1


class SpMVPE(wiring.Component):
    """One processing element: pointer fetch, column queue, pair walk, multiply-accumulate.

    It owns its rows of the matrix: a weight memory of :class:`Entry` words in two banks
    (even and odd entries), the column pointers (one memory, ``p[j]`` and ``p[j+1]`` read in
    the same cycle on its two ports), and per local row an accumulator, a bias and a
    multiplier (distributed RAM, read in the cycle they are addressed). An activation taken
    on ``act`` is registered, its column's pointers are read and registered, and the column
    joins the queue if it holds entries. The walk takes the queued columns in order and reads
    two consecutive entries per cycle; the pair is registered and gives one weight per cycle
    (the walk waits a cycle when both entries carry weights; a zero-weight, padding, entry
    only moves the row on). The weight's row is the previous row plus ``z + 1``. The weight
    and its row are registered; the next cycle registers the product and the row's
    accumulator, and the one after writes their sum. In :attr:`Phase.OUTPUT` the unit reads
    the rows out through ``readout``.

    Parameters
    ----------
    cols : int
        Columns, 1..65535 (``cols + 1`` pointers).
    local_rows : int
        Rows this PE holds, 1..4096.
    entries : int
        Weight-memory depth, 1..65536.
    value_bits : int
        Stored value width: 2, 4 or 8 (signed weights), 4 with ``codebook`` (indices).
    codebook : bool
        Values index the ``table`` port.
    z_bits : int
        Zero-run width, 1..8.
    act_bits : int
        Activation width, 1..16.
    queue_depth : int
        Column queue depth, 2..256.
    acc_width : int
        Signed accumulator width, 2..48.

    Attributes
    ----------
    act : In(stream.Signature(QueuedActivation(col_bits, act_bits)))
        Non-zero activations in column order; ``ready`` (a register) while the queue's level
        plus the activations reading their pointers (the one taken now among them) stays
        below ``queue_depth``, as of the previous cycle.
    load : In(stream.Signature(Load))
        Loader words meant for this PE (its ``pe`` field is not looked at), always ready:
        entries, pointers, biases and multipliers are written; other kinds are ignored.
    table : In(Codebook)
        The shared codebook; only with ``codebook``.
    phase : In(Phase)
        The unit's phase: in ``OUTPUT`` the accumulators belong to ``readout``.
    busy : Out(1)
        Work left: an activation reading its pointers, a queued or walked column, a pair, or
        a weight on its way to the multiplier (the cycle that adds the last product is not
        counted: the accumulator holds the sum at its end).
    readout : In(Readout(local_rows, acc_width))
        The accumulators, biases and multipliers, row by row.
    """

    def __init__(self, *, cols, local_rows, entries, value_bits=8, codebook=False, z_bits=4,
                 act_bits=8, queue_depth=8, acc_width=32):
        _check("cols", cols, 1, 65535)
        _check("local_rows", local_rows, 1, 4096)
        _check("entries", entries, 1, 1 << 16)
        _check_value_bits(value_bits, codebook)
        _check("z_bits", z_bits, 1, 8)
        _check("act_bits", act_bits, 1, 16)
        _check("queue_depth", queue_depth, 2, 256)
        _check("acc_width", acc_width, 2, 48)
        self._cols, self._local_rows, self._entries = cols, local_rows, entries
        self._value_bits, self._codebook, self._z_bits = value_bits, bool(codebook), z_bits
        self._act_bits, self._queue_depth, self._acc_width = act_bits, queue_depth, acc_width
        self._col_bits = max(1, (cols - 1).bit_length())
        ports = {
            "act":     In(stream.Signature(QueuedActivation(self._col_bits, act_bits))),
            "load":    In(stream.Signature(Load)),
            "phase":   In(Phase),
            "busy":    Out(1),
            "readout": In(Readout(local_rows, acc_width)),
        }
        if codebook:
            ports["table"] = In(Codebook)
        super().__init__(ports)

    cols = property(lambda self: self._cols)
    local_rows = property(lambda self: self._local_rows)
    entries = property(lambda self: self._entries)
    value_bits = property(lambda self: self._value_bits)
    codebook = property(lambda self: self._codebook)
    z_bits = property(lambda self: self._z_bits)
    act_bits = property(lambda self: self._act_bits)
    queue_depth = property(lambda self: self._queue_depth)
    acc_width = property(lambda self: self._acc_width)
    col_bits = property(lambda self: self._col_bits)

    @property
    def entry_layout(self):
        """The :class:`Entry` of this PE's weight memory."""
        return Entry(self._value_bits, self._z_bits, self._codebook)

    @property
    def pointer_bits(self):
        """Width of a column pointer (0..entries)."""
        return self._entries.bit_length()

    def elaborate(self, platform):
        m = Module()
        m.submodules.weights_even = even = Memory(
            shape=self.entry_layout, depth=(self._entries + 1) // 2, init=[])
        m.submodules.weights_odd = odd = Memory(
            shape=self.entry_layout, depth=max(1, self._entries // 2), init=[])
        m.submodules.pointers = pointers = Memory(shape=self.pointer_bits, depth=self._cols + 1,
                                                  init=[])
        m.submodules.bias = bias = Memory(shape=signed(self._acc_width),
                                          depth=self._local_rows, init=[])
        m.submodules.multiplier = multiplier = Memory(shape=MULTIPLIER_BITS,
                                                      depth=self._local_rows, init=[])
        pointer_write = self._loader(m, even, odd, bias, multiplier)
        queue, column, fetching = self._pointer_fetch(m, pointers, pointer_write)
        pair, stall, half, walking = self._walk(m, queue, column, even, odd)
        weighing = self._accumulate(m, pair, stall, half, bias, multiplier)
        m.d.comb += self.busy.eq(fetching | queue.r_rdy | walking | weighing)
        return m

    def _loader(self, m, even, odd, bias, multiplier):
        """Write the loader's words (entry ``e`` to bank ``e mod 2``); returns whether a pointer
        is written (the pointer memory shares its address with a read, see
        :meth:`_pointer_fetch`)."""
        load = self.load.payload
        m.d.comb += self.load.ready.eq(1)
        writing = self.load.valid
        ports = (
            (even, load.addr[1:], load.data.entry,
             writing & (load.kind == LoadKind.ENTRY) & ~load.addr[0]),
            (odd, load.addr[1:], load.data.entry,
             writing & (load.kind == LoadKind.ENTRY) & load.addr[0]),
            (bias, load.addr, load.data.bias, writing & (load.kind == LoadKind.BIAS)),
            (multiplier, load.addr, load.data.multiplier,
             writing & (load.kind == LoadKind.MULTIPLIER)),
        )
        for memory, addr, value, en in ports:
            port = memory.write_port()
            m.d.comb += [port.addr.eq(addr), port.data.eq(value), port.en.eq(en)]
        return writing & (load.kind == LoadKind.POINTER) & (load.addr <= self._cols)

    def _pointer_fetch(self, m, pointers, pointer_write):
        """Register the activation taken, read ``p[j]`` and ``p[j+1]``, queue the column if it is
        not empty; returns the queue, its payload's layout (start, end, x) and whether an
        activation is reading its pointers.

        The pointer memory's write port and its ``p[j]`` read port share one address (the
        loader's, while it writes), so that yosys builds the memory from one dual-port
        block RAM rather than two copies; both reads are transparent to the write, which
        does not happen while activations are taken."""
        ptr_bits = self.pointer_bits
        column = data.StructLayout({"start": ptr_bits, "end": ptr_bits, "x": self._act_bits})
        m.submodules.queue = queue = fifo.SyncFIFO(width=column.size, depth=self._queue_depth)
        taken = Signal()
        taken_j = Signal(self._col_bits)
        taken_x = Signal(self._act_bits)
        m.d.sync += taken.eq(self.act.valid & self.act.ready)
        with m.If(self.act.valid & self.act.ready):
            m.d.sync += [taken_j.eq(self.act.payload.j), taken_x.eq(self.act.payload.x)]
        write = pointers.write_port()
        start_port = pointers.read_port(transparent_for=(write,))
        end_port = pointers.read_port(transparent_for=(write,))
        address = Mux(pointer_write, self.load.payload.addr, taken_j)
        m.d.comb += [write.addr.eq(address), write.data.eq(self.load.payload.data.pointer),
                     write.en.eq(pointer_write),
                     start_port.addr.eq(address), end_port.addr.eq(taken_j + 1)]
        fetched = Signal()
        fetched_x = Signal(self._act_bits)
        m.d.sync += [fetched.eq(taken), fetched_x.eq(taken_x)]
        # The pointers go straight into registers (a block RAM's output is slow), then the
        # column joins the queue if it holds entries.
        pointed = Signal()
        entry = Signal(column)
        m.d.comb += queue.w_data.eq(entry)
        m.d.sync += [pointed.eq(fetched), entry.start.eq(start_port.data),
                     entry.end.eq(end_port.data), entry.x.eq(fetched_x)]
        m.d.comb += queue.w_en.eq(pointed & (entry.end > entry.start))
        # Ready while the queue has room for an activation and every one reading its
        # pointers. A register: from this cycle's level, counting the column being queued
        # whether or not it is empty and not counting the column being taken by the walk
        # (so no long path reaches it).
        in_flight = (self.act.valid & self.act.ready) + taken + fetched + pointed
        m.d.sync += self.act.ready.eq(queue.level + in_flight < self._queue_depth)
        return queue, column, taken | fetched | pointed

    def _walk(self, m, queue, column, even, odd):
        """Walk the queued columns a pair of entries per cycle. Returns the pair (its register,
        its first and second entries and whether each carries a weight), the stall (two
        weights in the pair: the first goes now), ``half`` (the second goes now) and whether
        a column, a read or a pair is under way."""
        ptr_bits = self.pointer_bits
        head = column(queue.r_data)
        entry = self.entry_layout

        # The walk: the bank addresses of the next pair, the entries left in the column.
        walking = Signal()
        last = Signal()                      # this pair ends the column
        first = Signal()
        even_addr = Signal(max(1, (self._entries + 1).bit_length()))
        odd_addr = Signal.like(even_addr)
        odd_start = Signal()                 # the pair starts at an odd entry
        left = Signal(ptr_bits + 1)
        x = Signal(self._act_bits)
        stall = Signal()
        advance = ~stall
        next_column = ~walking | last
        m.d.comb += queue.r_en.eq(advance & next_column)
        with m.If(advance):
            with m.If(next_column):
                m.d.sync += walking.eq(queue.r_rdy)
                with m.If(queue.r_rdy):
                    count = head.end - head.start
                    m.d.sync += [even_addr.eq((head.start + 1) >> 1),
                                 odd_addr.eq(head.start >> 1), odd_start.eq(head.start[0]),
                                 left.eq(count), last.eq(count <= 2), first.eq(1),
                                 x.eq(head.x)]
            with m.Else():
                m.d.sync += [even_addr.eq(even_addr + 1), odd_addr.eq(odd_addr + 1),
                             left.eq(left - 2), last.eq(left <= 4), first.eq(0)]

        even_port = even.read_port()
        odd_port = odd.read_port()
        m.d.comb += [even_port.addr.eq(even_addr), odd_port.addr.eq(odd_addr),
                     even_port.en.eq(advance), odd_port.en.eq(advance)]
        # The pair being read: its column's flags, aligned with the memories' data.
        read = Signal(data.StructLayout({"valid": 1, "first": 1, "x": self._act_bits,
                                         "second": 1, "swap": 1}))
        with m.If(advance):
            m.d.sync += [read.valid.eq(walking), read.first.eq(first), read.x.eq(x),
                         read.second.eq(left >= 2), read.swap.eq(odd_start)]
        # The banks' data go straight into the pair register (a block RAM's output is slow).
        pair = Signal(data.StructLayout({"valid": 1, "first": 1, "x": self._act_bits,
                                         "second": 1, "swap": 1, "even": entry, "odd": entry}))
        with m.If(advance):
            m.d.sync += [pair.valid.eq(read.valid), pair.first.eq(read.first), pair.x.eq(read.x),
                         pair.second.eq(read.second), pair.swap.eq(read.swap),
                         pair.even.eq(even_port.data), pair.odd.eq(odd_port.data)]
        e0 = entry(Mux(pair.swap, pair.odd, pair.even))
        e1 = entry(Mux(pair.swap, pair.even, pair.odd))
        real0 = e0.value != 0
        real1 = pair.second & (e1.value != 0)
        # Two weights in the pair: the first now, the second in the next cycle (``half``).
        half = Signal()
        m.d.comb += stall.eq(pair.valid & ~half & real0 & real1)
        with m.If(pair.valid):
            m.d.sync += half.eq(stall)
        return (pair, e0, e1, real0, real1), stall, half, walking | read.valid | pair.valid

    def _accumulate(self, m, pair, stall, half, bias, multiplier):
        """Give the pair's weights their rows, one per cycle; multiply and accumulate; returns
        whether a weight is on its way to the multiplier."""
        pair, e0, e1, real0, real1 = pair
        local_bits = max(1, (self._local_rows - 1).bit_length())
        position = Signal(local_bits + 1)      # the row of the last entry taken
        row0 = Signal(local_bits + 1)
        row1 = Signal(local_bits + 1)
        m.d.comb += [row0.eq(Mux(pair.first, e0.z, position + e0.z + 1)),
                     row1.eq(Mux(half, position, row0) + e1.z + 1)]
        with m.If(pair.valid):
            m.d.sync += position.eq(Mux(stall | ~pair.second, row0, row1))
        second = half | ~real0                 # the weight sent is the pair's second
        weighing = Signal()
        weigh_row = Signal(local_bits)
        weigh_value = Signal(self._value_bits)
        weigh_x = Signal(self._act_bits)
        m.d.sync += weighing.eq(pair.valid & (half | real0 | real1))
        m.d.sync += [weigh_row.eq(Mux(second, row1, row0)),
                     weigh_value.eq(Mux(second, e1.value, e0.value).as_unsigned()),
                     weigh_x.eq(pair.x)]
        if self._codebook:
            weight = self.table[weigh_value]
        else:
            weight = weigh_value.as_signed()

        # Accumulate in two cycles: read the row's accumulator (distributed RAM) and register
        # it with the product, then add and write. A product of the row written in the read's
        # cycle takes that sum instead (``forward``), so back-to-back products of a row add.
        m.submodules.accs = accs = Memory(shape=signed(self._acc_width),
                                          depth=self._local_rows, init=[])
        acc_write = accs.write_port()
        acc_read = accs.read_port(domain="comb")
        product_bits = CODEBOOK_VALUE_BITS if self._codebook else self._value_bits
        product = Signal(signed(product_bits + self._act_bits + 1))
        adding = Signal()
        adding_row = Signal(local_bits)
        old = Signal(signed(self._acc_width))
        forward = Signal()
        m.d.comb += acc_read.addr.eq(weigh_row)
        m.d.sync += [product.eq(weight * weigh_x.as_unsigned()), adding.eq(weighing),
                     adding_row.eq(weigh_row), old.eq(acc_read.data),
                     forward.eq(adding & (adding_row == weigh_row))]
        total = Signal(signed(self._acc_width))
        written = Signal(signed(self._acc_width))
        m.d.comb += total.eq(Mux(forward, written, old) + product)
        m.d.sync += written.eq(total)
        readout = self.readout
        with m.If(self.phase == Phase.OUTPUT):
            m.d.comb += [acc_write.addr.eq(readout.row), acc_write.data.eq(0),
                         acc_write.en.eq(readout.take)]
        with m.Else():
            m.d.comb += [acc_write.addr.eq(adding_row), acc_write.data.eq(total),
                         acc_write.en.eq(adding)]
        out_read = accs.read_port(domain="comb")
        m.d.comb += [out_read.addr.eq(readout.row), readout.acc.eq(out_read.data)]
        for memory, value in ((bias, readout.bias), (multiplier, readout.multiplier)):
            port = memory.read_port(domain="comb")
            m.d.comb += [port.addr.eq(readout.row), value.eq(port.data)]
        return weighing


class SpMV(wiring.Component):
    """An ``n_pes``-PE sparse matrix-vector unit.

    Parameters
    ----------
    n_pes : int
        Processing elements, 1..64.
    rows, cols : int
        Largest matrix the memories hold, rows 1..4096 and cols 1..65535.
    entries : int, optional
        Weight-memory depth of each PE (entries, padding included), 1..65536; by default
        ``cols * ceil(rows / n_pes)`` (at most 65536), what a dense matrix needs (padding
        entries never make a column longer than its rows).
    value_bits : int
        Width of a stored value: 2, 4 or 8 bits signed, or 4-bit codebook indices
        when ``codebook`` is set (then ``value_bits`` is not looked at).
    codebook : bool
        Values are indices into a 16-entry table of signed 8-bit weights.
    z_bits : int
        Width of the zero-run field, 1..8.
    act_bits : int
        Width of the unsigned activations, 1..16.
    lanes : int
        Activations per beat of the activation stream, 1..16.
    queue_depth : int
        Depth of each PE's column queue, 2..256.
    acc_width : int, optional
        Signed accumulator width; by default the bound below plus 8 bits of bias headroom:
        ``|acc| <= cols * max|value| * (2^act_bits - 1)``.

    Attributes
    ----------
    load : In(stream.Signature(Load))
        Loader words (weights, pointers, codebook, bias, multipliers, setup); taken
        only between vectors.
    act : In(stream.Signature(Activations(act_bits, lanes)))
        The input vector, ``lanes`` activations per beat from ``x_0``; ``last`` on its
        final beat. Lanes past the end must be 0.
    result : Out(stream.Signature(Results(acc_width, n_pes)))
        ``ceil(rows / n_pes)`` beats: beat ``k`` holds ``y[k*N + i]`` in element ``i``
        (0 past the last row), requantized when the setup asks for it.
    """

    def __init__(self, n_pes=4, rows=256, cols=256, entries=None, value_bits=8, codebook=False,
                 z_bits=4, act_bits=8, lanes=4, queue_depth=8, acc_width=None):
        _check("n_pes", n_pes, 1, 64)
        _check("rows", rows, 1, 4096)
        _check("cols", cols, 1, 65535)
        _check("z_bits", z_bits, 1, 8)
        _check("act_bits", act_bits, 1, 16)
        _check("lanes", lanes, 1, 16)
        _check("queue_depth", queue_depth, 2, 256)
        if codebook:
            value_bits = CODEBOOK_BITS
        _check_value_bits(value_bits, codebook)
        local_rows = math.ceil(rows / n_pes)
        if entries is None:
            # A column holds at most one entry per local row: a padding entry sits on a row
            # of its own, before the entry it leads to.
            entries = min(cols * local_rows, 1 << 16)
        _check("entries", entries, 1, 1 << 16)
        bound_bits = accumulator_bound_bits(
            cols, CODEBOOK_VALUE_BITS if codebook else value_bits, act_bits)
        if acc_width is None:
            acc_width = min(bound_bits + 8, 48)
        _check("acc_width", acc_width, bound_bits, 48)
        self._n_pes, self._rows, self._cols = n_pes, rows, cols
        self._entries, self._value_bits, self._codebook = entries, value_bits, bool(codebook)
        self._z_bits, self._act_bits, self._lanes = z_bits, act_bits, lanes
        self._queue_depth, self._acc_width = queue_depth, acc_width
        self._local_rows, self._bound_bits = local_rows, bound_bits
        super().__init__({
            "load":   In(stream.Signature(Load)),
            "act":    In(stream.Signature(Activations(act_bits, lanes))),
            "result": Out(stream.Signature(Results(acc_width, n_pes))),
        })

    n_pes = property(lambda self: self._n_pes)
    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    entries = property(lambda self: self._entries)
    value_bits = property(lambda self: self._value_bits)
    codebook = property(lambda self: self._codebook)
    z_bits = property(lambda self: self._z_bits)
    act_bits = property(lambda self: self._act_bits)
    lanes = property(lambda self: self._lanes)
    queue_depth = property(lambda self: self._queue_depth)
    acc_width = property(lambda self: self._acc_width)
    local_rows = property(lambda self: self._local_rows)
    #: Signed bits that hold ``cols * max|value| * max x`` (before the bias).
    accumulator_bound_bits = property(lambda self: self._bound_bits)

    @property
    def entry_layout(self):
        """The :class:`Entry` of the PEs' weight memories (what a ``LoadKind.ENTRY`` word carries)."""
        return Entry(self._value_bits, self._z_bits, self._codebook)

    def processing_element(self):
        """A new :class:`SpMVPE` with this unit's parameters."""
        return SpMVPE(cols=self._cols, local_rows=self._local_rows, entries=self._entries,
                      value_bits=self._value_bits, codebook=self._codebook, z_bits=self._z_bits,
                      act_bits=self._act_bits, queue_depth=self._queue_depth,
                      acc_width=self._acc_width)

    def elaborate(self, platform):
        m = Module()
        n = self._n_pes
        pes = [self.processing_element() for _ in range(n)]
        for i, pe in enumerate(pes):
            m.submodules[f"pe{i}"] = pe
        col_bits = pes[0].col_bits

        phase = Signal(Phase)
        rows = Signal(range(self._rows + 1), init=self._rows)
        setup = Signal(Setup, init={"rows": self._rows, "shift": 1, "out_bits": 8})
        m.d.comb += rows.eq(setup.rows)

        # Loader: set-up and codebook here, the rest to the PE the word names.
        load = self.load.payload
        m.d.comb += self.load.ready.eq(phase == Phase.LOAD)
        loading = self.load.valid & self.load.ready
        with m.If(loading & (load.kind == LoadKind.SETUP)):
            m.d.sync += setup.eq(load.data.setup)
        if self._codebook:
            codebook = Signal(Codebook)
            with m.If(loading & (load.kind == LoadKind.CODEBOOK)):
                m.d.sync += codebook[load.addr[:CODEBOOK_BITS]].eq(load.data.codebook)
            for pe in pes:
                m.d.comb += pe.table.eq(codebook)
        # The PEs' words are registered on their way (a word is written a cycle after it is
        # taken, before any activation can be).
        pe_word = Signal(Load)
        m.d.sync += pe_word.eq(load)
        for i, pe in enumerate(pes):
            m.d.sync += pe.load.valid.eq(loading & (load.pe == i))
            m.d.comb += [pe.load.payload.eq(pe_word), pe.phase.eq(phase)]

        # Activation front end: one non-zero activation per cycle to every PE, when every PE
        # has room (so a PE's ``act.valid`` is never up while its ``ready`` is down).
        chunk = Signal(data.ArrayLayout(unsigned(self._act_bits), self._lanes))
        pending = Signal(self._lanes)
        base = Signal(col_bits + 1)
        next_base = Signal(col_bits + 1)
        input_done = Signal()
        lowest = lowest_set(m, pending, "lowest")
        room = Signal()
        m.d.comb += room.eq(Cat(pe.act.ready for pe in pes).all())
        broadcast = (pending != 0) & room
        remaining = Signal(self._lanes)
        m.d.comb += remaining.eq(Mux(broadcast, pending & ~(1 << lowest), pending))
        queued = Signal(QueuedActivation(col_bits, self._act_bits))
        m.d.comb += [queued.j.eq((base + lowest)[:col_bits]), queued.x.eq(chunk[lowest])]
        for pe in pes:
            m.d.comb += [pe.act.payload.eq(queued), pe.act.valid.eq(broadcast)]
        m.d.comb += self.act.ready.eq((phase == Phase.COMPUTE) & (remaining == 0) & ~input_done)
        with m.If(broadcast):
            m.d.sync += pending.eq(remaining)
        with m.If(self.act.valid & self.act.ready):
            m.d.sync += [
                chunk.eq(self.act.payload.x),
                pending.eq(Cat(x != 0 for x in self.act.payload.x)),
                base.eq(next_base),
                next_base.eq(next_base + self._lanes),
            ]
            with m.If(self.act.payload.last):
                m.d.sync += input_done.eq(1)

        # Output: local row k of every PE per beat, through the optional requantizer; a
        # pipeline that holds while a beat waits for ``result.ready``.
        stall = self.result.valid & ~self.result.ready
        issued_row = Signal(range(self._local_rows + 1))
        issued_first = Signal(range(self._local_rows * n + 1))    # issued_row * n
        rows_left = Signal()             # issued_first < rows, as a register
        take = Signal()
        m.d.comb += take.eq((phase == Phase.OUTPUT) & rows_left & ~stall)
        with m.If(take):
            m.d.sync += [issued_row.eq(issued_row + 1), issued_first.eq(issued_first + n),
                         rows_left.eq(issued_first + n < rows)]
        for pe in pes:
            m.d.comb += [pe.readout.row.eq(issued_row), pe.readout.take.eq(take)]
        in_flight = self._result_pipeline(m, pes, take, issued_first, rows, setup, stall)

        # Phases: LOAD -> (first activation) COMPUTE -> (all consumed) OUTPUT -> LOAD.
        with m.Switch(phase):
            with m.Case(Phase.LOAD):
                with m.If(self.act.valid & ~self.load.valid):
                    m.d.sync += [phase.eq(Phase.COMPUTE), input_done.eq(0), next_base.eq(0)]
            with m.Case(Phase.COMPUTE):
                with m.If(input_done & (pending == 0) & ~Cat(pe.busy for pe in pes).any()):
                    m.d.sync += [phase.eq(Phase.OUTPUT), issued_row.eq(0), issued_first.eq(0),
                                 rows_left.eq(1)]
            with m.Case(Phase.OUTPUT):
                with m.If(~rows_left & ~in_flight & ~stall):
                    m.d.sync += phase.eq(Phase.LOAD)
        return m

    def _result_pipeline(self, m, pes, take, issued_first, rows, setup, stall):
        """The read-out: the accumulators of the row taken (0 past ``rows``) straight into the
        result register, or with requantization through five stages,
        ``clamp(((acc + bias) * M + 2^(shift-1)) >> shift, 0, 2^out_bits - 1)``. Returns
        whether a beat is in the requantizer's stages."""
        n, width = self._n_pes, self._acc_width
        advance = ~stall
        lanes = range(n)

        def stage(name, shape, value, index=None):
            register = Signal(shape, name=name if index is None else f"{name}{index}")
            with m.If(advance):
                m.d.sync += register.eq(value)
            return register

        requantize = setup.requantize
        mask = Cat(issued_first + i < rows for i in lanes)
        valid1 = stage("read_valid", 1, take & requantize)
        mask1 = stage("read_mask", n, mask)
        acc1 = [stage("read_acc", signed(width), pe.readout.acc, i) for i, pe in enumerate(pes)]
        bias1 = [stage("read_bias", signed(width), pe.readout.bias, i)
                 for i, pe in enumerate(pes)]
        multiplier1 = [stage("read_multiplier", MULTIPLIER_BITS, pe.readout.multiplier, i)
                       for i, pe in enumerate(pes)]
        valid2 = stage("biased_valid", 1, valid1)
        mask2 = stage("biased_mask", n, mask1)
        total = [stage("biased", signed(width + 1), acc1[i] + bias1[i], i) for i in lanes]
        multiplier = [stage("multiplier", MULTIPLIER_BITS, multiplier1[i], i) for i in lanes]
        # The product in two halves of the (signed) total, each one multiplier block wide.
        split = 17 if width + 1 > 18 else width + 1
        valid3 = stage("product_valid", 1, valid2)
        mask3 = stage("product_mask", n, mask2)
        if split == width + 1:
            low = [stage("product", signed(width + 1 + MULTIPLIER_BITS + 1),
                         total[i] * multiplier[i], i) for i in lanes]
            high = [Const(0, signed(1)) for _ in lanes]
        else:
            low = [stage("product_low", unsigned(split + MULTIPLIER_BITS),
                         total[i][:split] * multiplier[i], i) for i in lanes]
            high = [stage("product_high", signed(width + 1 - split + MULTIPLIER_BITS + 1),
                          total[i][split:].as_signed() * multiplier[i], i) for i in lanes]
        scaled_bits = width + 1 + MULTIPLIER_BITS + 1
        valid4 = stage("scaled_valid", 1, valid3)
        mask4 = stage("scaled_mask", n, mask3)
        scaled = [stage("scaled", signed(scaled_bits), (high[i] << split) + low[i], i)
                  for i in lanes]
        # Rounding: (v + 2^(s-1)) >> s = ((2v >> s) + 1) >> 1. Each lane shifts by a copy of
        # ``shift`` of its own (distinct initial values keep yosys from merging the copies):
        # one register driving every lane's shifter is too slow a net.
        valid5 = stage("shifted_valid", 1, valid4)
        mask5 = stage("shifted_mask", n, mask4)
        shifts = [Signal(6, name=f"shift{i}", init=i % 64) for i in lanes]
        m.d.sync += [shift.eq(setup.shift) for shift in shifts]
        shifted = [stage("shifted", signed(scaled_bits + 1), (scaled[i] << 1) >> shifts[i], i)
                   for i in lanes]
        # Clamp to 0..2^out_bits - 1: below 0 when shifted < -1 (negative, not all ones),
        # above when shifted + 1 reaches 2^(out_bits+1) (bits 17 and up set, or the low 17
        # bits at least 2^(out_bits+1) - 1).
        ceiling, top = Signal(17), Signal(16)
        m.d.sync += [ceiling.eq((1 << (setup.out_bits + 1)) - 1),
                     top.eq((1 << setup.out_bits) - 1)]
        with m.If(advance):
            m.d.sync += self.result.valid.eq(Mux(requantize, valid5, take))
            for i in lanes:
                value = shifted[i]
                negative = value[-1]
                below = negative & ~value.all()
                above = ~negative & (value[17:].any() | (value[:17] >= ceiling))
                rounded = (value[:17] + 1)[1:17]
                clamped = Mux(below, 0, Mux(above, top, rounded))
                out = Mux(requantize, Mux(mask5[i], clamped, 0),
                          Mux(mask[i], pes[i].readout.acc, 0))
                m.d.sync += self.result.payload[i].eq(out)
        return valid1 | valid2 | valid3 | valid4 | valid5
