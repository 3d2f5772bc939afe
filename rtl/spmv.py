"""EIE-style sparse matrix-vector unit on compressed sparse columns (docs/design.md 3.3).

``y = W x``: row ``r`` of ``W`` belongs to PE ``r mod N`` (its local row ``r // N``).
Each PE keeps its rows of every column as ``(value, z)`` entries in a weight memory
and a column-pointer memory (``golden.csc`` encodes, ``golden.csc.load_words``
packs the images this unit loads).

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

__all__ = ["LoadKind", "SpMV"]

#: Widths of the loader fields.
ADDR_BITS = 16
DATA_BITS = 32
#: Codebook size with weight sharing (4-bit indices).
CODEBOOK_BITS = 4
#: Width of a codebook value and of a requantization multiplier.
CODEBOOK_VALUE_BITS = 8
MULTIPLIER_BITS = 16


class LoadKind(enum.Enum, shape=3):
    """What a loader word writes."""
    ENTRY = 0        #: weight entry ``addr`` of PE ``pe``: value in the low bits, z above
    POINTER = 1      #: column pointer ``addr`` of PE ``pe``
    CODEBOOK = 2     #: codebook entry ``addr`` (signed 8-bit)
    BIAS = 3         #: bias of local row ``addr`` of PE ``pe``
    MULTIPLIER = 4   #: requantization multiplier of local row ``addr`` of PE ``pe``
    SETUP = 5        #: rows [15:0], requantize [16], shift [22:17], out_bits [26:23]


Load = data.StructLayout({
    "kind": LoadKind,
    "pe":   unsigned(6),
    "addr": unsigned(ADDR_BITS),
    "data": unsigned(DATA_BITS),
})


class _Phase(enum.Enum, shape=2):
    LOAD = 0
    COMPUTE = 1
    DRAIN = 2
    OUTPUT = 3


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
        when ``codebook`` is set.
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
    act : In(stream.Signature(StructLayout({"x": ArrayLayout(act_bits, lanes), "last": 1})))
        The input vector, ``lanes`` activations per beat from ``x_0``; ``last`` on its
        final beat. Lanes past the end must be 0.
    result : Out(stream.Signature(ArrayLayout(signed(acc_width), n_pes)))
        ``ceil(rows / n_pes)`` beats: beat ``k`` holds ``y[k*N + i]`` in element ``i``
        (0 past the last row), requantized when the setup asks for it.
    """

    def __init__(self, n_pes=4, rows=256, cols=256, entries=None, value_bits=8, codebook=False,
                 z_bits=4, act_bits=8, lanes=4, queue_depth=8, acc_width=None):
        def check(name, value, lo, hi):
            if not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be between {lo} and {hi}, not {value!r}")
        check("n_pes", n_pes, 1, 64)
        check("rows", rows, 1, 4096)
        check("cols", cols, 1, 65535)
        check("z_bits", z_bits, 1, 8)
        check("act_bits", act_bits, 1, 16)
        check("lanes", lanes, 1, 16)
        check("queue_depth", queue_depth, 2, 256)
        if codebook:
            value_bits = CODEBOOK_BITS
        elif value_bits not in (2, 4, 8):
            raise ValueError(f"value_bits must be 2, 4 or 8, not {value_bits!r}")
        local_rows = math.ceil(rows / n_pes)
        if entries is None:
            # Every entry of a full column, and padding for the gaps (one per 2^z rows).
            entries = cols * (local_rows + math.ceil(local_rows / (1 << z_bits)))
            entries = min(entries, 1 << 16)
        check("entries", entries, 1, 1 << 16)
        weight_peak = 1 << ((CODEBOOK_VALUE_BITS if codebook else value_bits) - 1)
        bound_bits = (cols * weight_peak * ((1 << act_bits) - 1)).bit_length() + 1
        if acc_width is None:
            acc_width = min(bound_bits + 8, 48)
        check("acc_width", acc_width, bound_bits, 48)
        self._n_pes, self._rows, self._cols = n_pes, rows, cols
        self._entries, self._value_bits, self._codebook = entries, value_bits, codebook
        self._z_bits, self._act_bits, self._lanes = z_bits, act_bits, lanes
        self._queue_depth, self._acc_width = queue_depth, acc_width
        self._local_rows = local_rows
        super().__init__({
            "load":   In(stream.Signature(Load)),
            "act":    In(stream.Signature(data.StructLayout({
                "x":    data.ArrayLayout(unsigned(act_bits), lanes),
                "last": 1,
            }))),
            "result": Out(stream.Signature(data.ArrayLayout(signed(acc_width), n_pes))),
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

    @property
    def accumulator_bound_bits(self):
        """Signed bits that hold ``cols * max|value| * max x`` (before the bias)."""
        peak = 1 << ((CODEBOOK_VALUE_BITS if self._codebook else self._value_bits) - 1)
        return (self._cols * peak * ((1 << self._act_bits) - 1)).bit_length() + 1

    def elaborate(self, platform):
        m = Module()
        n, acc_width = self._n_pes, self._acc_width
        col_bits = max(1, (self._cols - 1).bit_length())
        ptr_bits = self._entries.bit_length()
        local_bits = max(1, (self._local_rows - 1).bit_length())
        weight_width = CODEBOOK_VALUE_BITS if self._codebook else self._value_bits

        phase = Signal(_Phase)
        rows = Signal(range(self._rows + 1), init=self._rows)
        requantize = Signal()
        shift = Signal(6, init=1)
        out_bits = Signal(4, init=8)

        # Loader.
        load = self.load.payload
        m.d.comb += self.load.ready.eq(phase == _Phase.LOAD)
        loading = self.load.valid & self.load.ready
        with m.If(loading & (load.kind == LoadKind.SETUP)):
            m.d.sync += [rows.eq(load.data[0:16]), requantize.eq(load.data[16]),
                         shift.eq(load.data[17:23]), out_bits.eq(load.data[23:27])]
        codebook = Signal(data.ArrayLayout(signed(CODEBOOK_VALUE_BITS), 1 << CODEBOOK_BITS))
        if self._codebook:
            with m.If(loading & (load.kind == LoadKind.CODEBOOK)):
                m.d.sync += codebook[load.addr[:CODEBOOK_BITS]].eq(load.data)

        # Activation front end: one non-zero activation per cycle into every queue.
        Queued = data.StructLayout({"j": unsigned(col_bits), "x": unsigned(self._act_bits)})
        queues = [fifo.SyncFIFO(width=Queued.size, depth=self._queue_depth) for _ in range(n)]
        for i, queue in enumerate(queues):
            m.submodules[f"queue{i}"] = queue
        chunk = Signal(data.ArrayLayout(unsigned(self._act_bits), self._lanes))
        pending = Signal(self._lanes)
        base = Signal(col_bits + 1)
        next_base = Signal(col_bits + 1)
        input_done = Signal()
        lowest = Signal(range(self._lanes))
        for i in reversed(range(self._lanes)):
            with m.If(pending[i]):
                m.d.comb += lowest.eq(i)
        room = Signal()
        m.d.comb += room.eq(Cat(q.w_rdy for q in queues).all())
        broadcast = (pending != 0) & room
        remaining = Signal(self._lanes)
        m.d.comb += remaining.eq(Mux(broadcast, pending & ~(1 << lowest), pending))
        for queue in queues:
            m.d.comb += [queue.w_data.eq(Cat((base + lowest)[:col_bits], chunk[lowest])),
                         queue.w_en.eq(broadcast)]
        m.d.comb += self.act.ready.eq((phase == _Phase.COMPUTE) & (remaining == 0) & ~input_done)
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

        # Processing elements.
        busy = []
        acc_ports = []
        for i in range(n):
            pe_busy, acc_read, acc_clear = self._pe(m, i, queues[i], phase, loading, load,
                                                    codebook, col_bits, ptr_bits, local_bits,
                                                    weight_width)
            busy.append(pe_busy)
            acc_ports.append((acc_read, acc_clear))

        # Phases: LOAD -> (first activation) COMPUTE -> (all consumed) DRAIN -> OUTPUT -> LOAD.
        with m.Switch(phase):
            with m.Case(_Phase.LOAD):
                with m.If(self.act.valid & ~self.load.valid):
                    m.d.sync += [phase.eq(_Phase.COMPUTE), input_done.eq(0), next_base.eq(0)]
            with m.Case(_Phase.COMPUTE):
                with m.If(input_done & (pending == 0) & ~Cat(busy).any()):
                    m.d.sync += phase.eq(_Phase.DRAIN)
            with m.Case(_Phase.DRAIN):
                m.d.sync += phase.eq(_Phase.OUTPUT)

        # Output: local row k of every PE per beat, through the optional requantizer.
        out_row = Signal(range(self._local_rows + 1))
        rows_left = Signal()
        m.d.comb += [rows_left.eq(out_row * n < rows),
                     self.result.valid.eq((phase == _Phase.OUTPUT) & rows_left)]
        with m.If(phase == _Phase.DRAIN):
            m.d.sync += out_row.eq(0)
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += out_row.eq(out_row + 1)
        with m.If((phase == _Phase.OUTPUT) & ~rows_left):
            m.d.sync += phase.eq(_Phase.LOAD)
        for i, (acc_read, acc_clear) in enumerate(acc_ports):
            row_index = out_row * n + i
            value = Signal(signed(acc_width), name=f"y{i}")
            m.d.comb += value.eq(acc_read(out_row, self.result.valid & self.result.ready))
            requantized = self._requantize(m, i, value, acc_clear, shift, out_bits)
            m.d.comb += self.result.payload[i].eq(
                Mux(row_index < rows, Mux(requantize, requantized, value), 0))
        return m

    def _pe(self, m, i, queue, phase, loading, load, codebook, col_bits, ptr_bits, local_bits,
            weight_width):
        """One PE: pointer fetch, entry walk, multiply, accumulate. Returns (busy, read, clear)."""
        entry_bits = self._value_bits + self._z_bits
        weights = Memory(shape=entry_bits, depth=self._entries, init=[])
        pointers = Memory(shape=ptr_bits, depth=self._cols + 1, init=[])
        accs = Memory(shape=signed(self._acc_width), depth=self._local_rows, init=[])
        bias = Memory(shape=signed(self._acc_width), depth=self._local_rows, init=[])
        multiplier = Memory(shape=MULTIPLIER_BITS, depth=self._local_rows, init=[])
        for name, memory in (("weights", weights), ("pointers", pointers), ("accs", accs),
                             ("bias", bias), ("multiplier", multiplier)):
            m.submodules[f"pe{i}_{name}"] = memory

        mine = loading & (load.pe == i)
        for memory, kind, value in ((weights, LoadKind.ENTRY, load.data),
                                    (pointers, LoadKind.POINTER, load.data),
                                    (bias, LoadKind.BIAS, load.data.as_signed()),
                                    (multiplier, LoadKind.MULTIPLIER, load.data)):
            port = memory.write_port()
            m.d.comb += [port.addr.eq(load.addr), port.data.eq(value),
                         port.en.eq(mine & (load.kind == kind))]

        # Stage A: pop an activation, read its column's start and end pointers.
        start_port = pointers.read_port()
        end_port = pointers.read_port()
        Queued_x = queue.r_data[col_bits:]
        fetched = Signal()           # pointers of a popped activation arrive this cycle
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
        pop = queue.r_rdy & (phase == _Phase.COMPUTE) & ~fetched & (~next_valid | take_next)
        m.d.comb += [queue.r_en.eq(pop),
                     start_port.addr.eq(queue.r_data[:col_bits]),
                     end_port.addr.eq(queue.r_data[:col_bits] + 1)]
        m.d.sync += fetched.eq(pop)
        with m.If(pop):
            m.d.sync += fetched_x.eq(Queued_x)
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
        issued, issued_first = Signal(), Signal()
        issued_x = Signal(self._act_bits)
        m.d.sync += [issued.eq(walking & (cursor < end)), issued_first.eq(column_first),
                     issued_x.eq(x)]

        def decode(word):
            stored = word[:self._value_bits]
            weight = codebook[stored] if self._codebook else stored.as_signed()
            return weight, word[self._value_bits:]

        weight, z = decode(weight_port.data)
        following_weight, following_z = decode(lookahead_port.data)
        m.d.comb += merged.eq(issued & (weight == 0) & walking & ~column_first)
        position = Signal(local_bits + 1)
        first_row = Signal(local_bits + 1)
        row = Signal(local_bits + 1)
        m.d.comb += [first_row.eq(Mux(issued_first, z, position + z + 1)),
                     row.eq(Mux(merged, first_row + following_z + 1, first_row))]
        with m.If(issued):
            m.d.sync += position.eq(row)
        product = Signal(signed(weight_width + self._act_bits + 1))
        product_valid = Signal()
        product_row = Signal(local_bits)
        m.d.sync += [product.eq(Mux(merged, following_weight, weight) * issued_x.as_unsigned()),
                     product_valid.eq(issued), product_row.eq(row)]
        # Stage D: read-modify-write the accumulator (the read port sees this cycle's write).
        acc_write = accs.write_port()
        acc_read = accs.read_port(transparent_for=(acc_write,))
        bias_read = bias.read_port()
        mult_read = multiplier.read_port()
        m.d.comb += acc_read.addr.eq(row)
        m.d.comb += [acc_write.addr.eq(product_row), acc_write.data.eq(acc_read.data + product),
                     acc_write.en.eq(product_valid)]

        busy = queue.r_rdy | fetched | next_valid | walking | issued | product_valid

        def read(local_row, advance):
            """Output phase: the accumulator of ``local_row`` (read one cycle ahead), cleared."""
            following = Mux(advance, local_row + 1, local_row)
            with m.If(phase == _Phase.DRAIN):
                m.d.comb += [acc_read.addr.eq(0), bias_read.addr.eq(0), mult_read.addr.eq(0)]
            with m.Elif(phase == _Phase.OUTPUT):
                m.d.comb += [acc_read.addr.eq(following), bias_read.addr.eq(following),
                             mult_read.addr.eq(following)]
                with m.If(advance):
                    m.d.comb += [acc_write.addr.eq(local_row), acc_write.data.eq(0),
                                 acc_write.en.eq(1)]
            return acc_read.data

        return busy, read, (bias_read.data, mult_read.data)

    def _requantize(self, m, i, value, parameters, shift, out_bits):
        """``clamp((value + bias) * M + 2^(shift-1)) >> shift, 0, 2^out_bits - 1)``."""
        bias, multiplier = parameters
        total = Signal(signed(self._acc_width + 1), name=f"biased{i}")
        m.d.comb += total.eq(value + bias)
        scaled = Signal(signed(self._acc_width + MULTIPLIER_BITS + 2), name=f"scaled{i}")
        half = Signal(64, name=f"half{i}")
        m.d.comb += [half.eq((Const(1) << shift) >> 1),
                     scaled.eq((total * multiplier.as_unsigned() + half) >> shift)]
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
