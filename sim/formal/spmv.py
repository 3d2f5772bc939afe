"""Proofs about the sparse matrix-vector unit (``rtl/spmv.py``): its result stream."""

import math

from amaranth import Elaboratable, Module, ResetSignal, Signal
from amaranth.hdl import Assert, Assume

from rtl.spmv import LoadKind, SpMV
from sim.formal.streams import drive_sink, drive_source

__all__ = ["ResultStream"]


class ResultStream(Elaboratable):
    """Every vector gives exactly ``ceil(rows / n_pes)`` result beats on a contract-keeping stream.

    Any loader words but set-up words (so ``rows`` stays the generated one), any memory
    contents they write, any activation beats and any back-pressure. Asserted: the stream
    contract on ``result``; a beat only after the vector's last activation beat; never more
    than ``ceil(rows / n_pes)`` beats per vector, and no activation or loader word taken while
    beats are owed (so a beat lost would leave the next vector waiting forever).

    Faults: ``"drop_beat"`` and ``"unstable_payload"`` (see
    :func:`sim.formal.streams.drive_sink`).
    """

    faults = ("drop_beat", "unstable_payload")

    def __init__(self, n_pes=2, rows=4, cols=4, entries=8, fault=None):
        self.n_pes, self.rows, self.cols, self.entries = n_pes, rows, cols, entries
        self.fault = fault

    def elaborate(self, platform):
        m = Module()
        m.submodules.spmv = spmv = SpMV(self.n_pes, self.rows, self.cols, self.entries,
                                        value_bits=2, z_bits=1, act_bits=2, lanes=2,
                                        queue_depth=2)
        m.d.comb += Assume(~ResetSignal())
        drive_source(m, spmv.load, "load")
        drive_source(m, spmv.act, "act")
        m.d.comb += Assume(~spmv.load.valid | (spmv.load.payload.kind != LoadKind.SETUP))
        taken = drive_sink(m, spmv.result, "result", self.fault)

        beats = math.ceil(self.rows / self.n_pes)
        closed = Signal()                         # the vector's last beat is in
        sent = Signal(range(beats + 1))
        activating = spmv.act.valid & spmv.act.ready
        loading = spmv.load.valid & spmv.load.ready
        with m.If(activating & spmv.act.payload.last):
            m.d.sync += closed.eq(1)
        m.d.comb += [Assert(~spmv.result.valid | closed), Assert(~activating | ~closed),
                     Assert(~loading | ~closed), Assert(sent < beats)]
        with m.If(taken):
            m.d.sync += sent.eq(sent + 1)
            with m.If(sent + 1 == beats):
                m.d.sync += [sent.eq(0), closed.eq(0)]
        return m
