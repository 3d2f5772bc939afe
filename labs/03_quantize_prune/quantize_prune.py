"""Lab 3: quantize and prune the digits MLP, measure what it costs, and win it back with QAT.

Your file: fill in the TODO blocks, then run ``python -m labs check 3``; run it as a script
(``python labs/03_quantize_prune/quantize_prune.py``) to print the table and write
``accuracy.png``. The handout is labs/03_quantize_prune/README.md.
"""

import numpy as np

from golden.network import FloatMLP, digits_network, digits_split, float_network
from golden.qat import qat_network


def quantize(w, bits):
    """Symmetric per-output-channel quantization of a weight matrix ``w`` (out, in).

    Returns
    -------
    q : int64 (out, in)
        Signed ``bits``-bit integers, ``-(2^(bits-1)) .. 2^(bits-1) - 1``.
    scale : float (out,)
        Per row: its largest magnitude over ``2^(bits-1) - 1`` (1.0 for a row of zeros), so
        that ``w ~= q * scale[:, None]``.
    """
    # TODO 1
    return np.zeros(w.shape, dtype=np.int64), np.ones(w.shape[0])


def prune(w, sparsity):
    """Keep-mask of ``w`` dropping the ``round(sparsity * w.size)`` smallest magnitudes."""
    # TODO 2
    return np.ones(w.shape, dtype=bool)


def weight_only_accuracy(bits, sparsity):
    """Test accuracy of the dense float MLP with its weights pruned, then quantized.

    Every layer of ``float_network(0.0)`` is pruned to ``sparsity`` (no fine-tuning) and
    quantized to ``bits`` with the functions above, then dequantized (``q * scale``); the
    activations stay float.
    """
    model = float_network(0.0)
    _, x_test, _, y_test = digits_split()
    # TODO 3: prune, quantize and dequantize every weight matrix of model.weights, then
    # measure FloatMLP(weights, model.biases).accuracy(x_test, y_test).
    return 0.0


def accuracy_table(bits_list, sparsities):
    """``{(bits, sparsity): accuracy}`` of the integer network of golden.network.

    ``digits_network(bits, sparsity)`` is pruned, fine-tuned, then quantized (weights and
    activations) as the hardware runs it; its accuracy is on the held-out test images.
    """
    _, x_test, _, y_test = digits_split()
    # TODO 4
    return {}


def qat_try(bits=2):
    """``{"ptq": accuracy, "qat": accuracy}`` of the dense network at ``bits``.

    "ptq" quantizes the trained float network (golden.network.digits_network); "qat"
    fine-tunes it through fake quantizers first (golden.qat.qat_network).
    """
    _, x_test, _, y_test = digits_split()
    # TODO 5
    return {"ptq": 0.0, "qat": 0.0}


def plot(table, path):
    """Plot ``accuracy_table``'s result to a PNG at ``path``; return the matplotlib Figure.

    Accuracy against sparsity, one line per bit width (labelled ``"<bits>-bit"``), points in
    order of sparsity.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(5, 3.5))
    # TODO 6: a line per bits (axes.plot with a label), axis labels, a legend.
    figure.savefig(path)
    plt.close(figure)
    return figure


if __name__ == "__main__":
    table = accuracy_table((2, 4, 8), (0.0, 0.5, 0.8, 0.9))
    for (bits, sparsity), accuracy in table.items():
        print(f"{bits}-bit, sparsity {sparsity:.0%}: {accuracy:.3f}")
    plot(table, "accuracy.png")
    print("qat at 2 bits:", qat_try(2))
