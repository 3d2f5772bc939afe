"""The accelerator's UART host link (docs/host-protocol.md, The accelerator's link).

A :class:`rtl.framing.Framer` (the frames, CRC and statuses of the array's link) in front of
the accelerator's host port (:class:`rtl.accel.ports.HostPort`). Every word of this link is
defined here, once: the request header, the command codes, the payload header of WRITE, READ
and COLLECT, the IDENTIFY answer; ``boards/host.py`` builds and reads them through these
definitions, and the memory words through :mod:`rtl.accel.isa`.
"""

from amaranth import Cat, Const, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.accel.core import Accelerator
from rtl.accel.isa import ADDRESS_BITS, CHUNK_ADDRESS_BITS, CHUNK_BITS, Space
from rtl.accel.isa import Status as AccelStatus
from rtl.framing import LENGTH_BITS, Framer, Status, request_header

__all__ = ["Command", "Width", "Transfer", "TRANSFER_BYTES", "Identity", "STATUS_BYTES",
           "RequestHeader", "WRITABLE", "READABLE", "fill_limit",
           "AccelLink"]


class Command(enum.Enum, shape=8):
    """Request codes of the accelerator's link (docs/host-protocol.md); apart from the array
    link's, so a host that talks to the wrong board gets ``BAD_COMMAND``."""
    IDENTIFY = 0x10   #: -> an :data:`Identity`
    RESET = 0x11      #: reset the accelerator (not its memories)
    STATUS = 0x12     #: -> the accelerator's ``rtl.accel.isa.Status``, :data:`STATUS_BYTES`
    WRITE = 0x13      #: a :data:`Transfer`, then ``count`` chunks, 4 bytes each
    READ = 0x14       #: a :data:`Transfer` -> ``count`` chunks, ``width`` bytes each
    START = 0x15      #: start the program at instruction 0
    FILL = 0x16       #: chunks of the input page offered, from its chunk 0; then hand it over
    COLLECT = 0x17    #: a :data:`Transfer` of the published page -> chunks; then hand it back


class Width(enum.Enum, shape=2):
    """Bytes of each chunk that READ and COLLECT send: its low ones."""
    ONE = 0
    TWO = 1
    FOUR = 2


#: The payload header of WRITE, READ and COLLECT: ``count`` chunks of memory ``space`` from
#: chunk 0 of ``word`` on, chunk after chunk of each word, word after word.
Transfer = data.StructLayout({
    "space": Space,
    "width": Width,
    "word":  unsigned(ADDRESS_BITS),
    "count": unsigned(13),
})
TRANSFER_BYTES = Transfer.size // 8

