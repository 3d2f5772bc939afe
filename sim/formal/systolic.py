"""Proofs about the systolic array (``rtl/systolic.py``): its streams and its configurations."""

from amaranth import Cat, Elaboratable, Module, ResetSignal, Signal
from amaranth.hdl import Assert, Assume

from rtl.fusion import BitWidth, mode_const, modes
from rtl.pipeline import delay
from rtl.systolic import SystolicArray, k_step_bound
from sim.formal.streams import drive_sink, drive_source

__all__ = ["ConfigBound", "ResultStream"]


class _BoundPlusOne(SystolicArray):
    """An array whose bound check lets one step too many through (a deliberate mistake)."""

    def k_step_bounds(self):
        return {mode: bound + 1 for mode, bound in super().k_step_bounds().items()}


class ConfigBound(Elaboratable):
    """The array rejects exactly the configurations it cannot run without overflow.

    Any configurations, steps and back-pressure. A configuration the array accepts with
    ``k_steps`` above :func:`rtl.systolic.k_step_bound` for its mode (or a mode the PEs do not
    have, or ``k_steps`` or ``tiles`` of 0) sets ``error`` the cycle after, and from then on
    the array takes no step until it accepts a good configuration; ``error`` is set only so.

    Fault: ``"bound_plus_one"`` checks an array whose bound check allows one step more.
    """

    faults = ("bound_plus_one",)

    def __init__(self, rows=2, cols=2, precision="mixed", acc_width=17, fault=None):
        self.rows, self.cols, self.precision = rows, cols, precision
        self.acc_width, self.fault = acc_width, fault

    def elaborate(self, platform):
        m = Module()
        kind = _BoundPlusOne if self.fault == "bound_plus_one" else SystolicArray
        m.submodules.array = array = kind(self.rows, self.cols, self.precision, self.acc_width)
        m.d.comb += Assume(~ResetSignal())
        for name in ("config", "act", "wgt"):
            drive_source(m, getattr(array, name), name)
        drive_sink(m, array.result, "result")

        config = array.config.payload
        fits = Signal()
        with m.Switch(config.mode):
            for w_bits, a_bits in modes(self.precision):
                for w_signed in (False, True):
                    for a_signed in (False, True):
                        bound = k_step_bound(self.acc_width, w_bits, a_bits, w_signed, a_signed)
                        with m.Case(mode_const(w_bits, a_bits, w_signed, a_signed)):
                            m.d.comb += fits.eq(config.k_steps <= bound)
        accepted = array.config.valid & array.config.ready
        good = fits & (config.k_steps != 0) & (config.tiles != 0)
        rejected = Signal()           # the last configuration accepted was rejected
        rejections = Signal()         # a configuration has been rejected since reset
        with m.If(accepted):
            m.d.sync += rejected.eq(~good)
            with m.If(~good):
                m.d.sync += rejections.eq(1)
        m.d.comb += [Assert(array.error == rejections),
                     Assert(~rejected | ~array.act.ready)]
        return m


class ResultStream(Elaboratable):
    """The result stream keeps its contract and delivers every tile's beats exactly once.

    Configurations of 1 or 2 steps per tile and 1 or 2 tiles, any steps and any
    back-pressure on ``result`` (the FIFOs hold ``fifo_depth`` tiles, so the credit check is
    reached). Asserted: the stream contract on ``result``; never more beats out than tiles
    finished times ``rows / drain_rows`` (nothing duplicated or invented); and once no step has
    been taken and ``result.ready`` has been high for ``latency + 4 * rows / drain_rows + 2``
    cycles, every beat owed is out (nothing lost or withheld). With ``fifo_depth=2`` it failed
    before the row FIFOs of that depth got a third entry (docs/verification.md, "What the
    proofs found").

    Faults: ``"drop_beat"``: the sink takes the first beat without counting it (a beat
    lost); ``"unstable_payload"``: the payload seen flips a bit while it waits.
    """

    faults = ("drop_beat", "unstable_payload")

    def __init__(self, rows=2, cols=1, precision=2, acc_width=16, fifo_depth=3, fault=None):
        self.rows, self.cols, self.precision = rows, cols, precision
        self.acc_width, self.fifo_depth, self.fault = acc_width, fifo_depth, fault

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = array = SystolicArray(self.rows, self.cols, self.precision,
                                                   self.acc_width, fifo_depth=self.fifo_depth)
        m.d.comb += Assume(~ResetSignal())
        for name in ("config", "act", "wgt"):
            drive_source(m, getattr(array, name), name)
        config = array.config.payload
        m.d.comb += Assume((config.k_steps >= 1) & (config.k_steps <= 2)
                           & (config.tiles >= 1) & (config.tiles <= 2))
        m.d.comb += Assume(Cat(config.mode.w_bits, config.mode.a_bits).matches(
            *(Cat(BitWidth.of(w), BitWidth.of(a)) for w, a in modes(self.precision))))
        taken = drive_sink(m, array.result, "result", self.fault)

        # The harness's own account of the steps: which step of which tile each one is.
        k_steps, step = Signal(2), Signal(2)
        tile_done = Signal()
        stepping = array.act.valid & array.act.ready
        m.d.comb += tile_done.eq(stepping & (step + 1 == k_steps))
        with m.If(stepping):
            m.d.sync += step.eq(step + 1)
            with m.If(tile_done):
                m.d.sync += step.eq(0)
        with m.If(array.config.valid & array.config.ready):
            m.d.sync += [k_steps.eq(config.k_steps), step.eq(0)]

        # Beats owed (tiles finished times groups of rows) and beats taken; ``quiet`` counts
        # the cycles since the last step during which the sink was ready throughout.
        groups = self.rows // array.drain_rows
        owed, out = Signal(8), Signal(8)
        m.d.sync += [owed.eq(owed + tile_done * groups), out.eq(out + taken)]
        drain_time = array.latency + 4 * groups + 2
        quiet = Signal(range(drain_time + 1))
        with m.If(stepping | ~array.result.ready):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet < drain_time):
            m.d.sync += quiet.eq(quiet + 1)
        m.d.comb += [Assert(out <= owed), Assert((quiet < drain_time) | (out == owed))]
        return m
