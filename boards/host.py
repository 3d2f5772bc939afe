"""Host-side driver of the UART host link (docs/host-protocol.md).

:class:`Host` speaks the protocol over any *transport*: an object with two coroutines,
``write(data)`` and ``read(count)`` (which raises :class:`HostLinkError` when ``count``
bytes do not come within its timeout), and optionally a third, ``discard()``, that waits
until the line is quiet and drops every byte received and not read.
:class:`SerialTransport` is a board on a serial port (pyserial); the cocotb UART model of
the simulated board (``sim/tb/hostlink.py``) is another, so the same code is tested end to
end in simulation, and :class:`boards.sim.SimulatedBoard` a third, the board top in
Amaranth's simulator in this process (``examples/host_gemm.py --sim``). Every word it sends
or reads is built or parsed through its definition in ``rtl/hostlink.py`` (and
``rtl/systolic.py`` for the configuration and the result beat).

    host = Host(SerialTransport("/dev/ttyUSB1"))
    result = asyncio.run(host.gemm(a, w, Mode(8, 8, True, False)))

What :meth:`Host.gemm` promises for bad input and failures is in docs/reliability.md.

:class:`AccelHost` speaks the accelerator's link (``rtl/accel/link.py``, the same frames) over
the same transports: it loads a program compiled by ``golden.accel`` and runs inferences in
batches::

    host = AccelHost(SerialTransport("/dev/ttyUSB1", baud=1_000_000))
    asyncio.run(host.load(program))
    classes = asyncio.run(host.infer(images))
"""

import asyncio
import numbers

import numpy as np

from golden.bitfusion import value_range
from golden.checks import integer, integer_array
from golden.systolic import Mode, pack_steps, tile_gemm, unpack_results
from rtl.fusion import mode_const, modes
from rtl.accel import link as accel_link
from rtl.accel.config import AccelConfig, SpmvConfig, TopkConfig
from rtl.accel.isa import CHUNK_BITS, Space
from rtl.accel.isa import Status as AccelStatus
from rtl.framing import request_header
from rtl.hostlink import (CONFIG_BYTES, FRAME_CRC, REQUEST_SYNC, RESPONSE_SYNC, Command, Counters,
                          Identity, RequestHeader, ResponseHeader, Status, step_layout)
from rtl.systolic import ArrayConfig, k_step_bound, result_layout

__all__ = ["HostLinkError", "seal", "frame", "config_payload", "check_gemm", "Host",
           "AccelHost", "SerialTransport"]

_HEADER_BYTES = RequestHeader.size // 8
#: Tries of RESET before :meth:`Host.reset` gives up.
_RESET_TRIES = 3


class HostLinkError(Exception):
    """The board answered with an error status (``status``, a :class:`Status`, names it), or
    its answer was malformed, late or unexpected (``status`` is then a description);
    ``detail`` says what it means."""

    def __init__(self, status, command=None, detail=None):
        self.status = status
        name = status.name if isinstance(status, Status) else status
        super().__init__(f"the board answered {name}"
                         + (f" to {command.name}" if command is not None else "")
                         + (f": {detail}" if detail else ""))


def seal(body):
    """``body`` followed by its :data:`~rtl.hostlink.FRAME_CRC`, low byte first."""
    return bytes(body) + FRAME_CRC.compute(body).to_bytes(2, "little")


def frame(command, payload=b""):
    """A request frame: header (sync, ``command``, length), ``payload``, CRC; ``command`` is a
    member of a link's command enum (``rtl.hostlink.Command``, ``rtl.accel.link.Command``)."""
    header = request_header(type(command)).const({"sync": REQUEST_SYNC, "command": command,
                                                  "length": len(payload)}).as_bits()
    header = header.to_bytes(_HEADER_BYTES, "little")
    return header[:1] + seal(header[1:] + bytes(payload))


def config_payload(mode, k_steps, tiles):
    """The CONFIG payload: an ``ArrayConfig`` of ``mode`` (a golden ``Mode``) and the counts."""
    for name, value in (("k_steps", k_steps), ("tiles", tiles)):
        limit = (1 << ArrayConfig[name].shape.width) - 1
        if not 1 <= value <= limit:
            raise ValueError(f"{name} must be between 1 and {limit}, not {value!r}")
    word = ArrayConfig.const({
        "mode": mode_const(mode.w_bits, mode.a_bits, mode.w_signed, mode.a_signed),
        "k_steps": k_steps, "tiles": tiles}).as_bits()
    return word.to_bytes(CONFIG_BYTES, "little")


