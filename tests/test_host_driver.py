"""The host driver (boards.host.Host) against a board modelled in Python, frame by frame.

The model (:class:`FakeBoard`) decodes what the host sends through the protocol's layouts
and the golden unpacker, runs the arithmetic on Python integers wrapped to the accumulator
width, as the array does, and refuses what the array refuses. The property tests feed
``Host.gemm`` random shapes, dtypes and values and check that it returns the exact
integer product or raises ``ValueError``/``TypeError`` with a message, having sent
nothing; never a wrong answer, never another exception. Coroutines are driven by
:func:`complete`, which fails if the driver yields to an event loop other than through the
transport (a bare ``asyncio.sleep`` that cocotb cannot run).
"""

import asyncio
import math
import re
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from boards.host import Host, HostLinkError, SerialTransport, check_gemm, frame, seal
from boards.sim import SimulatedBoard, board_array
from golden.bitfusion import lanes, unpack
from golden.systolic import Mode
from rtl.hostlink import (FRAME_CRC, RESPONSE_SYNC, Command, RequestHeader, ResponseHeader,
                          Status, step_layout)
from rtl.systolic import ArrayConfig, k_step_bound, result_layout

#: Examples per property test; derandomized, so every run tries the same ones.
EXAMPLES = 300
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

WIDTHS = {0: 2, 1: 4, 2: 8}     # BitWidth codes, docs/host-protocol.md


def identity(acc_width=32, rows=2, cols=2, drain_rows=1):
    return {"rows": rows, "cols": cols, "word_bits": 32, "acc_width": acc_width,
            "drain_rows": drain_rows, "precision": "mixed"}


