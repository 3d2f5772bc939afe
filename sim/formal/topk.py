"""Proofs about the top-k engine (``rtl/topk.py``): its result stream."""

from amaranth import Elaboratable, Module, Mux, ResetSignal, Signal
from amaranth.hdl import Assert, Assume

from rtl.topk import TopK
from sim.formal.streams import drive_sink, drive_source

__all__ = ["ResultStream"]


class ResultStream(Elaboratable):
    """Every batch gives exactly ``min(k, n)`` distinct indices, in order, on a contract-keeping
    stream, while the next batch streams in.

    Any configurations (``k`` out of range too), batches of 1 to ``n_max`` scores in beats of
    any ``count``, any scores and any back-pressure. Asserted: the stream contract on
    ``result``; a beat only after the batch's last score beat; indices strictly ascending and
    below the batch's ``n``; ``last`` exactly on beat ``min(k, n)``, with the ``k`` the batch
    was given even when a configuration for the next one is taken meanwhile; no last score beat
    of the next batch taken while a batch's indices are still owed (its other beats may be).

    Faults: ``"drop_beat"`` and ``"unstable_payload"`` (see
    :func:`sim.formal.streams.drive_sink`).
    """

    faults = ("drop_beat", "unstable_payload")

    def __init__(self, n_max=4, k_max=2, par=2, score_bits=3, fault=None):
        self.n_max, self.k_max, self.par = n_max, k_max, par
        self.score_bits, self.fault = score_bits, fault

    def elaborate(self, platform):
        m = Module()
        m.submodules.topk = topk = TopK(self.n_max, self.k_max, self.par, self.score_bits)
        m.d.comb += Assume(~ResetSignal())
        drive_source(m, topk.config, "config")
        drive_source(m, topk.scores, "scores")
        taken = drive_sink(m, topk.result, "result", self.fault)

        # The harness's account: k, the scores of the batch streaming in, and the batch whose
        # indices are owed (its n and min(k, n)).
        k = Signal(range(self.k_max + 1), init=self.k_max)
        seen = Signal(range(self.n_max + 1))
        closed = Signal()                         # a batch's last beat is in, indices owed
        n = Signal(range(self.n_max + 1))
        owed = Signal(range(self.n_max + 1))
        sent = Signal(range(self.n_max + 1))
        previous = Signal.like(topk.result.payload.index)

        beat = topk.scores.payload
        scoring = topk.scores.valid & topk.scores.ready
        total = seen + beat.count
        m.d.comb += [Assume(beat.count <= self.par),
                     Assume(~topk.scores.valid | (total <= self.n_max)),
                     Assume(~topk.scores.valid | ~beat.last | (total >= 1))]
        configuring = topk.config.valid & topk.config.ready
        with m.If(configuring & (topk.config.payload.k >= 1)
                  & (topk.config.payload.k <= self.k_max)):
            m.d.sync += k.eq(topk.config.payload.k)
        with m.If(scoring):
            m.d.sync += seen.eq(total)
            with m.If(beat.last):
                m.d.sync += [seen.eq(0), closed.eq(1), n.eq(total),
                             owed.eq(Mux(total < k, total, k))]

        result = topk.result.payload
        m.d.comb += [Assert(~topk.result.valid | closed),
                     Assert(~(scoring & beat.last) | ~closed)]
        with m.If(taken):
            m.d.comb += [Assert(result.index < n),
                         Assert((sent == 0) | (result.index > previous)),
                         Assert(result.last == (sent + 1 == owed))]
            m.d.sync += [sent.eq(sent + 1), previous.eq(result.index)]
            with m.If(result.last):
                m.d.sync += [sent.eq(0), closed.eq(0)]
        return m
