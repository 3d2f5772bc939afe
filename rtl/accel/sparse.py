"""The sparse engine of the accelerator: the CSC unit, its loader, activation reader and writer.

``LOAD_SPMV`` streams loader words from the CSC memory into the unit; ``SPMV`` streams each
image's activations from the scratchpad into it, ``P`` per beat, and writes its result beats
back into the scratchpad (docs/isa.md). The host's entry words (``Space.SPMV``) go into the
unit's loader between instructions.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from rtl.accel.config import AccelConfig
from rtl.accel.isa import ADDRESS_BITS, LANE_BITS, LoadSpmvArgs, Space, SpmvArgs
from rtl.accel.ports import ReadPort, WritePort
from rtl.pipeline import next_bank
from rtl.spmv import Load, SpMV

__all__ = ["SparseEngine"]


def _log2(value):
    return value.bit_length() - 1


class SparseEngine(wiring.Component):
    """Runs SPMV and LOAD_SPMV instructions on a CSC sparse unit.

    Parameters
    ----------
    config : AccelConfig
        With a sparse unit (``config.spmv``).

    Attributes
    ----------
    command : In(stream.Signature(SpmvArgs))
    load_command : In(stream.Signature(LoadSpmvArgs))
        Instructions' arguments, each taken when the engine is idle.
    host_load : In(stream.Signature(Load))
        A loader word from the host, taken when the engine is idle.
    input_base : In(16)
        Added to ``src`` when ``src_input`` is set.
    act_read : Out(ReadPort)
        The scratchpad; ``act_read_grant`` low means another engine reads it this cycle.
    act_read_grant : In(1)
    csc_read : Out(ReadPort)
        The CSC memory.
    act_write : Out(WritePort)
        The scratchpad; ``act_write_grant`` low holds the unit's result beat.
    act_write_grant : In(1)
    busy : Out(1)
        From taking an instruction to its last write (or loader word).
    fault : Out(1)
        An address outside its memory was met.
    """

    def __init__(self, config):
        if not isinstance(config, AccelConfig) or config.spmv is None:
            raise TypeError(f"config must be an AccelConfig with a sparse unit, not {config!r}")
        self._config = config
        s = config.spmv
        self._unit = SpMV(n_pes=s.n_pes, rows=s.rows, cols=s.cols, lanes=s.lanes)
        super().__init__({
            "command":         In(stream.Signature(SpmvArgs)),
            "load_command":    In(stream.Signature(LoadSpmvArgs)),
            "host_load":       In(stream.Signature(Load)),
            "input_base":      In(16),
            "act_read":        Out(ReadPort(ADDRESS_BITS, config.word_bits_of(Space.ACT))),
            "act_read_grant":  In(1),
            "csc_read":        Out(ReadPort(ADDRESS_BITS, config.word_bits_of(Space.CSC))),
            "act_write":       Out(WritePort(ADDRESS_BITS, config.word_bits_of(Space.ACT))),
            "act_write_grant": In(1),
            "busy":            Out(1),
            "fault":           Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        R, V = c.rows, c.lanes
        N, P = c.spmv.n_pes, c.spmv.lanes
        unit = m.submodules.unit = self._unit
        fault = Signal()
        busy = Signal()

        # ---- LOAD_SPMV: CSC words into the unit's loader -------------------------------------
        loading = Signal()
        csc_addr = Signal(16)
        csc_left = Signal(16)
        word_valid = Signal()
        load_stall = word_valid & ~unit.load.ready
        load_advance = loading & ~load_stall
        m.d.comb += [self.csc_read.addr.eq(csc_addr), self.csc_read.en.eq(~load_stall)]
        with m.If(~load_stall):
            m.d.sync += word_valid.eq(loading)
        with m.If(load_advance):
            m.d.sync += [csc_addr.eq(csc_addr + 1), csc_left.eq(csc_left - 1)]
            with m.If(csc_left == 1):
                m.d.sync += loading.eq(0)
            with m.If(csc_addr >= c.csc_words):
                m.d.comb += fault.eq(1)
        host_word = ~word_valid & ~loading
        m.d.comb += [
            unit.load.valid.eq(Mux(host_word, self.host_load.valid & ~busy, word_valid)),
            unit.load.payload.eq(Mux(host_word, self.host_load.payload,
                                     self.csc_read.data[:Load.size])),
        ]

        # ---- SPMV: activations in ---------------------------------------------------------------
        # A read is issued when the scratchpad is granted and the queue has room for it; the
        # beat is picked from the word read and queued (another engine may use the port while
        # the unit holds a beat back).
        args = Signal(SpmvArgs)
        feeding = Signal()
        images_in = Signal(12)         # images still to send
        bank_in = Signal(range(R))
        group_in = Signal(16)          # src + g * in_stride
        k_in = Signal(16)              # the beat's first activation
        queue = m.submodules.act_queue = SyncFIFO(width=unit.act.payload.shape().size, depth=3)
        read_valid = Signal()
        read_lane = Signal(range(V))
        read_k = Signal(16)
        read_bank = Signal(range(R))
        read_last = Signal()
        issue = feeding & self.act_read_grant & (queue.level + read_valid < 3)
        act_addr = group_in + (k_in >> _log2(V))
        last = k_in + P >= args.cols
        m.d.comb += [self.act_read.addr.eq(act_addr), self.act_read.en.eq(issue)]
        m.d.sync += [read_valid.eq(issue), read_lane.eq(k_in[:_log2(V)] if V > 1 else 0),
                     read_k.eq(k_in), read_bank.eq(bank_in), read_last.eq(last)]
        with m.If(issue):
            with m.If(act_addr >= c.act_words):
                m.d.comb += fault.eq(1)
            with m.If(last):
                m.d.sync += [k_in.eq(0), images_in.eq(images_in - 1)]
                with m.If(images_in == 1):
                    m.d.sync += feeding.eq(0)
                next_bank(m, bank_in, R, group_in, args.in_stride)
            with m.Else():
                m.d.sync += k_in.eq(k_in + P)
        banks = [self.act_read.data[b * V * LANE_BITS:(b + 1) * V * LANE_BITS] for b in range(R)]
        bank = Array(banks)[read_bank] if R > 1 else banks[0]
        groups = [bank[g * LANE_BITS:(g + P) * LANE_BITS] for g in range(0, V, P)]
        chosen = Array(groups)[read_lane >> _log2(P)] if len(groups) > 1 else groups[0]
        picked = Signal.like(unit.act.payload)
        for i in range(P):
            value = chosen[i * LANE_BITS:(i + 1) * LANE_BITS]
            m.d.comb += picked.x[i].eq(Mux(read_k + i < args.cols, value, 0))
        m.d.comb += [picked.last.eq(read_last),
                     queue.w_data.eq(picked), queue.w_en.eq(read_valid),
                     unit.act.valid.eq(queue.r_rdy), unit.act.payload.eq(queue.r_data),
                     queue.r_en.eq(unit.act.ready)]

        # ---- SPMV: results out ----------------------------------------------------------------
        images_out = Signal(12)
        bank_out = Signal(range(R))
        group_out = Signal(16)         # dst + g * out_stride
        row_out = Signal(16)           # the beat's first row, b * N
        result_addr = group_out + (row_out >> _log2(V))
        result_lane = row_out[:_log2(V)] if V > 1 else Const(0, 1)
        final_beat = row_out + N >= args.rows
        writing = unit.result.valid & self.act_write_grant & (images_out != 0)
        m.d.comb += unit.result.ready.eq(self.act_write_grant & (images_out != 0))
        values = Cat(*(unit.result.payload[i][:LANE_BITS] for i in range(N)))
        placed = [Cat(Const(0, o * LANE_BITS), values)[:V * LANE_BITS] for o in range(0, V, N)]
        word = Array(placed)[result_lane >> _log2(N)] if len(placed) > 1 else placed[0]
        enables = Signal(R * V)
        for b in range(R):
            for lane in range(V):
                m.d.comb += enables[b * V + lane].eq(
                    writing & (bank_out == b) & (result_lane <= lane) & (lane < result_lane + N))
        m.d.comb += [self.act_write.addr.eq(result_addr),
                     self.act_write.data.eq(Cat(*(word for _ in range(R)))),
                     self.act_write.en.eq(enables)]
        with m.If(writing):
            with m.If(result_addr >= c.act_words):
                m.d.comb += fault.eq(1)
            with m.If(final_beat):
                m.d.sync += [row_out.eq(0), images_out.eq(images_out - 1)]
                next_bank(m, bank_out, R, group_out, args.out_stride)
            with m.Else():
                m.d.sync += row_out.eq(row_out + N)

        # ---- Taking instructions --------------------------------------------------------------
        m.d.comb += busy.eq(loading | word_valid | feeding | read_valid | queue.r_rdy
                            | (images_out != 0))
        idle = ~busy
        m.d.comb += [self.command.ready.eq(idle), self.load_command.ready.eq(idle),
                     self.host_load.ready.eq(host_word & unit.load.ready & idle),
                     self.busy.eq(busy), self.fault.eq(fault)]
        with m.If(self.command.valid & self.command.ready):
            a = self.command.payload
            m.d.sync += [args.eq(a), feeding.eq(1), images_in.eq(a.images),
                         images_out.eq(a.images), bank_in.eq(0), bank_out.eq(0), k_in.eq(0),
                         row_out.eq(0),
                         group_in.eq(Mux(a.src_input, a.src + self.input_base, a.src)),
                         group_out.eq(a.dst)]
        with m.If(self.load_command.valid & self.load_command.ready):
            a = self.load_command.payload
            m.d.sync += [loading.eq(1), csc_addr.eq(a.csc), csc_left.eq(a.count)]
        return m