def complete(coroutine):
    """Run ``coroutine`` to its end without an event loop: every await must be answered
    by the transport at once."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise AssertionError("the driver yielded to the event loop outside the transport")


class FakeBoard:
    """The host link and a mixed-precision array, as docs/host-protocol.md and
    docs/systolic.md describe them, in Python; a transport for :class:`Host`.

    ``fifo_depth`` tiles of results are held before a tile's first step is refused BUSY.
    ``stuck`` answers every STEP BUSY and READ EMPTY, ``busy_config`` every CONFIG BUSY.
    """

    def __init__(self, ident, fifo_depth=2, stuck=False, busy_config=False):
        self.ident = ident
        self.fifo_depth, self.stuck, self.busy_config = fifo_depth, stuck, busy_config
        self.requests = []          # commands received, in order
        self.pending = b""
        self.clear()

    def clear(self):
        self.config = None          # (mode fields, k_steps, tiles_left, step)
        self.results = []           # beats not yet read: lists of bytes
        self.tiles_held = []        # beats per tile still held
        self.sums = None

    async def write(self, data):
        header = RequestHeader.from_bits(int.from_bytes(data[:4], "little"))
        assert data[0] == 0xA5 and len(data) == 6 + header.length, data.hex()
        assert FRAME_CRC.compute(data[1:]) == FRAME_CRC.residue(), data.hex()
        self.requests.append(header.command)
        status, payload = self.execute(header.command, data[4:-2])
        head = ResponseHeader.const({"sync": RESPONSE_SYNC, "status": status,
                                     "length": len(payload)}).as_bits().to_bytes(4, "little")
        self.pending += head[:1] + seal(head[1:] + payload)

    async def read(self, count):
        if len(self.pending) < count:
            raise HostLinkError(f"timeout: {len(self.pending)} of {count} bytes")
        data, self.pending = self.pending[:count], self.pending[count:]
        return data

    def execute(self, command, payload):
        ident = self.ident
        rows, cols = ident["rows"], ident["cols"]
        if command == Command.RESET:
            self.clear()
            return Status.OK, b""
        if command == Command.CONFIG:
            if self.busy_config or self.config is not None:
                return Status.BUSY, b""
            word = ArrayConfig.from_bits(int.from_bytes(payload, "little"))
            mode = (WIDTHS[word.mode.w_bits.value], WIDTHS[word.mode.a_bits.value],
                    bool(word.mode.w_signed), bool(word.mode.a_signed))
            if not word.k_steps or not word.tiles \
                    or word.k_steps > k_step_bound(ident["acc_width"], *mode):
                return Status.REJECTED, b""
            self.config = [mode, word.k_steps, word.tiles, 0]
            return Status.OK, b""
        if command == Command.STEP:
            if self.stuck or self.config is None:
                return Status.BUSY, b""
            (w_bits, a_bits, w_signed, a_signed), k_steps, tiles, step = self.config
            if step == 0:
                if len(self.tiles_held) >= self.fifo_depth:
                    return Status.BUSY, b""
                self.sums = [[0] * cols for _ in range(rows)]
            words = step_layout(rows, cols, ident["word_bits"]).from_bits(
                int.from_bytes(payload, "little"))
            count = lanes(w_bits, a_bits)
            acts = [unpack(words.act[r], a_bits, count, a_signed) for r in range(rows)]
            wgts = [unpack(words.wgt[c], w_bits, count, w_signed) for c in range(cols)]
            for r in range(rows):
                for c in range(cols):
                    self.sums[r][c] += sum(int(x) * int(y) for x, y in zip(acts[r], wgts[c]))
            self.config[3] = step + 1
            if step + 1 == k_steps:
                self.finish_tile()
                self.config[2:] = [tiles - 1, 0]
                if tiles == 1:
                    self.config = None
            return Status.OK, b""
        if command == Command.READ:
            if self.stuck or not self.results:
                return Status.EMPTY, b""
            self.tiles_held[0] -= 1
            if not self.tiles_held[0]:
                self.tiles_held.pop(0)
            return Status.OK, self.results.pop(0)
        raise AssertionError(f"unexpected {command}")

    def finish_tile(self):
        ident = self.ident
        acc, drain = ident["acc_width"], ident["drain_rows"]
        wrap = [[(s + (1 << (acc - 1))) % (1 << acc) - (1 << (acc - 1)) for s in row]
                for row in self.sums]
        layout = result_layout(acc, ident["cols"], drain)
        for g in range(0, ident["rows"], drain):
            beat = layout.const(wrap[g:g + drain]).as_bits()
            self.results.append(beat.to_bytes(layout.size // 8, "little"))
        self.tiles_held.append(ident["rows"] // drain)


def host_for(board):
    host = Host(board)
    host.identity = dict(board.ident)
    return host


def exact_product(a, w):
    """``a @ w`` in Python integers, or None when an element is not a whole number."""
    def whole(x):
        if isinstance(x, (bool, np.bool_)):
            return int(x)
        if isinstance(x, (int, np.integer)):
            return int(x)
        if isinstance(x, (float, np.floating)) and math.isfinite(x) and float(x).is_integer():
            return int(x)
        return None
    a = [[whole(x) for x in row] for row in a]
    w = [[whole(x) for x in row] for row in w]
    if any(x is None for row in a + w for x in row):
        return None
    return [[sum(a[i][k] * w[k][j] for k in range(len(w))) for j in range(len(w[0]))]
            for i in range(len(a))]


def plainly_valid(a, w, mode, ident):
    """Whether ``A @ W`` is one the datasheets promise to run: Python ints (no bools) in the
    mode's range, non-empty, K agreeing, K within the accumulator bound."""
    def fits(x, bits, signed):
        lo, hi = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
        return type(x) is int and lo <= x <= hi
    if not (a and w and a[0] and w[0] and len(a[0]) == len(w)):
        return False
    k_steps = -(-len(w) // lanes(mode.w_bits, mode.a_bits))
    return (all(fits(x, mode.a_bits, mode.a_signed) for row in a for x in row)
            and all(fits(x, mode.w_bits, mode.w_signed) for row in w for x in row)
            and k_steps <= k_step_bound(ident["acc_width"], mode.w_bits, mode.a_bits,
                                        mode.w_signed, mode.a_signed))


MODES = st.builds(Mode, st.sampled_from([2, 4, 8]), st.sampled_from([2, 4, 8]), st.booleans(),
                  st.booleans())
def odd_values(kind, lo, hi):
    """Values of ``kind`` for an operand whose mode takes ``lo..hi``."""
    return {
        "near range": st.integers(lo - 2, hi + 2),
        "huge": st.integers(-(1 << 70), 1 << 70),
        "whole float": st.integers(lo, hi).map(float),
        "fraction": st.tuples(st.integers(lo, hi - 1), st.floats(0.01, 0.99)).map(sum),
        "nan or inf": st.sampled_from([float("nan"), float("inf"), float("-inf")]),
        "bool": st.booleans(),
        "string": st.text(max_size=3) | st.integers(lo, hi).map(str),
        "object": st.sampled_from([None, 1j, (1,), b"\x01", Fraction(1, 2), Decimal(1)]),
    }[kind]


ODD_KINDS = ["near range", "huge", "whole float", "fraction", "nan or inf", "bool", "string",
             "object"]


@st.composite
def operand(draw, rows, cols, bits, signed, kind):
    """A ``rows x cols`` nested list of values the mode takes, some (or all) of them of
    ``kind`` instead unless it is None."""
    lo, hi = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
    share = 0.0 if kind is None else draw(st.sampled_from([0.2, 1.0]))
    return [[draw(odd_values(kind, lo, hi)) if draw(st.floats(0, 1)) < share
             else draw(st.integers(lo, hi)) for _ in range(cols)] for _ in range(rows)]


@st.composite
def gemms(draw):
    """A GEMM in a random mode: shapes that may be empty or disagree in K, one operand with
    values of an odd kind (or none), in a list or a NumPy array of some dtype."""
    mode = draw(MODES)
    sizes = st.sampled_from([0, *range(1, 5), *range(1, 5)])
    m, k, n = draw(sizes), draw(st.integers(0, 24)), draw(sizes)
    k_w = draw(st.sampled_from([k] * 6 + [k + 1]))
    kind = draw(st.sampled_from([None] * 4 + ODD_KINDS))
    odd = draw(st.sampled_from(["a", "w"]))
    a = draw(operand(m, k, mode.a_bits, mode.a_signed, kind if odd == "a" else None))
    w = draw(operand(k_w, n, mode.w_bits, mode.w_signed, kind if odd == "w" else None))
    container = draw(st.sampled_from(["list"] * 3 + ["array"] * 3 + ["object", "int8", "uint8",
                                                                     "float32", "bool", "str"]))
    return a, w, mode, container


def as_container(values, container):
    """``values`` as the given container, or None when NumPy cannot make it."""
    if container == "list":
        return values
    dtype = {"array": None, "int8": np.int8, "uint8": np.uint8, "float32": np.float32,
             "object": object, "bool": bool, "str": str}[container]
    try:
        with np.errstate(all="ignore"):
            return np.array(values, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        return None


@SETTINGS
@given(gemms(), st.sampled_from([24, 32]))
def test_gemm_returns_the_exact_product_or_refuses_before_sending(case, acc_width):
    a_list, w_list, mode, container = case
    a, w = as_container(a_list, container), as_container(w_list, container)
    if a is None or w is None:
        a, w = a_list, w_list
    board = FakeBoard(identity(acc_width))
    host = host_for(board)
    try:
        got = complete(host.gemm(a, w, mode))
    except (ValueError, TypeError) as error:
        event(f"refused: {type(error).__name__}")
        assert str(error) and "\n" not in str(error), repr(error)
        assert board.requests == [], (error, board.requests)
        values = (np.asarray(a, dtype=object).tolist() if container != "list" else a,
                  np.asarray(w, dtype=object).tolist() if container != "list" else w)
        assert not plainly_valid(*values, mode, board.ident), error
        return
    values_a = a if isinstance(a, list) else np.asarray(a, dtype=object).tolist()
    values_w = w if isinstance(w, list) else np.asarray(w, dtype=object).tolist()
    exact = exact_product(values_a, values_w)
    event("exact product")
    assert exact is not None and got.tolist() == exact, (got, exact)
    assert board.config is None and board.results == []     # left idle, every beat read


def test_the_issue_cases_are_refused_before_anything_is_sent():
    """Issue 13: NaN, a fraction, K one step over the bound (unsigned 8x8 on 32 bits), K = 0,
    K = 65536 in 8x8, 131072 rows on a 2x2 array (65536 tiles)."""
    nan = float("nan")
    u8, s8 = Mode(8, 8, False, False), Mode(8, 8, True, False)
    cases = [
        ([[nan, 1.0]], [[1], [3]], s8, "a must be finite, not nan"),
        ([[1.5, 2.7], [0.2, 3.9]], [[1, 0], [0, 1]], s8, "a must hold whole numbers, not 1.5"),
        (np.ones((1, 33026), int), np.ones((33026, 1), int), u8,
         "K must be at most 33025 for unsigned 8-bit weights and unsigned 8-bit activations "
         "on a 32-bit accumulator, not 33026"),
        (np.ones((1, 0), int), np.ones((0, 1), int), u8, "must not be empty"),
        (np.ones((1, 65536), int), np.ones((65536, 1), int), s8, "K must be at most"),
        (np.ones((131072, 1), int), np.ones((1, 1), int), s8,
         "M and N must make at most 65535 tiles of 2x2, not 65536"),
    ]
    for a, w, mode, message in cases:
        board = FakeBoard(identity())
        with pytest.raises(ValueError, match=re.escape(message)):
            complete(host_for(board).gemm(a, w, mode))
        assert board.requests == []


@settings(max_examples=100, derandomize=True, database=None, deadline=None)
@given(MODES, st.integers(1, 70000), st.sampled_from([17, 24, 32, 40]))
def test_k_is_refused_exactly_when_its_steps_could_overflow_the_accumulator(mode, k, acc):
    # docs/systolic.md: a step adds at most lanes * max|w| * max|a|; k_steps = ceil(K / lanes)
    # steps must fit in 2^(acc-1) - 1, and in the 16-bit count.
    def peak(bits, signed):
        return 1 << bits - 1 if signed else (1 << bits) - 1
    per_step = lanes(mode.w_bits, mode.a_bits) * peak(mode.w_bits, mode.w_signed) \
        * peak(mode.a_bits, mode.a_signed)
    steps = -(-k // lanes(mode.w_bits, mode.a_bits))
    fits = steps * per_step <= (1 << acc - 1) - 1 and steps <= 65535
    ident = identity(acc_width=acc)
    try:
        check_gemm(np.zeros((1, k), int), np.zeros((k, 1), int), mode, ident)
    except ValueError as error:
        assert not fits and str(error).startswith("K must be at most"), error
    else:
        assert fits


@pytest.mark.parametrize("mode, message", [
    ("8x8", TypeError), (Mode(8, 8, 1, True), TypeError), (Mode(3, 8, True, True), ValueError),
    (Mode(8, 4, True, True), ValueError)])
def test_a_mode_the_array_cannot_run_is_refused(mode, message):
    ident = dict(identity(), precision=8, word_bits=8)
    with pytest.raises(message, match="mode"):
        check_gemm([[1]], [[1]], mode, ident)


def test_check_gemm_gives_integers_for_whole_floats():
    a, w, tiling = check_gemm(np.array([[2.0, -1.0]]), [[3], [4]], Mode(4, 4, True, True),
                              identity())
    assert a.dtype == w.dtype == np.int64 and a.tolist() == [[2, -1]]
    assert (tiling.k_steps, tiling.tiles) == (1, 1)


def test_busy_results_are_read_while_the_steps_go_in():
    # Four tiles of one step on a board that holds one tile of results: every first step
    # after the first tile is BUSY until the host reads.
    board = FakeBoard(identity(), fifo_depth=1)
    a, w = np.arange(16).reshape(4, 4) % 7, np.arange(16).reshape(4, 4) % 5
    got = complete(host_for(board).gemm(a, w, Mode(4, 4, False, False)))
    assert got.tolist() == (a @ w).tolist()
    assert board.requests.count(Command.READ) >= 8


@pytest.mark.parametrize("board, status", [
    (FakeBoard(identity(), stuck=True), Status.EMPTY),
    (FakeBoard(identity(), busy_config=True), Status.BUSY),
    (FakeBoard(identity(acc_width=17)), Status.REJECTED)])
def test_a_board_that_makes_no_progress_raises_and_is_reset(board, status):
    host = Host(board, retries=5)
    host.identity = identity()          # wider accumulator than the board's: REJECTED
    with pytest.raises(HostLinkError, match=status.name) as error:
        complete(host.gemm(np.ones((2, 4), int), np.ones((4, 2), int), Mode(8, 8, True, True)))
    assert error.value.status == status
    assert board.requests[-1] == Command.RESET
    assert len(board.requests) <= 2 * (host.retries + 2) + 2


@SETTINGS
@given(st.integers(0, 60), st.integers(1, 3))
def test_a_failure_at_any_request_leaves_the_array_reset(fail_at, fifo_depth):
    """The transport fails at request ``fail_at``; gemm raises that failure, the board
    is left without a configuration or results, and the next GEMM is exact."""
    class Failing(FakeBoard):
        writes = 0

        async def write(self, data):
            self.writes += 1
            if self.writes == fail_at + 1:
                raise HostLinkError("timeout: the cable was pulled")
            await super().write(data)

    board = Failing(identity(), fifo_depth=fifo_depth)
    host = host_for(board)
    a, w = np.arange(24).reshape(4, 6) % 5 - 2, np.arange(36).reshape(6, 6) % 7 - 3
    mode = Mode(4, 4, True, True)
    try:
        got = complete(host.gemm(a, w, mode))
    except HostLinkError as error:
        assert "cable" in str(error)
        assert board.config is None and board.results == []
        assert board.requests[-1] == Command.RESET
        got = complete(host.gemm(a, w, mode))
    assert got.tolist() == (a @ w).tolist()


def test_a_failed_reset_is_noted_and_the_next_gemm_resets_first():
    class Broken(FakeBoard):
        """Goes down for good at the first READ, until ``repaired``."""
        down = repaired = False

        async def write(self, data):
            if not self.repaired and (self.down or Command(data[1]) == Command.READ):
                self.down = True
                raise HostLinkError("timeout: the cable was pulled")
            await super().write(data)

    board = Broken(identity())
    host = host_for(board)
    a, w = np.ones((2, 2), int), np.ones((2, 2), int)
    with pytest.raises(HostLinkError, match="cable") as error:
        complete(host.gemm(a, w, Mode(8, 8, True, True)))
    assert any("next GEMM resets it first" in note for note in error.value.__notes__)
    assert board.results                    # the reset did not get through
    board.repaired = True
    board.requests.clear()
    got = complete(host.gemm(a, w, Mode(8, 8, True, True)))
    assert got.tolist() == (a @ w).tolist() and board.requests[0] == Command.RESET


def test_a_serial_read_that_gets_too_few_bytes_raises_and_discard_drops_late_bytes():
    # pyserial's loopback: it reads what it writes.
    port = SerialTransport("loop://", timeout=0.05)
    asyncio.run(port.write(b"\x5a\x00"))
    assert asyncio.run(port.read(1)) == b"\x5a"
    with pytest.raises(HostLinkError, match="timeout: 1 of 4 bytes"):
        asyncio.run(port.read(4))
    asyncio.run(port.write(b"late"))
    asyncio.run(port.discard(quiet=0.01))
    with pytest.raises(HostLinkError, match="timeout: 0 of 1 bytes"):
        asyncio.run(port.read(1))


def test_a_simulated_board_read_that_gets_too_few_bytes_raises_and_discard_drops_late_bytes():
    # boards.sim: the board top in the Amaranth simulator, behind a serial port's interface.
    # Its coroutines never yield to an event loop: they run the simulation while they wait.
    board = SimulatedBoard()
    complete(board.write(frame(Command.IDENTIFY)))
    assert complete(board.read(4)) == bytes([RESPONSE_SYNC, Status.OK.value, 6, 0])
    start = board.cycles
    with pytest.raises(HostLinkError, match="timeout: 8 of 9 bytes"):    # 6 + CRC came
        complete(board.read(9))
    # It waits for as long as 9 bytes take on the line, plus its slack, no longer.
    assert board.cycles - start <= (10 * 9 + board.slack + 10) * board.divisor
    complete(board.discard())
    with pytest.raises(HostLinkError, match="timeout: 0 of 1 bytes"):
        complete(board.read(1))


@pytest.mark.parametrize("make, message", [
    (lambda: SimulatedBoard(slack=39), "slack must be .* of at least 40, not 39"),
    (lambda: SimulatedBoard(divisor=3), "divisor must be .* of at least 4, not 3"),
    (lambda: board_array("icebreaker2"), "board must be one of icebreaker, ulx3s-85f")])
def test_a_simulated_board_refuses_bad_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()
