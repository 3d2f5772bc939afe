"""UART host link: a framed byte protocol in front of a systolic array (docs/host-protocol.md).

The frames, their CRC and the status codes are :mod:`rtl.framing`'s, shared with the
accelerator's link. Every word of this link is defined here, once: the request header, the
command codes, the IDENTIFY and COUNTERS answers; ``boards/host.py`` builds and reads them
through these definitions.
"""

from amaranth import Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from rtl.framing import (FRAME_CRC, REQUEST_SYNC, RESPONSE_SYNC, Framer, ResponseHeader, Status,
                         request_header)
from rtl.systolic import ArrayConfig, operand_layout

__all__ = ["Command", "Status", "RequestHeader", "ResponseHeader", "Identity", "Counters",
           "REQUEST_SYNC", "RESPONSE_SYNC", "FRAME_CRC", "CONFIG_BYTES", "step_layout",
           "HostLink"]


class Command(enum.Enum, shape=8):
    """Request codes (docs/host-protocol.md)."""
    IDENTIFY = 0x00   #: -> an :data:`Identity`
    CONFIG = 0x01     #: :data:`CONFIG_BYTES` bytes: an ``ArrayConfig``, little-endian
    STEP = 0x02       #: a :func:`step_layout`: activation words, then weight words
    READ = 0x03       #: -> one result beat, drain_rows * cols * acc/8 bytes
    COUNTERS = 0x04   #: -> :data:`Counters`
    RESET = 0x05      #: reset the array: no configuration, no steps, no results, no error


#: The four bytes that open a request.
RequestHeader = request_header(Command)
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
        self._step = step_layout(array.rows, array.cols, array.word_bits)
        self.step_bytes = self._step.size // 8
        self.result_bytes = array.drain_rows * array.cols * array.acc_width // 8
        self._framer = Framer(Command, divisor, max(self.step_bytes, CONFIG_BYTES),
                              max(self.result_bytes, Identity.size // 8, Counters.size // 8),
                              timeout)
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
        m.submodules.framer = framer = self._framer
        m.d.comb += [framer.rx.eq(self.rx), self.tx.eq(framer.tx)]
        request = framer.request

        # Request payload; the COUNTERS answer is a snapshot taken into it.
        payload = Signal(8 * max(self.step_bytes, CONFIG_BYTES, Counters.size // 8))
        m.d.comb += framer.payload.ready.eq(1)
        with m.If(framer.payload.valid):
            m.d.sync += payload.word_select(framer.payload.payload.index, 8).eq(
                framer.payload.payload.data)

        counters = Signal(Counters)
        m.d.sync += counters.cycles.eq(counters.cycles + 1)
        with m.If(array.act.valid & array.act.ready):
            m.d.sync += counters.steps.eq(counters.steps + 1)
        with m.If(array.result.valid & array.result.ready):
            m.d.sync += counters.beats.eq(counters.beats + 1)

        expected = Signal(range(max(self.step_bytes, CONFIG_BYTES) + 1))
        with m.Switch(request.command):
            with m.Case(Command.CONFIG):
                m.d.comb += expected.eq(CONFIG_BYTES)
            with m.Case(Command.STEP):
                m.d.comb += expected.eq(self.step_bytes)
        m.d.comb += framer.length_ok.eq(request.length == expected)

        # The answer's payload bytes, from the source its command names.
        index = framer.answer_index
        m.d.comb += framer.answer_data.valid.eq(1)
        with m.Switch(request.command):
            with m.Case(Command.IDENTIFY):
                m.d.comb += framer.answer_data.payload.eq(
                    Const(self.identity.as_bits(), Identity.size).word_select(index, 8))
            with m.Case(Command.READ):
                m.d.comb += [
                    framer.answer_data.payload.eq(
                        array.result.payload.as_value().word_select(index, 8)),
                    # The beat is taken when its last byte is sent.
                    array.result.ready.eq(framer.answer_data.ready
                                          & (index == self.result_bytes - 1)),
                ]
            with m.Case(Command.COUNTERS):
                m.d.comb += framer.answer_data.payload.eq(payload.word_select(index, 8))

        def answer(status, length=0):
            m.d.comb += [framer.answer.valid.eq(1), framer.answer.payload.status.eq(status),
                         framer.answer.payload.length.eq(length)]

        configured = Signal()     # CONFIG: the array took the configuration last cycle
        with m.If(framer.execute):
            with m.Switch(request.command):
                with m.Case(Command.IDENTIFY):
                    answer(Status.OK, Identity.size // 8)
                with m.Case(Command.CONFIG):
                    with m.If(configured):
                        # One the array keeps makes it busy (no step is offered, so config is
                        # not ready); one it drops leaves it idle with error set.
                        m.d.sync += configured.eq(0)
                        answer(Mux(array.config.ready & array.error, Status.REJECTED,
                                   Status.OK))
                    with m.Else():
                        m.d.comb += [array.config.payload.eq(payload[:ArrayConfig.size]),
                                     array.config.valid.eq(1)]
                        with m.If(array.config.ready):
                            m.d.sync += configured.eq(1)
                        with m.Else():
                            answer(Status.BUSY)
                with m.Case(Command.STEP):
                    step = self._step(payload[:self._step.size])
                    m.d.comb += [array.act.payload.eq(step.act), array.wgt.payload.eq(step.wgt),
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
        return m
