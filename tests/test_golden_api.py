"""Every public golden function on any input: the exact result, or a one-line error.

The rule (golden/checks.py, docs/golden.md): integer arguments take whole numbers of any
real type (``2.0`` is 2); fractions, NaN and infinity are ValueErrors; bools, strings, None
and other objects are TypeErrors; real arguments take finite numbers. The oracles here are
written from that rule and the formulas of docs/design.md, in plain Python integers, without
the golden code. Hypothesis runs derandomized (the examples are a fixed function of the
test), so a failure repeats; ``print_blob`` prints the reproducer.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golden import bitfusion, csc, prune, quant, requant, systolic, topk
from golden.network import QuantizedLayer, accumulator_bits, digits_network, float_network
from golden.systolic import Mode, Tiling, gemm_cycles

EXAMPLES = 100
FAST = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                print_blob=True, suppress_health_check=[HealthCheck.too_slow])

#: How an array argument is written; all but the last four hold one fault each.
KINDS = ("list", "int64", "uint8", "whole float", "object ints", "fraction", "nan", "inf",
         "bool", "none", "string", "huge")


# ---------------------------------------------------------------------------------------------
# Inputs, and what the rule says of them.

def mostly(good, bad):
    """``good`` three times in four, else ``bad``."""
    return st.one_of(good, good, good, bad)


@st.composite
def arrays(draw, shape, lo, hi, slack=2, faults=True):
    """An array argument of ``shape``: whole numbers near ``lo..hi``, written in one of KINDS.

    Mostly (always, without ``faults``) the numbers are in range and the kind one of the
    first five, which hold no fault.
    """
    size = math.prod(shape)
    clean = not faults or draw(mostly(st.just(True), st.just(False)))
    element = st.integers(lo, hi) if clean else \
        st.one_of(st.integers(lo, hi), st.integers(lo - slack, hi + slack))
    values = draw(st.lists(element, min_size=size, max_size=size))
    kind = draw(st.sampled_from(KINDS[:5] if clean else KINDS))
    at = draw(st.integers(0, size - 1)) if size else 0
    if not size:            # an empty list would lose the shape
        return np.zeros(shape, dtype=np.int64)
    if kind == "list":
        return np.array(values, dtype=object).reshape(shape).tolist()
    if kind == "int64":
        return np.array(values, dtype=np.int64).reshape(shape)
    if kind == "uint8":
        return np.array(values, dtype=np.uint8 if 0 <= min(values) and max(values) < 256
                        else np.int64).reshape(shape)
    if kind in ("whole float", "fraction", "nan", "inf"):
        out = np.array(values, dtype=np.float64)
        out[at] = {"whole float": out[at], "fraction": out[at] + 0.5, "nan": np.nan,
                   "inf": draw(st.sampled_from((np.inf, -np.inf)))}[kind]
        return out.reshape(shape)
    if kind == "bool":
        return (np.array(values) % 2 == 1).reshape(shape)
    out = np.array(values, dtype=object)
    if kind == "none":
        out[at] = None
    elif kind == "huge":
        out[at] = draw(st.sampled_from((1 << 64, -(1 << 70))))
    elif kind == "string":
        return np.array(values).astype(str).reshape(shape)
    return out.reshape(shape)


def expect_integers(raw, lo=-(1 << 63), hi=(1 << 63) - 1):
    """The whole numbers of ``raw`` as an object array of Python ints, or the error it earns."""
    flat = np.asarray(raw, dtype=object)
    out = []
    for value in flat.ravel().tolist():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return TypeError
        if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
            return ValueError
        out.append(int(value))
    if any(not lo <= v <= hi for v in out):
        return ValueError
    return np.array(out, dtype=object).reshape(flat.shape)


def expect_integer(value, lo=None, hi=None, allowed=None):
    """A scalar integer argument by the rule, or the error it earns."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return TypeError
    if not math.isfinite(value) or value != int(value):
        return ValueError
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi) or \
            (allowed is not None and value not in allowed):
        return ValueError
    return value


def first_error(*expectations):
    """The error of the first argument that earns one (the functions check in that order)."""
    for expectation in expectations:
        if isinstance(expectation, type):
            return expectation
    return None


def outcome(call):
    """``(result, None)`` or ``(None, error)`` for a ValueError/TypeError with a one-line message.

    Any other exception fails the test.
    """
    try:
        return call(), None
    except (ValueError, TypeError) as error:
        message = str(error)
        assert message and "\n" not in message, repr(message)
        return None, error


def agrees(call, expected, same=lambda got, want: np.array_equal(got, want)):
    """The call gives ``expected``, or raises exactly the error type ``expected`` names."""
    got, error = outcome(call)
    if isinstance(expected, type):
        assert error is not None, f"expected {expected.__name__}, got {got!r}"
        assert isinstance(error, expected), f"expected {expected.__name__}, got {error!r}"
    else:
        assert error is None, f"expected {expected!r}, got {error!r}"
        assert same(got, expected), f"expected {expected!r}, got {got!r}"


BITS = mostly(st.sampled_from((2, 4, 8)), st.sampled_from((3, 0, 8.0, 2.5, True, "8", None)))
SIGNED = mostly(st.booleans(), st.sampled_from((1, None, "yes")))


