"""CSC golden encoding round-trips and equals scipy.sparse's CSC (docs/design.md 3.3)."""

import numpy as np
import pytest
import scipy.sparse

from golden import csc

SPARSITIES = (0.0, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99)


def random_matrix(rng, rows, cols, sparsity, bits=8):
    hi = (1 << (bits - 1)) - 1
    w = rng.integers(-hi - 1, hi, endpoint=True, size=(rows, cols))
    w[w == 0] = 1
    return w * (rng.random((rows, cols)) >= sparsity)


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("n_pes, z_bits", [(1, 4), (4, 2), (5, 4), (8, 1)])
def test_round_trip_and_scipy_equivalence(sparsity, n_pes, z_bits):
    seed = int(sparsity * 100) * 100 + n_pes
    rng = np.random.default_rng(seed)
    w = random_matrix(rng, 61, 23, sparsity)
    w[:, 3] = 0                 # an empty column
    w[:, 5] = 0
    w[60, 5] = 7                # a gap longer than the z range at the bottom of a column
    images = csc.encode(w, n_pes, z_bits)
    assert np.array_equal(csc.decode(images, w.shape, z_bits), w), seed
    rows, cols, values = csc.entries(images, z_bits)
    real = values != 0                       # remove the padding entries
    order = np.lexsort((rows[real], cols[real]))
    reference = scipy.sparse.csc_matrix(w)
    reference.sort_indices()
    assert np.array_equal(rows[real][order], reference.indices)
    assert np.array_equal(values[real][order], reference.data)
    assert np.array_equal(np.bincount(cols[real], minlength=w.shape[1]),
                          np.diff(reference.indptr))


def test_long_gap_is_bridged_by_padding():
    w = np.zeros((40, 1), dtype=np.int64)
    w[37, 0] = 5
    image, = csc.encode(w, 1, z_bits=4)
    # 37 zero rows before the entry: two padding entries of 15 skip 32 rows (and sit on rows 15, 31).
    assert image.values.tolist() == [0, 0, 5]
    assert image.z.tolist() == [15, 15, 5]
    assert image.pointers.tolist() == [0, 3]


def test_rows_are_interleaved_across_pes():
    w = np.arange(1, 13).reshape(6, 2)
    images = csc.encode(w, 3)
    assert images[1].values.tolist() == [3, 9, 4, 10]      # rows 1 and 4 of each column
    assert images[1].pointers.tolist() == [0, 2, 4]


def test_malformed_images_are_rejected():
    image = csc.encode(np.eye(4, dtype=np.int64), 1)[0]
    past_end = csc.PEColumns(image.values, image.z, image.pointers + np.array([0, 0, 0, 0, 9]))
    with pytest.raises(ValueError, match="column pointers"):
        csc.entries([past_end])
    overflow = csc.PEColumns(image.values, image.z + 16, image.pointers)
    with pytest.raises(ValueError, match="z 16 does not fit 4 bits"):
        csc.entries([overflow])
    with pytest.raises(ValueError, match="n_pes must be between 1 and 64, not 0"):
        csc.encode(np.eye(2, dtype=np.int64), 0)