#: The IDENTIFY answer: the accelerator's configuration (``precision`` 0 for mixed; the
#: sparse unit's and the top-k engine's fields 0 when it has none), ``write_chunks``, the
#: most chunks a WRITE carries, the top-k engine's scores per beat and the array's rows per
#: result beat.
Identity = data.StructLayout({
    "rows": 8, "cols": 8, "precision": 8, "acc_width": 8,
    "spmv_pes": 8, "spmv_lanes": 8, "spmv_rows": 16, "spmv_cols": 16,
    "topk_n_max": 16, "topk_k_max": 16,
    "program_words": 16, "act_words": 16, "input_words": 16, "weight_words": 16,
    "param_words": 16, "csc_words": 16, "result_words": 16, "output_words": 16,
    "write_chunks": 16, "topk_par": 8, "drain_rows": 8,
})
#: Bytes of the STATUS answer: the accelerator's status word, its top bits zero.
STATUS_BYTES = -(-AccelStatus.size // 8)
#: The four bytes that open a request to the accelerator's link.
RequestHeader = request_header(Command)

#: The memories WRITE may name (CSC and SPMV only with a sparse unit), and READ and COLLECT.
WRITABLE = (Space.PROGRAM, Space.ACT, Space.WEIGHT, Space.PARAM, Space.CSC, Space.SPMV)
READABLE = (Space.RESULT, Space.OUTPUT)


def fill_limit(config):
    """Bytes a FILL carries at most: the input page of ``config``, within a frame's length."""
    return min(config.input_words * config.chunks(Space.ACT) * 4,
               ((1 << LENGTH_BITS) - 1) // 4 * 4)


class AccelLink(wiring.Component):
    """An :class:`~rtl.accel.core.Accelerator` driven over a UART.

    WRITE is received whole into a buffer of ``write_chunks`` chunks and written after its CRC
    checks; FILL is written into the input page as it arrives (the page is the host's until
    the frame checks and the link hands it over). READ and COLLECT send each chunk as the
    accelerator returns it. COLLECT waits for a published page; the other commands never
    block: START while a program runs and FILL with no free page are answered ``BUSY``.
    ``RESET`` resets the accelerator (its program, engines and pages; not its memories)
    through a :class:`~amaranth.hdl.ResetInserter`. Framing errors are the
    :class:`~rtl.framing.Framer`'s.

    Parameters
    ----------
    accelerator : Accelerator
    divisor : int
        Clock cycles per UART bit (clock / baud), at least 4.
    timeout : int, optional
        Cycles of silence that end a frame early; by default 40 bit times.
    write_chunks : int
        Chunks of the WRITE buffer, a memory of 32-bit words (1..8191; 256 by default, 1 KB:
        two block RAMs of the iCE40, one of the ECP5).

    Attributes
    ----------
    rx : In(1)
        UART line from the host.
    tx : Out(1)
        UART line to the host.
    """

    def __init__(self, accelerator, divisor, timeout=None, write_chunks=256):
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be an rtl.accel.core.Accelerator, not "
                            f"{accelerator!r}")
        limit = (1 << Transfer["count"].shape.width) - 1
        if not isinstance(write_chunks, int) or not 1 <= write_chunks <= limit:
            raise ValueError(f"write_chunks must be between 1 and {limit}, not "
                             f"{write_chunks!r}")
        self._accelerator = accelerator
        self._divisor = divisor
        self._write_chunks = write_chunks
        self._fill_bytes = fill_limit(accelerator.config)
        self._framer = Framer(Command, divisor,
                              max(TRANSFER_BYTES + 4 * write_chunks, self._fill_bytes),
                              max(4 * limit, Identity.size // 8), timeout)
        super().__init__({"rx": In(1, init=1), "tx": Out(1)})

    accelerator = property(lambda self: self._accelerator, doc="The accelerator driven.")
    divisor = property(lambda self: self._divisor, doc="Clock cycles per UART bit.")
    write_chunks = property(lambda self: self._write_chunks,
                            doc="Most chunks a WRITE carries.")
    fill_bytes = property(lambda self: self._fill_bytes, doc="Most bytes a FILL carries.")

    @property
    def identity(self):
        """The IDENTIFY answer, an :data:`Identity` constant."""
        c = self._accelerator.config
        spmv, topk = c.spmv, c.topk
        return Identity.const({
            "rows": c.rows, "cols": c.cols,
            "precision": 0 if c.precision == "mixed" else c.precision,
            "acc_width": c.acc_width,
            "spmv_pes": spmv.n_pes if spmv else 0, "spmv_lanes": spmv.lanes if spmv else 0,
            "spmv_rows": spmv.rows if spmv else 0, "spmv_cols": spmv.cols if spmv else 0,
            "topk_n_max": topk.n_max if topk else 0, "topk_k_max": topk.k_max if topk else 0,
            "program_words": c.program_words, "act_words": c.act_words,
            "input_words": c.input_words, "weight_words": c.weight_words,
            "param_words": c.param_words, "csc_words": c.csc_words,
            "result_words": c.result_words, "output_words": c.output_words,
            "write_chunks": self._write_chunks, "topk_par": c.topk_par or 0,
            "drain_rows": c.rows_per_beat})

    def elaborate(self, platform):
        m = Module()
        c = self._accelerator.config
        # Set for one cycle after RESET executes, as the array link's RESET.
        reset_accelerator = Signal()
        m.d.sync += reset_accelerator.eq(0)
        m.submodules.accelerator = ResetInserter(reset_accelerator)(self._accelerator)
        m.submodules.framer = framer = self._framer
        m.d.comb += [framer.rx.eq(self.rx), self.tx.eq(framer.tx)]
        host = self._accelerator.host
        status = host.status
        command = framer.request.command
        length = framer.request.length
        incoming = framer.payload.payload
        arrived = framer.payload.valid & framer.payload.ready

        # ---- Request payloads ----------------------------------------------------------------
        transfer = Signal(Transfer)
        with m.If(arrived & (command != Command.FILL) & (incoming.index < TRANSFER_BYTES)):
            m.d.sync += transfer.as_value().word_select(incoming.index[:2], 8).eq(incoming.data)

        m.submodules.buffer = buffer = Memory(shape=unsigned(CHUNK_BITS),
                                              depth=self._write_chunks, init=[])
        buffer_write, buffer_read = buffer.write_port(granularity=8), buffer.read_port()
        offset = (incoming.index - TRANSFER_BYTES)[:len(incoming.index)]
        m.d.comb += [buffer_write.addr.eq(offset[2:]),
                     buffer_write.data.eq(Cat(incoming.data for _ in range(4)))]
        with m.If(arrived & (command == Command.WRITE) & (incoming.index >= TRANSFER_BYTES)
                  & (offset < 4 * self._write_chunks)):
            m.d.comb += buffer_write.en.eq(1 << offset[:2])

        # FILL: each chunk goes to the page offered when the frame's first payload byte came.
        fill_ok = Signal()                  # the page was free: the chunks are written
        fill_word = Signal(ADDRESS_BITS)
        fill_chunk = Signal(8)
        assembly = Signal(24)               # the chunk's first three bytes
        pending = Signal()                  # a chunk waits for the host port
        pending_data = Signal(CHUNK_BITS)
        act_chunks = c.chunks(Space.ACT)
        filling = (command == Command.FILL) & framer.payload.valid
        last_lane = incoming.index[:2] == 3
        m.d.comb += framer.payload.ready.eq(~(filling & last_lane & pending))
        with m.If(arrived & (command == Command.FILL)):
            with m.If(incoming.index == 0):
                m.d.sync += [fill_ok.eq(status.input_free), fill_chunk.eq(0),
                             fill_word.eq(Mux(status.input_page, c.input_words, 0))]
            with m.If(~last_lane):
                m.d.sync += assembly.word_select(incoming.index[:2], 8).eq(incoming.data)
            with m.Elif(fill_ok & (incoming.index < self._fill_bytes)):
                m.d.sync += [pending.eq(1), pending_data.eq(Cat(assembly, incoming.data))]

        # ---- Checks --------------------------------------------------------------------------
        with m.Switch(command):
            with m.Case(Command.WRITE):
                m.d.comb += framer.length_ok.eq(
                    (length == TRANSFER_BYTES + 4 * transfer.count)
                    & (transfer.count <= self._write_chunks))
            with m.Case(Command.READ, Command.COLLECT):
                m.d.comb += framer.length_ok.eq(length == TRANSFER_BYTES)
            with m.Case(Command.FILL):
                m.d.comb += framer.length_ok.eq((length != 0) & (length[:2] == 0)
                                                & (length <= self._fill_bytes))
            with m.Default():
                m.d.comb += framer.length_ok.eq(length == 0)

        # The transfer names a memory of the command, a width it allows and words within
        # the memory (COLLECT: within a page).
        arguments_ok = Signal()
        spaces = {Command.WRITE: [s for s in WRITABLE
                                  if c.spmv is not None or s not in (Space.CSC, Space.SPMV)],
                  Command.READ: READABLE, Command.COLLECT: READABLE}
        with m.Switch(command):
            for kind, allowed in spaces.items():
                with m.Case(kind):
                    width_ok = (transfer.width == Width.FOUR if kind == Command.WRITE
                                else transfer.width.as_value() != 3)
                    with m.Switch(transfer.space):
                        for space in allowed:
                            with m.Case(space):
                                chunks = c.chunks(space)
                                words = {Space.RESULT: c.result_words,
                                         Space.OUTPUT: c.output_words}
                                depth = (words[space] if kind == Command.COLLECT
                                         else c.depth(space))
                                fits = (Const(1) if space == Space.SPMV else
                                        transfer.word * chunks + transfer.count
                                        <= depth * chunks)
                                m.d.comb += arguments_ok.eq(width_ok & fits
                                                            & (transfer.count != 0))

        # ---- The chunks of WRITE, READ and COLLECT, one after the other ----------------------
        word = Signal(ADDRESS_BITS + 1)
        chunk = Signal(8)
        remaining = Signal(len(transfer.count))
        address = Signal(CHUNK_ADDRESS_BITS)
        last_chunk = Signal()
        with m.Switch(transfer.space):
            for space in Space:
                with m.Case(space):
                    bits = c.chunk_bits(space)
                    m.d.comb += [address.eq(Cat(chunk[:bits], word)),
                                 last_chunk.eq(chunk == c.chunks(space) - 1)]

        def next_chunk():
            m.d.sync += [chunk.eq(Mux(last_chunk, 0, chunk + 1)),
                         word.eq(word + last_chunk), remaining.eq(remaining - 1)]

        def first_chunk(base=0):
            m.d.sync += [word.eq(base + transfer.word), chunk.eq(0),
                         remaining.eq(transfer.count)]

        # The host port's writes: FILL's chunks while a frame comes in, WRITE's after it.
        writing = Signal()
        with m.If(writing):
            m.d.comb += [host.write.payload.space.eq(transfer.space),
                         host.write.payload.address.eq(address),
                         host.write.payload.data.eq(buffer_read.data)]
        with m.Else():
            m.d.comb += [host.write.payload.space.eq(Space.ACT),
                         host.write.payload.address.eq(
                             Cat(fill_chunk[:c.chunk_bits(Space.ACT)], fill_word)),
                         host.write.payload.data.eq(pending_data),
                         host.write.valid.eq(pending)]
            with m.If(pending & host.write.ready):
                m.d.sync += [pending.eq(0), fill_chunk.eq(Mux(fill_chunk == act_chunks - 1, 0,
                                                              fill_chunk + 1)),
                             fill_word.eq(fill_word + (fill_chunk == act_chunks - 1))]

        # ---- Answers -------------------------------------------------------------------------
        def answer(status_code, count=0):
            m.d.comb += [framer.answer.valid.eq(1), framer.answer.payload.status.eq(status_code),
                         framer.answer.payload.length.eq(count)]

        width_bytes = Signal(3)
        with m.Switch(transfer.width):
            for width, count in ((Width.ONE, 1), (Width.TWO, 2), (Width.FOUR, 4)):
                with m.Case(width):
                    m.d.comb += width_bytes.eq(count)
        snapshot = Signal(8 * STATUS_BYTES)
        held = Signal(CHUNK_BITS)           # the chunk being sent
        byte = Signal(2)                    # its byte being sent
        index = framer.answer_index
        with m.Switch(command):
            with m.Case(Command.IDENTIFY):
                m.d.comb += [framer.answer_data.valid.eq(1),
                             framer.answer_data.payload.eq(
                                 Const(self.identity.as_bits(), Identity.size)
                                 .word_select(index, 8))]
            with m.Case(Command.STATUS):
                m.d.comb += [framer.answer_data.valid.eq(1),
                             framer.answer_data.payload.eq(snapshot.word_select(index, 8))]
            with m.Default():
                m.d.comb += framer.answer_data.payload.eq(held.word_select(byte, 8))

        with m.FSM(name="link"):
            with m.State("IDLE"):
                with m.If(framer.execute):
                    with m.Switch(command):
                        with m.Case(Command.IDENTIFY):
                            answer(Status.OK, Identity.size // 8)
                        with m.Case(Command.RESET):
                            m.d.sync += reset_accelerator.eq(1)
                            answer(Status.OK)
                        with m.Case(Command.STATUS):
                            m.d.sync += snapshot.eq(status)
                            answer(Status.OK, STATUS_BYTES)
                        with m.Case(Command.START):
                            with m.If(status.running):
                                answer(Status.BUSY)
                            with m.Else():
                                m.d.comb += host.start.eq(1)
                                answer(Status.OK)
                        with m.Case(Command.FILL):
                            with m.If(~fill_ok):
                                answer(Status.BUSY)
                            with m.Elif(~pending):
                                m.d.comb += host.input_filled.eq(1)
                                answer(Status.OK)
                        with m.Case(Command.WRITE):
                            with m.If(~arguments_ok):
                                answer(Status.BAD_ARGUMENT)
                            with m.Else():
                                first_chunk()
                                m.d.comb += [buffer_read.addr.eq(0), buffer_read.en.eq(1)]
                                m.d.sync += writing.eq(1)
                                m.next = "WRITE"
                        with m.Case(Command.READ):
                            with m.If(~arguments_ok):
                                answer(Status.BAD_ARGUMENT)
                            with m.Else():
                                first_chunk()
                                answer(Status.OK, transfer.count * width_bytes)
                                m.next = "ASK"
                        with m.Case(Command.COLLECT):
                            page_words = Mux(transfer.space == Space.RESULT, c.result_words,
                                             c.output_words)
                            with m.If(~arguments_ok):
                                answer(Status.BAD_ARGUMENT)
                            with m.Elif(status.results_ready):
                                first_chunk(Mux(status.results_page, page_words, 0))
                                answer(Status.OK, transfer.count * width_bytes)
                                m.next = "ASK"
                            with m.Elif(status.error):
                                answer(Status.FAULT)
                            with m.Elif(~status.running):
                                answer(Status.EMPTY)
                            with m.Elif(framer.host_sending):
                                answer(Status.BUSY)
            with m.State("WRITE"):
                # The buffer's chunk (read last cycle) goes to the host port.
                done = transfer.count - remaining
                m.d.comb += host.write.valid.eq(1)
                with m.If(host.write.ready):
                    next_chunk()
                    m.d.comb += [buffer_read.addr.eq(done + 1), buffer_read.en.eq(1)]
                    with m.If(remaining == 1):
                        m.d.sync += writing.eq(0)
                        answer(Status.OK)
                        m.next = "IDLE"
            with m.State("ASK"):
                m.d.comb += [host.read.valid.eq(1), host.read.payload.space.eq(transfer.space),
                             host.read.payload.address.eq(address)]
                with m.If(host.read.ready):
                    m.next = "RECEIVE"
            with m.State("RECEIVE"):
                m.d.comb += host.read_data.ready.eq(1)
                with m.If(host.read_data.valid):
                    m.d.sync += [held.eq(host.read_data.payload), byte.eq(0)]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += framer.answer_data.valid.eq(1)
                with m.If(framer.answer_data.ready):
                    m.d.sync += byte.eq(byte + 1)
                    with m.If(byte == width_bytes - 1):
                        next_chunk()
                        m.next = "ASK"
                        with m.If(remaining == 1):
                            m.d.comb += host.results_taken.eq(command == Command.COLLECT)
                            m.next = "IDLE"
        return m
