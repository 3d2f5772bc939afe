"""EIE-style sparse matrix-vector unit on compressed sparse columns (docs/design.md 3.3).

``y = W x``: row ``r`` of ``W`` belongs to PE ``r mod N`` (its local row ``r // N``).
Each :class:`SpMVPE` keeps its rows of every column as ``(value, z)`` entries in a weight
memory and a column-pointer memory (``golden.csc`` encodes the images and
``golden.csc.load_words`` gives the loader words that carry them, field by field; software
packs them through :data:`Load`).

The activation front end takes ``P`` activations per beat, finds the non-zero
ones with a leading-one detector (a chunk of zeros costs one cycle), and
broadcasts each non-zero ``(j, x_j)`` into every PE's activation queue. A PE
pops its queue, fetches the column pointers of ``j`` while it still works on
the previous column, and walks the column's entries one per cycle:
``acc[row] += value * x_j``, the local row advancing by ``z + 1`` per entry; a
zero-weight (padding) entry is taken in the same cycle as the entry after it.
Zero activations cost the PEs nothing; a PE with a long column holds up the
others only once its queue is full.

When the vector has been consumed, the accumulators leave on the result
stream, one local row of every PE per beat (rows ``k*N .. k*N+N-1``), cleared as
they go, optionally through bias + requantization + ReLU (docs/design.md 3.2).
"""

import math

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.pipeline import delay, lowest_set

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
    DRAIN = 2        #: one cycle: the first row's accumulators are read
    OUTPUT = 3       #: one local row of every PE per result beat


