"""Bit Fusion processing element: 16 BitBricks fused at run time (docs/design.md 3.1).

A BitBrick multiplies two 2-bit slices, each read as signed (-2..1) when it is
the top slice of a signed operand, else unsigned (0..3). A :class:`FusionPE`
steers the slices of its packed operand words to its 16 bricks and adds the
brick products, each shifted by ``2*(p+q)``, into the dot product of the
``lanes(w_bits, a_bits)`` lanes; the dot product goes into the accumulator.

How the bricks are fused
------------------------
Brick ``k`` (bits ``k3 k2 k1 k0``) takes weight slice ``p`` and activation slice
``q`` of one lane:

- ``p = k0 + 2*k2`` uses ``k0`` when w has 2 or more slices and ``k2`` when it
  has 4; ``q = k1 + 2*k3`` likewise for a;
- the ``k`` bits left unused number the lane (lowest first).

So the shift ``2*(p+q)`` splits into ``2*(k0 + k1)`` inside each group of four
bricks (``k1 k0``), and ``4*(k2 + k3)`` between the four groups (``k3 k2``): the
adder tree has two levels, each with a few mode-dependent shifts, as Bit
Fusion's fusion units do.
"""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from rtl.pipeline import accumulate, delay

__all__ = ["BitWidth", "FusionMode", "StepControl", "BrickOperands", "BRICKS", "PRECISIONS",
           "lanes", "word_bits", "modes", "mode_const", "weight_wide", "step_peak",
           "min_acc_width", "check_acc_width", "PESignature", "SliceSteer", "brick_product",
           "BitBrick", "FusionPE", "FusionMAC"]

#: BitBricks per PE.
BRICKS = 16
#: What ``precision`` of a PE may be: run-time fusible, or one fixed width.
PRECISIONS = ("mixed", 2, 4, 8)


class BitWidth(enum.Enum, shape=2):
    """Operand precision of a run-time mode."""
    B2 = 0
    B4 = 1
    B8 = 2

    @property
    def bits(self):
        return 2 << self.value

    @classmethod
    def of(cls, bits):
        return {2: cls.B2, 4: cls.B4, 8: cls.B8}[bits]


#: The run-time mode of a PE: operand widths and signedness.
FusionMode = data.StructLayout({
    "w_bits":   BitWidth,
    "a_bits":   BitWidth,
    "w_signed": 1,
    "a_signed": 1,
})

#: A step's mode and flags, as they travel beside its operands from PE to PE. ``w_wide``
#: (``mode.w_bits`` is not 2 bits) is decoded where the control is made, so that a mixed PE's
#: first stage reads it from a register instead of decoding ``mode`` there.
StepControl = data.StructLayout({
    "mode":   FusionMode,
    "valid":  1,
    "first":  1,
    "last":   1,
    "w_wide": 1,
})


def mode_const(w_bits, a_bits, w_signed=False, a_signed=False):
    """The :data:`FusionMode` constant of mode ``w_bits x a_bits`` (widths 2, 4 or 8).

    For software that builds a mode, a configuration or a step's control word:
    ``mode_const(8, 8, True, False).as_bits()``, or a field of a larger ``const({...})``.
    """
    return FusionMode.const({"w_bits": BitWidth.of(w_bits), "a_bits": BitWidth.of(a_bits),
                             "w_signed": bool(w_signed), "a_signed": bool(a_signed)})


def weight_wide(mode):
    """:data:`StepControl`'s ``w_wide`` for ``mode`` (a :data:`FusionMode` value): its weight
    is 4 or 8 bits wide, so a PE's first stage shifts its odd bricks by 2."""
    return mode.w_bits != BitWidth.B2


def lanes(w_bits, a_bits):
    """Products per cycle in mode ``w_bits x a_bits``: ``16 / ((w_bits/2)*(a_bits/2))``."""
    for bits in (w_bits, a_bits):
        if bits not in (2, 4, 8):
            raise ValueError(f"operand width must be 2, 4 or 8, not {bits!r}")
    return BRICKS // ((w_bits // 2) * (a_bits // 2))


def modes(precision):
    """The ``(w_bits, a_bits)`` modes a PE of ``precision`` supports."""
    _check_precision(precision)
    if precision == "mixed":
        return [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)]
    return [(precision, precision)]


def word_bits(precision):
    """Width of a packed operand word: the widest ``lanes * bits`` over the modes."""
    return max(lanes(w, a) * max(w, a) for w, a in modes(precision))