def _operand(name, values, bits, signed):
    """``values`` as a 2-D int64 array of ``bits``-bit integers, or a one-line error."""
    lo, hi = value_range(bits, signed)
    sign = "signed" if signed else "unsigned"
    return integer_array(name, values, lo, hi, ndim=2, fits=f"{bits} bits {sign} ({lo}..{hi})")


def check_gemm(a, w, mode, identity):
    """Check ``A @ W`` in ``mode`` on the array ``identity`` describes (an IDENTIFY answer).

    Everything the array would refuse, and everything that would make an answer wrong, is
    refused here, before anything is sent.

    Returns
    -------
    a, w : ndarray of int64
        The operands as integers (whole floats become integers).
    tiling : Tiling
        How the GEMM maps onto the array.

    Raises
    ------
    TypeError
        ``mode`` is not a :class:`~golden.systolic.Mode`, its signedness not a bool, or
        ``a`` or ``w`` holds something other than numbers (bools, strings, objects).
    ValueError
        ``a`` or ``w`` is not 2-D or empty, their K differ, a value is NaN, infinite, not
        whole or outside the mode's range, the mode is not one of the array's, K needs more
        steps than the accumulator bound allows, or M and N make more tiles than a
        configuration can carry.
    """
    if not isinstance(mode, Mode):
        raise TypeError(f"mode must be a golden.systolic.Mode, not {mode!r}")
    for name in ("w_signed", "a_signed"):
        if not isinstance(getattr(mode, name), (bool, np.bool_)):
            raise TypeError(f"mode.{name} must be True or False, not "
                            f"{getattr(mode, name)!r}")
    supported = modes(identity["precision"])
    pair = (mode.w_bits, mode.a_bits)
    if not all(isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in pair) \
            or pair not in supported:
        allowed = ", ".join(f"{w}x{a}" for w, a in supported)
        raise ValueError(f"mode w_bits x a_bits must be one of the array's modes ({allowed}), "
                         f"not {mode.w_bits!r}x{mode.a_bits!r}")
    a = _operand("a", a, mode.a_bits, mode.a_signed)
    w = _operand("w", w, mode.w_bits, mode.w_signed)
    (m, k), (k_w, n) = a.shape, w.shape
    if k != k_w:
        raise ValueError(f"a (M x K) and w (K x N) must agree in K, not {a.shape} and {w.shape}")
    if not (m and n and k):
        raise ValueError(f"a and w must not be empty, not {a.shape} and {w.shape}")
    tiling = tile_gemm(a, w, identity["rows"], identity["cols"], mode)
    bound = k_step_bound(identity["acc_width"], mode.w_bits, mode.a_bits, mode.w_signed,
                         mode.a_signed)
    if tiling.k_steps > bound:
        w_kind, a_kind = ("signed" if s else "unsigned" for s in (mode.w_signed, mode.a_signed))
        raise ValueError(f"K must be at most {bound * mode.lanes} for {w_kind} {mode.w_bits}-bit "
                         f"weights and {a_kind} {mode.a_bits}-bit activations on a "
                         f"{identity['acc_width']}-bit accumulator, not {k}")
    limit = (1 << ArrayConfig["tiles"].shape.width) - 1
    if tiling.tiles > limit:
        raise ValueError(f"M and N must make at most {limit} tiles of {identity['rows']}x"
                         f"{identity['cols']}, not {tiling.tiles} (M = {m}, N = {n})")
    return a, w, tiling


class _Link:
    """Requests and their answers over a transport (docs/host-protocol.md, Framing): what
    :class:`Host` and :class:`AccelHost` share."""

    def __init__(self, transport):
        self.transport = transport

    async def answer(self):
        """Read one response: ``(Status, payload)``; a malformed one raises HostLinkError."""
        head = await self.transport.read(_HEADER_BYTES)
        header = ResponseHeader.from_bits(int.from_bytes(head, "little"))
        if header.sync != RESPONSE_SYNC:
            raise HostLinkError(f"bad response sync byte {head[0]:02x}")
        rest = await self.transport.read(header.length + 2)
        if FRAME_CRC.compute(head[1:] + rest) != FRAME_CRC.residue():
            raise HostLinkError("bad response CRC")
        try:
            return header.status, rest[:-2]
        except ValueError:
            raise HostLinkError(f"unknown status {head[1]}") from None

    async def call(self, command, payload=b"", accept=(Status.OK,)):
        """Send a request, return ``(Status, payload)``; a status outside ``accept`` raises."""
        await self.transport.write(frame(command, payload))
        status, data = await self.answer()
        if status not in accept:
            raise HostLinkError(status, command)
        return status, data

    async def _reset(self, command):
        """Wait for the line to be quiet and drop stale bytes (when the transport can), then
        send ``command`` (the link's RESET); up to three times."""
        error = None
        for _ in range(_RESET_TRIES):
            discard = getattr(self.transport, "discard", None)
            if discard is not None:
                await discard()
            try:
                await self.call(command)
            except HostLinkError as failure:
                error = failure
            else:
                return
        raise HostLinkError(f"no OK to RESET in {_RESET_TRIES} tries (last: {error})")


