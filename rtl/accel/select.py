"""The top-k engine of the accelerator: score reader, the SpAtten-style engine, index writer.

``TOPK`` (docs/isa.md) streams each image's scores from the result memory into the engine,
``P`` scores per beat (``AccelConfig.topk_par``, a divisor of ``C``): a result word's bank of
``C`` scores in ``C / P`` beats, lane 0 first. It writes the indices the engine selects into
the output memory, ``k`` per image in ascending order.
"""

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.accel.config import AccelConfig
from rtl.accel.isa import ADDRESS_BITS, Space, TopkArgs
from rtl.accel.ports import ReadPort, WritePort
from rtl.pipeline import next_bank
from rtl.topk import TopK

__all__ = ["SelectEngine"]


class SelectEngine(wiring.Component):
    """Runs TOPK instructions on a :class:`rtl.topk.TopK` of ``P`` scores per beat
    (``config.topk_par``).

    Parameters
    ----------
    config : AccelConfig
        With a top-k engine (``config.topk``).

    Attributes
    ----------
    command : In(stream.Signature(TopkArgs))
        An instruction's arguments, taken when the engine is idle.
    result_base, output_base : In(16)
        The pages' first words, added to ``src`` and ``dst``.
    result_read : Out(ReadPort)
        The result memory; the engine holds it while busy.
    output_write : Out(WritePort)
        The output memory (whole words).
    busy : Out(1)
        From taking an instruction to writing its last index.
    fault : Out(1)
        An address outside its page was met.
    """

    def __init__(self, config):
        if not isinstance(config, AccelConfig) or config.topk is None:
            raise TypeError(f"config must be an AccelConfig with a top-k engine, not {config!r}")
        self._config = config
        self._engine = TopK(n_max=config.topk.n_max, k_max=config.topk.k_max, par=config.topk_par,
                            score_bits=config.acc_width, signed_scores=True)
        super().__init__({
            "command":      In(stream.Signature(TopkArgs)),
            "result_base":  In(16),
            "output_base":  In(16),
            "result_read":  Out(ReadPort(ADDRESS_BITS, config.word_bits_of(Space.RESULT))),
            "output_write": Out(WritePort(ADDRESS_BITS, config.word_bits_of(Space.OUTPUT),
                                             granular=False)),
            "busy":         Out(1),
            "fault":        Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        C, P, d = c.cols, c.topk_par, c.rows_per_beat
        parts = C // P                 # beats per bank
        engine = m.submodules.engine = self._engine
        args = Signal(TopkArgs)
        fault = Signal()

        # ---- Scores in: word t of image i, bank i mod d, lanes part * P .. part * P + P - 1 --
        reading = Signal()
        images_in = Signal(12)
        bank_in = Signal(range(d))
        image_row = Signal(16)         # src + (i div d) * tile_cols
        t = Signal(8)
        part = Signal(range(parts))
        left = Signal(13)              # scores of the image not yet sent
        beat_valid = Signal()
        beat_bank = Signal(range(d))
        beat_part = Signal(range(parts))
        beat_count = Signal(range(P + 1))
        beat_last = Signal()
        stall = beat_valid & ~engine.scores.ready
        advance = reading & ~stall
        rel = image_row + t
        final = left <= P
        m.d.comb += [self.result_read.addr.eq(self.result_base + rel),
                     self.result_read.en.eq(~stall)]
        with m.If(~stall):
            m.d.sync += [beat_valid.eq(reading), beat_bank.eq(bank_in), beat_part.eq(part),
                         beat_count.eq(Mux(final, left, P)), beat_last.eq(final)]
        with m.If(advance):
            with m.If(rel >= c.result_words):
                m.d.comb += fault.eq(1)
            with m.If(final):
                m.d.sync += [t.eq(0), part.eq(0), left.eq(args.n), images_in.eq(images_in - 1)]
                with m.If(images_in == 1):
                    m.d.sync += reading.eq(0)
                next_bank(m, bank_in, d, image_row, args.tile_cols)
            with m.Else():
                m.d.sync += left.eq(left - P)
                with m.If(part == parts - 1):
                    m.d.sync += [t.eq(t + 1), part.eq(0)]
                with m.Else():
                    m.d.sync += part.eq(part + 1)
        bank_bits, lane_bits = C * c.acc_width, P * c.acc_width
        banks = [self.result_read.data[b * bank_bits:(b + 1) * bank_bits] for b in range(d)]
        bank = Array(banks)[beat_bank] if d > 1 else banks[0]
        lanes = [bank[q * lane_bits:(q + 1) * lane_bits] for q in range(parts)]
        m.d.comb += [engine.scores.valid.eq(beat_valid),
                     engine.scores.payload.score.eq(Array(lanes)[beat_part] if parts > 1
                                                    else lanes[0]),
                     engine.scores.payload.count.eq(beat_count),
                     engine.scores.payload.last.eq(beat_last)]

        # ---- k, once per instruction ---------------------------------------------------------
        config_valid = Signal()
        m.d.comb += [engine.config.valid.eq(config_valid), engine.config.payload.k.eq(args.k)]
        with m.If(engine.config.ready):
            m.d.sync += config_valid.eq(0)

        # ---- Indices out ------------------------------------------------------------------------
        images_out = Signal(12)
        out_rel = Signal(16)
        m.d.comb += [engine.result.ready.eq(1),
                     self.output_write.addr.eq(self.output_base + out_rel),
                     self.output_write.data.eq(engine.result.payload.index),
                     self.output_write.en.eq(engine.result.valid & (images_out != 0))]
        with m.If(engine.result.valid & (images_out != 0)):
            m.d.sync += out_rel.eq(out_rel + 1)
            with m.If(out_rel >= c.output_words):
                m.d.comb += fault.eq(1)
            with m.If(engine.result.payload.last):
                m.d.sync += images_out.eq(images_out - 1)

        busy = reading | beat_valid | config_valid | (images_out != 0)
        m.d.comb += [self.command.ready.eq(~busy), self.busy.eq(busy), self.fault.eq(fault)]
        with m.If(self.command.valid & self.command.ready):
            a = self.command.payload
            m.d.sync += [args.eq(a), reading.eq(1), config_valid.eq(1), images_in.eq(a.images),
                         images_out.eq(a.images), bank_in.eq(0), image_row.eq(a.src), t.eq(0),
                         part.eq(0), left.eq(a.n), out_rel.eq(a.dst)]
        return m
