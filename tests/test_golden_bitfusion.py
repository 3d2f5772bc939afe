"""Bit-fusion golden arithmetic equals plain integer arithmetic (docs/design.md 3.1)."""

import itertools

import numpy as np
import pytest

from golden import bitfusion
from golden.bitfusion import (brick_product, fused_dot, fused_product, lanes, pack, slices,
                              unpack, value_range)

MODES = list(itertools.product((2, 4, 8), repeat=2))
SIGNS = list(itertools.product((False, True), repeat=2))


def disagreements_with_integer_product(w_bits, a_bits, w_signed, a_signed):
    """The operand pairs of a mode whose brick-by-brick product is not the integer product."""
    w_lo, w_hi = value_range(w_bits, w_signed)
    a_lo, a_hi = value_range(a_bits, a_signed)
    w, a = np.meshgrid(np.arange(w_lo, w_hi + 1), np.arange(a_lo, a_hi + 1))
    wrong = fused_product(w, a, w_bits, a_bits, w_signed, a_signed) != w * a
    return list(zip(w[wrong].tolist(), a[wrong].tolist()))


def test_lane_counts_follow_the_brick_budget():
    expected = {(2, 2): 16, (2, 4): 8, (4, 2): 8, (4, 4): 4, (2, 8): 4, (8, 2): 4,
                (4, 8): 2, (8, 4): 2, (8, 8): 1}
    assert {mode: lanes(*mode) for mode in MODES} == expected


@pytest.mark.parametrize("w_signed, a_signed", SIGNS)
@pytest.mark.parametrize("w_bits, a_bits", MODES)
def test_every_operand_pair_equals_integer_product(w_bits, a_bits, w_signed, a_signed):
    assert disagreements_with_integer_product(w_bits, a_bits, w_signed, a_signed) == []


@pytest.mark.parametrize("wrong_shift", [
    lambda p, q: 2 * p + q,                 # the a slices one bit apart instead of two
    lambda p, q: 2 * (p + q) + (p == 3),    # the top w slice of an 8-bit weight a bit too high
    lambda p, q: 2 * max(p, q),             # the slices of one operand overlap
], ids=["a-slices-one-bit-apart", "top-w-slice-too-high", "overlapping-slices"])
def test_the_integer_oracle_catches_a_wrong_brick_shift(monkeypatch, wrong_shift):
    # The check above must fail when the model misplaces a brick product.
    monkeypatch.setattr(bitfusion, "brick_shift", wrong_shift)
    assert any(disagreements_with_integer_product(*mode, *signs)
               for mode in MODES for signs in SIGNS)


def test_slices_recompose_and_top_slice_carries_the_sign():
    x = np.arange(-128, 128)
    parts = slices(x, 8, signed=True)
    assert np.array_equal(sum(p << (2 * i) for i, p in enumerate(parts)), x)
    assert parts[-1].min() == -2 and parts[-1].max() == 1
    assert all(p.min() == 0 and p.max() == 3 for p in parts[:-1])


def test_brick_signedness():
    assert brick_product(-2, 3, True, False) == -6
    assert brick_product(3, 3, False, False) == 9
    with pytest.raises(ValueError, match="w slice 3 does not fit 2 bits signed"):
        brick_product(3, 1, True, False)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("w_bits, a_bits", MODES)
def test_dot_product_of_random_lanes(w_bits, a_bits, seed):
    rng = np.random.default_rng(seed)
    for w_signed, a_signed in SIGNS:
        count = lanes(w_bits, a_bits)
        w = rng.integers(*value_range(w_bits, w_signed), endpoint=True, size=count)
        a = rng.integers(*value_range(a_bits, a_signed), endpoint=True, size=count)
        assert fused_dot(w, a, w_bits, a_bits, w_signed, a_signed) == int(np.dot(w, a)), seed


def test_dot_product_rejects_too_many_lanes():
    with pytest.raises(ValueError, match="up to 1 lanes"):
        fused_dot([1, 2], [3, 4], 8, 8, True, True)


@pytest.mark.parametrize("bits", (2, 4, 8))
def test_pack_is_little_endian_and_round_trips(bits):
    rng = np.random.default_rng(bits)
    count = 32 // bits
    values = rng.integers(*value_range(bits, True), endpoint=True, size=count)
    word = pack(values, bits, signed=True)
    assert word < 1 << 32
    assert (word & ((1 << bits) - 1)) == values[0] % (1 << bits)
    assert np.array_equal(unpack(word, bits, count, signed=True), values)


def test_pack_rejects_a_value_that_does_not_fit():
    with pytest.raises(ValueError, match="values 8 does not fit 4 bits signed"):
        pack([1, 8], 4, signed=True)
