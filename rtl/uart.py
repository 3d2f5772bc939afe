"""8N1 UART receiver and transmitter with ``amaranth.lib.stream`` byte interfaces."""

from amaranth import Cat, Module, Signal
from amaranth.lib import cdc, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx"]


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor (clock cycles per bit) must be an integer of at least 4, "
                         f"not {divisor!r}")
    return divisor


class UARTRx(wiring.Component):
    """Receives 8N1 bytes on ``rx``.

    The line is brought into the clock domain by a two-stage
    :class:`~amaranth.lib.cdc.FFSynchronizer`; each bit is sampled in its middle.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (clock frequency / baud rate), at least 4.

    Attributes
    ----------
    rx : In(1)
        The line (idle high), asynchronous to the clock.
    bytes : Out(stream.Signature(8))
        Received bytes. A byte is offered (payload stable, valid held) until the sink takes it.
    overrun : Out(1)
        Pulses for one cycle when a byte ends while the previous one is still not taken; the
        new byte is dropped, the offered one kept.
    framing_error : Out(1)
        Pulses for one cycle when a byte's stop bit is low; the byte is dropped, and the
        receiver waits for the line to go high before it looks for the next start bit.
    """

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "bytes": Out(stream.Signature(8)),
                          "overrun": Out(1), "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.synchronizer = cdc.FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self._divisor * 3 // 2))
        bit = Signal(range(8))
        shift = Signal(8)
        m.d.sync += [self.overrun.eq(0), self.framing_error.eq(0)]
        with m.If(self.bytes.ready):
            m.d.sync += self.bytes.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # Sample each bit in its middle: 1.5 bit times after the start edge.
                    m.d.sync += [timer.eq(self._divisor * 3 // 2 - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), bit.eq(bit + 1),
                                 timer.eq(self._divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(~rx):
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
                with m.Elif(self.bytes.valid & ~self.bytes.ready):
                    m.d.sync += self.overrun.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [self.bytes.payload.eq(shift), self.bytes.valid.eq(1)]
                    m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """Sends 8N1 bytes on ``tx``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Attributes
    ----------
    bytes : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1)
        The line, idle high.
    """

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({"bytes": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        frame = Signal(10)
        bits = Signal(range(11))
        # Ready once the stop bit of the previous byte has lasted its whole bit time.
        m.d.comb += self.bytes.ready.eq((bits == 0) & (timer == 0))
        with m.If(self.bytes.valid & self.bytes.ready):
            m.d.sync += [frame.eq(Cat(0, self.bytes.payload, 1)), bits.eq(10)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(bits != 0):
            m.d.sync += [self.tx.eq(frame[0]), frame.eq(frame >> 1), bits.eq(bits - 1),
                         timer.eq(self._divisor - 1)]
        return m
