"""The pruned, quantized digits MLP: integer-only inference against the float path."""

import subprocess
import sys

import numpy as np
import pytest

from golden.network import (PRECISIONS, SPARSITIES, digits_network, digits_split, float_network)


@pytest.fixture(scope="module")
def split():
    return digits_split()


def test_8bit_unpruned_accuracy_within_one_point_of_float(split):
    _, x_test, _, y_test = split
    float_acc = float_network(0.0).accuracy(x_test, y_test)
    int_acc = digits_network(8).accuracy(x_test, y_test)
    assert float_acc > 0.9
    assert abs(int_acc - float_acc) <= 0.01


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_integer_path_tracks_float_path_within_quantization_error(split, sparsity):
    _, x_test, _, y_test = split
    model = float_network(sparsity)
    net = digits_network(8, sparsity)
    logits_float = model.activations(x_test)[1]
    logits_int = net.forward(net.quantize_input(x_test))
    last = net.layers[-1]
    # Output layer per tensor: real logits = acc * s_w * s_a. Recover the scale by least squares
    # and bound the error by a few output quantization steps.
    scale = (logits_int * logits_float).sum() / (logits_int * logits_int).sum()
    error = np.abs(logits_int * scale - logits_float)
    assert error.mean() < 0.05 * np.abs(logits_float).mean()
    agreement = (logits_int.argmax(axis=1) == logits_float.argmax(axis=1)).mean()
    assert agreement >= 0.97
    assert last.out_bits is None and last.multiplier is None


def test_network_layers_respect_their_precisions():
    net = digits_network(PRECISIONS["mixed"], 0.8)
    for layer, (w_bits, a_bits) in zip(net.layers, PRECISIONS["mixed"]):
        assert layer.w_bits == w_bits and layer.a_bits == a_bits
        assert np.abs(layer.weight).max() <= 1 << (w_bits - 1)
        assert (layer.weight == 0).mean() >= 0.79
    inputs = net.layer_inputs(net.quantize_input(digits_split()[1][:50]))
    for layer, a in zip(net.layers, inputs):
        assert a.min() >= 0 and a.max() < 1 << layer.a_bits


def test_codebook_network_shares_16_values_and_keeps_its_accuracy(split):
    _, x_test, _, y_test = split
    plain = digits_network(8, 0.5)
    shared = digits_network(8, 0.5, codebook_bits=4)
    for unshared, layer in zip(plain.layers, shared.layers):
        assert layer.codebook.shape == (16,) and layer.codebook[0] == 0
        assert len(np.unique(layer.weight)) <= 16
        # Pruned weights stay exactly zero (index 0); the others move by a few steps.
        assert np.all(layer.weight_index[unshared.weight == 0] == 0)
        assert np.all(layer.weight[unshared.weight == 0] == 0)
        assert np.abs(layer.weight - unshared.weight).mean() < 0.1 * np.abs(unshared.weight).mean()
    assert shared.accuracy(x_test, y_test) >= plain.accuracy(x_test, y_test) - 0.02


def test_bad_precision_is_rejected():
    with pytest.raises(ValueError, match="bits must be 2, 4 or 8, not 3"):
        digits_network(3)


def test_accuracy_table_command_prints_every_row():
    out = subprocess.run([sys.executable, "-m", "golden.network"], capture_output=True,
                         text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[1].split() == [f"{s:.0%}" for s in SPARSITIES]
    rows = {line.split()[0]: [float(cell) for cell in line.split()[1:]] for line in lines[2:7]}
    assert list(rows) == ["float", "8-bit", "4-bit", "2-bit", "mixed"]
    assert all(len(row) == len(SPARSITIES) and all(0 <= a <= 100 for a in row)
               for row in rows.values())
    assert rows["float"][0] > 90 and rows["8-bit"][0] > 90
