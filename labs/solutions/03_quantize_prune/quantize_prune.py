"""Lab 3: quantize and prune the digits MLP, measure what it costs, and win it back with QAT.

Reference solution. The student's starter is labs/03_quantize_prune/quantize_prune.py.
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
    top = (1 << (bits - 1)) - 1
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / top, 1.0)
    q = np.clip(np.rint(w / scale[:, None]), -top - 1, top).astype(np.int64)
    return q, scale


def prune(w, sparsity):
    """Keep-mask of ``w`` dropping the ``round(sparsity * w.size)`` smallest magnitudes."""
    drop = int(round(sparsity * w.size))
    order = np.argsort(np.abs(w).ravel(), kind="stable")
    keep = np.ones(w.size, dtype=bool)
    keep[order[:drop]] = False
    return keep.reshape(w.shape)


def weight_only_accuracy(bits, sparsity):
    """Test accuracy of the dense float MLP with its weights pruned, then quantized.

    Every layer of ``float_network(0.0)`` is pruned to ``sparsity`` (no fine-tuning) and
    quantized to ``bits`` with the functions above, then dequantized (``q * scale``); the
    activations stay float.
    """
    model = float_network(0.0)
    weights = []
    for w in model.weights:
        pruned = w * prune(w, sparsity)
        q, scale = quantize(pruned, bits)
        weights.append(q * scale[:, None])
    _, x_test, _, y_test = digits_split()
    return FloatMLP(tuple(weights), model.biases).accuracy(x_test, y_test)


def accuracy_table(bits_list, sparsities):
    """``{(bits, sparsity): accuracy}`` of the integer network of golden.network.

    ``digits_network(bits, sparsity)`` is pruned, fine-tuned, then quantized (weights and
    activations) as the hardware runs it; its accuracy is on the held-out test images.
    """
    _, x_test, _, y_test = digits_split()
    return {(bits, sparsity): digits_network(bits, sparsity).accuracy(x_test, y_test)
            for bits in bits_list for sparsity in sparsities}


def qat_try(bits=2):
    """``{"ptq": accuracy, "qat": accuracy}`` of the dense network at ``bits``.

    "ptq" quantizes the trained float network (golden.network.digits_network); "qat"
    fine-tunes it through fake quantizers first (golden.qat.qat_network).
    """
    _, x_test, _, y_test = digits_split()
    return {"ptq": digits_network(bits).accuracy(x_test, y_test),
            "qat": qat_network(bits).accuracy(x_test, y_test)}


def plot(table, path):
    """Plot ``accuracy_table``'s result to a PNG at ``path``; return the matplotlib Figure.

    Accuracy against sparsity, one line per bit width (labelled ``"<bits>-bit"``), points in
    order of sparsity.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for bits in sorted({b for b, _ in table}):
        points = sorted((s, acc) for (b, s), acc in table.items() if b == bits)
        axes.plot([s for s, _ in points], [acc for _, acc in points], marker="o",
                  label=f"{bits}-bit")
    axes.set_xlabel("sparsity (fraction of weights pruned)")
    axes.set_ylabel("test accuracy")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return figure


if __name__ == "__main__":
    table = accuracy_table((2, 4, 8), (0.0, 0.5, 0.8, 0.9))
    for (bits, sparsity), accuracy in table.items():
        print(f"{bits}-bit, sparsity {sparsity:.0%}: {accuracy:.3f}")
    plot(table, "accuracy.png")
    print("qat at 2 bits:", qat_try(2))