def signed_range(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


# ---------------------------------------------------------------------------------------------
# golden.bitfusion

@FAST
@given(st.data(), st.sampled_from((2, 4, 8)), st.booleans(), st.integers(0, 8))
def test_pack_gives_the_little_endian_word_or_an_error(data, bits, signed, count):
    lo, hi = signed_range(bits, signed)
    raw = data.draw(arrays((count,), lo, hi))
    values = expect_integers(raw, lo, hi)
    if isinstance(values, type):
        expected = values
    else:
        expected = sum((int(v) % (1 << bits)) << (i * bits) for i, v in enumerate(values))
    agrees(lambda: bitfusion.pack(raw, bits, signed), expected, lambda got, want: got == want)


@FAST
@given(st.data(), BITS, st.integers(0, 6), SIGNED)
def test_unpack_reads_every_lane_or_refuses_a_word_wider_than_the_lanes(data, bits, count,
                                                                        signed):
    b = expect_integer(bits, 1, 32)
    width = count * b if isinstance(b, int) else 8
    word = data.draw(mostly(st.integers(0, (1 << width) - 1),
                            st.sampled_from((1 << width, -1, 1.5, "7", None))))
    expected = first_error(b, expect_integer(count, 0), expect_integer(word, 0))
    if expected is None and word >> (count * b):
        expected = ValueError
    if expected is None and not isinstance(signed, bool):
        expected = TypeError
    if expected is None:
        lanes = [(word >> (i * b)) & ((1 << b) - 1) for i in range(count)]
        expected = [v - (1 << b) if signed and v >> (b - 1) else v for v in lanes]
    agrees(lambda: bitfusion.unpack(word, bits, count, signed), expected,
           lambda got, want: got.tolist() == want)


@FAST
@given(st.data(), BITS, BITS, SIGNED, SIGNED)
def test_fused_dot_is_the_integer_dot_product_or_an_error(data, w_bits, a_bits, w_signed,
                                                          a_signed):
    wb, ab = expect_integer(w_bits, allowed=(2, 4, 8)), expect_integer(a_bits, allowed=(2, 4, 8))
    expected = first_error(wb, ab)
    if expected is not None:
        agrees(lambda: bitfusion.fused_dot([0], [0], w_bits, a_bits, w_signed, a_signed),
               expected)
        return
    count = data.draw(st.integers(0, 16 // ((wb // 2) * (ab // 2)) + 1))
    w_lo, w_hi = signed_range(wb, bool(w_signed))
    a_lo, a_hi = signed_range(ab, bool(a_signed))
    w_raw = data.draw(arrays((count,), w_lo, w_hi))
    a_raw = data.draw(arrays((count,), a_lo, a_hi))
    flags = [TypeError if not isinstance(s, bool) else None for s in (w_signed, a_signed)]
    w_values, a_values = expect_integers(w_raw, w_lo, w_hi), expect_integers(a_raw, a_lo, a_hi)
    expected = first_error(flags[0], w_values, flags[1], a_values)
    if expected is None and count > 16 // ((wb // 2) * (ab // 2)):
        expected = ValueError
    if expected is None:
        expected = sum(int(w) * int(a) for w, a in zip(w_values, a_values))
    agrees(lambda: bitfusion.fused_dot(w_raw, a_raw, w_bits, a_bits, w_signed, a_signed),
           expected, lambda got, want: got == want and isinstance(got, int))


# ---------------------------------------------------------------------------------------------
# golden.quant, golden.requant, golden.prune

@st.composite
def real_arrays(draw, shape, magnitude=1e3):
    """A float argument: finite reals, or one NaN, infinity, bool, string or None among them."""
    size = math.prod(shape)
    values = draw(st.lists(st.floats(-magnitude, magnitude, allow_nan=False), min_size=size,
                           max_size=size))
    kind = draw(mostly(st.sampled_from(("float", "int")),
                       st.sampled_from(("nan", "inf", "bool", "none", "string"))))
    if not size or kind == "float":
        return np.array(values, dtype=np.float64).reshape(shape)
    if kind == "int":
        return np.rint(np.array(values)).astype(np.int64).reshape(shape)
    if kind == "bool":
        return (np.array(values) > 0).reshape(shape)
    if kind == "string":
        return np.array(values).astype(str).reshape(shape)
    out = np.array(values, dtype=object if kind == "none" else np.float64)
    out[draw(st.integers(0, size - 1))] = {"nan": np.nan, "inf": -np.inf, "none": None}[kind]
    return out.reshape(shape)


def expect_reals(raw):
    """The finite reals of ``raw`` as Python floats, or the error they earn."""
    flat = np.asarray(raw, dtype=object)
    out = []
    for value in flat.ravel().tolist():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return TypeError
        if not math.isfinite(value):
            return ValueError
        out.append(float(value))
    return np.array(out, dtype=object).reshape(flat.shape)


@FAST
@given(st.data(), BITS, st.booleans())
def test_quantized_weights_are_the_clamped_rounded_quotients_or_an_error(data, bits,
                                                                         per_channel):
    shape = data.draw(st.sampled_from(((3, 4), (1, 1), (5,), (0, 3))))
    raw = data.draw(real_arrays(shape))
    b = expect_integer(bits, allowed=(2, 4, 8))
    w = expect_reals(raw)
    expected = first_error(b, w)
    if expected is None and (not w.size or (per_channel and w.ndim < 2)):
        expected = ValueError
    if expected is None:
        top = (1 << (b - 1)) - 1
        rows = w.tolist() if per_channel else [w.ravel().tolist()]
        scales = [max(abs(v) for v in row) / top or 1.0 for row in rows]
        q = [[min(max(round(v / s), -top - 1), top) for v in row] for row, s in zip(rows, scales)]
        expected = np.array(q).reshape(shape)
    agrees(lambda: quant.quantize_weights(raw, bits, per_channel)[0], expected)


@FAST
@given(st.data(), BITS, mostly(st.floats(1e-3, 10), st.sampled_from((0.0, -1.0, np.nan,
                                                                         np.inf, "1", None))))
def test_quantized_activations_are_clamped_rounded_quotients_or_an_error(data, bits, scale):
    raw = data.draw(real_arrays((data.draw(st.integers(0, 6)),)))
    b = expect_integer(bits, allowed=(2, 4, 8))
    s = TypeError if not isinstance(scale, float) else \
        ValueError if not (math.isfinite(scale) and scale > 0) else scale
    x = expect_reals(raw)
    expected = first_error(b, s, x)
    if expected is None:
        expected = [min(max(round(v / s), 0), (1 << b) - 1) for v in x.tolist()]
    agrees(lambda: quant.quantize_activations(raw, bits, scale), expected,
           lambda got, want: got.tolist() == want)


@FAST
@given(st.data(), mostly(st.integers(1, 47), st.sampled_from((0, 48, 2.0, 2.5, True))),
       mostly(st.integers(1, 16), st.sampled_from((0, 17, None))))
def test_requantize_is_the_rounded_clamped_shift_or_an_error(data, shift, out_bits):
    size = data.draw(st.integers(0, 5))
    acc_raw = data.draw(arrays((size,), -(1 << 40), 1 << 40))
    mult_raw = data.draw(arrays((data.draw(st.sampled_from((size, 1))),), 0, (1 << 31) - 1))
    sh, ob = expect_integer(shift, 1, 47), expect_integer(out_bits, 1, 16)
    acc, mult = expect_integers(acc_raw), expect_integers(mult_raw)
    expected = first_error(sh, ob, acc, mult)
    if expected is None and len(mult) not in (1, size):
        expected = ValueError
    if expected is None:
        mults = list(mult) * size if len(mult) == 1 else list(mult)
        expected = [min(max((a * m + (1 << (sh - 1))) >> sh, 0), (1 << ob) - 1)
                    for a, m in zip(acc.tolist(), mults)]
    agrees(lambda: requant.requantize(acc_raw, mult_raw, shift, out_bits), expected,
           lambda got, want: got.tolist() == want)


@FAST
@given(st.data(), mostly(st.floats(0, 0.99), st.sampled_from((1.0, -0.1, np.nan, "0.5"))))
def test_magnitude_pruning_drops_the_smallest_or_raises(data, target):
    raw = data.draw(real_arrays((data.draw(st.integers(0, 4)), 3)))
    w = expect_reals(raw)
    t = TypeError if not isinstance(target, float) else \
        ValueError if not (0 <= target < 1) else target
    expected = first_error(t, w)
    if expected is None:
        flat = w.ravel().tolist()
        order = sorted(range(len(flat)), key=lambda i: (abs(flat[i]), i))
        keep = [True] * len(flat)
        for i in order[:int(round(t * len(flat)))]:
            keep[i] = False
        expected = np.array(keep, dtype=bool).reshape(w.shape)
    agrees(lambda: prune.magnitude_prune(raw, target), expected)


@FAST
@given(st.data(), mostly(st.integers(0, 4), st.sampled_from((-1, 1.5, None))),
       mostly(st.integers(1, 4), st.sampled_from((0, 2.0, True))))
def test_n_m_pruning_keeps_the_n_largest_of_every_m_or_raises(data, n, m):
    groups = data.draw(st.integers(0, 3))
    cols = groups * m if isinstance(m, int) and m > 0 and data.draw(mostly(
        st.just(True), st.just(False))) else data.draw(st.integers(0, 8))
    raw = data.draw(real_arrays((2, cols)))
    w = expect_reals(raw)
    mm = expect_integer(m, 1)
    nn = first_error(mm) or expect_integer(n, 0, mm)
    expected = first_error(w, mm, nn)
    if expected is None and cols % mm:
        expected = ValueError
    if expected is None:
        keep = np.zeros(w.shape, dtype=bool)
        for r, row in enumerate(w.tolist()):
            for g in range(0, cols, mm):
                group = sorted(range(g, g + mm), key=lambda i: (-abs(row[i]), i))
                keep[r, group[:nn]] = True
        expected = keep
    agrees(lambda: prune.n_m_prune(raw, n, m), expected)


@FAST
@given(st.data(), mostly(st.floats(0, 0.99), st.sampled_from((1.0, np.inf, None))))
def test_structured_pruning_drops_the_rows_of_smallest_norm_or_raises(data, target):
    shape = data.draw(mostly(st.sampled_from(((4, 3), (1, 2), (3, 1))),
                             st.sampled_from(((0, 2), (6,)))))
    raw = data.draw(real_arrays(shape))
    w = expect_reals(raw)
    t = TypeError if not isinstance(target, float) else \
        ValueError if not (0 <= target < 1) else target
    expected = first_error(t, w) or (ValueError if len(shape) != 2 else None)
    if expected is None:
        # Whole-number weights keep the squared norms exact; ties go to the lower row.
        w = np.rint(w.astype(np.float64))
        raw = w
        energy = [sum(int(v) ** 2 for v in row) for row in w.tolist()]
        order = sorted(range(len(energy)), key=lambda r: (energy[r], r))
        expected = np.ones(shape, dtype=bool)
        expected[order[:int(round(t * shape[0]))]] = False
    agrees(lambda: prune.structured_prune(raw, target), expected)


@FAST
@given(st.data(), mostly(st.integers(1, 16), st.sampled_from((0, 17, 4.5, True))),
       st.floats(-50, 50), st.floats(0.01, 100))
def test_asymmetric_quantization_is_survey_eq2_or_raises(data, bits, alpha, width):
    raw = data.draw(real_arrays((data.draw(st.integers(0, 5)),), magnitude=200))
    b, r = expect_integer(bits, 1, 16), expect_reals(raw)
    beta = alpha + width
    expected = first_error(b, r)
    if expected is None:
        scale = (beta - alpha) / ((1 << b) - 1)
        zero = round(alpha / scale)
        expected = [min(max(round(v / scale) - zero, 0), (1 << b) - 1) for v in r.tolist()]
    agrees(lambda: quant.asymmetric_quantize(raw, alpha, beta, bits)[0], expected,
           lambda got, want: got.tolist() == want)


@FAST
@given(st.data(), mostly(st.integers(1, 4), st.sampled_from((0, 2.5, None))))
def test_kmeans_codebook_keeps_zero_at_index_zero_or_raises(data, bits):
    raw = data.draw(arrays((data.draw(st.integers(0, 3)), 4), -20, 20))
    b, w = expect_integer(bits, 1, 16), expect_integers(raw)
    expected = first_error(b, w)
    got, error = outcome(lambda: quant.kmeans_codebook(raw, bits))
    if expected is not None:
        assert isinstance(error, expected), (expected, error)
        return
    assert error is None, error
    codebook, index = got
    w = w.astype(np.int64)
    assert codebook.shape == (1 << b,) and codebook[0] == 0 and index.shape == w.shape
    assert np.array_equal(index == 0, w == 0)
    # Each non-zero weight takes the nearest non-zero-index entry (lowest index on a tie).
    for value, i in zip(w[w != 0].tolist(), index[w != 0].tolist()):
        distances = [abs(value - int(c)) for c in codebook[1:]]
        assert i == 1 + distances.index(min(distances))


@FAST
@given(st.data(), mostly(st.integers(2, 31), st.sampled_from((1, 32, 15.0, None))))
def test_quantize_multiplier_rounds_within_half_a_step_or_raises(data, multiplier_bits):
    real = data.draw(st.one_of(st.floats(1e-9, 1e3), st.lists(st.floats(1e-9, 1e3), max_size=4),
                               st.sampled_from((0.0, -1.0, np.nan, np.inf, "0.5", True))))
    bits = expect_integer(multiplier_bits, 2, 31)
    values = expect_reals(real)
    expected = first_error(values, bits)
    if expected is None and (not values.size or min(values.ravel().tolist()) <= 0):
        expected = ValueError
    got, error = outcome(lambda: requant.quantize_multiplier(real, multiplier_bits))
    if expected is not None:
        assert isinstance(error, expected), (expected, error)
        return
    top = (1 << bits) - 1
    if error is not None:       # only a multiplier too large for a shift of 1 is refused
        assert max(values.ravel().tolist()) * 2 > top, error
        return
    multiplier, shift = got
    assert 1 <= shift <= 47
    for m, v in zip(np.ravel(multiplier).tolist(), values.ravel().tolist()):
        assert 0 <= m <= top and abs(m - v * 2 ** shift) <= 0.5


@FAST
@given(st.data(), mostly(st.integers(1, 5), st.sampled_from((0, 65, 1.5))),
       st.integers(1, 3))
def test_csc_images_decode_to_the_matrix_or_raise(data, n_pes, z_bits):
    raw = data.draw(arrays((data.draw(st.integers(0, 9)), data.draw(st.integers(0, 3))),
                           -3, 3))
    w = expect_integers(raw)
    expected = first_error(w, expect_integer(n_pes, 1, 64))
    got, error = outcome(lambda: csc.encode(raw, n_pes, z_bits))
    if expected is not None:
        assert isinstance(error, expected), (expected, error)
        return
    assert error is None, error
    assert csc.decode(got, w.shape, z_bits).tolist() == w.tolist()
    assert sum(int((image.values != 0).sum()) for image in got) == int((w != 0).sum())


@FAST
@given(st.data(), mostly(st.integers(1, 3), st.sampled_from((0, 1.5))))
def test_fused_product_is_the_elementwise_product_or_raises(data, a_cols):
    # a is (2, a_cols), which broadcasts against w (2, 1), or else (3, 2), which does not.
    shape = (2, a_cols) if isinstance(a_cols, int) and a_cols else (3, 2)
    w_raw = data.draw(arrays((2, 1), -128, 127, slack=1))
    a_raw = data.draw(arrays(shape, -8, 7, slack=1))
    w, a = expect_integers(w_raw, -128, 127), expect_integers(a_raw, -8, 7)
    expected = first_error(w, a) or (ValueError if shape == (3, 2) else (w * a).tolist())
    agrees(lambda: bitfusion.fused_product(w_raw, a_raw, 8, 4, True, True), expected,
           lambda got, want: got.tolist() == want)


# ---------------------------------------------------------------------------------------------
# golden.topk

@FAST
@given(st.data(), mostly(st.integers(-1, 12), st.sampled_from((1.5, 2.0, True, "3", None))))
def test_topk_selects_the_largest_lower_index_first_or_raises(data, k):
    raw = data.draw(arrays((data.draw(st.integers(0, 10)),), -4, 4))
    scores = expect_integers(raw)
    kk = expect_integer(k, 1)
    expected = first_error(scores) or (ValueError if not len(scores) else first_error(kk))
    if expected is None:
        # docs/topk.md: the min(k, n) largest, ties to the lower index, indices ascending;
        # the threshold is the smallest selected score.
        values = scores.tolist()
        order = sorted(range(len(values)), key=lambda i: (-values[i], i))[:kk]
        expected = (sorted(order), min(values[i] for i in order))
    agrees(lambda: topk.topk(raw, k), expected,
           lambda got, want: (got[0].tolist(), got[1]) == want)


@FAST
@given(st.data(), st.integers(1, 3), st.integers(1, 5))
def test_cascade_token_pruning_follows_spatten_or_raises(data, layers, tokens):
    raw = data.draw(arrays((layers, 2, tokens, tokens), 0, 9, slack=1))
    keep = sorted(data.draw(st.lists(mostly(st.integers(1, tokens), st.sampled_from(
        (0, tokens + 1))), min_size=layers, max_size=layers)), reverse=True)
    probs = expect_integers(raw, 0, (1 << 32) - 1)
    expected = first_error(probs)
    if expected is None:
        alive, importance = list(range(tokens)), [0] * tokens
        survivors = []
        for layer, count in enumerate(keep):
            if not 1 <= count <= len(alive):
                expected = ValueError
                break
            for key in alive:
                importance[key] += sum(int(probs[layer, h, q, key]) for h in range(2)
                                       for q in alive)
            ranked = sorted(alive, key=lambda t: (-importance[t], t))
            alive = sorted(ranked[:count])
            survivors.append(alive)
        expected = expected or survivors
    agrees(lambda: topk.cascade_token_pruning(raw, keep)[0], expected,
           lambda got, want: [s.tolist() for s in got] == want)


# ---------------------------------------------------------------------------------------------
# golden.systolic

def read_lanes(word, bits, count, signed):
    lanes = [(word >> (i * bits)) & ((1 << bits) - 1) for i in range(count)]
    return [v - (1 << bits) if signed and v >> (bits - 1) else v for v in lanes]


MODES = st.builds(Mode, st.sampled_from((2, 4, 8)), st.sampled_from((2, 4, 8)),
                  st.booleans(), st.booleans())
BAD_MODES = st.sampled_from((Mode(3, 8, True, True), Mode(8, 8, 1, True), Mode(8, 2.5, False,
                                                                             False), "8x8"))


@FAST
@given(st.data(), st.booleans(), st.integers(1, 3))
def test_packed_steps_carry_exactly_the_padded_operands_or_raise(data, faults, cols):
    # Half the examples hold no fault at all, so the exact check runs often.
    mode = data.draw(mostly(MODES, BAD_MODES) if faults else MODES)
    rows = data.draw(mostly(st.integers(1, 3), st.sampled_from((0, 1.5, None))) if faults
                     else st.integers(1, 3))
    dims = mostly(st.integers(1, 4), st.just(0)) if faults else st.integers(1, 4)
    m, k, n = (data.draw(dims) for _ in range(3))
    if isinstance(mode, Mode) and mode.w_bits in (2, 4, 8) and mode.a_bits in (2, 4, 8):
        a_lo, a_hi = signed_range(mode.a_bits, mode.a_signed)
        w_lo, w_hi = signed_range(mode.w_bits, mode.w_signed)
    else:
        a_lo, a_hi, w_lo, w_hi = 0, 1, 0, 1
    a_raw = data.draw(arrays((m, k), a_lo, a_hi, slack=1, faults=faults))
    w_raw = data.draw(arrays((k, n), w_lo, w_hi, slack=1, faults=faults))
    if not isinstance(mode, Mode):
        expected = TypeError
    elif mode.w_bits not in (2, 4, 8) or mode.a_bits not in (2, 4, 8):
        expected = TypeError if isinstance(mode.w_bits, bool) else ValueError
    elif not all(isinstance(s, bool) for s in (mode.w_signed, mode.a_signed)):
        expected = TypeError
    else:
        a, w = expect_integers(a_raw, a_lo, a_hi), expect_integers(w_raw, w_lo, w_hi)
        expected = first_error(expect_integer(rows, 1), a, w)
        if expected is None and not (m and n and k):
            expected = ValueError
    if expected is not None:
        agrees(lambda: systolic.pack_steps(a_raw, w_raw, rows, cols, mode), expected)
        return
    steps = systolic.pack_steps(a_raw, w_raw, rows, cols, mode)
    lanes = 16 // ((mode.w_bits // 2) * (mode.a_bits // 2))
    k_steps, tiles_m, tiles_n = -(-k // lanes), -(-m // rows), -(-n // cols)
    assert len(steps) == tiles_m * tiles_n * k_steps
    seen_a = np.zeros((tiles_m * rows, k_steps * lanes), dtype=object)
    seen_w = np.zeros((k_steps * lanes, tiles_n * cols), dtype=object)
    for index, (act, wgt) in enumerate(steps):
        tile, s = divmod(index, k_steps)
        tm, tn = divmod(tile, tiles_n)
        for r, word in enumerate(act):
            seen_a[tm * rows + r, s * lanes:(s + 1) * lanes] = read_lanes(word, mode.a_bits,
                                                                          lanes, mode.a_signed)
        for c, word in enumerate(wgt):
            seen_w[s * lanes:(s + 1) * lanes, tn * cols + c] = read_lanes(word, mode.w_bits,
                                                                          lanes, mode.w_signed)
    assert seen_a[:m, :k].tolist() == a.tolist() and not seen_a[m:].any() and \
        not seen_a[:, k:].any()
    assert seen_w[:k, :n].tolist() == w.tolist() and not seen_w[k:].any() and \
        not seen_w[:, n:].any()
    tiling = systolic.tile_gemm(a_raw, w_raw, rows, cols, mode)
    assert (tiling.m, tiling.n, tiling.k, tiling.k_steps) == (m, n, k, k_steps)


@FAST
@given(st.data(), st.integers(1, 4), st.integers(1, 3))
def test_result_beats_reassemble_the_product_or_raise(data, rows, cols):
    drain_rows = data.draw(mostly(st.sampled_from([d for d in (1, 2, 4) if rows % d == 0]),
                                  st.sampled_from((0, 3, 1.5, 2.0))))
    m, n = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 5))
    tiling = Tiling(m, n, 1, rows, cols, 1)
    d = expect_integer(drain_rows, 1, rows)
    if not isinstance(d, type) and rows % d:
        d = ValueError
    tiles_m, tiles_n = -(-m // rows), -(-n // cols)
    per_tile = rows // d if not isinstance(d, type) else 1
    count = tiles_m * tiles_n * per_tile + data.draw(mostly(st.just(0), st.sampled_from((-1, 1))))
    raw = data.draw(arrays((max(count, 0), d if not isinstance(d, type) else 1, cols),
                           -(1 << 20), 1 << 20))
    beats = expect_integers(raw)
    expected = first_error(d)
    if expected is None and count != tiles_m * tiles_n * per_tile:
        expected = ValueError
    expected = expected or first_error(beats)
    if expected is None:
        full = np.zeros((tiles_m * rows, tiles_n * cols), dtype=object)
        for i, beat in enumerate(beats):
            tile, group = divmod(i, per_tile)
            tm, tn = divmod(tile, tiles_n)
            full[tm * rows + group * d:tm * rows + (group + 1) * d,
                 tn * cols:(tn + 1) * cols] = beat
        expected = full[:m, :n].tolist()
    agrees(lambda: systolic.unpack_results(raw, tiling, drain_rows), expected,
           lambda got, want: got.tolist() == want)


# ---------------------------------------------------------------------------------------------
# golden.csc

def dense_from_words(words, shape, n_pes):
    """The matrix the loader words carry, walked by the z rule of docs/design.md 3.3."""
    dense = [[0] * shape[1] for _ in range(shape[0])]
    for pe in range(n_pes):
        pointers = [w.fields for w in words if w.kind == "POINTER" and w.pe == pe]
        entries = [w.fields for w in words if w.kind == "ENTRY" and w.pe == pe]
        for j in range(shape[1]):
            position = -1
            for entry in entries[pointers[j]:pointers[j + 1]]:
                position += entry["z"] + 1
                if entry["value"]:
                    dense[position * n_pes + pe][j] = entry["value"]
    return dense


@FAST
@given(st.data(), st.booleans(), st.sampled_from((2, 4, 8)), st.integers(1, 3))
def test_load_words_carry_the_matrix_or_raise(data, faults, value_bits, z_bits):
    # Half the examples hold no fault at all, so the exact check runs often.
    n_pes = data.draw(mostly(st.integers(1, 4), st.sampled_from((0, 65, 2.5))) if faults
                      else st.integers(1, 4))
    rows = data.draw(st.integers(0 if faults else 1, 7))
    cols = data.draw(st.integers(1, 4))
    lo, hi = signed_range(value_bits, True)
    raw = data.draw(arrays((rows, cols), lo, hi, slack=1, faults=faults))
    matrix = expect_integers(raw, lo, hi)
    requantized = data.draw(st.booleans())
    options = {}
    if requantized:
        length = data.draw(st.sampled_from((rows, abs(rows - 1)))) if faults else rows
        options = {"bias": data.draw(arrays((length,), -100, 100, faults=faults)),
                   "multiplier": list(range(rows)), "shift": 5, "out_bits": 8}
    expected = first_error(matrix)
    if expected is None and rows == 0:
        expected = ValueError
    if expected is None and requantized:
        bias = expect_integers(options["bias"])
        expected = first_error(bias) or (ValueError if len(bias) != rows else None)
    expected = expected or first_error(expect_integer(n_pes, 1, 64))
    if expected is not None:
        agrees(lambda: csc.load_words(raw, n_pes, z_bits=z_bits, value_bits=value_bits,
                                      **options), expected)
        return
    words = csc.load_words(raw, n_pes, z_bits=z_bits, value_bits=value_bits, **options)
    setup = words[0]
    assert setup.kind == "SETUP" and setup.fields["rows"] == rows
    assert setup.fields["requantize"] == int(requantized)
    assert dense_from_words(words, (rows, cols), int(n_pes)) == matrix.tolist()
    assert all(0 <= w.fields["z"] < 1 << z_bits for w in words if w.kind == "ENTRY")
    if requantized:
        placed = {(w.pe, w.addr): w.fields for w in words if w.kind == "BIAS"}
        assert placed == {(r % n_pes, r // n_pes): int(v) for r, v in enumerate(bias)}


@FAST
@given(st.data(), st.integers(1, 3))
def test_spmv_is_the_exact_product_or_raises(data, cols):
    rows = data.draw(st.integers(1, 4))
    raw = data.draw(arrays((rows, cols), -(1 << 40), 1 << 40))
    x_raw = data.draw(arrays((data.draw(st.sampled_from((cols, cols + 1))),), 0, 1 << 30))
    matrix, x = expect_integers(raw), expect_integers(x_raw)
    expected = first_error(matrix, x)
    if expected is None and len(x) != cols:
        expected = ValueError
    if expected is None:
        y = [sum(int(w) * int(v) for w, v in zip(row, x)) for row in matrix.tolist()]
        expected = ValueError if any(abs(v) >= 1 << 63 for v in y) else y
    agrees(lambda: csc.spmv(raw, x_raw), expected, lambda got, want: got.tolist() == want)


# ---------------------------------------------------------------------------------------------
# golden.network

LAYER = QuantizedLayer(weight=np.array([[3, -8, 7], [0, 1, -2]]), bias=np.array([5, -40]),
                       w_bits=4, a_bits=4, multiplier=np.array([3, 1]), shift=2, out_bits=4)


@FAST
@given(st.data())
def test_a_quantized_layer_computes_the_requantized_sum_or_raises(data):
    raw = data.draw(arrays((data.draw(st.integers(0, 3)), data.draw(st.sampled_from((3, 2)))),
                           0, 15))
    a = expect_integers(raw, 0, 15)
    expected = first_error(a)
    if expected is None and a.shape[1] != 3:
        expected = ValueError
    if expected is None:
        expected = []
        for row in a.tolist():
            accs = [sum(x * w for x, w in zip(row, weights)) + b
                    for weights, b in zip([[3, -8, 7], [0, 1, -2]], [5, -40])]
            expected.append([min(max((acc * m + 2) >> 2, 0), 15) for acc, m in zip(accs, [3, 1])])
    agrees(lambda: LAYER.forward(raw), expected, lambda got, want: got.tolist() == want)


# ---------------------------------------------------------------------------------------------
# The cases of issue 13, one by one.

@pytest.mark.parametrize("call, error, message", [
    (lambda: systolic.pack_steps([[1.5]], [[1]], 1, 1, Mode(8, 8, True, True)), ValueError,
     "activation must hold whole numbers, not 1.5"),
    (lambda: bitfusion.pack([1.5, 2.0], 8), ValueError, "values must hold whole numbers, not 1.5"),
    (lambda: LAYER.forward([[1.5, 0, 0]]), ValueError, "a must hold whole numbers, not 1.5"),
    (lambda: requant.requantize([2.9], 1, 1, 8), ValueError,
     "acc must hold whole numbers, not 2.9"),
    (lambda: quant.quantize_weights([[np.nan, 1.0]], 8), ValueError, "w must be finite, not nan"),
    (lambda: quant.quantize_weights([[np.inf, 1.0]], 8), ValueError, "w must be finite, not inf"),
    (lambda: quant.quantize_activations([np.nan, 1.0], 8, 0.1), ValueError,
     "x must be finite, not nan"),
    (lambda: csc.load_words(np.zeros((70000, 1), int), 64), ValueError,
     "matrix must have 1 to 65535 rows"),
    (lambda: csc.load_words(np.zeros((4097, 1), int), 64, max_rows=4096), ValueError,
     "matrix must have 1 to 4096 rows .max_rows"),
    (lambda: systolic.pack_steps([[1]], [[1]], 0, 1, Mode(8, 8, True, True)), ValueError,
     "rows must be an integer of at least 1, not 0"),
    (lambda: topk.topk([3, 1, 2], 1.5), ValueError, "k must be an integer of at least 1, not 1.5"),
    (lambda: csc.load_words(np.eye(4, dtype=int), 2, bias=[0, 0], multiplier=[1] * 4, shift=3,
                            out_bits=8), ValueError, r"bias needs one value per row \(4\), not 2"),
    (lambda: QuantizedLayer(np.ones((2, 3), int), np.array([1]), 8, 8, None, None, None),
     ValueError, r"bias needs one value per output \(2\), not 1"),
    (lambda: systolic.tile_gemm(np.array([["1"]]), [[1]], 1, 1, Mode(8, 8, True, True)),
     TypeError, "activation must hold numbers, not strings"),
    (lambda: csc.encode(np.array([[True]]), 1), TypeError, "w must hold numbers, not booleans"),
    (lambda: accumulator_bits(4, 8, 8, w_signed=1), TypeError,
     "w_signed must be True or False, not 1"),
    (lambda: digits_network("8x8"), ValueError, "bits must be 2, 4 or 8, or one"),
    (lambda: float_network([0.5]), TypeError, r"sparsity must be a real number, not \[0.5\]"),
    (lambda: gemm_cycles(Tiling(4, 4, 4, 4, 4, 1), 3, 2), ValueError,
     "drain_rows must divide the 4 rows, not 3"),
], ids=["pack_steps-fraction", "pack-fraction", "layer-fraction", "requantize-fraction",
        "weights-nan", "weights-inf", "activations-nan", "load_words-65536-rows",
        "load_words-over-max_rows", "pack_steps-no-rows", "topk-fractional-k",
        "load_words-short-bias", "layer-short-bias", "tile_gemm-strings", "encode-bools",
        "accumulator_bits-int-flag", "digits_network-string-bits", "float_network-list",
        "gemm_cycles-drain_rows"])
def test_each_reported_bad_input_is_a_one_line_error(call, error, message):
    with pytest.raises(error, match=message) as raised:
        call()
    assert "\n" not in str(raised.value)


def test_whole_floats_are_integers_everywhere():
    # The documented choice: 2.0 is 2, in arrays and in scalar arguments.
    assert bitfusion.pack([1.0, 2.0], 8) == bitfusion.pack([1, 2], 8) == 513
    assert topk.topk([1.0, 5.0, 3.0], 2.0)[0].tolist() == [1, 2]
    assert requant.requantize([6.0], 3.0, 2.0, 8.0).tolist() == [5]


def test_load_words_accept_exactly_the_setup_field_and_max_rows():
    assert csc.load_words(np.zeros((65535, 1), int), 64)[0].fields["rows"] == 65535
    assert csc.load_words(np.zeros((4096, 1), int), 64, max_rows=4096)[0].fields["rows"] == 4096


def truncating_integers(name, values, lo=None, hi=None, *, ndim=None, fits=None):
    """The bug of issue 13: fractions cast to int64 (1.5 becomes 1), NaN to int64 min."""
    return np.asarray(values, dtype=np.float64).astype(np.int64)


def unchecked_reals(name, values, *, ndim=None):
    """The bug of issue 13: NaN and infinity pass into the quantizers."""
    return np.asarray(values, dtype=np.float64)


def topk_before_the_datasheet(scores, k):
    """The golden top-k before issue 13: a batch shorter than k was an error."""
    if k > len(scores):
        raise ValueError(f"k must be between 1 and n={len(scores)}, not {k!r}")
    return ORIGINAL_TOPK(scores, k)


ORIGINAL_TOPK = topk.topk


@pytest.mark.parametrize("target, replacement, prop", [
    ((bitfusion, "integer_array"), truncating_integers,
     test_pack_gives_the_little_endian_word_or_an_error),
    ((requant, "integer_array"), truncating_integers,
     test_requantize_is_the_rounded_clamped_shift_or_an_error),
    ((quant, "real_array"), unchecked_reals,
     test_quantized_weights_are_the_clamped_rounded_quotients_or_an_error),
    ((quant, "real_array"), unchecked_reals,
     test_quantized_activations_are_clamped_rounded_quotients_or_an_error),
    ((topk, "topk"), topk_before_the_datasheet,
     test_topk_selects_the_largest_lower_index_first_or_raises),
], ids=["pack-truncates", "requantize-truncates", "weights-take-nan", "activations-take-nan",
        "topk-refuses-short-batch"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_properties_fail_on_the_bugs_of_issue_13(monkeypatch, target, replacement, prop):
    # The oracles above must catch each reported mistake, not only pass on the fixed code.
    monkeypatch.setattr(*target, replacement)
    with pytest.raises((AssertionError, ExceptionGroup)) as raised:
        prop()
    if isinstance(raised.value, ExceptionGroup):     # several distinct falsifying examples
        assert raised.value.subgroup(AssertionError) is not None