class Host(_Link):
    """The protocol over a transport, and GEMMs on the board's systolic array.

    Parameters
    ----------
    transport
        ``write(data)``, ``read(count)`` and optionally ``discard()`` coroutines.
    retries : int
        How many times in a row :meth:`gemm` re-asks a board that makes no progress (a STEP
        answered ``BUSY`` and a READ ``EMPTY``; a READ ``EMPTY`` while beats are due) before
        it raises :class:`HostLinkError`.
    """

    def __init__(self, transport, retries=64):
        if not isinstance(retries, int) or retries < 1:
            raise ValueError(f"retries must be a positive number of tries, not {retries!r}")
        super().__init__(transport)
        self.retries = retries
        self.identity = None
        self._idle = False          # the array is known to be idle, without results

    async def identify(self):
        """Rows, columns, word bits, accumulator bits, drain rows and precision of the array."""
        _, data = await self.call(Command.IDENTIFY)
        view = Identity.from_bits(int.from_bytes(data, "little"))
        self.identity = {name: getattr(view, name) for name, _ in Identity}
        self.identity["precision"] = self.identity["precision"] or "mixed"
        return self.identity

    async def counters(self):
        """``{"cycles", "steps", "beats"}`` since the board's reset."""
        _, data = await self.call(Command.COUNTERS)
        view = Counters.from_bits(int.from_bytes(data, "little"))
        return {name: getattr(view, name) for name, _ in Counters}

    async def reset(self):
        """Bring the link and the array to a known state: no configuration, no steps, no
        results, no error.

        Waits for the line to be quiet and drops stale bytes (when the transport can), then
        sends RESET; tries up to three times.
        """
        await self._reset(Command.RESET)
        self._idle = True

    async def read_beat(self):
        """One result beat as ``drain_rows`` lists of ``cols`` signed values, or None."""
        status, data = await self.call(Command.READ, accept=(Status.OK, Status.EMPTY))
        if status == Status.EMPTY:
            return None
        ident = self.identity
        layout = result_layout(ident["acc_width"], ident["cols"], ident["drain_rows"])
        if len(data) != layout.size // 8:
            raise HostLinkError(f"a result beat of {len(data)} bytes, not {layout.size // 8}")
        beat = layout.from_bits(int.from_bytes(data, "little"))
        return [list(row) for row in beat]

    async def gemm(self, a, w, mode):
        """``A @ W`` on the board: configure, stream the steps, collect the result beats.

        Everything is checked (:func:`check_gemm`) and packed before the first frame is
        sent. The array is reset first unless it is known to be idle (the last GEMM
        finished). When anything fails after that, the array is reset (:meth:`reset`) and
        the error raised; when the reset fails too, a note on the error says so and the next
        GEMM resets first.

        Raises
        ------
        TypeError, ValueError
            From :func:`check_gemm`: nothing was sent.
        HostLinkError
            The board refused the configuration (``REJECTED``), made no progress for
            ``retries`` tries, or answered late or malformed.
        """
        ident = self.identity or await self.identify()
        a, w, tiling = check_gemm(a, w, mode, ident)
        rows, cols = ident["rows"], ident["cols"]
        config = config_payload(mode, tiling.k_steps, tiling.tiles)
        layout = step_layout(rows, cols, ident["word_bits"])
        steps = [layout.const({"act": act, "wgt": wgt}).as_bits()
                 .to_bytes(layout.size // 8, "little")
                 for act, wgt in pack_steps(a, w, rows, cols, mode)]
        expected = tiling.tiles * (rows // ident["drain_rows"])
        if not self._idle:
            await self.reset()
        self._idle = False
        try:
            beats = await self._run(config, steps, expected)
        except Exception as error:
            try:
                await self.reset()
            except Exception as failure:
                error.add_note(f"resetting the array failed too ({failure}); the next GEMM "
                               f"resets it first")
            raise
        self._idle = True
        return unpack_results(beats, tiling, ident["drain_rows"])

    async def _run(self, config, steps, expected):
        """CONFIG, every STEP (reading beats while the array is busy), then the last beats."""
        status, _ = await self.call(Command.CONFIG, config,
                                    accept=(Status.OK, Status.BUSY, Status.REJECTED))
        if status == Status.BUSY:
            raise HostLinkError(status, Command.CONFIG, "the array still has steps of a "
                                "configuration the host did not send to run")
        if status == Status.REJECTED:
            raise HostLinkError(status, Command.CONFIG, "the array dropped the configuration "
                                "(k_steps or tiles 0, or k_steps over its bound for the mode)")
        beats = []
        idle = 0

        async def collect():
            nonlocal idle
            beat = await self.read_beat()
            if beat is None:
                idle += 1
                if idle > self.retries:
                    raise HostLinkError(Status.EMPTY, Command.READ,
                                        f"no progress in {self.retries} tries ({len(beats)} "
                                        f"of {expected} result beats read)")
            else:
                idle = 0
                beats.append(beat)
                if len(beats) > expected:
                    raise HostLinkError(Status.OK, Command.READ,
                                        f"more than the {expected} result beats of the GEMM")

        for payload in steps:
            while (await self.call(Command.STEP, payload,
                                   accept=(Status.OK, Status.BUSY)))[0] == Status.BUSY:
                await collect()         # results are holding the array up
            idle = 0
        while len(beats) < expected:
            await collect()
        return beats


_CHUNK_MASK = (1 << CHUNK_BITS) - 1
#: Bytes per chunk of each READ and COLLECT width.
_WIDTH_BYTES = {accel_link.Width.ONE: 1, accel_link.Width.TWO: 2, accel_link.Width.FOUR: 4}


def _transfer(space, word, count, width=accel_link.Width.FOUR):
    """The payload header of WRITE, READ and COLLECT."""
    return accel_link.Transfer.const({"space": space, "width": width, "word": word,
                                      "count": count}).as_bits().to_bytes(
        accel_link.TRANSFER_BYTES, "little")


def _chunks(value, count):
    """``value`` as ``count`` little-endian chunks of 4 bytes."""
    return b"".join(((value >> (CHUNK_BITS * i)) & _CHUNK_MASK).to_bytes(4, "little")
                    for i in range(count))


def _values(data, width, chunks=1):
    """Values of ``chunks`` chunks each from ``data`` (chunks of ``width`` bytes, low first)."""
    step = _WIDTH_BYTES[width]
    parts = [int.from_bytes(data[i:i + step], "little") for i in range(0, len(data), step)]
    return [sum(part << (CHUNK_BITS * j) for j, part in enumerate(parts[i:i + chunks]))
            for i in range(0, len(parts), chunks)]


class AccelHost(_Link):
    """The accelerator's link over a transport: its memories, its programs and inferences.

    :meth:`load` writes a compiled program (``golden.accel.compile_network``); :meth:`infer`
    runs images through it, a batch per input page, filling the next page while a batch runs
    (docs/host-protocol.md, The accelerator's link). Every word is built and read through
    ``rtl/accel/link.py``, ``rtl/accel/isa.py`` and ``rtl/framing.py``.

    Parameters
    ----------
    transport
        ``write(data)``, ``read(count)`` and optionally ``discard()`` coroutines.
    """

    def __init__(self, transport):
        super().__init__(transport)
        self.config = None          # the accelerator's AccelConfig (IDENTIFY)
        self.write_chunks = None    # most chunks a WRITE carries
        self.program = None         # the program loaded
        self._streaming = False     # the program runs, its published pages all collected

    async def identify(self):
        """The accelerator's :class:`~rtl.accel.config.AccelConfig` (also kept as ``config``)."""
        _, data = await self.call(accel_link.Command.IDENTIFY)
        if len(data) != accel_link.Identity.size // 8:
            raise HostLinkError(f"an IDENTIFY answer of {len(data)} bytes, not "
                                f"{accel_link.Identity.size // 8}: not an accelerator's link")
        ident = accel_link.Identity.from_bits(int.from_bytes(data, "little"))
        spmv = (SpmvConfig(ident.spmv_pes, ident.spmv_rows, ident.spmv_cols, ident.spmv_lanes)
                if ident.spmv_pes else None)
        # Scores per beat equal to the columns: the default (None) of TopkConfig.
        topk = (TopkConfig(ident.topk_n_max, ident.topk_k_max,
                           None if ident.topk_par == ident.cols else ident.topk_par)
                if ident.topk_n_max else None)
        depths = ("program_words", "act_words", "input_words", "weight_words", "param_words",
                  "csc_words", "result_words", "output_words")
        self.config = AccelConfig(ident.rows, ident.cols, ident.precision or "mixed",
                                  ident.acc_width, spmv, topk,
                                  **{name: getattr(ident, name) for name in depths},
                                  drain_rows=ident.drain_rows)
        self.write_chunks = ident.write_chunks
        return self.config

    async def status(self):
        """The accelerator's ``rtl.accel.isa.Status``, field by field."""
        _, data = await self.call(accel_link.Command.STATUS)
        view = AccelStatus.from_bits(int.from_bytes(data, "little") & ((1 << AccelStatus.size)
                                                                       - 1))
        return {name: getattr(view, name) for name, _ in AccelStatus}

    async def reset(self):
        """Stop the accelerator: no program running, the pages as after power-up; the
        memories keep their words. Drops stale bytes first; up to three tries."""
        self._streaming = False
        await self._reset(accel_link.Command.RESET)

    async def start(self):
        """Start the program at instruction 0 (``BUSY``: one is running)."""
        self._streaming = False
        await self.call(accel_link.Command.START)

    async def write(self, space, word, values):
        """Write the whole words ``values`` into memory ``space`` from word ``word`` on
        (``Space.SPMV``: loader words into the sparse unit), in WRITE frames of at most
        ``write_chunks`` chunks."""
        config = self.config or await self.identify()
        space = Space(space)
        chunks = config.chunks(space)
        per_frame = max(1, self.write_chunks // chunks)
        bits = config.word_bits_of(space)
        values = [integer(f"a {space.name} word", value, 0, (1 << bits) - 1)
                  for value in values]
        for first in range(0, len(values), per_frame):
            part = values[first:first + per_frame]
            payload = _transfer(space, 0 if space == Space.SPMV else word + first,
                                len(part) * chunks)
            payload += b"".join(_chunks(value, chunks) for value in part)
            await self.request(accel_link.Command.WRITE, payload)

    async def read(self, space, word, count):
        """Words ``word .. word + count - 1`` of memory ``space`` (RESULT or OUTPUT, both pages)."""
        config = self.config or await self.identify()
        chunks = config.chunks(space)
        _, data = await self.request(accel_link.Command.READ,
                                      _transfer(space, word, count * chunks))
        return _values(data, accel_link.Width.FOUR, chunks)

    async def request(self, command, payload=b"", accept=(Status.OK,)):
        """:meth:`call`, with what an error status means."""
        status, data = await self.call(command, payload, accept=accept + tuple(_MEANINGS))
        if status in accept:
            return status, data
        detail = _MEANINGS[status]
        if status == Status.FAULT:
            detail = detail.format(pc=(await self.status())["error_pc"])
        raise HostLinkError(status, command, detail)

    async def load(self, program):
        """Stop the accelerator, write ``program``'s memories and instructions (a
        ``golden.accel.Program`` compiled for this accelerator)."""
        config = self.config or await self.identify()
        if getattr(program, "config", None) != config:
            raise ValueError(f"program must be compiled for the board's accelerator "
                             f"({config}), not {getattr(program, 'config', program)!r}")
        await self.reset()
        self.program = None
        for space, words in program.memories.items():
            if space == Space.SPMV:
                await self.write(space, 0, words)
                continue
            for first, run in _runs(words):
                await self.write(space, first, run)
        await self.write(Space.PROGRAM, 0, program.instructions)
        self.program = program

    async def infer(self, images):
        """The classes (int64, n) or logits (int64, n x outputs) of ``images`` ((n, inputs)
        unsigned 8-bit) through the program loaded, a batch of ``program.batch`` images per
        FILL and COLLECT; the next batch is filled while one runs.

        Every page is packed (and the images checked) before the first frame is sent.
        """
        program = self._loaded()
        images = np.asarray(images)
        pages = [(self._page(images[first:first + program.batch]),
                  len(images[first:first + program.batch]))
                 for first in range(0, max(len(images), 1), program.batch)]
        if not self._streaming:
            await self.reset()
            await self.start()
        self._streaming = False
        results, waiting = [], []
        for payload, count in pages:
            while not await self._fill(payload):
                if not waiting:
                    raise HostLinkError(Status.BUSY, accel_link.Command.FILL,
                                        "no input page is free and no batch is running")
                results.append(await self.collect(waiting.pop(0)))
            waiting.append(count)
            if len(waiting) == 2:
                results.append(await self.collect(waiting.pop(0)))
        for count in waiting:
            results.append(await self.collect(count))
        self._streaming = True
        return np.concatenate(results)

    def _page(self, images):
        """The FILL payload of a batch of ``images`` (checked and packed by the program)."""
        program = self._loaded()
        words = program.input_page(images)
        # The image groups of the batch, not the zero images that pad it.
        groups = -(-len(images) // self.config.rows)
        words = words[:program.input_src + (groups - 1) * program.input_stride
                      + program.input_words]
        payload = b"".join(_chunks(value, self.config.chunks(Space.ACT)) for value in words)
        limit = accel_link.fill_limit(self.config)
        if len(payload) > limit:
            raise ValueError(f"a batch of {self.program.batch} images needs {len(payload)} "
                             f"bytes of input page but FILL carries at most {limit}")
        return payload

    async def _fill(self, payload):
        status, _ = await self.request(accel_link.Command.FILL, payload,
                                       accept=(Status.OK, Status.BUSY))
        return status == Status.OK

    async def fill(self, images):
        """Fill the input page offered with a batch of at most ``program.batch`` images and
        hand it over; False when no page is free (``BUSY``: collect a batch first)."""
        return await self._fill(self._page(images))

    def _loaded(self):
        if self.program is None:
            raise ValueError("no program is loaded: call load(program) first")
        return self.program

    async def collect(self, count):
        """The outputs of the first ``count`` images of the batch published next (waits for
        it); the page goes back to the program."""
        program, config = self._loaded(), self.config
        count = integer("count", count, 1, program.batch)
        if program.output == "class":
            width = accel_link.Width.ONE if program.outputs <= 256 else accel_link.Width.TWO
            _, data = await self.request(accel_link.Command.COLLECT, _transfer(
                Space.OUTPUT, program.output_dst, count, width))
            return np.array(_values(data, width), dtype=np.int64)
        chunks = config.chunks(Space.RESULT)
        words = -(-count // config.rows_per_beat) * program.output_tile_cols
        _, data = await self.request(accel_link.Command.COLLECT, _transfer(
            Space.RESULT, program.output_dst, words * chunks))
        values = _values(data, accel_link.Width.FOUR, chunks)
        return program.read_outputs(lambda space, word: values[word - program.output_dst], 0,
                                    count)


#: What the accelerator's link means by each error status it answers to a well-formed request.
_MEANINGS = {
    Status.BUSY: "a program runs (START) or no input page is free (FILL)",
    Status.EMPTY: "no program runs and no results are published",
    Status.FAULT: "the program stopped on an error at instruction {pc}",
    Status.BAD_ARGUMENT: "the memory, width or words are not the accelerator's",
}


def _runs(words):
    """``{word: value}`` as runs of consecutive words: ``(first, [values])``."""
    runs = []
    for word in sorted(words):
        if runs and runs[-1][0] + len(runs[-1][1]) == word:
            runs[-1][1].append(words[word])
        else:
            runs.append((word, [words[word]]))
    return runs


class SerialTransport:
    """A serial port (pyserial) as a transport; ``timeout`` seconds per read. ``port`` is a
    device (``/dev/ttyUSB1``, ``COM3``) or a pyserial URL (``socket://host:port``,
    ``loop://``)."""

    def __init__(self, port, baud=115200, timeout=2.0):
        import serial
        self.port = serial.serial_for_url(port, baud, timeout=timeout)

    async def write(self, data):
        self.port.write(data)

    async def read(self, count):
        data = self.port.read(count)
        if len(data) != count:
            raise HostLinkError(f"timeout: {len(data)} of {count} bytes")
        return data

    async def discard(self, quiet=0.05):
        """Wait ``quiet`` seconds (the board answers, at the latest, 40 bit times after the
        line goes quiet), then drop every byte received and not read."""
        await asyncio.sleep(quiet)
        self.port.reset_input_buffer()
