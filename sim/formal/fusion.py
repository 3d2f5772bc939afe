"""Proofs about the fusion PE (``rtl/fusion.py``): its dot product and its accumulator.

The harnesses compute what the PE must produce with plain integer arithmetic on the lanes of
the packed words (``*`` and ``+`` of the lane values, read signed or unsigned as the mode
says), never through bricks or shifts, and compare it with the PE's ``result``.
"""

from amaranth import Cat, Elaboratable, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume

from rtl.fusion import (BitWidth, FusionMAC, FusionMode, FusionPE, StepControl, lanes,
                        mode_const, modes, step_peak, word_bits)
from rtl.systolic import k_step_bound
from rtl.pipeline import accumulate, delay

__all__ = ["DotProduct", "NoOverflow"]


#: Width of the harness's exact sums: more than any accumulator can reach.
EXACT_BITS = 48


def _lane_value(word, lane, bits, is_signed):
    value = word[lane * bits:(lane + 1) * bits]
    return Mux(is_signed, value.as_signed(), value.as_unsigned())


def integer_dot(m, precision, mode, w, a, name, width):
    """The dot product of the lanes of packed words ``w`` and ``a`` in ``mode``, as an integer
    of ``width`` bits."""
    dot = Signal(signed(width), name=name)
    supported = modes(precision)

    def sum_of_products(w_bits, a_bits):
        return sum(_lane_value(w, i, w_bits, mode.w_signed)
                   * _lane_value(a, i, a_bits, mode.a_signed)
                   for i in range(lanes(w_bits, a_bits)))

    if len(supported) == 1:
        m.d.comb += dot.eq(sum_of_products(*supported[0]))
    else:
        with m.Switch(Cat(mode.w_bits, mode.a_bits)):
            for w_bits, a_bits in supported:
                with m.Case(Cat(BitWidth.of(w_bits), BitWidth.of(a_bits))):
                    m.d.comb += dot.eq(sum_of_products(w_bits, a_bits))
    return dot


def _assume_widths(m, pairs, mode):
    """The mode's widths are one of ``pairs`` of ``(w_bits, a_bits)``."""
    m.d.comb += Assume(Cat(mode.w_bits, mode.a_bits).matches(
        *(Cat(BitWidth.of(w), BitWidth.of(a)) for w, a in pairs)))


def _step(mac, mode, valid, first, last):
    """The PE's control input for a step."""
    return mac.control.eq(Cat(mode, valid, first, last))


class DotProduct(Elaboratable):
    """Every step's ``result`` is the integer dot product of its lanes, in one mode's widths.

    Steps with widths ``widths`` and any signedness (or, with ``signedness``, that one), with
    any operands (every bit of the packed words), arrive whenever the solver likes (each step
    its own dot product: ``first`` and ``last`` set); :attr:`~rtl.fusion.FusionPE.latency`
    cycles after a step, and only then, ``result_valid`` is high and ``result`` is the
    integer dot product.

    ``signedness``, ``(w_signed, a_signed)``, splits a mode's proof in four smaller ones that
    together cover it, for a mode whose proof over every signedness at once does not finish.

    Faults: ``"lane_swap"`` exchanges lanes 0 and 1 of the weight word on the way into the
    PE (a steering mistake); ``"result_bit"`` flips bit 4 of ``result`` (a shift mistake).
    """

    faults = ("lane_swap", "result_bit")

    def __init__(self, precision, widths, acc_width=17, fault=None, signedness=None):
        self.precision, self.widths = precision, widths
        self.acc_width, self.fault, self.signedness = acc_width, fault, signedness

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = FusionMAC(self.precision, self.acc_width)
        m.d.comb += Assume(~ResetSignal())
        width = word_bits(self.precision)
        w, a = Signal(width), Signal(width)
        mode, valid = Signal(FusionMode), Signal()
        m.d.comb += [w.eq(AnySeq(width)), a.eq(AnySeq(width)), valid.eq(AnySeq(1))]
        if self.signedness is None:
            m.d.comb += mode.eq(AnySeq(FusionMode.size))
            _assume_widths(m, [self.widths], mode)
        else:
            # One mode, a constant: the solver's problem shrinks to that mode's datapath.
            m.d.comb += mode.eq(mode_const(*self.widths, *self.signedness))
        into_w = w
        if self.fault == "lane_swap":
            bits = self.widths[0]
            into_w = Cat(w[bits:2 * bits], w[:bits], w[2 * bits:])
        m.d.comb += [_step(mac, mode, valid, 1, 1), mac.w.eq(into_w), mac.a.eq(a)]

        expected = integer_dot(m, self.precision, mode, w, a, "expected", self.acc_width)
        latency = FusionPE.latency
        due = delay(m, valid, latency, "due")
        due_value = delay(m, expected, latency, "due_value")
        result = mac.result ^ (1 << 4) if self.fault == "result_bit" else mac.result
        m.d.comb += [Assert(mac.result_valid == due), Assert(~due | (result == due_value))]
        return m


