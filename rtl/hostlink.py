"""UART host link: a framed byte protocol in front of a systolic array (docs/host-protocol.md).

Request ``A5 cmd len_lo len_hi payload... chk``; response ``5A status len_lo len_hi payload...
chk``; in both, the bytes after the sync byte, checksum included, sum to 0 modulo 256.
Commands never block: a step or a configuration the array cannot take now is answered
``BUSY``, a read with no result ``EMPTY``. A frame that stops arriving for ``timeout``
cycles is answered ``TIMEOUT``; bytes outside a frame get one ``GARBAGE`` answer per run.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from rtl.uart import UARTRx, UARTTx

__all__ = ["Command", "Status", "HostLink", "REQUEST_SYNC", "RESPONSE_SYNC"]

REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A


class Command(enum.Enum, shape=8):
    IDENTIFY = 0x00   #: -> rows, cols, word bits, accumulator bits, drain rows, precision
    CONFIG = 0x01     #: 5 bytes: the array's configuration word, little-endian
    STEP = 0x02       #: (rows + cols) * word/8 bytes: activation words, then weight words
    READ = 0x03       #: -> one result beat, drain_rows * cols * acc/8 bytes
    COUNTERS = 0x04   #: -> cycles, steps taken, result beats taken: 3 x 4 bytes


class Status(enum.Enum, shape=8):
    OK = 0
    BAD_CHECKSUM = 1
    BAD_COMMAND = 2
    BAD_LENGTH = 3
    TIMEOUT = 4
    EMPTY = 5
    GARBAGE = 6
    BUSY = 7


class HostLink(wiring.Component):
    """A :class:`~rtl.systolic.SystolicArray` driven over a UART.

    Parameters
    ----------
    array : SystolicArray
        The engine; its word and accumulator widths must be whole bytes.
    divisor : int
        Clock cycles per UART bit (clock / baud).
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
        self._timeout = timeout or 40 * divisor
        self.step_bytes = (array.rows + array.cols) * array.word_bits // 8
        self.result_bytes = array.drain_rows * array.cols * array.acc_width // 8
        super().__init__({"rx": In(1, init=1), "tx": Out(1)})

    @property
    def identity(self):
        """The IDENTIFY answer."""
        array = self._array
        code = 0 if array.precision == "mixed" else array.precision
        return bytes([array.rows, array.cols, array.word_bits, array.acc_width,
                      array.drain_rows, code])

    def elaborate(self, platform):
        m = Module()
        array = self._array
        m.submodules.array = array
        m.submodules.uart_rx = uart_rx = UARTRx(self._divisor)
        m.submodules.uart_tx = uart_tx = UARTTx(self._divisor)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]

        max_payload = max(self.step_bytes, self.result_bytes, 12, 5)
        rx_byte = uart_rx.bytes.payload
        got = uart_rx.bytes.valid & uart_rx.bytes.ready

        command = Signal(8)
        length = Signal(16)
        count = Signal(16)
        checksum = Signal(8)
        payload = Signal(8 * max_payload)
        silence = Signal(range(self._timeout + 1))
        quiet_garbage = Signal()         # a GARBAGE answer was already given for this run

        # Counters.
        cycles, steps, beats = Signal(32), Signal(32), Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(array.act.valid & array.act.ready):
            m.d.sync += steps.eq(steps + 1)
        with m.If(array.result.valid & array.result.ready):
            m.d.sync += beats.eq(beats + 1)

        # The answer: status, payload bytes, then the checksum.
        status = Signal(Status)
        answer = Signal(8 * max_payload)
        answer_length = Signal(16)
        sent = Signal(17)
        answer_sum = Signal(8)
        header = Cat(Const(RESPONSE_SYNC, 8), status, answer_length)
        position = Signal(17)
        m.d.comb += position.eq(sent)
        byte = Signal(8)
        with m.If(position < 4):
            m.d.comb += byte.eq(header.word_select(position[:2], 8))
        with m.Elif(position < 4 + answer_length):
            m.d.comb += byte.eq(answer.word_select((position - 4)[:16], 8))
        with m.Else():
            m.d.comb += byte.eq(-answer_sum)
        m.d.comb += uart_tx.bytes.payload.eq(byte)

        expected = Signal(16)
        with m.Switch(command):
            with m.Case(Command.CONFIG):
                m.d.comb += expected.eq(5)
            with m.Case(Command.STEP):
                m.d.comb += expected.eq(self.step_bytes)
            with m.Default():
                m.d.comb += expected.eq(0)

        def answer_with(code, data=None, data_length=0):
            m.d.sync += [status.eq(code), answer_length.eq(data_length), sent.eq(0),
                         answer_sum.eq(0)]
            if data is not None:
                m.d.sync += answer.eq(data)
            m.next = "ANSWER"

        def receive():
            """In a frame: take the next byte; answer TIMEOUT if it does not come."""
            m.d.comb += uart_rx.bytes.ready.eq(1)
            with m.If(got):
                m.d.sync += silence.eq(0)
            with m.Elif(silence == self._timeout):
                answer_with(Status.TIMEOUT)
            with m.Else():
                m.d.sync += silence.eq(silence + 1)

        with m.FSM():
            with m.State("SYNC"):
                m.d.comb += uart_rx.bytes.ready.eq(1)
                with m.If(got):
                    with m.If(rx_byte == REQUEST_SYNC):
                        m.d.sync += [checksum.eq(0), count.eq(0), silence.eq(0),
                                     quiet_garbage.eq(0)]
                        m.next = "COMMAND"
                    with m.Elif(~quiet_garbage):
                        m.d.sync += quiet_garbage.eq(1)
                        answer_with(Status.GARBAGE)
            with m.State("COMMAND"):
                receive()
                with m.If(got):
                    m.d.sync += [command.eq(rx_byte), checksum.eq(checksum + rx_byte)]
                    m.next = "LENGTH_LOW"
            with m.State("LENGTH_LOW"):
                receive()
                with m.If(got):
                    m.d.sync += [length[:8].eq(rx_byte), checksum.eq(checksum + rx_byte)]
                    m.next = "LENGTH_HIGH"
            with m.State("LENGTH_HIGH"):
                receive()
                with m.If(got):
                    m.d.sync += [length[8:].eq(rx_byte), checksum.eq(checksum + rx_byte)]
                    with m.If(Cat(length[:8], rx_byte) > max_payload):
                        m.d.sync += quiet_garbage.eq(1)
                        answer_with(Status.BAD_LENGTH)
                    with m.Elif(Cat(length[:8], rx_byte) == 0):
                        m.next = "CHECKSUM"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                receive()
                with m.If(got):
                    m.d.sync += [payload.word_select(count[:8], 8).eq(rx_byte),
                                 checksum.eq(checksum + rx_byte), count.eq(count + 1)]
                    with m.If(count + 1 == length):
                        m.next = "CHECKSUM"
            with m.State("CHECKSUM"):
                receive()
                with m.If(got):
                    with m.If((checksum + rx_byte)[:8] != 0):
                        answer_with(Status.BAD_CHECKSUM)
                    with m.Elif(~Cat(command == c.value for c in Command).any()):
                        answer_with(Status.BAD_COMMAND)
                    with m.Elif(length != expected):
                        answer_with(Status.BAD_LENGTH)
                    with m.Else():
                        m.next = "EXECUTE"
            with m.State("EXECUTE"):
                with m.Switch(command):
                    with m.Case(Command.IDENTIFY):
                        answer_with(Status.OK, int.from_bytes(self.identity, "little"),
                                    len(self.identity))
                    with m.Case(Command.CONFIG):
                        m.d.comb += [array.config.payload.eq(payload),
                                     array.config.valid.eq(1)]
                        answer_with(Mux(array.config.ready, Status.OK, Status.BUSY))
                    with m.Case(Command.STEP):
                        act_bits = array.rows * array.word_bits
                        m.d.comb += [array.act.payload.eq(payload[:act_bits]),
                                     array.wgt.payload.eq(payload[act_bits:]),
                                     array.act.valid.eq(1), array.wgt.valid.eq(1)]
                        answer_with(Mux(array.act.ready, Status.OK, Status.BUSY))
                    with m.Case(Command.READ):
                        m.d.comb += array.result.ready.eq(1)
                        with m.If(array.result.valid):
                            answer_with(Status.OK, array.result.payload, self.result_bytes)
                        with m.Else():
                            answer_with(Status.EMPTY)
                    with m.Case(Command.COUNTERS):
                        answer_with(Status.OK, Cat(cycles, steps, beats), 12)
            with m.State("ANSWER"):
                m.d.comb += uart_tx.bytes.valid.eq(1)
                with m.If(uart_tx.bytes.ready):
                    m.d.sync += sent.eq(sent + 1)
                    with m.If(sent != 0):
                        m.d.sync += answer_sum.eq(answer_sum + byte)
                    with m.If(sent == 4 + answer_length):
                        m.next = "SYNC"
        return m