class Readout(wiring.Signature):
    """How the unit reads a PE's accumulators out (from the unit's side).

    Members
    -------
    row : Out(range(local_rows + 1))
        The local row on the result stream this cycle.
    advance : Out(1)
        The beat of ``row`` is taken: clear its accumulator, read ``row + 1``.
    acc, bias : In(signed(acc_width))
        The accumulator and bias of ``row`` (read a cycle ahead).
    multiplier : In(16)
        The requantization multiplier of ``row``.
    """

    def __init__(self, local_rows, acc_width):
        super().__init__({
            "row":        Out(range(local_rows + 1)),
            "advance":    Out(1),
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
    """One processing element: activation queue, pointer fetch, column walk, multiply-accumulate.

    It owns its rows of the matrix: a weight memory of :class:`Entry` words, ``cols + 1``
    column pointers, and per local row an accumulator, a bias and a multiplier. In
    :attr:`Phase.COMPUTE` it pops ``(j, x_j)`` from its queue, reads ``p[j]`` and ``p[j+1]``
    (two cycles, overlapped with the column it walks) and walks the column one entry per
    cycle, a zero-weight entry riding with the entry after it; each entry reaches the
    accumulator memory 3 cycles after its read (read-modify-write, write-through).
    In :attr:`Phase.DRAIN` and :attr:`Phase.OUTPUT` the unit reads the rows out through
    ``readout``, clearing each as it goes.

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
        Activation queue depth, 2..256.
    acc_width : int
        Signed accumulator width, 2..48.

    Attributes
    ----------
    act : In(stream.Signature(QueuedActivation(col_bits, act_bits)))
        Non-zero activations in column order, into the queue (``ready`` while it has room).
    load : In(stream.Signature(Load))
        Loader words meant for this PE (its ``pe`` field is not looked at), always ready:
        entries, pointers, biases and multipliers are written; other kinds are ignored.
    table : In(Codebook)
        The shared codebook; only with ``codebook``.
    phase : In(Phase)
        The unit's phase; the queue is popped only in ``COMPUTE``.
    busy : Out(1)
        Work left: queued or fetched activations, a column being walked, a product in flight.
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
        col_bits, ptr_bits = self._col_bits, self.pointer_bits
        local_bits = max(1, (self._local_rows - 1).bit_length())
        compute = self.phase == Phase.COMPUTE

        m.submodules.queue = queue = fifo.SyncFIFO(
            width=QueuedActivation(col_bits, self._act_bits).size, depth=self._queue_depth)
        m.d.comb += [queue.w_data.eq(self.act.payload), queue.w_en.eq(self.act.valid),
                     self.act.ready.eq(queue.w_rdy)]
        head = QueuedActivation(col_bits, self._act_bits)(queue.r_data)

        m.submodules.weights = weights = Memory(shape=self.entry_layout, depth=self._entries,
                                                init=[])
        m.submodules.pointers = pointers = Memory(shape=ptr_bits, depth=self._cols + 1, init=[])
        m.submodules.accs = accs = Memory(shape=signed(self._acc_width),
                                          depth=self._local_rows, init=[])
        m.submodules.bias = bias = Memory(shape=signed(self._acc_width), depth=self._local_rows,
                                          init=[])
        m.submodules.multiplier = multiplier = Memory(shape=MULTIPLIER_BITS,
                                                      depth=self._local_rows, init=[])

        load = self.load.payload
        m.d.comb += self.load.ready.eq(1)
        for memory, kind, value in ((weights, LoadKind.ENTRY, load.data.entry),
                                    (pointers, LoadKind.POINTER, load.data.pointer),
                                    (bias, LoadKind.BIAS, load.data.bias),
                                    (multiplier, LoadKind.MULTIPLIER, load.data.multiplier)):
            port = memory.write_port()
            m.d.comb += [port.addr.eq(load.addr), port.data.eq(value),
                         port.en.eq(self.load.valid & (load.kind == kind))]

        # Stage A: pop an activation, read its column's start and end pointers.
        start_port = pointers.read_port()
        end_port = pointers.read_port()
        fetched_x = Signal(self._act_bits)
        next_valid = Signal()        # the column waiting behind the current one
        next_start, next_end = Signal(ptr_bits), Signal(ptr_bits)
        next_x = Signal(self._act_bits)
        # Stage B: walk the current column.
        walking = Signal()
        entry, end = Signal(ptr_bits), Signal(ptr_bits)
        x = Signal(self._act_bits)
        column_first = Signal()

        # ``merged``: stage C folds the entry after a zero-weight one into the same cycle, so
        # the walk skips it (a padding entry costs no cycle of its own).
        merged = Signal()
        cursor = Signal(ptr_bits)
        m.d.comb += cursor.eq(entry + merged)
        last_issue = walking & (cursor + 1 >= end)
        take_next = next_valid & (~walking | last_issue)
        pop = Signal()
        fetched = delay(m, pop, 1, "fetched")   # pointers of a popped activation arrive
        m.d.comb += [pop.eq(queue.r_rdy & compute & ~fetched & (~next_valid | take_next)),
                     queue.r_en.eq(pop),
                     start_port.addr.eq(head.j),
                     end_port.addr.eq(head.j + 1)]
        with m.If(pop):
            m.d.sync += fetched_x.eq(head.x)
        # (A pop waits until the slot behind the current column will be free for it.)
        with m.If(take_next):
            m.d.sync += next_valid.eq(0)
        with m.If(fetched & (start_port.data != end_port.data)):
            m.d.sync += [next_valid.eq(1), next_start.eq(start_port.data),
                         next_end.eq(end_port.data), next_x.eq(fetched_x)]

        with m.If(take_next):
            m.d.sync += [walking.eq(1), entry.eq(next_start), end.eq(next_end), x.eq(next_x),
                         column_first.eq(1)]
        with m.Elif(walking):
            m.d.sync += [entry.eq(cursor + 1), column_first.eq(0)]
            with m.If(last_issue):
                m.d.sync += walking.eq(0)

        # Stage C: the entry at ``cursor`` and the one after it arrive; find the local row
        # of the first, or, when its weight is zero and the walk goes on in the same column,
        # of the second too, and multiply the last one taken.
        weight_port = weights.read_port()
        lookahead_port = weights.read_port()
        m.d.comb += [weight_port.addr.eq(cursor), lookahead_port.addr.eq(cursor + 1)]
        issued = delay(m, walking & (cursor < end), 1, "issued")
        issued_first = delay(m, column_first, 1, "issued_first")
        issued_x = delay(m, x, 1, "issued_x")

        def weight_of(stored):
            return self.table[stored.value] if self._codebook else stored.value

        weight, z = weight_of(weight_port.data), weight_port.data.z
        following_weight, following_z = weight_of(lookahead_port.data), lookahead_port.data.z
        m.d.comb += merged.eq(issued & (weight == 0) & walking & ~column_first)
        position = Signal(local_bits + 1)
        first_row = Signal(local_bits + 1)
        row = Signal(local_bits + 1)
        m.d.comb += [first_row.eq(Mux(issued_first, z, position + z + 1)),
                     row.eq(Mux(merged, first_row + following_z + 1, first_row))]
        with m.If(issued):
            m.d.sync += position.eq(row)
        product = delay(m, Mux(merged, following_weight, weight) * issued_x.as_unsigned(), 1,
                        "product")
        product_valid = delay(m, issued, 1, "product_valid")
        product_row = delay(m, row[:local_bits], 1, "product_row")
        # Stage D: read-modify-write the accumulator (the read port sees this cycle's write).
        acc_write = accs.write_port()
        acc_read = accs.read_port(transparent_for=(acc_write,))
        bias_read = bias.read_port()
        mult_read = multiplier.read_port()
        m.d.comb += acc_read.addr.eq(row)
        m.d.comb += [acc_write.addr.eq(product_row), acc_write.data.eq(acc_read.data + product),
                     acc_write.en.eq(product_valid)]

        m.d.comb += self.busy.eq(queue.r_rdy | fetched | next_valid | walking | issued |
                                 product_valid)

        # Read-out: the accumulator of ``readout.row`` (read one cycle ahead), cleared as it goes.
        readout = self.readout
        following = Mux(readout.advance, readout.row + 1, readout.row)
        with m.If(self.phase == Phase.DRAIN):
            m.d.comb += [acc_read.addr.eq(0), bias_read.addr.eq(0), mult_read.addr.eq(0)]
        with m.Elif(self.phase == Phase.OUTPUT):
            m.d.comb += [acc_read.addr.eq(following), bias_read.addr.eq(following),
                         mult_read.addr.eq(following)]
            with m.If(readout.advance):
                m.d.comb += [acc_write.addr.eq(readout.row), acc_write.data.eq(0),
                             acc_write.en.eq(1)]
        m.d.comb += [readout.acc.eq(acc_read.data), readout.bias.eq(bias_read.data),
                     readout.multiplier.eq(mult_read.data)]
        return m


class SpMV(wiring.Component):
    """An ``n_pes``-PE sparse matrix-vector unit.

    Parameters
    ----------
    n_pes : int
        Processing elements, 1..64.
    rows, cols : int
        Largest matrix the memories hold, rows 1..4096 and cols 1..65535.
    entries : int
        Weight-memory depth of each PE (entries, padding included), 1..65536.
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
        Depth of each PE's activation queue, 2..256.
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
            # Every entry of a full column, and padding for the gaps (one per 2^z rows).
            entries = cols * (local_rows + math.ceil(local_rows / (1 << z_bits)))
            entries = min(entries, 1 << 16)
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
        requantize = Signal()
        shift = Signal(6, init=1)
        out_bits = Signal(4, init=8)

        # Loader: set-up and codebook here, the rest to the PE the word names.
        load = self.load.payload
        m.d.comb += self.load.ready.eq(phase == Phase.LOAD)
        loading = self.load.valid & self.load.ready
        with m.If(loading & (load.kind == LoadKind.SETUP)):
            setup = load.data.setup
            m.d.sync += [rows.eq(setup.rows), requantize.eq(setup.requantize),
                         shift.eq(setup.shift), out_bits.eq(setup.out_bits)]
        if self._codebook:
            codebook = Signal(Codebook)
            with m.If(loading & (load.kind == LoadKind.CODEBOOK)):
                m.d.sync += codebook[load.addr[:CODEBOOK_BITS]].eq(load.data.codebook)
            for pe in pes:
                m.d.comb += pe.table.eq(codebook)
        for i, pe in enumerate(pes):
            m.d.comb += [pe.load.payload.eq(load), pe.load.valid.eq(loading & (load.pe == i)),
                         pe.phase.eq(phase)]

        # Activation front end: one non-zero activation per cycle into every queue, when
        # every queue has room (so a PE's ``act.valid`` is never up while its ``ready`` is down).
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

        # Phases: LOAD -> (first activation) COMPUTE -> (all consumed) DRAIN -> OUTPUT -> LOAD.
        with m.Switch(phase):
            with m.Case(Phase.LOAD):
                with m.If(self.act.valid & ~self.load.valid):
                    m.d.sync += [phase.eq(Phase.COMPUTE), input_done.eq(0), next_base.eq(0)]
            with m.Case(Phase.COMPUTE):
                with m.If(input_done & (pending == 0) & ~Cat(pe.busy for pe in pes).any()):
                    m.d.sync += phase.eq(Phase.DRAIN)
            with m.Case(Phase.DRAIN):
                m.d.sync += phase.eq(Phase.OUTPUT)

        # Output: local row k of every PE per beat, through the optional requantizer.
        out_row = Signal(range(self._local_rows + 1))
        rows_left = Signal()
        m.d.comb += [rows_left.eq(out_row * n < rows),
                     self.result.valid.eq((phase == Phase.OUTPUT) & rows_left)]
        with m.If(phase == Phase.DRAIN):
            m.d.sync += out_row.eq(0)
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += out_row.eq(out_row + 1)
        with m.If((phase == Phase.OUTPUT) & ~rows_left):
            m.d.sync += phase.eq(Phase.LOAD)
        for i, pe in enumerate(pes):
            m.d.comb += [pe.readout.row.eq(out_row),
                         pe.readout.advance.eq(self.result.valid & self.result.ready)]
            row_index = out_row * n + i
            value = Signal(signed(self._acc_width), name=f"y{i}")
            m.d.comb += value.eq(pe.readout.acc)
            requantized = self._requantize(m, i, value, pe.readout, shift, out_bits)
            m.d.comb += self.result.payload[i].eq(
                Mux(row_index < rows, Mux(requantize, requantized, value), 0))
        return m

    def _requantize(self, m, i, value, readout, shift, out_bits):
        """``clamp((value + bias) * M + 2^(shift-1)) >> shift, 0, 2^out_bits - 1)``."""
        total = Signal(signed(self._acc_width + 1), name=f"biased{i}")
        m.d.comb += total.eq(value + readout.bias)
        scaled = Signal(signed(self._acc_width + MULTIPLIER_BITS + 2), name=f"scaled{i}")
        half = Signal(64, name=f"half{i}")
        m.d.comb += [half.eq((Const(1) << shift) >> 1),
                     scaled.eq((total * readout.multiplier.as_unsigned() + half) >> shift)]
        top = Signal(17, name=f"top{i}")
        m.d.comb += top.eq((1 << out_bits) - 1)
        clamped = Signal(signed(self._acc_width), name=f"requantized{i}")
        with m.If(scaled < 0):
            m.d.comb += clamped.eq(0)
        with m.Elif(scaled > top):
            m.d.comb += clamped.eq(top)
        with m.Else():
            m.d.comb += clamped.eq(scaled)
        return clamped