class NoOverflow(Elaboratable):
    """The PE's accumulate stage never overflows while a dot product has at most
    ``k_step_bound`` steps.

    The stage (:func:`rtl.pipeline.accumulate`, stage 5 of :class:`~rtl.fusion.FusionPE`)
    takes a step every cycle, each ``last`` (so ``result`` shows every running sum); the
    solver chooses ``first`` and, on a ``first`` step, the mode and signedness that the dot
    product keeps until the next ``first``; each step's term is any value of magnitude at
    most :func:`rtl.fusion.step_peak` of the mode (what a step's dot product can reach, by
    the ``fusion_dot_*`` proofs). With at most :func:`rtl.systolic.k_step_bound` steps per dot
    product, ``result`` equals the exact sum (kept by the harness in :data:`EXACT_BITS` bits)
    after every step.

    Fault: ``"bound_plus_one"`` allows one step more than the bound.
    """

    faults = ("bound_plus_one",)

    def __init__(self, precision="mixed", acc_width=17, fault=None):
        self.precision, self.acc_width, self.fault = precision, acc_width, fault

    def elaborate(self, platform):
        m = Module()
        m.d.comb += Assume(~ResetSignal())
        mode, first = Signal(FusionMode), Signal()
        term = Signal(signed(EXACT_BITS))
        m.d.comb += [mode.eq(AnySeq(FusionMode.size)), first.eq(AnySeq(1)),
                     term.eq(AnySeq(EXACT_BITS))]
        _assume_widths(m, modes(self.precision), mode)
        control = Signal(StepControl)
        m.d.comb += control.eq(Cat(mode, 1, first, 1))
        result, result_valid = Signal(signed(self.acc_width)), Signal()
        accumulate(m, term, control, result, result_valid)

        # The dot product in progress: its mode, its steps so far and their exact sum.
        current = Signal(FusionMode)
        steps = Signal(unsigned(16))
        total = Signal(signed(EXACT_BITS))
        m.d.comb += Assume(first | (mode == current))
        steps_now = Signal(unsigned(17))
        total_now = Signal(signed(EXACT_BITS))
        m.d.comb += [steps_now.eq(Mux(first, 1, steps + 1)),
                     total_now.eq(Mux(first, 0, total) + term)]
        m.d.sync += [current.eq(mode), steps.eq(steps_now), total.eq(total_now)]

        # The mode's bound and step peak, and, a lemma that makes the induction go through,
        # the largest magnitude of a sum of ``steps_now`` steps.
        extra = 1 if self.fault == "bound_plus_one" else 0
        bound, peak, reach = (Signal(unsigned(17)), Signal(unsigned(EXACT_BITS)),
                              Signal(unsigned(EXACT_BITS)))
        with m.Switch(mode):
            for w_bits, a_bits in modes(self.precision):
                for w_signed in (False, True):
                    for a_signed in (False, True):
                        most = step_peak(w_bits, a_bits, w_signed, a_signed)
                        with m.Case(mode_const(w_bits, a_bits, w_signed, a_signed)):
                            m.d.comb += [
                                bound.eq(k_step_bound(self.acc_width, w_bits, a_bits,
                                                      w_signed, a_signed) + extra),
                                peak.eq(most), reach.eq(steps_now * most)]
        m.d.comb += [Assume(steps_now <= bound), Assume((term <= peak) & (-term <= peak)),
                     Assert((total_now <= reach) & (-total_now <= reach))]

        m.d.comb += Assert(result == delay(m, total_now, 1, "due_total"))
        return m
