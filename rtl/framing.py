"""Request and response frames over a UART: what every host link shares (docs/host-protocol.md).

Request ``A5 command len_lo len_hi payload... crc_lo crc_hi``; response ``5A status len_lo
len_hi payload... crc_lo crc_hi``. The CRC is :data:`FRAME_CRC` (CRC-16/MODBUS) of the bytes
between the sync byte and the CRC. The framing words (sync bytes, headers, statuses, CRC) are
defined here once; each link (:mod:`rtl.hostlink`, :mod:`rtl.accel.link`) defines its commands
and answers, and puts a :class:`Framer` in front of its engine.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import crc, data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.uart import UARTRx, UARTTx

__all__ = ["REQUEST_SYNC", "RESPONSE_SYNC", "FRAME_CRC", "LENGTH_BITS", "Status",
           "request_header", "ResponseHeader", "Answer", "payload_byte", "Framer"]

REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A
#: Width of a frame's length field: a payload is at most 65535 bytes.
LENGTH_BITS = 16

#: The frame check: CRC-16/MODBUS (polynomial 0x8005, initial value 0xFFFF, reflected, no final
#: XOR), the CRC of a UART protocol, sent low byte first as it is computed. Over frames of at
#: most a few hundred bytes it detects every error of 1 to 3 bits, every odd number of flipped
#: bits and every burst of up to 16 bits; its initial value makes leading zero bytes count.
FRAME_CRC = crc.catalog.CRC16_MODBUS()


class Status(enum.Enum, shape=8):
    """Response codes of every link (docs/host-protocol.md); each link answers a subset."""
    OK = 0
    BAD_CRC = 1
    BAD_COMMAND = 2
    BAD_LENGTH = 3
    TIMEOUT = 4
    EMPTY = 5
    GARBAGE = 6
    BUSY = 7
    FRAMING_ERROR = 8
    OVERRUN = 9
    REJECTED = 10
    FAULT = 11          #: the accelerator's program stopped on an error
    BAD_ARGUMENT = 12   #: a request names a memory, width or word range the board does not have


def request_header(command):
    """The four bytes that open a request to a link whose commands are the enum ``command``."""
    return data.StructLayout({"sync": 8, "command": command, "length": LENGTH_BITS})


#: The four bytes that open a response.
ResponseHeader = data.StructLayout({"sync": 8, "status": Status, "length": LENGTH_BITS})
#: What a link answers an executed request with: a status and the payload bytes that follow.
Answer = data.StructLayout({"status": Status, "length": LENGTH_BITS})


def payload_byte(max_length):
    """A payload byte of a request as it arrives, with its position in a payload of at most
    ``max_length`` bytes."""
    return data.StructLayout({"data": 8, "index": range(max_length)})


class Framer(wiring.Component):
    """Receives request frames and sends response frames on a UART, for a link to execute.

    The framer answers every frame that is not a well-formed request by itself: after bytes
    outside a frame, a length above ``max_length``, a byte with a low stop bit or a byte lost
    to overrun, it discards what arrives until the line has been quiet for ``timeout`` cycles
    and then answers ``GARBAGE``, ``BAD_LENGTH``, ``FRAMING_ERROR`` or ``OVERRUN``; a frame
    that stops arriving for ``timeout`` cycles is answered ``TIMEOUT``; a complete frame is
    checked in the order CRC (``BAD_CRC``), command (``BAD_COMMAND``, a code outside
    ``command``), length (``BAD_LENGTH``, ``length_ok`` low). A frame that passes is the
    link's to execute: ``execute`` is high until the link gives its ``answer``, whose payload
    bytes the framer then takes from ``answer_data`` one by one as they are sent.

    Parameters
    ----------
    command : enum.Enum
        The link's commands (shape 8).
    divisor : int
        Clock cycles per UART bit (clock / baud), at least 4.
    max_length : int
        The longest request payload of any command, 1..65535 bytes.
    max_answer : int
        The longest answer payload, 1..65535 bytes.
    timeout : int, optional
        Cycles of silence that end a frame early; by default 40 bit times.

    Attributes
    ----------
    rx : In(1)
        UART line from the host.
    tx : Out(1)
        UART line to the host.
    request : Out(request_header(command))
        The header of the request being received or executed (valid from its last byte on).
    payload : Out(stream.Signature(payload_byte(max_length)))
        The request's payload bytes as they arrive, before the CRC is checked; holding
        ``ready`` low holds the UART (for less than a byte time, or the next byte overruns).
    length_ok : In(1)
        ``request.length`` is right for ``request.command`` (read once the frame is in).
    execute : Out(1)
        A checked request waits for its answer.
    answer : In(stream.Signature(Answer))
        The answer to the request being executed; taken while ``execute`` is high.
    answer_data : In(stream.Signature(8))
        The answer's payload bytes; one is taken each time one is sent.
    answer_index : Out(range(max_answer))
        The position in the answer's payload of the byte ``answer_data`` should offer.
    host_sending : Out(1)
        While ``execute`` is high: a byte (or a line error) has arrived, so the host is no
        longer waiting for the answer.
    """

    def __init__(self, command, divisor, max_length, max_answer, timeout=None):
        self._uart_rx = UARTRx(divisor)
        self._uart_tx = UARTTx(divisor)
        for name, value in (("max_length", max_length), ("max_answer", max_answer)):
            if not isinstance(value, int) or not 1 <= value < 1 << LENGTH_BITS:
                raise ValueError(f"{name} must be between 1 and {(1 << LENGTH_BITS) - 1} "
                                 f"bytes, not {value!r}")
        if timeout is None:
            timeout = 40 * divisor
        if not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"timeout must be a positive number of cycles, not {timeout!r}")
        self._command = command
        self._max_length = max_length
        self._max_answer = max_answer
        self._timeout = timeout
        super().__init__({
            "rx":           In(1, init=1),
            "tx":           Out(1),
            "request":      Out(request_header(command)),
            "payload":      Out(stream.Signature(payload_byte(max_length))),
            "length_ok":    In(1),
            "execute":      Out(1),
            "answer":       In(stream.Signature(Answer)),
            "answer_data":  In(stream.Signature(8)),
            "answer_index": Out(range(max_answer)),
            "host_sending": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = self._uart_rx
        m.submodules.uart_tx = uart_tx = self._uart_tx
        m.submodules.crc = check = FRAME_CRC.create()
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]

        rx_byte = uart_rx.bytes.payload
        got = uart_rx.bytes.valid & uart_rx.bytes.ready
        sent = uart_tx.bytes.valid & uart_tx.bytes.ready
        request = self.request
        count = Signal(range(max(self._max_length, 4)))
        silence = Signal(range(self._timeout + 1))
        framing, overrun = Signal(), Signal()     # a line error seen since the last answer

        # The answer: header, payload bytes (from answer_data), CRC low, high.
        response = Signal(ResponseHeader)
        position = Signal(range(self._max_answer + 6))
        in_payload = (position >= 4) & (position < 4 + response.length)
        m.d.comb += [response.sync.eq(RESPONSE_SYNC),
                     self.answer_index.eq((position - 4)[:len(self.answer_index)]),
                     self.answer_data.ready.eq(in_payload & sent)]
        byte = Signal(8)
        with m.If(position < 4):
            m.d.comb += byte.eq(response.as_value().word_select(position[:2], 8))
        with m.Elif(in_payload):
            m.d.comb += byte.eq(self.answer_data.payload)
        with m.Elif(position == 4 + response.length):
            m.d.comb += byte.eq(check.crc[:8])
        with m.Else():
            m.d.comb += byte.eq(check.crc[8:])
        m.d.comb += uart_tx.bytes.payload.eq(byte)

        def answer(status, length=0):
            m.d.sync += [response.status.eq(status), response.length.eq(length),
                         position.eq(0)]
            m.next = "ANSWER"

        def drain(status):
            m.d.sync += [response.status.eq(status), silence.eq(0)]
            m.next = "DRAIN"

        def receive(ready=1):
            """In a frame: take the next byte; a line error or silence ends the frame."""
            m.d.comb += [uart_rx.bytes.ready.eq(ready), check.valid.eq(got),
                         check.data.eq(rx_byte)]
            with m.If(framing | overrun):
                drain(Mux(framing, Status.FRAMING_ERROR, Status.OVERRUN))
            with m.Elif(got):
                m.d.sync += silence.eq(0)
            with m.Elif(silence == self._timeout):
                answer(Status.TIMEOUT)
            with m.Else():
                m.d.sync += silence.eq(silence + 1)

        with m.FSM() as fsm:
            with m.State("SYNC"):
                m.d.comb += [uart_rx.bytes.ready.eq(1), check.start.eq(1)]
                with m.If(framing | overrun):
                    drain(Mux(framing, Status.FRAMING_ERROR, Status.OVERRUN))
                with m.Elif(got & (rx_byte == REQUEST_SYNC)):
                    m.d.sync += [count.eq(1), silence.eq(0)]
                    m.next = "HEADER"
                with m.Elif(got):
                    drain(Status.GARBAGE)
            with m.State("HEADER"):
                receive()
                with m.If(got):
                    m.d.sync += [request.as_value().word_select(count[:2], 8).eq(rx_byte),
                                 count.eq(count + 1)]
                    with m.If(count == 3):
                        length = Cat(request.length[:8], rx_byte)
                        m.d.sync += count.eq(0)
                        with m.If(length > self._max_length):
                            drain(Status.BAD_LENGTH)
                        with m.Elif(length == 0):
                            m.next = "CRC"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.payload.valid.eq(uart_rx.bytes.valid),
                             self.payload.payload.data.eq(rx_byte),
                             self.payload.payload.index.eq(count[:len(self.payload.payload.index)])]
                receive(self.payload.ready)
                with m.If(got):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count + 1 == request.length):
                        m.d.sync += count.eq(0)
                        m.next = "CRC"
            with m.State("CRC"):
                receive()
                with m.If(got):
                    m.d.sync += count.eq(1)
                    with m.If(count == 1):
                        m.next = "CHECK"
            with m.State("CHECK"):
                known = Cat(request.command.as_value() == c.value for c in self._command)
                with m.If(~check.match_detected):
                    answer(Status.BAD_CRC)
                with m.Elif(~known.any()):
                    answer(Status.BAD_COMMAND)
                with m.Elif(~self.length_ok):
                    answer(Status.BAD_LENGTH)
                with m.Else():
                    m.next = "EXECUTE"
            with m.State("EXECUTE"):
                m.d.comb += [self.execute.eq(1), self.answer.ready.eq(1),
                             self.host_sending.eq(uart_rx.bytes.valid | framing | overrun)]
                with m.If(self.answer.valid):
                    answer(self.answer.payload.status, self.answer.payload.length)
            with m.State("DRAIN"):
                # Discard bytes until the line is quiet, then answer the status set on entry.
                m.d.comb += uart_rx.bytes.ready.eq(1)
                with m.If(got | uart_rx.framing_error):
                    m.d.sync += silence.eq(0)
                with m.Elif(silence == self._timeout):
                    m.d.sync += [framing.eq(0), overrun.eq(0)]
                    answer(response.status)
                with m.Else():
                    m.d.sync += silence.eq(silence + 1)
            with m.State("ANSWER"):
                m.d.comb += [uart_tx.bytes.valid.eq(~in_payload | self.answer_data.valid),
                             check.start.eq(position == 0),
                             check.valid.eq(sent & (position != 0)
                                            & (position < 4 + response.length)),
                             check.data.eq(byte)]
                with m.If(sent):
                    m.d.sync += position.eq(position + 1)
                    with m.If(position == 5 + response.length):
                        m.next = "SYNC"

        with m.If(~fsm.ongoing("DRAIN")):
            with m.If(uart_rx.framing_error):
                m.d.sync += framing.eq(1)
            with m.If(uart_rx.overrun):
                m.d.sync += overrun.eq(1)
        return m