def test_load_words_carry_images_that_decode_to_the_matrix():
    rng = np.random.default_rng(8)
    w = random_matrix(rng, 23, 9, 0.6, bits=4)
    w[:, 1] = 0
    w[22, 1] = -8                             # padding in PE 1's column 1
    bias = rng.integers(-1000, 1000, size=23)
    multiplier = rng.integers(0, 1 << 16, size=23)
    words = csc.load_words(w, 3, z_bits=2, value_bits=4, bias=bias, multiplier=multiplier,
                           shift=9, out_bits=6)
    assert words[0] == ("SETUP", 0, 0, {"rows": 23, "requantize": 1, "shift": 9, "out_bits": 6})
    images = []
    for pe in range(3):
        pointers = [word.fields for word in words if word.kind == "POINTER" and word.pe == pe]
        entries = sorted((word.addr, word.fields["value"], word.fields["z"])
                         for word in words if word.kind == "ENTRY" and word.pe == pe)
        assert [addr for addr, _, _ in entries] == list(range(len(entries)))
        images.append(csc.PEColumns(np.array([v for _, v, _ in entries]),
                                    np.array([z for _, _, z in entries]), np.array(pointers)))
    assert any((image.values == 0).any() for image in images)
    assert np.array_equal(csc.decode(images, w.shape, z_bits=2), w)
    for kind, values in (("BIAS", bias), ("MULTIPLIER", multiplier)):
        placed = {(word.pe, word.addr): word.fields for word in words if word.kind == kind}
        assert placed == {(r % 3, r // 3): int(values[r]) for r in range(23)}


def test_load_words_without_requantization_switch_it_off():
    setup = csc.load_words(np.eye(3, dtype=np.int64), 2)[0]
    assert setup.kind == "SETUP" and setup.fields["requantize"] == 0 and setup.fields["rows"] == 3


@pytest.mark.parametrize("options, message", [
    ({"bias": [0] * 4, "multiplier": [1] * 4, "shift": 48, "out_bits": 8},
     "shift must be between 1 and 47, not 48"),
    ({"bias": [0] * 4, "multiplier": [1] * 4, "shift": 8, "out_bits": 16},
     "out_bits must be between 1 and 15, not 16"),
    ({"bias": [1 << 31] * 4, "multiplier": [1] * 4, "shift": 8, "out_bits": 8},
     "bias 2147483648 does not fit"),
    ({"bias": [0] * 4, "multiplier": [1 << 16] * 4, "shift": 8, "out_bits": 8},
     "multiplier 65536 does not fit"),
])
def test_load_words_reject_requantizer_settings_that_do_not_fit(options, message):
    with pytest.raises(ValueError, match=message):
        csc.load_words(np.eye(4, dtype=np.int64), 2, **options)


def test_cycle_model_latency_column_rate_and_pairs():
    single = np.zeros((4, 4), dtype=np.int64)
    single[0, 0] = 1
    # docs/spmv.md: one weight's vector gives its first result in cycle 11 (17 requantized).
    assert csc.spmv_cycles(single, [1, 0, 0, 0], 4) == (11, 12)
    assert csc.spmv_cycles(single, [1, 0, 0, 0], 4, requantize=True) == (17, 18)
    # One weight of every PE per column: each PE walks a column a cycle, so each further
    # column costs one cycle; a zero activation costs nothing, an all-zero beat one cycle of
    # the front end.
    ones = np.ones((4, 64), dtype=np.int64)
    assert csc.spmv_cycles(ones, np.ones(64), 4, lanes=4)[0] == 11 + 63
    assert csc.spmv_cycles(ones, np.r_[np.zeros(32), np.ones(32)], 4, lanes=4)[0] == 8 + 11 + 31
    # Two weights of every PE per column: two cycles per column.
    assert csc.spmv_cycles(np.ones((8, 64), dtype=np.int64), np.ones(64), 4)[0] == 11 + 127
    # One weight per column, of PE j mod 4: the front end hands out two columns a cycle,
    # so 64 more columns cost 32 more cycles.
    def spread(cols):
        return (np.arange(cols) % 4 == np.arange(4)[:, None]).astype(np.int64)
    assert (csc.spmv_cycles(spread(128), np.ones(128), 4)[0]
            - csc.spmv_cycles(spread(64), np.ones(64), 4)[0]) == 32


@pytest.mark.parametrize("arguments, message", [
    ((np.eye(3), [1, 2], 1), r"x needs one value per column \(3\), not 2"),
    ((np.eye(3), [1, 2, 3], 65), "n_pes must be between 1 and 64, not 65"),
    ((np.eye(3), [1, 2, 3], 1, {"queue_depth": 1}),
     "queue_depth must be between 2 and 256, not 1"),
    ((np.eye(3), [1, 2, 3], 1, {"lanes": 0}), "lanes must be between 1 and 16, not 0"),
])
def test_cycle_model_rejects_bad_arguments(arguments, message):
    options = arguments[3] if len(arguments) == 4 else {}
    with pytest.raises(ValueError, match=f"^{message}$"):
        csc.spmv_cycles(*arguments[:3], **options)


def skewed_matrix(rng, rows=40, cols=30):
    """Rows whose weight counts rise with ``r mod 4``: under ``r mod 4`` PE 3 gets the most."""
    w = random_matrix(rng, rows, cols, 0.0)
    density = 0.1 + 0.25 * (np.arange(rows) % 4)
    return w * (rng.random((rows, cols)) < density[:, None])


def test_balanced_order_evens_the_pe_loads():
    rng = np.random.default_rng(5)
    w = skewed_matrix(rng)
    loads = csc.pe_loads(w, 4)
    heaviest_row = (w != 0).sum(axis=1).max()
    assert loads.max() - loads.min() > 3 * heaviest_row      # r mod 4 is badly skewed
    order = csc.balanced_order(w, 4)
    assert sorted(order.tolist()) == list(range(40))
    balanced = csc.pe_loads(w[order], 4)
    assert balanced.sum() == loads.sum()
    assert balanced.max() - balanced.min() <= heaviest_row
    # A column counted 0 (an activation that is always zero) carries no load.
    activity = np.ones(30)
    activity[::2] = 0
    order = csc.balanced_order(w, 4, activity)
    met = csc.pe_loads(w[order], 4, activity)
    assert met.max() - met.min() <= ((w != 0) @ activity).max()
    assert csc.pe_loads(w[order], 4).max() - csc.pe_loads(w[order], 4).min() > 0


def test_balanced_order_fills_pes_of_a_ragged_row_count():
    w = np.ones((10, 3), dtype=np.int64)      # PEs 0 and 1 hold 3 rows, PEs 2 and 3 two
    w[[1, 2, 5, 9], 1:] = 0
    assert csc.pe_loads(w, 4).tolist() == [9, 3, 4, 6]
    order = csc.balanced_order(w, 4)
    assert sorted(order.tolist()) == list(range(10))
    # Heaviest first: 3, 3, 3, 3, then PEs 0 and 1 take 3 more, PEs 2 and 3 (full after one
    # more row) a light row each, the last two light rows go to PEs 0 and 1.
    assert csc.pe_loads(w[order], 4).tolist() == [7, 7, 4, 4]


def reordered_network(net, orders, columns):
    """Run ``net`` layer by layer through golden.csc.spmv with layer ``i``'s rows (bias and
    multipliers) in ``orders[i]`` and its columns in ``columns[i]``, the first layer's input
    in ``columns[0]``; the last layer's outputs are put back with ``orders[-1]``."""
    def run(a0):
        a = a0[columns[0]]
        for layer, rows, cols in zip(net.layers, orders, columns):
            options = {}
            if layer.out_bits is not None:
                options = {"bias": layer.bias[rows], "multiplier": layer.multiplier[rows],
                           "shift": layer.shift, "out_bits": layer.out_bits}
            a = csc.spmv(layer.weight[rows][:, cols], a, **options)
            if layer.out_bits is None:
                a = a + layer.bias[rows]
        return a[np.argsort(orders[-1])]
    return run


def test_balanced_network_flow_leaves_the_outputs_unchanged():
    from golden.network import digits_network, digits_split
    net = digits_network(8, 0.9)
    inputs = net.quantize_input(digits_split()[1][:3])
    orders, columns = [], [np.arange(net.layers[0].weight.shape[1])]
    for layer in net.layers:
        orders.append(csc.balanced_order(layer.weight[:, columns[-1]], 4))
        columns.append(orders[-1])
    columns.pop()
    assert all((order != np.arange(len(order))).any() for order in orders)
    want = net.forward(inputs).tolist()
    run = reordered_network(net, orders, columns)
    assert [run(a0).tolist() for a0 in inputs] == want
    # Wrong flows change them: a layer's columns left in the original order, or in another
    # order than its predecessor's rows.
    for wrong_columns, wrong_orders in (([columns[0], np.arange(64), columns[2]], orders),
                                        (columns, [orders[0], np.roll(orders[1], 1), orders[2]])):
        run = reordered_network(net, wrong_orders, wrong_columns)
        assert [run(a0).tolist() for a0 in inputs] != want


@pytest.mark.parametrize("arguments, message", [
    ((np.eye(3), 65), "n_pes must be between 1 and 64, not 65"),
    ((np.eye(3), 2, [1.0, 1.0]), r"activity needs one value per column \(3\), not 2"),
    ((np.eye(3), 2, [1.0, -1.0, 1.0]), "activity must not be negative, not -1.0"),
])
def test_balanced_order_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        csc.balanced_order(*arguments)
