"""The stream contract (``amaranth.lib.stream``), assumed on inputs and asserted on outputs.

Once ``valid`` is high it stays high, and ``payload`` keeps its value, until the cycle
``ready`` is high. A harness assumes this of the environment on every input stream of an
engine (with any ``valid`` and ``payload`` otherwise) and asserts it on every output stream,
whose ``ready`` it leaves free: any back-pressure.
"""

from amaranth import Signal, Value
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume

__all__ = ["drive_source", "drive_sink"]


def drive_source(m, port, name):
    """Drive input stream ``port`` with any beats that keep the contract."""
    payload = Value.cast(port.payload)
    m.d.comb += [port.valid.eq(AnySeq(1)), payload.eq(AnySeq(len(payload)))]
    was_held = Signal(name=f"{name}_held")
    previous = Signal(len(payload), name=f"{name}_previous")
    m.d.sync += [was_held.eq(port.valid & ~port.ready), previous.eq(payload)]
    m.d.comb += Assume(~was_held | (port.valid & (payload == previous)))


def drive_sink(m, port, name, fault=None):
    """Take output stream ``port`` with any back-pressure and assert that it keeps the contract.

    Returns the signal that is high in the cycles a beat is taken. ``fault`` injects a
    sink mistake: ``"drop_beat"`` takes the first beat offered without counting it;
    ``"unstable_payload"`` flips bit 0 of the payload seen in every other cycle.
    """
    if fault not in (None, "drop_beat", "unstable_payload"):
        raise ValueError(f"fault must be 'drop_beat' or 'unstable_payload', not {fault!r}")
    ready = Signal(name=f"{name}_ready")
    m.d.comb += ready.eq(AnySeq(1))
    counted = ready
    if fault == "drop_beat":
        dropped = Signal(name=f"{name}_dropped")
        m.d.sync += dropped.eq(dropped | port.valid)
        m.d.comb += port.ready.eq(ready | ~dropped)
        counted = ready & dropped
    else:
        m.d.comb += port.ready.eq(ready)
    taken = Signal(name=f"{name}_taken")
    m.d.comb += taken.eq(port.valid & counted)
    payload = Value.cast(port.payload)
    if fault == "unstable_payload":
        toggle = Signal(name=f"{name}_toggle")
        m.d.sync += toggle.eq(~toggle)
        payload = payload ^ toggle
    was_held = Signal(name=f"{name}_held")
    previous = Signal(len(payload), name=f"{name}_previous")
    m.d.sync += [was_held.eq(port.valid & ~port.ready), previous.eq(payload)]
    m.d.comb += Assert(~was_held | (port.valid & (payload == previous)))
    return taken
