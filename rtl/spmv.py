"""EIE-style sparse matrix-vector unit on compressed sparse columns (docs/design.md 3.3).

``y = W x``: row ``r`` of ``W`` belongs to PE ``r mod N`` (its local row ``r // N``).
Each :class:`SpMVPE` keeps its rows of every column as ``(value, z)`` entries in a weight
memory; the column pointers of every PE are one memory, :class:`ColumnPointers`, read for
all PEs at once (``golden.csc`` encodes the images and
``golden.csc.load_words`` gives the loader words that carry them, field by field; software
packs them through :data:`Load`).

The activation front end takes ``P`` activations per beat, finds the non-zero
ones with a leading-one detector (a chunk of zeros costs one cycle), and
broadcasts each non-zero ``x_j`` to every PE, one per cycle or two of consecutive
columns (a :class:`Handout`), while the pointer memory reads two pointers of every
PE: ``p[j]`` and ``p[j+1]``, or for a pair ``p[j+1]`` and ``p[j+2]``, ``p[j]``
being the one read last. A PE walks or queues a column only when it has entries of
this PE, so an empty column costs it nothing. It walks a column two entries per cycle (its weight memory has two read
ports) and sends one weight per cycle to its multiplier: a pair
holding two weights takes two cycles, a pair with a zero-weight (padding) entry
one. Each product is added into the accumulator of its row.

When the vector has been consumed, the accumulators leave on the result
stream, one local row of every PE per beat (rows ``k*N .. k*N+N-1``), cleared as
they go, optionally through bias + requantization + ReLU (docs/design.md 3.2),
a pipeline of its own. ``golden.csc.spmv_cycles`` gives the unit's cycle count.
"""

import math

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.pipeline import lowest_set

__all__ = ["LoadKind", "Setup", "LoadData", "Load", "Entry", "Codebook", "Activations",
           "Handout", "Results", "ColumnSpan", "Phase", "Readout", "ColumnPointers", "SpMVPE",
           "SpMV", "accumulator_bound_bits"]

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


class Handout(data.StructLayout):
    """What the front end hands every PE in a cycle: the activation ``x[0]`` of a column ``j``
    and, with ``pair``, the activation ``x[1]`` of column ``j + 1``.

    The column pointers read for a hand-out are ``p[j]`` and ``p[j+1]``; for a pair they are
    ``p[j+1]`` and ``p[j+2]``, and ``p[j]`` is the second pointer read for the hand-out
    before (the front end pairs two columns only then): two columns, two pointer reads.
    """

    def __init__(self, act_bits):
        super().__init__({"x": data.ArrayLayout(unsigned(act_bits), 2), "pair": 1})


class Results(data.ArrayLayout):
    """A beat of the result stream: one signed ``acc_width``-bit value per PE (PE 0 first)."""

    def __init__(self, acc_width, n_pes):
        super().__init__(signed(acc_width), n_pes)


class ColumnSpan(data.StructLayout):
    """Where a column's entries lie in a PE's weight memory: ``p[j]`` and ``p[j+1]``."""

    def __init__(self, pointer_bits):
        super().__init__({"start": unsigned(pointer_bits), "end": unsigned(pointer_bits)})


class Phase(enum.Enum, shape=2):
    """What the unit is doing."""
    LOAD = 0         #: taking loader words
    COMPUTE = 1      #: taking the vector, PEs walking columns
    OUTPUT = 2       #: reading the accumulators out, one local row of every PE per cycle


class Readout(wiring.Signature):
    """How the unit reads a PE's accumulators out (from the unit's side).

    Members
    -------
    row : Out(range(local_rows))
        The local row to read in the next cycle (the PE registers it).
    take : Out(1)
        The row given in the previous cycle is read in this cycle: clear its accumulator at
        the next cycle's end.
    acc, bias : In(signed(acc_width))
        The accumulator and the bias of the row given in the previous cycle, this cycle
        (the accumulator with the product added in this cycle, if any is of that row).
    multiplier : In(16)
        The requantization multiplier of that row, this cycle.
    """

    def __init__(self, local_rows, acc_width):
        super().__init__({
            "row":        Out(range(local_rows)),
            "take":       Out(1),
            "acc":        In(signed(acc_width)),
            "bias":       In(signed(acc_width)),
            "multiplier": In(MULTIPLIER_BITS),
        })