def step_peak(w_bits, a_bits, w_signed, a_signed):
    """The largest magnitude of one step's dot product: ``lanes * max|w| * max|a|``."""
    w_peak = 1 << (w_bits - 1) if w_signed else (1 << w_bits) - 1
    a_peak = 1 << (a_bits - 1) if a_signed else (1 << a_bits) - 1
    return lanes(w_bits, a_bits) * w_peak * a_peak


def min_acc_width(precision):
    """Narrowest accumulator (at least 16 bits) holding one step of every mode of ``precision``."""
    return max(16, *(step_peak(w, a, False, False).bit_length() + 1 for w, a in modes(precision)))


def _check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'mixed', 2, 4 or 8, not {precision!r}")


def check_acc_width(precision, acc_width):
    """Raise ``ValueError`` unless ``acc_width`` is from :func:`min_acc_width` to 64."""
    if not isinstance(acc_width, int) or not min_acc_width(precision) <= acc_width <= 64:
        kind = "mixed-precision" if precision == "mixed" else f"{precision}-bit"
        raise ValueError(f"acc_width must be between {min_acc_width(precision)} and 64 "
                         f"for {kind} PEs, not {acc_width!r}")


def _brick_operands(k, w_bits, a_bits):
    """What brick ``k`` multiplies in a mode: (w slice, a slice, w top slice?, a top slice?)."""
    nw, na = w_bits // 2, a_bits // 2
    bit = [(k >> i) & 1 for i in range(4)]
    used = {0: nw >= 2, 2: nw == 4, 1: na >= 2, 3: na == 4}
    p = bit[0] * used[0] + 2 * bit[2] * used[2]
    q = bit[1] * used[1] + 2 * bit[3] * used[3]
    lane_bits = [i for i in range(4) if not used[i]]
    lane = sum(bit[i] << n for n, i in enumerate(lane_bits))
    return lane * nw + p, lane * na + q, p == nw - 1, q == na - 1


def _shift_if(value, condition, amount):
    return Mux(condition, value << amount, value)


#: A PE operand after steering: one signed 3-bit slice value per brick.
BrickOperands = data.ArrayLayout(signed(3), BRICKS)


