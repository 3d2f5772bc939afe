"""UART host link: a framed byte protocol in front of a systolic array (docs/host-protocol.md).

Request ``A5 command len_lo len_hi payload... crc_lo crc_hi``; response ``5A status len_lo
len_hi payload... crc_lo crc_hi``. The CRC is :data:`FRAME_CRC` (CRC-16/MODBUS) of the bytes
between the sync byte and the CRC. Every word of the protocol is defined here, once: the
headers, the command and status codes, the IDENTIFY and COUNTERS answers; ``boards/host.py``
builds and reads them through these definitions.
"""

from amaranth import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import crc, data, enum, wiring
from amaranth.lib.wiring import In, Out

from rtl.systolic import ArrayConfig, operand_layout
from rtl.uart import UARTRx, UARTTx

__all__ = ["Command", "Status", "RequestHeader", "ResponseHeader", "Identity", "Counters",
           "REQUEST_SYNC", "RESPONSE_SYNC", "FRAME_CRC", "CONFIG_BYTES", "step_layout",
           "HostLink"]

REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A

#: The frame check: CRC-16/MODBUS (polynomial 0x8005, initial value 0xFFFF, reflected, no final
#: XOR), the CRC of a UART protocol, sent low byte first as it is computed. Over frames of at
#: most a few hundred bytes it detects every error of 1 to 3 bits, every odd number of flipped
#: bits and every burst of up to 16 bits; its initial value makes leading zero bytes count.
FRAME_CRC = crc.catalog.CRC16_MODBUS()


class Command(enum.Enum, shape=8):
    """Request codes (docs/host-protocol.md)."""
    IDENTIFY = 0x00   #: -> an :data:`Identity`
    CONFIG = 0x01     #: :data:`CONFIG_BYTES` bytes: an ``ArrayConfig``, little-endian
    STEP = 0x02       #: a :func:`step_layout`: activation words, then weight words
    READ = 0x03       #: -> one result beat, drain_rows * cols * acc/8 bytes
    COUNTERS = 0x04   #: -> :data:`Counters`
    RESET = 0x05      #: reset the array: no configuration, no steps, no results, no error


class Status(enum.Enum, shape=8):
    """Response codes (docs/host-protocol.md)."""
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


#: The four bytes that open a request.
RequestHeader = data.StructLayout({"sync": 8, "command": Command, "length": 16})
#: The four bytes that open a response.
ResponseHeader = data.StructLayout({"sync": 8, "status": Status, "length": 16})
#: The IDENTIFY answer; ``precision`` is 0 for a mixed-precision array, else its bit width.
Identity = data.StructLayout({"rows": 8, "cols": 8, "word_bits": 8, "acc_width": 8,
                              "drain_rows": 8, "precision": 8})
#: The COUNTERS answer: cycles since reset, steps taken, result beats taken.
Counters = data.StructLayout({"cycles": 32, "steps": 32, "beats": 32})
#: Payload bytes of CONFIG: the configuration word, its top bits zero.
CONFIG_BYTES = (ArrayConfig.size + 7) // 8


def step_layout(rows, cols, word_bits):
    """The STEP payload of a ``rows x cols`` array: its ``act`` words, then its ``wgt`` words."""
    return data.StructLayout({"act": operand_layout(word_bits, rows),
                              "wgt": operand_layout(word_bits, cols)})