class ColumnQueue(wiring.Component):
    """A PE's column queue: first word fall-through, in distributed RAM, its slot write apart
    from keeping what was written.

    ``w_write`` writes ``w_data`` into the next free slot; ``w_en``, in the same cycle, keeps
    it (the next write goes to the slot after). So the memory's write enable, which reaches
    every cell, waits only on registers (``w_write`` and the level), not on the test that
    decides whether the column is kept.

    Parameters
    ----------
    width : int
        Bits of an entry.
    depth : int
        Entries, 2..256.

    Attributes
    ----------
    w_data : In(width)
    w_write : In(1)
        Write ``w_data`` into the next free slot (while there is one).
    w_en : In(1)
        Keep the entry written in this cycle.
    r_data : Out(width)
        The oldest entry kept, while ``r_rdy``.
    r_rdy : Out(1)
        Some entry is kept (a register).
    r_en : In(1)
        Drop the oldest entry.
    level : Out(range(depth + 1))
        Entries kept.
    """

    def __init__(self, width, depth):
        _check("depth", depth, 2, 256)
        self._width, self._depth = width, depth
        super().__init__({
            "w_data":  In(width),
            "w_write": In(1),
            "w_en":    In(1),
            "r_data":  Out(width),
            "r_rdy":   Out(1),
            "r_en":    In(1),
            "level":   Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.storage = storage = Memory(shape=self._width, depth=depth, init=[])
        write = storage.write_port()
        read = storage.read_port(domain="comb")
        produce = Signal(range(depth))
        consume = Signal(range(depth))
        room = self.level != depth
        keeping = self.w_write & self.w_en & room
        taking = self.r_rdy & self.r_en
        m.d.comb += [write.addr.eq(produce), write.data.eq(self.w_data),
                     write.en.eq(self.w_write & room),
                     read.addr.eq(consume), self.r_data.eq(read.data)]

        def following(pointer):
            return Mux(pointer == depth - 1, 0, pointer + 1)
        with m.If(keeping):
            m.d.sync += produce.eq(following(produce))
        with m.If(taking):
            m.d.sync += consume.eq(following(consume))
        # ``r_rdy`` is a register beside the level (its test would otherwise lie on the path
        # of the walk's head multiplexer).
        with m.If(keeping & ~taking):
            m.d.sync += [self.level.eq(self.level + 1), self.r_rdy.eq(1)]
        with m.If(taking & ~keeping):
            m.d.sync += [self.level.eq(self.level - 1), self.r_rdy.eq(self.level != 1)]
        return m


class ColumnPointers(wiring.Component):
    """The column pointers of every PE in one memory: word ``j`` holds each PE's ``p[j]``.

    Every PE reads the pointers of the same column at once, so one memory ``n_pes``
    pointers wide serves them all: ``ceil(n_pes * pointer_bits / 18)`` dual-port block RAMs
    of 1,024 x 18 on ECP5 (up to 1,023 columns), where a memory per PE takes a block each.
    Port ``start`` reads ``p[j]`` and shares its address with the write port; port ``end``
    reads ``p[j+1]``. (A pair of columns ``j - 1`` and ``j`` reads ``p[j]`` and ``p[j+1]``
    too, so ``j`` is a column and ``p[cols]`` the last pointer read.)

    A loader word writes one PE's pointer, so it is a read-modify-write of its column's
    word: the word is read on the ``end`` port in the cycle after the loader word is taken,
    registered in the next, and written back with the PE's pointer in place in the one
    after. A loader word may follow one for the same column in any order: the word it reads
    misses only its predecessor's write, whose merged word it takes from a register instead
    (the write two cycles back is seen through the read port's transparency).

    Parameters
    ----------
    n_pes : int
        Processing elements, 1..64.
    cols : int
        Columns, 1..65535 (``cols + 1`` pointers per PE).
    pointer_bits : int
        Width of a pointer, 1..17.

    Attributes
    ----------
    load : In(stream.Signature(Load))
        Loader words, always ready: ``POINTER`` words for PE ``pe < n_pes`` and column
        ``addr <= cols`` are written three cycles after they are taken; other words are
        ignored.
    busy : Out(1)
        A pointer word taken is not yet written (its column's word may be read wrong).
    column : In(range(cols))
        The ``j`` whose pointers ``p[j]`` and ``p[j+1]`` are read in this cycle.
    spans : Out(data.ArrayLayout(ColumnSpan(pointer_bits), n_pes))
        Each PE's ``p[j]`` and ``p[j+1]`` of the ``j`` given in the previous cycle.
    """

    def __init__(self, *, n_pes, cols, pointer_bits):
        _check("n_pes", n_pes, 1, 64)
        _check("cols", cols, 1, 65535)
        _check("pointer_bits", pointer_bits, 1, 17)
        self._n_pes, self._cols, self._pointer_bits = n_pes, cols, pointer_bits
        super().__init__({
            "load":   In(stream.Signature(Load)),
            "busy":   Out(1),
            "column": In(range(cols)),
            "spans":  Out(data.ArrayLayout(ColumnSpan(pointer_bits), n_pes)),
        })

    def elaborate(self, platform):
        m = Module()
        n, cols = self._n_pes, self._cols
        lanes = data.ArrayLayout(unsigned(self._pointer_bits), n)
        m.submodules.memory = memory = Memory(shape=lanes, depth=cols + 1, init=[])
        write = memory.write_port()
        start = memory.read_port(transparent_for=(write,))
        end = memory.read_port(transparent_for=(write,))

        # A pointer word in three steps: taken (``word``), its column's word read
        # (``change``), that word registered and written back changed (``changing``).
        m.d.comb += self.load.ready.eq(1)
        word = Signal(Load)
        pointing = Signal()
        m.d.sync += [word.eq(self.load.payload),
                     pointing.eq(self.load.valid & (self.load.payload.kind == LoadKind.POINTER))]
        change = Signal(data.StructLayout({"valid": 1, "pe": range(n), "addr": range(cols + 1),
                                           "pointer": self._pointer_bits}))
        changing = Signal.like(change)
        m.d.sync += [change.valid.eq(pointing & (word.addr <= cols) & (word.pe < n)),
                     change.pe.eq(word.pe), change.addr.eq(word.addr),
                     change.pointer.eq(word.data.pointer), changing.eq(change)]
        read = Signal(lanes)                  # the column's word as ``end`` read it
        written = Signal(lanes)               # the word written in the previous cycle
        forward = Signal()                    # ... is the word ``read`` missed
        merged = Signal(lanes)
        m.d.sync += [read.eq(end.data), written.eq(merged),
                     forward.eq(changing.valid & (changing.addr == change.addr))]
        base = lanes(Mux(forward, written, read))
        for i in range(n):
            m.d.comb += merged[i].eq(Mux(changing.pe == i, changing.pointer, base[i]))

        address = Mux(changing.valid, changing.addr, self.column)
        m.d.comb += [write.addr.eq(address), write.data.eq(merged), write.en.eq(changing.valid),
                     start.addr.eq(address),
                     end.addr.eq(Mux(pointing, word.addr, self.column + 1)),
                     self.busy.eq(pointing | change.valid | changing.valid)]
        for i in range(n):
            m.d.comb += [self.spans[i].start.eq(start.data[i]), self.spans[i].end.eq(end.data[i])]
        return m


def _weight_banks(entries, width):
    """Bit ranges ``(lo, hi)`` of a weight entry, one per bank of a PE's weight memory.

    A bank holds at most four ECP5 block RAMs' worth of bits at the memory's depth (a true
    dual-port block is 16,384 x 1, 8,192 x 2, 4,096 x 4, 2,048 x 9 or 1,024 x 18), so that
    each bank's blocks, and the address registers that drive them, can sit together: the
    default 16,384 x 12 memory is three banks of four bits (four blocks each), 8,192 x 12
    two (eight bits, four); from 4,096 entries down one bank holds the whole entry.
    """
    depth = 1 << max(0, (entries - 1).bit_length())
    if depth >= 16384:
        bits = max(1, 4 // (depth // 16384))
    else:
        bits = 4 * {8192: 2, 4096: 4, 2048: 9}.get(depth, 18)
    return [(lo, min(lo + bits, width)) for lo in range(0, width, bits)]


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

    It owns its rows of the matrix: a weight memory of :class:`Entry` words (two read ports,
    a pair of consecutive entries per cycle; built in banks of entry bits, see
    :func:`_weight_banks`), and per local row an accumulator, a bias and a multiplier
    (distributed RAM, read in the cycle they are addressed). The column pointers of every PE
    are one memory of the unit (:class:`ColumnPointers`), which reads two pointers for a
    :class:`Handout` (one column, or a pair of consecutive ones) in the cycle the PE takes
    it on ``act`` and gives them on ``pointers`` in the next; the PE registers them, and
    each column that holds entries then goes on: the column read (a single column, or a
    pair's second) to the walk when no column waits, else a cycle later to the first column
    queue, a pair's first column a cycle later to the second. The walk takes the first
    queue's columns, then the column read before, then the second queue's, and reads two
    consecutive entries per cycle; the pair is registered and gives one weight per cycle
    (the walk waits a cycle when both entries carry weights; a zero-weight, padding, entry
    only moves the row on). The weight's row is the previous row plus ``z + 1``. The weight
    and its row are registered; the next cycle registers the product and the row's
    accumulator, and the one after writes their sum. Once the PE is idle, the unit reads the
    rows out through ``readout``.

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
        Depth of each of the two column queues, 2..256.
    acc_width : int
        Signed accumulator width, 2..48.

    Attributes
    ----------
    act : In(stream.Signature(Handout(act_bits)))
        Non-zero activations in column order, one or a pair a hand-out; ``ready`` (a
        register) while each queue's level plus the hand-outs reading their pointers (the
        one taken now among them) stays below ``queue_depth``, as of the previous cycle.
    pointers : In(ColumnSpan(pointer_bits))
        The two column pointers read for the hand-out taken in the previous cycle (see
        :class:`Handout`).
    load : In(stream.Signature(Load))
        Loader words meant for this PE (its ``pe`` field is not looked at), always ready:
        biases and multipliers are written in the cycle after the word is taken, entries in
        the one after that; other kinds are ignored.
    table : In(Codebook)
        The shared codebook; only with ``codebook``.
    busy : Out(1)
        Work left: a hand-out reading its pointers, a column on its way to a queue, queued
        or walked, or a pair (the last weight's two cycles, multiply and add, are not
        counted: ``readout.acc`` of the row read in the add's cycle is the sum written then).
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
        ports = {
            "act":      In(stream.Signature(Handout(act_bits))),
            "pointers": In(ColumnSpan(entries.bit_length())),
            "load":     In(stream.Signature(Load)),
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
        m.submodules.bias = bias = Memory(shape=signed(self._acc_width),
                                          depth=self._local_rows, init=[])
        m.submodules.multiplier = multiplier = Memory(shape=MULTIPLIER_BITS,
                                                      depth=self._local_rows, init=[])
        word, entry_write = self._loader(m, bias, multiplier)
        queues, columns, fetching = self._pointer_fetch(m)
        pair, stall, half, walking = self._walk(m, queues, columns, word, entry_write)
        self._accumulate(m, pair, stall, half, bias, multiplier)
        m.d.comb += self.busy.eq(fetching | walking)
        return m

    def _loader(self, m, bias, multiplier):
        """Register each loader word taken and write its biases and multipliers in the next
        cycle; returns the word register and whether an entry is written then (the weight
        memory shares its write address with a read port, see :meth:`_walk`)."""
        m.d.comb += self.load.ready.eq(1)
        # The word register takes the payload in every cycle (no enable for ``valid`` to reach).
        load = Signal(Load)
        writing = Signal()
        m.d.sync += [writing.eq(self.load.valid), load.eq(self.load.payload)]
        for memory, value, kind in ((bias, load.data.bias, LoadKind.BIAS),
                                    (multiplier, load.data.multiplier, LoadKind.MULTIPLIER)):
            port = memory.write_port()
            m.d.comb += [port.addr.eq(load.addr), port.data.eq(value),
                         port.en.eq(writing & (load.kind == kind))]
        return load, writing & (load.kind == LoadKind.ENTRY)

    def _pointer_fetch(self, m):
        """Register the hand-out taken and, in the cycle after, the column pointers read for
        it; the next cycle offers its columns: the column read (``p[r]`` to ``p[r+1]``, the
        pair's second for a pair) to the walk, and registers it (``deferred``, for the first
        queue) and a pair's first column (``carry`` to ``p[r]``), which the cycle after
        offers to the second queue. Returns the two queues, the columns (their layout, each
        column's start, start + 1, entry count, whether that is at most 2, and ``x``; the
        column read, whether it is offered, that is holds entries of this PE, and the
        register ``deferred``; the pair's first column registered, whether it is offered, and
        whether its slot is written) and whether a hand-out is reading its pointers or a column is
        on its way to a queue (the column read in the cycle before even if the walk took it
        then)."""
        ptr_bits = self.pointer_bits
        # ``following`` is ``start + 1``, where the walk reads the column's first pair's
        # second entry (an adder after the walk's choice of column would lie on its longest
        # path).
        layout = data.StructLayout({"start": ptr_bits, "following": range(self._entries + 2),
                                    "count": ptr_bits, "short": 1, "x": self._act_bits})
        m.submodules.queue = queue = ColumnQueue(layout.size, self._queue_depth)
        m.submodules.carried_queue = carried_queue = ColumnQueue(layout.size,
                                                                 self._queue_depth)
        taking = self.act.valid & self.act.ready
        fetched = Signal()
        fetched_handout = Signal(Handout(self._act_bits))
        m.d.sync += fetched.eq(taking)
        with m.If(taking):
            m.d.sync += fetched_handout.eq(self.act.payload)
        # The pointers go straight into registers (a block RAM's output is slow), the second
        # read before kept as ``carry`` (``p[j]`` of a pair); the columns are offered in the
        # next cycle. Each column's count and tests come straight from these registers (a
        # multiplexer choosing between a single column's pointers and a pair's first would
        # lie on the path into the queue's write enable and the walk's registers).
        pointed = Signal()
        handout = Signal(Handout(self._act_bits))
        start, end = Signal(ptr_bits, name="start"), Signal(ptr_bits, name="end")
        carry = Signal(ptr_bits, name="carry")
        m.d.sync += [pointed.eq(fetched), handout.eq(fetched_handout)]
        carry_reach = Signal(ptr_bits + 1)       # carry + 2
        with m.If(fetched):
            m.d.sync += [start.eq(self.pointers.start), end.eq(self.pointers.end),
                         carry.eq(end), carry_reach.eq(end + 2)]
        pair = handout.pair
        column, carried = Signal(layout), Signal(layout)
        m.d.comb += [column.start.eq(start), column.following.eq(start + 1),
                     column.count.eq(end - start), column.short.eq(column.count <= 2),
                     column.x.eq(Mux(pair, handout.x[1], handout.x[0])),
                     carried.start.eq(carry), carried.following.eq(carry + 1),
                     carried.count.eq(start - carry), carried.short.eq(start <= carry_reach),
                     carried.x.eq(handout.x[0])]
        offered = pointed & (end != start)
        # A pair's first column goes to its queue a cycle later, registered with whether it
        # holds entries (the queue's write enable a register, not that test).
        late = Signal(layout)
        late_written, late_offered = Signal(), Signal()
        m.d.sync += [late.eq(carried), late_written.eq(pointed),
                     late_offered.eq(pointed & pair & (start != carry))]
        # The column read reaches its queue a cycle later too (``deferred``), unless the walk
        # takes it at once (see :meth:`_walk`); ``deferred_counted`` says whether it held
        # entries, taken or not.
        deferred = Signal(layout)
        deferred_counted = Signal()
        m.d.sync += [deferred.eq(column), deferred_counted.eq(offered)]
        # Ready while both queues have room for every hand-out reading its pointers (each
        # puts at most one column into each). A register: from this cycle's levels, counting
        # the columns offered whether or not they are empty or walked at once (and the
        # columns on their way to a queue), and not counting a column being taken by the
        # walk (so no long path reaches it).
        in_flight = taking + fetched + pointed
        m.d.sync += self.act.ready.eq(
            (queue.level + in_flight + deferred_counted < self._queue_depth) &
            (carried_queue.level + in_flight + late_offered < self._queue_depth))
        return ((queue, carried_queue),
                (layout, column, offered, deferred, late, late_offered, late_written),
                fetched | pointed | late_offered | deferred_counted)

    def _walk(self, m, queues, columns, word, entry_write):
        """Walk the columns a pair of entries per cycle: the first queue's oldest, else the
        column read in the cycle before, else the second queue's, else the column read just
        offered (the order in which a PE walks its columns does not change its sums).
        Returns the pair (its register, its first and second entries and whether each carries
        a weight), the stall (two weights in the pair: the first goes now), ``half`` (the
        second goes now) and whether a column, a read or a pair is under way.

        The weight memory has two read ports, the pair's first and second entries; the first
        shares its address register with the write port (it holds the loader's address while
        entries are written), so that yosys builds the memory once from true dual-port block
        RAM. (Both reads are transparent to the write: with either not, yosys builds the
        memory twice, 100 or 104 blocks for the unit instead of 52.)"""
        ptr_bits = self.pointer_bits
        queue, carried_queue = queues
        layout, column, offered, deferred, carried, carried_offered, carried_written = columns
        entry = self.entry_layout

        # The walk: the addresses of the next pair, the entries left in the column.
        walking = Signal()
        last = Signal()                      # this pair ends the column
        first = Signal()
        first_addr = Signal(range(self._entries + 2))
        second_addr = Signal.like(first_addr)
        # The weight memory is built in banks of entry bits, each bank a few block RAMs
        # (:func:`_weight_banks`) with address registers of its own: copies of the walk's,
        # kept apart by their initial values, so that no one register drives the address of
        # every block of the memory (yosys would merge equal registers).
        banks = _weight_banks(self._entries, entry.size)
        firsts = [first_addr] + [Signal.like(first_addr, name=f"first_addr{b}", init=b)
                                 for b in range(1, len(banks))]
        seconds = [second_addr] + [Signal.like(second_addr, name=f"second_addr{b}", init=b)
                                   for b in range(1, len(banks))]
        left = Signal(ptr_bits + 1)
        x = Signal(self._act_bits)
        stall = Signal()
        advance = ~stall
        next_column = ~walking | last
        # The columns in the order the walk takes them: the first queue's, the column read
        # in the cycle before (``deferred``, written into the first queue now unless taken
        # now, so that no emptiness test reaches the queue's enables), the second queue's,
        # and, when none of these waits, the column read now (``deferred`` in the next cycle
        # unless taken now). The column read now comes last, through one multiplexer.
        waiting = queue.r_rdy                # a column waits in the first queue
        deferred_offered = Signal()          # ... in ``deferred``
        carried_waiting = carried_queue.r_rdy
        queued = layout(Mux(waiting, queue.r_data,
                            Mux(deferred_offered, deferred, carried_queue.r_data)))
        any_queued = waiting | deferred_offered | carried_waiting
        head = layout(Mux(any_queued, queued, column))
        available = any_queued | offered
        take_column = advance & next_column
        m.d.comb += [queue.w_data.eq(deferred), queue.w_write.eq(deferred_offered),
                     queue.w_en.eq(~(take_column & ~waiting)),
                     queue.r_en.eq(take_column & waiting),
                     carried_queue.w_data.eq(carried), carried_queue.w_write.eq(carried_written),
                     carried_queue.w_en.eq(carried_offered),
                     carried_queue.r_en.eq(take_column & ~waiting & ~deferred_offered
                                           & carried_waiting)]
        m.d.sync += deferred_offered.eq(offered & ~(take_column & ~any_queued))
        # A new column's registers load from the head whether or not it holds a column, so
        # that their enable waits for no queue; ``walking`` says whether what they hold is a
        # column to walk.
        with m.If(advance):
            with m.If(next_column):
                m.d.sync += [walking.eq(available),
                             *(a.eq(head.start) for a in firsts),
                             *(a.eq(head.following) for a in seconds),
                             left.eq(head.count), last.eq(head.short), first.eq(1),
                             x.eq(head.x)]
            with m.Else():
                m.d.sync += [*(a.eq(a + 2) for a in firsts + seconds),
                             left.eq(left - 2), last.eq(left <= 4), first.eq(0)]
        # An entry's address goes from the loader's word into ``first_addr`` (no column is
        # walked between vectors) and the entry is written in the next cycle, so the memory's
        # address, which reaches every one of its blocks, comes straight from a register.
        entry_data, entry_written = Signal(entry), Signal()
        m.d.sync += [entry_data.eq(word.data.entry), entry_written.eq(entry_write)]
        with m.If(entry_write):
            m.d.sync += [a.eq(word.addr) for a in firsts]

        first_data, second_data = [], []
        for b, (lo, hi) in enumerate(banks):
            bank = m.submodules[f"weights{b}"] = Memory(shape=hi - lo, depth=self._entries,
                                                         init=[])
            write = bank.write_port()
            first_port = bank.read_port(transparent_for=(write,))
            second_port = bank.read_port(transparent_for=(write,))
            m.d.comb += [write.addr.eq(firsts[b]), write.data.eq(entry_data.as_value()[lo:hi]),
                         write.en.eq(entry_written),
                         first_port.addr.eq(firsts[b]), second_port.addr.eq(seconds[b])]
            first_data.append(first_port.data)
            second_data.append(second_port.data)
        # The pair being read: its column's flags, aligned with the memory's data, which go
        # straight into a register (a block RAM's output is slow), then into the pair
        # register with whether each entry carries a weight. That first register takes the
        # memory's data in every cycle, with no enable or multiplexer in front of it, and
        # the memory is read in every cycle: a read enable on the port the write shares
        # would be built from a hold register and a multiplexer between the block RAM and
        # that register. The walk's addresses move on only with ``advance``, so what a stall
        # must keep is picked after the register: ``current``, the entries of the last read
        # made on an advance (the register's, when the read two cycles back was, else those
        # held from the cycle before), and the entries fetched are ``current`` after an
        # advance, else those kept from the cycle before.
        flags = data.StructLayout({"valid": 1, "first": 1, "x": self._act_bits, "second": 1})
        entries = data.StructLayout({"a": entry, "b": entry})
        read = Signal(flags)
        fetched_flags = Signal(flags)
        latched = Signal(entries, reset_less=True)
        held = Signal(entries, reset_less=True)
        kept = Signal(entries, reset_less=True)
        moved = Signal()                      # ``advance`` in the previous cycle
        read_moved = Signal()                 # ... and in the one before
        current = Signal(entries)
        fetched = Signal(entries)
        m.d.comb += [current.eq(Mux(read_moved, latched, held)),
                     fetched.eq(Mux(moved, current, kept))]
        m.d.sync += [latched.a.eq(Cat(*first_data)), latched.b.eq(Cat(*second_data)),
                     held.eq(current), kept.eq(fetched), moved.eq(advance),
                     read_moved.eq(moved)]
        pair = Signal(data.StructLayout({"flags": flags, "a": entry, "b": entry,
                                         "real0": 1, "real1": 1}))
        with m.If(advance):
            m.d.sync += [read.valid.eq(walking), read.first.eq(first), read.x.eq(x),
                         read.second.eq(left >= 2),
                         fetched_flags.eq(read),
                         pair.flags.eq(fetched_flags), pair.a.eq(fetched.a),
                         pair.b.eq(fetched.b), pair.real0.eq(fetched.a.value != 0),
                         pair.real1.eq(fetched_flags.second & (fetched.b.value != 0))]
        real0, real1 = pair.real0, pair.real1
        # Two weights in the pair: the first now, the second in the next cycle (``half``).
        half = Signal()
        m.d.comb += stall.eq(pair.flags.valid & ~half & real0 & real1)
        with m.If(pair.flags.valid):
            m.d.sync += half.eq(stall)
        # Busy tests the queues' levels, not ``any_queued``, whose net fans out to the walk's
        # registers (the column on its way to the first queue is counted in
        # :meth:`_pointer_fetch`).
        return ((pair.flags, pair.a, pair.b, real0, real1), stall, half,
                (queue.level != 0) | (carried_queue.level != 0) | walking | read.valid
                | fetched_flags.valid | pair.flags.valid)

    def _accumulate(self, m, pair, stall, half, bias, multiplier):
        """Give the pair's weights their rows, one per cycle; multiply and accumulate.
        Registers the row ``readout`` reads, whose accumulator includes a sum written in the
        cycle it is read."""
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
        # A row taken is cleared in the next cycle, from registers here (the write enable
        # reaches every cell of the memory; ``take`` comes from the unit's stall). No product
        # is added then: the unit reads out only once no weight is left to weigh, so a sum is
        # written at most in the first cycle of the read-out.
        readout = self.readout
        # The row read out in this cycle, one copy per memory read (each drives the address
        # of every cell of its memory; distinct initial values keep yosys from merging them).
        rows = [Signal(local_bits, name=f"readout_row_{name}", init=i % self._local_rows)
                for i, name in enumerate(("acc", "bias", "multiplier"))]
        m.d.sync += [row.eq(readout.row) for row in rows]
        clear = Signal()
        clear_row = Signal(local_bits)
        m.d.sync += [clear.eq(readout.take), clear_row.eq(rows[0])]
        m.d.comb += [acc_write.addr.eq(Mux(clear, clear_row, adding_row)),
                     acc_write.data.eq(Mux(clear, 0, total)), acc_write.en.eq(clear | adding)]
        # The row to read is registered here, beside its memories (the unit registers what
        # is read: in the same module, yosys would fold that register into block RAM). The
        # accumulator read is the sum being written when the product added is of that row
        # (``fresh``, decided a cycle ahead): the read-out's first cycle may be the one that
        # adds the last product.
        fresh = Signal()
        m.d.sync += fresh.eq(weighing & (weigh_row == readout.row))
        for memory, value, row in zip((accs, bias, multiplier),
                                      (readout.acc, readout.bias, readout.multiplier), rows):
            port = memory.read_port(domain="comb")
            m.d.comb += [port.addr.eq(row),
                         value.eq(Mux(fresh, total, port.data) if memory is accs else port.data)]


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
        Depth of each of a PE's two column queues, 2..256.
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
        col_bits = max(1, (self._cols - 1).bit_length())
        m.submodules.pointers = pointers = ColumnPointers(n_pes=n, cols=self._cols,
                                                          pointer_bits=pes[0].pointer_bits)

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
        # Each PE registers the words for it (and writes them one or two cycles after they
        # are taken, before any activation can reach them); the pointers go to the one memory
        # of them all, and the unit turns to COMPUTE only once they are written.
        for i, pe in enumerate(pes):
            m.d.comb += [pe.load.valid.eq(loading & (load.pe == i)), pe.load.payload.eq(load)]
        m.d.comb += [pointers.load.valid.eq(loading), pointers.load.payload.eq(load)]

        # Activation front end: one non-zero activation per cycle to every PE, or two of
        # consecutive columns, when every PE has room (so a PE's ``act.valid`` is never up
        # while its ``ready`` is down). A hand-out reads two column pointers, ``p[j]`` and
        # ``p[j+1]``; when the next lane of the beat is non-zero too and the hand-out before
        # read ``p[j]``, it reads ``p[j+1]`` and ``p[j+2]`` instead and hands out both
        # columns (a :class:`Handout` ``pair``). The hand-out offered is a register, and so
        # is the first pointer it reads (``read``): the next one is chosen, from the beat
        # held or else from the beat taken now, in the cycle the offer is taken.
        chunk = Signal(data.ArrayLayout(unsigned(self._act_bits), self._lanes))
        pending = Signal(self._lanes)            # non-zero lanes of ``chunk`` not yet offered
        base = Signal(col_bits + 1)
        next_base = Signal(col_bits + 1)
        input_done = Signal()
        offer = Signal(data.StructLayout({"valid": 1, "read": range(self._cols),
                                          "handout": Handout(self._act_bits)}))
        reading = Signal()                       # ``offer.read`` is the vector's last read
        expected = Signal(range(self._cols + 1))   # ``offer.read + 1``
        room = Signal()
        m.d.comb += room.eq(Cat(pe.act.ready for pe in pes).all())
        free = ~offer.valid | room               # the offer is taken now, or there is none
        held = pending.any()
        m.d.comb += self.act.ready.eq((phase == Phase.COMPUTE) & free & ~held & ~input_done)
        taken = self.act.valid & self.act.ready
        beat = self.act.payload
        source = Signal(self._lanes)
        m.d.comb += source.eq(Mux(held, pending, Cat(x != 0 for x in beat.x)))
        lowest = lowest_set(m, source, "lowest")
        source_x = Mux(held, chunk.as_value(), beat.x.as_value())
        lane_x = source_x.word_select(lowest, self._act_bits)
        # The lane's column: the beat's first column, a multiple of ``lanes``, plus the lane;
        # with a power-of-two ``lanes`` the lane is the column's low bits (no adder).
        beat_column = Mux(held, base, next_base)
        lane_bits = (self._lanes - 1).bit_length()
        if self._lanes == 1 << lane_bits:
            lane_column = Cat(lowest[:lane_bits], beat_column[lane_bits:])
        else:
            lane_column = beat_column + lowest
        pair = Signal()
        if self._lanes > 1:
            m.d.comb += pair.eq(reading & (lane_column == expected) & (source >> lowest)[1])
        # The first pointer read and the column after the second. With a power-of-two
        # ``lanes`` no adder follows the choice of lane: a pair's first lane is below the
        # beat's last, so its read stays in the beat, and the column after it is the next
        # lane or, after the last lane, the next beat's first column.
        if 1 < self._lanes == 1 << lane_bits:
            high = beat_column[lane_bits:]
            read_lane = (lowest + pair)[:lane_bits]
            read_column = Cat(read_lane, high)
            after_column = Mux(read_lane == self._lanes - 1,
                               Cat(Const(0, lane_bits), high + 1),
                               Cat((read_lane + 1)[:lane_bits], high))
        else:
            read_column = lane_column + pair
            after_column = read_column + 1
        next_x = Cat(source_x, Const(0, self._act_bits)).word_select(lowest + 1, self._act_bits)
        handed = (Mux(pair, 0b11, 0b01) << lowest)[:self._lanes]
        m.d.comb += pointers.column.eq(offer.read)
        for pe, span in zip(pes, pointers.spans):
            m.d.comb += [pe.act.payload.eq(offer.handout), pe.act.valid.eq(offer.valid & room),
                         pe.pointers.eq(span)]
        with m.If(free):
            m.d.sync += [offer.valid.eq(0), offer.handout.x[0].eq(lane_x),
                         offer.handout.x[1].eq(next_x), offer.handout.pair.eq(pair)]
            with m.If(held):
                m.d.sync += [offer.valid.eq(1), pending.eq(pending & ~handed)]
            with m.Elif(taken):
                m.d.sync += [
                    offer.valid.eq(source.any()),
                    pending.eq(source & ~handed),
                    chunk.eq(beat.x),
                    base.eq(next_base),
                    next_base.eq(next_base + self._lanes),
                ]
                with m.If(beat.last):
                    m.d.sync += input_done.eq(1)
            with m.If(held | (taken & source.any())):
                m.d.sync += [offer.read.eq(read_column), expected.eq(after_column),
                             reading.eq(1)]

        # Output: local row k of every PE per beat, through the optional requantizer; a
        # pipeline that holds while a beat waits in the skid register (see _result_pipeline).
        # Each PE registers the next row to read (``readout.row``) beside its memories.
        skid_valid = Signal()
        advance = ~skid_valid
        turning = Signal()               # to read-out at this cycle's end
        m.d.comb += turning.eq((phase == Phase.COMPUTE) & input_done & ~held & ~offer.valid &
                               ~Cat(pe.busy for pe in pes).any())
        issued_row = Signal(range(self._local_rows + 1))
        following_row = Signal.like(issued_row, init=1)      # issued_row + 1
        next_row = Signal.like(issued_row)
        issued_first = Signal(range(self._local_rows * n + 1))    # issued_row * n
        rows_left = Signal()             # in OUTPUT, issued_first < rows, as a register
        take = Signal()
        m.d.comb += [take.eq(rows_left & advance),
                     next_row.eq(Mux(rows_left, Mux(take, following_row, issued_row), 0))]
        m.d.sync += [issued_row.eq(next_row),
                     following_row.eq(Mux(rows_left, Mux(take, following_row + 1,
                                                          following_row), 1))]
        with m.If(~rows_left):
            m.d.sync += issued_first.eq(0)
        with m.If(take):
            m.d.sync += [issued_first.eq(issued_first + n),
                         rows_left.eq(issued_first + n < rows)]
        for pe in pes:
            m.d.comb += [pe.readout.row.eq(next_row), pe.readout.take.eq(take)]
        in_flight = self._result_pipeline(m, pes, take, issued_first, rows, setup, skid_valid)

        # Phases: LOAD -> (first activation) COMPUTE -> (all consumed) OUTPUT -> LOAD.
        with m.Switch(phase):
            with m.Case(Phase.LOAD):
                with m.If(self.act.valid & ~self.load.valid & ~pointers.busy):
                    m.d.sync += [phase.eq(Phase.COMPUTE), input_done.eq(0), next_base.eq(0),
                                 reading.eq(0)]
            with m.Case(Phase.COMPUTE):
                with m.If(turning):
                    m.d.sync += [phase.eq(Phase.OUTPUT), rows_left.eq(1)]
            with m.Case(Phase.OUTPUT):
                leaving = ~self.result.valid | self.result.ready
                with m.If(~rows_left & ~in_flight & ~skid_valid & leaving):
                    m.d.sync += phase.eq(Phase.LOAD)
        return m

    def _result_pipeline(self, m, pes, take, issued_first, rows, setup, skid_valid):
        """The read-out: the accumulator, bias and multiplier of the row taken are registered
        (0 past ``rows``); then the accumulators go into the result register, or with
        requantization through six more stages,
        ``clamp(((acc + bias) * M + 2^(shift-1)) >> shift, 0, 2^out_bits - 1)``. A beat that
        arrives while the result register waits for ``result.ready`` goes into a skid
        register, and the pipeline holds while that is full (``skid_valid``): its stages
        wait on a register, not on ``ready``. Returns whether a beat is on its way to the
        result register."""
        n, width = self._n_pes, self._acc_width
        advance = ~skid_valid
        lanes = range(n)

        def stage(name, shape, value, index=None):
            register = Signal(shape, name=name if index is None else f"{name}{index}")
            with m.If(advance):
                m.d.sync += register.eq(value)
            return register

        requantize = setup.requantize
        mask = Cat(issued_first + i < rows for i in lanes)
        valid1 = stage("read_valid", 1, take)
        mask1 = stage("read_mask", n, mask)
        acc1 = [stage("read_acc", signed(width), pe.readout.acc, i) for i, pe in enumerate(pes)]
        bias1 = [stage("read_bias", signed(width), pe.readout.bias, i)
                 for i, pe in enumerate(pes)]
        multiplier1 = [stage("read_multiplier", MULTIPLIER_BITS, pe.readout.multiplier, i)
                       for i, pe in enumerate(pes)]
        valid2 = stage("biased_valid", 1, valid1 & requantize)
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
        # Rounding: (v + 2^(s-1)) >> s = ((2v >> s) + 1) >> 1, the shift in two stages: by
        # shift[3:] eighths, then by shift[:3]. Each half of each lane's shifter shifts by
        # copies of its own (distinct initial values keep yosys from merging them): one
        # register driving a whole shifter, let alone every lane's, is too slow a net.
        half_bits = (scaled_bits + 1) // 2

        def shift_copies(name, value, i):
            copies = [Signal(3, name=f"{name}{i}_{h}", init=(2 * i + h) % 8) for h in (0, 1)]
            m.d.sync += [copy.eq(value) for copy in copies]
            return copies

        def halves(value, copies, scale):
            low, high = copies
            return Cat((value >> (low * scale))[:half_bits],
                       (value >> (high * scale))[half_bits:scaled_bits + 1])

        valid5 = stage("coarse_valid", 1, valid4)
        mask5 = stage("coarse_mask", n, mask4)
        coarse = [stage("coarse", signed(scaled_bits + 1),
                        halves(scaled[i] << 1, shift_copies("eighths", setup.shift[3:], i), 8),
                        i)
                  for i in lanes]
        valid6 = stage("shifted_valid", 1, valid5)
        mask6 = stage("shifted_mask", n, mask5)
        shifted = [stage("shifted", signed(scaled_bits + 1),
                         halves(coarse[i], shift_copies("units", setup.shift[:3], i), 1), i)
                   for i in lanes]
        # Clamp to 0..2^out_bits - 1: below 0 when shifted < -1 (negative, not all ones),
        # above when shifted + 1 reaches 2^(out_bits+1) (bits 17 and up set, or the low 17
        # bits at least 2^(out_bits+1) - 1).
        ceiling, top = Signal(17), Signal(16)
        m.d.sync += [ceiling.eq((1 << (setup.out_bits + 1)) - 1),
                     top.eq((1 << setup.out_bits) - 1)]
        # The clamp's tests and the rounded value are registered; the result register picks.
        valid7 = stage("rounded_valid", 1, valid6)
        kept, above, rounded = [], [], []
        for i in lanes:
            value = shifted[i]
            negative = value[-1]
            below = negative & ~value.all()
            kept.append(stage("rounded_kept", 1, mask6[i] & ~below, i))
            above.append(stage("rounded_above", 1,
                               ~negative & (value[17:].any() | (value[:17] >= ceiling)), i))
            rounded.append(stage("rounded", 16, (value[:17] + 1)[1:17], i))
        arriving = Mux(requantize, valid7, valid1)
        beat = Signal.like(self.result.payload)
        for i in lanes:
            clamped = Mux(kept[i], Mux(above[i], top, rounded[i]), 0)
            m.d.comb += beat[i].eq(Mux(requantize, clamped, Mux(mask1[i], acc1[i], 0)))
        # The empty skid takes every beat (it only counts once ``skid_valid`` is set), so its
        # enable is a register.
        skid = Signal.like(self.result.payload, reset_less=True)
        with m.If(~skid_valid):
            m.d.sync += skid.eq(beat)
        with m.If(~self.result.valid | self.result.ready):
            with m.If(skid_valid):
                m.d.sync += [self.result.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.result.valid.eq(arriving), self.result.payload.eq(beat)]
        with m.Elif(~skid_valid & arriving):
            m.d.sync += skid_valid.eq(1)
        return valid1 | valid2 | valid3 | valid4 | valid5 | valid6 | valid7