class SliceSteer(wiring.Component):
    """Steers the 2-bit slices of a packed operand word to the 16 bricks.

    Brick ``k`` receives the slice the mode assigns it (see the module docstring),
    as a signed 3-bit value: ``-2..1`` for the top slice of a signed operand, else
    ``0..3``. One steer serves a whole row (activations) or column (weights) of a
    systolic array, so the PEs themselves hold no steering logic.

    Parameters
    ----------
    precision : "mixed", 2, 4 or 8
        As for :class:`FusionPE`.
    operand : "w" or "a"
        Which operand the word carries.

    Attributes
    ----------
    mode : In(FusionMode)
        Run-time mode.
    word : In(word_bits(precision))
        Packed lanes, lane ``i`` at bits ``[i*b, (i+1)*b)``.
    bricks : Out(BrickOperands)
        The slice value of every brick.
    """

    def __init__(self, precision="mixed", operand="w"):
        _check_precision(precision)
        if operand not in ("w", "a"):
            raise ValueError(f"operand must be 'w' or 'a', not {operand!r}")
        self._precision = precision
        self._operand = operand
        super().__init__({
            "mode":   In(FusionMode),
            "word":   In(word_bits(precision)),
            "bricks": Out(BrickOperands),
        })

    def elaborate(self, platform):
        m = Module()
        supported = modes(self._precision)
        side = 0 if self._operand == "w" else 1
        signed_mode = self.mode.w_signed if side == 0 else self.mode.a_signed
        slices = [self.word[2 * i:2 * i + 2] for i in range(len(self.word) // 2)]
        # The widths of the mode, matched against the same pair of BitWidth constants.
        widths = Cat(self.mode.w_bits, self.mode.a_bits)
        for k in range(BRICKS):
            routes = {mode: _brick_operands(k, *mode) for mode in supported}
            # Group the modes that give this brick the same slice and top flag.
            cases = {}
            for mode, route in routes.items():
                cases.setdefault((route[side], route[2 + side]), []).append(mode)
            chosen, top = Signal(2, name=f"slice{k}"), Signal(name=f"top{k}")
            if len(cases) == 1:
                (index, is_top), = cases
                m.d.comb += [chosen.eq(slices[index]), top.eq(is_top)]
            else:
                with m.Switch(widths):
                    for (index, is_top), mode_list in cases.items():
                        with m.Case(*(Cat(BitWidth.of(w), BitWidth.of(a)) for w, a in mode_list)):
                            m.d.comb += [chosen.eq(slices[index]), top.eq(is_top)]
            m.d.comb += self.bricks[k].eq(Cat(chosen, chosen[1] & top & signed_mode).as_signed())
        return m


def brick_product(w, a):
    """``w * a`` of two signed 3-bit slice values, as explicit partial products (no ``*``).

    ``a = a0 + 2*a1 - 4*a2`` (two's complement), so the product is three partial
    products of ``w``; synthesis builds it from LUTs and never from a DSP block.
    """
    return Mux(a[0], w, 0) + (Mux(a[1], w, 0) << 1) - (Mux(a[2], w, 0) << 2)


class BitBrick(wiring.Component):
    """A 2-bit x 2-bit multiplier: two steered slice values, signed 3-bit each.

    The PE computes its 16 bricks with the same :func:`brick_product`, inline.

    Attributes
    ----------
    w, a : In(signed(3))
        Slice values: -2..1 for a signed top slice, else 0..3.
    product : Out(signed(5))
        ``w * a``, from -6 to 9.
    """

    w: In(signed(3))
    a: In(signed(3))
    product: Out(signed(5))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(brick_product(self.w, self.a))
        return m


class PESignature(wiring.Signature):
    """The ports of a processing element, as an array row strings them together.

    Parameters
    ----------
    operand : shape-like
        Shape of ``w`` and ``a``: :data:`BrickOperands` for a :class:`FusionPE`, a packed
        word for a :class:`FusionMAC`, ``unsigned(8)`` for the plain ``a*b`` PE (a width
        stands for an unsigned shape).
    acc_width : int
        Width of the signed accumulator and ``result``.

    Members
    -------
    w, a : In(operand)
        The step's weight and activation operands.
    control : In(StepControl)
        The step's mode and its ``valid``, ``first`` (the accumulator restarts from this
        step) and ``last`` (the finished sum goes out) flags, and ``w_wide``, the mode's
        weight width decoded (see :data:`StepControl`).
    result : Out(signed(acc_width))
        The finished dot product, ``latency`` cycles after the step with ``last``.
    result_valid : Out(1)
        ``result`` holds a finished dot product (for one cycle).
    forward : Out(StepControl)
        ``control`` registered: the control the next PE along an array row takes, a cycle
        later (each PE keeps its own copy, so no control register is shared along an
        array diagonal).
    """

    def __init__(self, operand, acc_width):
        if isinstance(operand, int):
            operand = unsigned(operand)
        self._operand = operand
        self._acc_width = acc_width
        super().__init__({
            "w":            In(operand),
            "a":            In(operand),
            "control":      In(StepControl),
            "result":       Out(signed(acc_width)),
            "result_valid": Out(1),
            "forward":      Out(StepControl),
        })

    @property
    def operand(self):
        return self._operand

    @property
    def acc_width(self):
        return self._acc_width

    def __eq__(self, other):
        return (type(other) is PESignature and self.operand == other.operand
                and self.acc_width == other.acc_width)

    def __repr__(self):
        return f"PESignature({self._operand!r}, {self._acc_width})"


class FusionPE(wiring.Component):
    """A fusion processing element: a dot product of packed lanes per cycle, accumulated.

    Parameters
    ----------
    precision : "mixed", 2, 4 or 8
        ``"mixed"`` builds the run-time fusible PE (all nine ``w_bits x a_bits``
        modes); 2, 4 or 8 builds a fixed-precision PE of that width for both
        operands, without the fusion steering and shift logic.
    acc_width : int
        Width of the signed accumulator, from :func:`min_acc_width` (17 for ``"mixed"``
        and 8, 16 for 4 and 2: one step of every mode fits) to 64.

    Attributes
    ----------
    w, a : In(BrickOperands)
        Weight and activation slices steered to the bricks by a :class:`SliceSteer`
        (one per array row and column).
    control : In(StepControl)
        The step's mode (a fixed-precision PE reads only the signedness) and flags; a
        mixed PE's first stage reads ``w_wide`` instead of decoding ``mode.w_bits``, so it
        must agree with the mode (the array sets it; :class:`FusionMAC` decodes it itself).
    result, result_valid, forward
        As :class:`PESignature`.

    Raises
    ------
    ValueError
        ``precision`` or ``acc_width`` out of range.
    """

    #: Cycles from a step on the inputs to its effect on ``result``.
    latency = 5
    #: Precisions the PE can be built for.
    precisions = PRECISIONS
    #: Its operands are slices steered to the bricks: an array puts a :class:`SliceSteer` on
    #: every row and column edge.
    steered = True

    def __init__(self, precision="mixed", acc_width=32):
        _check_precision(precision)
        check_acc_width(precision, acc_width)
        self._precision = precision
        self._acc_width = acc_width
        super().__init__(PESignature(BrickOperands, acc_width))

    @property
    def precision(self):
        return self._precision

    @property
    def acc_width(self):
        return self._acc_width

    def elaborate(self, platform):
        m = Module()
        supported = modes(self._precision)
        mode = self.control.mode

        # Which tree levels shift: within a group by 2 for a 4- or 8-bit operand, between
        # groups by 4 for an 8-bit operand (the k0/k1 and k2/k3 bits of the brick number).
        # Each control travels with its step to the stage that uses it, so back-to-back steps
        # of different modes do not disturb each other.
        if len(supported) == 1:
            (w_bits, a_bits), = supported
            w_wide, a_wide, w_full, a_full = w_bits > 2, a_bits > 2, w_bits == 8, a_bits == 8
        else:
            w_wide = self.control.w_wide                                        # stage 1
            a_wide = delay(m, mode.a_bits != BitWidth.B2, 1, "a_wide")          # stage 2
            w_full = delay(m, mode.w_bits == BitWidth.B8, 2, "w_full")          # stage 3
            a_full = delay(m, mode.a_bits == BitWidth.B8, 3, "a_full")          # stage 4

        # Stage 1: bricks and the pairs of the first tree level. Stage 2: the group sums.
        groups = []
        for g in range(4):
            products = []
            for j in range(4):
                k = 4 * g + j
                product = Signal(signed(5), name=f"brick{k}")
                m.d.comb += product.eq(brick_product(self.w[k], self.a[k]))
                products.append(product)
            # Pairs share an activation slice position: p0 + 4^[w wide] p1 (7 bits signed).
            low, high = Signal(signed(7), name=f"low{g}"), Signal(signed(7), name=f"high{g}")
            m.d.sync += [low.eq(products[0] + _shift_if(products[1], w_wide, 2)),
                         high.eq(products[2] + _shift_if(products[3], w_wide, 2))]
            group = Signal(signed(9), name=f"group{g}")
            m.d.sync += group.eq(low + _shift_if(high, a_wide, 2))
            groups.append(group)

        # Stage 3: the pairs of groups. Stage 4: the dot product. One adder per stage from
        # stage 2 on: with both levels in one stage the 8x8 array misses 100 MHz on ECP5.
        low, high = Signal(signed(13)), Signal(signed(13))
        m.d.sync += [low.eq(groups[0] + _shift_if(groups[1], w_full, 4)),
                     high.eq(groups[2] + _shift_if(groups[3], w_full, 4))]
        dot = Signal(signed(18))
        m.d.sync += dot.eq(low + _shift_if(high, a_full, 4))

        # The first control register below is the same as ``forward``; it is not read back
        # from ``forward`` because ABC9 in this yosys fails on a module that reads its own
        # output register (yosys merges the two anyway).
        m.d.sync += self.forward.eq(self.control)

        # Stage 5: the step's flags, carried beside its data through stages 1 to 4 (the mode
        # bits of these registers go unread and synthesis drops them), accumulate the dot
        # product.
        accumulate(m, dot, delay(m, self.control, 4, "control"), self.result,
                   self.result_valid)
        return m


class FusionMAC(wiring.Component):
    """A stand-alone fusion PE: its own slice steering in front of a :class:`FusionPE`.

    In an array, one :class:`SliceSteer` serves a row or column of PEs; alone, the
    PE needs two. Its ports are a :class:`PESignature` of packed words
    (``word_bits(precision)`` wide, lane ``i`` at bits ``[i*b, (i+1)*b)``); latency
    :attr:`FusionPE.latency`.

    Parameters
    ----------
    precision : "mixed", 2, 4 or 8
    acc_width : int
        As :class:`FusionPE`.
    """

    latency = FusionPE.latency

    def __init__(self, precision="mixed", acc_width=32):
        self._pe = FusionPE(precision, acc_width)
        super().__init__(PESignature(unsigned(word_bits(precision)), acc_width))

    @property
    def precision(self):
        return self._pe.precision

    @property
    def acc_width(self):
        return self._pe.acc_width

    def elaborate(self, platform):
        m = Module()
        m.submodules.pe = pe = self._pe
        for operand in ("w", "a"):
            steer = m.submodules[f"steer_{operand}"] = SliceSteer(pe.precision, operand)
            m.d.comb += [steer.mode.eq(self.control.mode), steer.word.eq(getattr(self, operand)),
                         getattr(pe, operand).eq(steer.bricks)]
        m.d.comb += [pe.control.eq(self.control),
                     pe.control.w_wide.eq(weight_wide(self.control.mode)),
                     self.result.eq(pe.result),
                     self.result_valid.eq(pe.result_valid), self.forward.eq(pe.forward)]
        return m
