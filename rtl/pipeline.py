"""Small pipeline pieces every engine builds from: delay lines, priority encoders, accumulators.

They are functions that add logic to the caller's :class:`~amaranth.hdl.Module` rather than
components, so the registers they make keep the caller's names (``name_0``, ``name_1``, ...)
and yosys sees them inside the module that uses them.
"""

from amaranth import Mux, Signal

__all__ = ["delay", "lowest_set", "accumulate", "next_bank"]


def delay(m, value, cycles, name):
    """``value`` delayed by ``cycles`` registers in ``m.d.sync``.

    Parameters
    ----------
    m : Module
        Where the registers go.
    value : Value-like
        What is delayed; the registers take its shape (a layout stays a layout).
    cycles : int
        Registers in the line, 0 or more (0 returns ``value`` itself).
    name : str
        Register ``i`` is named ``f"{name}_{i}"``.

    Returns
    -------
    Value-like
        The last register of the line.
    """
    if not isinstance(cycles, int) or cycles < 0:
        raise ValueError(f"cycles must be a whole number 0 or more, not {cycles!r}")
    for i in range(cycles):
        stage = Signal(value.shape(), name=f"{name}_{i}")
        m.d.sync += stage.eq(value)
        value = stage
    return value


def lowest_set(m, bits, name):
    """Priority encoder: the index of the lowest set bit of ``bits`` (0 when none is set).

    Parameters
    ----------
    m : Module
        Where the encoder's logic goes (``m.d.comb``).
    bits : Value
        The request bits, bit 0 the highest priority.
    name : str
        Name of the index signal.

    Returns
    -------
    Signal(range(len(bits)))
        The index; pair it with ``bits.any()`` to know whether it is meaningful.
    """
    index = Signal(range(max(len(bits), 2)), name=name)
    for i in reversed(range(len(bits))):
        with m.If(bits[i]):
            m.d.comb += index.eq(i)
    return index


def accumulate(m, term, control, result, result_valid, name="acc"):
    """The accumulate stage of a processing element.

    On a valid step the accumulator becomes ``term`` (on a ``first`` step) or its value plus
    ``term``; on a ``last`` step the new sum also goes to ``result`` and ``result_valid`` is
    high for one cycle, a cycle later.

    Parameters
    ----------
    m : Module
    term : Value
        The step's contribution (a dot product of the step's lanes).
    control : View of StepControl
        The step's ``valid``, ``first`` and ``last`` flags, aligned with ``term``.
    result, result_valid : Signal
        Registered outputs: the finished sum (its shape is the accumulator's), and its
        one-cycle valid.
    name : str
        Name of the accumulator register.
    """
    acc = Signal(result.shape(), name=name)
    total = Signal(result.shape(), name=f"{name}_next")
    m.d.comb += total.eq(Mux(control.first, 0, acc) + term)
    m.d.sync += result_valid.eq(control.valid & control.last)
    with m.If(control.valid):
        m.d.sync += acc.eq(total)
        with m.If(control.last):
            m.d.sync += result.eq(total)
    return acc


def next_bank(m, bank, banks, base, stride):
    """Step ``bank`` (0 .. ``banks - 1``) on by one in ``m.d.sync``; after the last it wraps to
    0 and ``base`` moves on by ``stride``: the next image, when ``banks`` images share each
    word address (the accelerator's scratchpad and result memory)."""
    with m.If(bank == banks - 1):
        m.d.sync += [bank.eq(0), base.eq(base + stride)]
    with m.Else():
        m.d.sync += bank.eq(bank + 1)