class HostLink(wiring.Component):
    """A :class:`~rtl.systolic.SystolicArray` driven over a UART.

    Commands never block: a step or a configuration the array cannot take now is answered
    ``BUSY``, a read with no result ``EMPTY``, a configuration the array takes and drops
    (``k_steps`` or ``tiles`` 0, ``k_steps`` over its bound) ``REJECTED``. ``RESET`` resets
    the array through a :class:`~amaranth.hdl.ResetInserter`: whatever it was running, it
    is then idle, without results and without ``error``. A frame that stops arriving for
    ``timeout`` cycles is answered ``TIMEOUT``. After bytes outside a frame, a length too
    large for any request, a byte with a low stop bit or a byte lost to overrun, the link
    discards what arrives until the line has been quiet for ``timeout`` cycles and then
    answers ``GARBAGE``, ``BAD_LENGTH``, ``FRAMING_ERROR`` or ``OVERRUN``.

    A result beat is sent byte by byte straight from the array's result stream and taken
    when its last byte is sent; the only payload buffer holds one request (a step, at
    least) or the counters being answered.

    Parameters
    ----------
    array : SystolicArray
        The engine; its word and accumulator widths must be whole bytes.
    divisor : int
        Clock cycles per UART bit (clock / baud), at least 4.
    timeout : int, optional
        Cycles of silence that end a frame early; by default 40 bit times.

    Attributes
    ----------
    rx : In(1)
        UART line from the host.
    tx : Out(1)
        UART line to the host.
    """

    def __init__(self, array, divisor, timeout=None):
        if array.word_bits % 8 or array.acc_width % 8:
            raise ValueError(f"the host link needs byte-sized words and accumulators, not "
                             f"{array.word_bits} and {array.acc_width} bits")
        self._array = array
        self._divisor = divisor
        self._uart_rx = UARTRx(divisor)
        self._uart_tx = UARTTx(divisor)
        if timeout is None:
            timeout = 40 * divisor
        if not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"timeout must be a positive number of cycles, not {timeout!r}")
        self._timeout = timeout
        self._step = step_layout(array.rows, array.cols, array.word_bits)
        self.step_bytes = self._step.size // 8
        self.result_bytes = array.drain_rows * array.cols * array.acc_width // 8
        super().__init__({"rx": In(1, init=1), "tx": Out(1)})

    @property
    def divisor(self):
        """Clock cycles per UART bit."""
        return self._divisor

    @property
    def identity(self):
        """The IDENTIFY answer, an :data:`Identity` constant."""
        array = self._array
        return Identity.const({
            "rows": array.rows, "cols": array.cols, "word_bits": array.word_bits,
            "acc_width": array.acc_width, "drain_rows": array.drain_rows,
            "precision": 0 if array.precision == "mixed" else array.precision})

    def elaborate(self, platform):
        m = Module()
        array = self._array
        # A register, set for one cycle after RESET executes (while the answer goes out): the
        # reset reaches every register of the array, so no command decoding sits before it.
        reset_array = Signal()
        m.d.sync += reset_array.eq(0)
        m.submodules.array = ResetInserter(reset_array)(array)
        m.submodules.uart_rx = uart_rx = self._uart_rx
        m.submodules.uart_tx = uart_tx = self._uart_tx
        m.submodules.crc = check = FRAME_CRC.create()
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]

        max_request = max(self.step_bytes, CONFIG_BYTES)
        max_answer = max(self.result_bytes, Identity.size // 8, Counters.size // 8)
        rx_byte = uart_rx.bytes.payload
        got = uart_rx.bytes.valid & uart_rx.bytes.ready
        sent = uart_tx.bytes.valid & uart_tx.bytes.ready

        request = Signal(RequestHeader)
        count = Signal(range(max(max_request, 4)))
        # Request payload; the COUNTERS answer is a snapshot taken into it.
        payload = Signal(8 * max(max_request, Counters.size // 8))
        silence = Signal(range(self._timeout + 1))
        framing, overrun = Signal(), Signal()     # a line error seen since the last answer

        counters = Signal(Counters)
        m.d.sync += counters.cycles.eq(counters.cycles + 1)
        with m.If(array.act.valid & array.act.ready):
            m.d.sync += counters.steps.eq(counters.steps + 1)
        with m.If(array.result.valid & array.result.ready):
            m.d.sync += counters.beats.eq(counters.beats + 1)

        # The answer: header, payload bytes (from the source its command names), CRC low, high.
        response = Signal(ResponseHeader)
        position = Signal(range(max_answer + 6))
        m.d.comb += response.sync.eq(RESPONSE_SYNC)
        index = (position - 4)[:len(position)]
        byte = Signal(8)
        with m.If(position < 4):
            m.d.comb += byte.eq(response.as_value().word_select(position[:2], 8))
        with m.Elif(position < 4 + response.length):
            with m.Switch(request.command):
                with m.Case(Command.IDENTIFY):
                    m.d.comb += byte.eq(Const(self.identity.as_bits(), Identity.size)
                                        .word_select(index, 8))
                with m.Case(Command.READ):
                    m.d.comb += byte.eq(array.result.payload.as_value().word_select(index, 8))
                with m.Case(Command.COUNTERS):
                    m.d.comb += byte.eq(payload.word_select(index, 8))
        with m.Elif(position == 4 + response.length):
            m.d.comb += byte.eq(check.crc[:8])
        with m.Else():
            m.d.comb += byte.eq(check.crc[8:])
        m.d.comb += uart_tx.bytes.payload.eq(byte)

        expected = Signal(range(max_request + 1))
        with m.Switch(request.command):
            with m.Case(Command.CONFIG):
                m.d.comb += expected.eq(CONFIG_BYTES)
            with m.Case(Command.STEP):
                m.d.comb += expected.eq(self.step_bytes)

        def answer(status, length=0):
            m.d.sync += [response.status.eq(status), response.length.eq(length),
                         position.eq(0)]
            m.next = "ANSWER"

        def drain(status):
            m.d.sync += [response.status.eq(status), silence.eq(0)]
            m.next = "DRAIN"

        def receive():
            """In a frame: take the next byte; a line error or silence ends the frame."""
            m.d.comb += [uart_rx.bytes.ready.eq(1), check.valid.eq(got), check.data.eq(rx_byte)]
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
                        with m.If(length > max_request):
                            drain(Status.BAD_LENGTH)
                        with m.Elif(length == 0):
                            m.next = "CRC"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                receive()
                with m.If(got):
                    m.d.sync += [payload.word_select(count, 8).eq(rx_byte), count.eq(count + 1)]
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
                with m.If(~check.match_detected):
                    answer(Status.BAD_CRC)
                with m.Elif(~Cat(request.command.as_value() == c.value for c in Command).any()):
                    answer(Status.BAD_COMMAND)
                with m.Elif(request.length != expected):
                    answer(Status.BAD_LENGTH)
                with m.Else():
                    m.next = "EXECUTE"
            with m.State("EXECUTE"):
                with m.Switch(request.command):
                    with m.Case(Command.IDENTIFY):
                        answer(Status.OK, Identity.size // 8)
                    with m.Case(Command.CONFIG):
                        m.d.comb += [array.config.payload.eq(payload[:ArrayConfig.size]),
                                     array.config.valid.eq(1)]
                        with m.If(array.config.ready):
                            m.next = "CONFIGURED"
                        with m.Else():
                            answer(Status.BUSY)
                    with m.Case(Command.STEP):
                        step = self._step(payload[:self._step.size])
                        m.d.comb += [array.act.payload.eq(step.act),
                                     array.wgt.payload.eq(step.wgt),
                                     array.act.valid.eq(1), array.wgt.valid.eq(1)]
                        answer(Mux(array.act.ready, Status.OK, Status.BUSY))
                    with m.Case(Command.READ):
                        with m.If(array.result.valid):
                            answer(Status.OK, self.result_bytes)
                        with m.Else():
                            answer(Status.EMPTY)
                    with m.Case(Command.COUNTERS):
                        m.d.sync += payload[:Counters.size].eq(counters)
                        answer(Status.OK, Counters.size // 8)
                    with m.Case(Command.RESET):
                        m.d.sync += reset_array.eq(1)
                        answer(Status.OK)
            with m.State("CONFIGURED"):
                # The array has taken the configuration: one it keeps makes it busy (no step is
                # offered, so config is not ready); one it drops leaves it idle with error set.
                answer(Mux(array.config.ready & array.error, Status.REJECTED, Status.OK))
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
                m.d.comb += [uart_tx.bytes.valid.eq(1), check.start.eq(position == 0),
                             check.valid.eq(sent & (position != 0)
                                            & (position < 4 + response.length)),
                             check.data.eq(byte)]
                with m.If(sent):
                    m.d.sync += position.eq(position + 1)
                    with m.If((request.command == Command.READ) & (response.status == Status.OK)
                              & (position == 3 + response.length)):
                        m.d.comb += array.result.ready.eq(1)     # its last byte is sent
                    with m.If(position == 5 + response.length):
                        m.next = "SYNC"

        with m.If(~fsm.ongoing("DRAIN")):
            with m.If(uart_rx.framing_error):
                m.d.sync += framing.eq(1)
            with m.If(uart_rx.overrun):
                m.d.sync += overrun.eq(1)
        return m
