"""The GEMM engine of the accelerator: operand reader, systolic array, output stage, writer.

It runs one ``GEMM`` instruction at a time (docs/isa.md): it reads a step's activation word
(every bank of one scratchpad word) and weight word each cycle the array can take them,
packs the activation lanes of the step for the mode, and writes every result beat, biased
and requantized by the :class:`OutputStage`, into the scratchpad or the result memory.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.accel.config import AccelConfig
from rtl.accel.isa import ADDRESS_BITS, LANE_BITS, GemmArgs, Space
from rtl.accel.output import OutputStage
from rtl.accel.ports import ReadPort, WritePort
from rtl.fusion import lanes as mode_lanes
from rtl.fusion import mode_const, modes
from rtl.pipeline import delay

__all__ = ["GemmEngine"]


def _log2(value):
    return value.bit_length() - 1


class GemmEngine(wiring.Component):
    """Runs GEMM instructions on a systolic array of the configuration.

    Parameters
    ----------
    config : AccelConfig

    Attributes
    ----------
    command : In(stream.Signature(GemmArgs))
        An instruction's arguments, taken when the engine is idle (``src`` already moved to
        the input page when ``src_input``; see ``input_base``).
    input_base : In(16)
        Added to ``src`` when ``src_input`` is set: the current input page's first word.
    result_base : In(16)
        The result page's first word, added to ``dst`` without requantization.
    act_read, weight_read, param_read : Out(ReadPort)
        The scratchpad, weight and parameter memories.
    act_write : Out(WritePort)
        The scratchpad (byte enables); never stalled: it has priority.
    result_write : Out(WritePort)
        The result memory (whole words).
    busy : Out(1)
        An instruction is being run: from taking it to its last write.
    fault : Out(1)
        An address outside its memory was met (the controller then resets the engine).
    """

    def __init__(self, config):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        self._config = config
        self._array = config.array()
        c = config
        super().__init__({
            "command":      In(stream.Signature(GemmArgs)),
            "input_base":   In(16),
            "result_base":  In(16),
            "act_read":     Out(ReadPort(ADDRESS_BITS, c.word_bits_of(Space.ACT))),
            "weight_read":  Out(ReadPort(ADDRESS_BITS, c.word_bits_of(Space.WEIGHT))),
            "param_read":   Out(ReadPort(ADDRESS_BITS, c.word_bits_of(Space.PARAM))),
            "act_write":    Out(WritePort(ADDRESS_BITS, c.word_bits_of(Space.ACT))),
            "result_write": Out(WritePort(ADDRESS_BITS, c.word_bits_of(Space.RESULT),
                                                   granular=False)),
            "busy":         Out(1),
            "fault":        Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        R, C, d, V = c.rows, c.cols, c.rows_per_beat, c.lanes
        per_tile = R // d
        array = m.submodules.array = self._array
        out = m.submodules.output = OutputStage(d, C, c.acc_width)

        args = Signal(GemmArgs)
        taking = self.command.valid & self.command.ready

        # ---- Operand reader: step s of tile (tm, tn) ---------------------------------------
        reading = Signal()
        tm, tn, s = Signal(8), Signal(8), Signal(12)
        row_base = Signal(16)          # src + tm * in_stride
        k_pos = Signal(16)             # s * L: the step's first value of the vector
        w_addr = Signal(16)            # weights + tn * k_steps + s
        lanes_log2 = Signal(range(5))  # log2 L of the mode: 4 - w code - a code
        m.d.comb += lanes_log2.eq(4 - args.mode.w_bits.as_value() - args.mode.a_bits.as_value())

        op_valid = Signal()
        op_lane = Signal(range(V))     # the step's first lane in the word read
        stall = op_valid & ~array.act.ready
        advance = reading & ~stall
        act_addr = row_base + (k_pos >> _log2(V))
        m.d.comb += [
            self.act_read.addr.eq(act_addr), self.act_read.en.eq(~stall),
            # Only while reading: WEIGHT has one port, which the host writes between GEMMs,
            # and it must not read and write in one cycle (rtl.accel.memory).
            self.weight_read.addr.eq(w_addr), self.weight_read.en.eq(reading & ~stall),
        ]
        with m.If(~stall):
            m.d.sync += [op_valid.eq(reading), op_lane.eq(k_pos[:_log2(V)] if V > 1 else 0)]
        fault = Signal()
        with m.If(advance & ((act_addr >= c.act_words) | (w_addr >= c.weight_words))):
            m.d.comb += fault.eq(1)
        with m.If(advance):
            with m.If(s + 1 == args.k_steps):
                m.d.sync += [s.eq(0), k_pos.eq(0)]
                with m.If(tn + 1 == args.tile_cols):
                    m.d.sync += [tn.eq(0), w_addr.eq(args.weights), tm.eq(tm + 1),
                                 row_base.eq(row_base + args.in_stride)]
                    with m.If(tm + 1 == args.tile_rows):
                        m.d.sync += reading.eq(0)
                with m.Else():
                    m.d.sync += [tn.eq(tn + 1), w_addr.eq(w_addr + 1)]
            with m.Else():
                m.d.sync += [s.eq(s + 1), k_pos.eq(k_pos + (1 << lanes_log2)),
                             w_addr.eq(w_addr + 1)]

        # The step's lanes of each bank, packed at a_bits for the mode.
        for r in range(R):
            bank = self.act_read.data[r * V * LANE_BITS:(r + 1) * V * LANE_BITS]
            lane = [bank[i * LANE_BITS:(i + 1) * LANE_BITS] for i in range(V)]
            word = Signal(array.word_bits, name=f"act_word{r}")
            with m.Switch(args.mode.as_value()[:4]):
                for w_bits, a_bits in modes(c.precision):
                    L = mode_lanes(w_bits, a_bits)
                    groups = [Cat(*(lane[g + i][:a_bits] for i in range(L)))
                              for g in range(0, V, L)]
                    with m.Case(mode_const(w_bits, a_bits).as_value().value & 0xF):
                        m.d.comb += word.eq(Array(groups)[op_lane >> _log2(L)])
            m.d.comb += array.act.payload[r].eq(word)
        m.d.comb += [
            array.act.valid.eq(op_valid), array.wgt.valid.eq(op_valid),
            array.wgt.payload.eq(self.weight_read.data),
        ]

        # ---- Configuration of the array -------------------------------------------------------
        config_valid = Signal()
        m.d.comb += [array.config.valid.eq(config_valid),
                     array.config.payload.mode.eq(args.mode),
                     array.config.payload.k_steps.eq(args.k_steps),
                     array.config.payload.tiles.eq(args.tile_rows * args.tile_cols)]
        with m.If(array.config.valid & array.config.ready):
            m.d.sync += config_valid.eq(0)

        # ---- Result writer: beat g of tile (tm, tn) ------------------------------------------
        beats_left = Signal(range(255 * 255 * per_tile + 1))
        otm_row = Signal(16)           # dst + tm * out_stride
        otn, og = Signal(8), Signal(range(per_tile))
        res_tile_row = Signal(16)      # (tm * per_tile) * tile_cols
        res_group = Signal(16)         # g * tile_cols
        cp_log2 = _log2(c.padded_cols)
        out_pos = Signal(16)
        m.d.comb += out_pos.eq(otn << cp_log2)
        act_dst = otm_row + (out_pos >> _log2(V))
        res_rel = args.dst + res_tile_row + res_group + otn
        res_dst = self.result_base + res_rel
        beat = array.result.valid & (beats_left != 0)
        m.d.comb += [array.result.ready.eq(1),
                     self.param_read.addr.eq(args.params + otn), self.param_read.en.eq(1)]
        with m.If(beat & ((args.params + otn >= c.param_words)
                          | Mux(args.requantize, act_dst >= c.act_words,
                                res_rel >= c.result_words))):
            m.d.comb += fault.eq(1)
        with m.If(beat):
            m.d.sync += beats_left.eq(beats_left - 1)
            with m.If(og == per_tile - 1):
                m.d.sync += [og.eq(0), res_group.eq(0)]
                with m.If(otn + 1 == args.tile_cols):
                    m.d.sync += [otn.eq(0), otm_row.eq(otm_row + args.out_stride),
                                 res_tile_row.eq(res_tile_row + res_group + args.tile_cols)]
                with m.Else():
                    m.d.sync += otn.eq(otn + 1)
            with m.Else():
                m.d.sync += [og.eq(og + 1), res_group.eq(res_group + args.tile_cols)]

        # The beat a cycle later, with its parameters from the parameter memory.
        sums = Signal.like(array.result.payload)
        beat_valid = Signal()
        m.d.sync += [sums.eq(array.result.payload), beat_valid.eq(beat)]
        m.d.comb += [out.valid.eq(beat_valid), out.sums.eq(sums),
                     out.params.eq(self.param_read.data),
                     out.setting.shift.eq(args.shift), out.setting.out_bits.eq(args.out_bits)]

        # Where the beat goes, beside it through the output stage.
        lane_pos = out_pos[:_log2(V)] if V > 1 else Const(0, 1)
        enables = Signal(R * V)
        for b in range(R):
            for lane in range(V):
                m.d.comb += enables[b * V + lane].eq(
                    (og == b // d) & (lane_pos <= lane) & (lane < lane_pos + C))
        write_delay = 1 + out.latency
        late_act = delay(m, act_dst, write_delay, "act_dst")
        late_res = delay(m, res_dst, write_delay, "res_dst")
        late_enables = delay(m, enables, write_delay, "enables")
        late_lane = delay(m, lane_pos, write_delay, "lane_pos")
        writing = out.out_valid

        bank_data = []
        for j in range(d):
            values = Cat(*(out.requantized[j][col] for col in range(C)))
            placed = [Cat(Const(0, o * LANE_BITS), values)[:V * LANE_BITS]
                      for o in range(0, V, c.padded_cols)]
            bank_data.append(Array(placed)[late_lane >> cp_log2] if len(placed) > 1
                             else placed[0])
        byte_enables = Signal(R * V)
        m.d.comb += byte_enables.eq(Mux(writing & args.requantize, late_enables, 0))
        m.d.comb += [
            self.act_write.addr.eq(late_act),
            self.act_write.data.eq(Cat(*(bank_data[b % d] for b in range(R)))),
            self.act_write.en.eq(byte_enables),
            self.result_write.addr.eq(late_res),
            self.result_write.data.eq(Cat(*(out.biased[j][col][:c.acc_width]
                                            for j in range(d) for col in range(C)))),
            self.result_write.en.eq(writing & ~args.requantize),
        ]

        # ---- Taking an instruction, and finishing it ---------------------------------------------
        # A beat is in flight from its register to its write, the output stage's last stage.
        stages = [beat_valid]
        for i in range(out.latency):
            stages.append(delay(m, stages[-1], 1, f"in_flight{i}"))
        in_flight = Cat(*stages).any()
        busy = reading | op_valid | config_valid | (beats_left != 0) | in_flight
        m.d.comb += [self.command.ready.eq(~busy), self.busy.eq(busy), self.fault.eq(fault)]
        with m.If(taking):
            a = self.command.payload
            first = Mux(a.src_input, a.src + self.input_base, a.src)
            m.d.sync += [
                args.eq(a), reading.eq(1), config_valid.eq(1),
                tm.eq(0), tn.eq(0), s.eq(0), k_pos.eq(0), row_base.eq(first),
                w_addr.eq(a.weights),
                beats_left.eq(a.tile_rows * a.tile_cols * per_tile),
                otm_row.eq(a.dst), otn.eq(0), og.eq(0), res_tile_row.eq(0), res_group.eq(0),
            ]
        return m
