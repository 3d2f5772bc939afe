"""Grading of lab 3 (quantize and prune): the student's quantizer and pruner against
golden.quant and golden.prune, and their experiments against the golden network's figures."""

import tempfile
from pathlib import Path

import numpy as np

from golden.network import FloatMLP, digits_network, digits_split, float_network
from golden.prune import magnitude_prune
from golden.qat import qat_network
from golden.quant import quantize_weights
from labs.check import Divergence, Part, StudentError

NUMBER = 3
TITLE = "Quantize and prune: accuracy against bits and sparsity, and 2-bit QAT"
FILES = ["quantize_prune.py"]

#: (bits, sparsity) points of the weight-only experiment.
WEIGHT_ONLY = [(2, 0.0), (4, 0.5), (8, 0.8)]
#: The grid of the accuracy table.
TABLE_BITS, TABLE_SPARSITIES = (2, 4, 8), (0.0, 0.8)


def _weights(seed):
    """Test matrices: a random one with a row of zeros and a row whose peak is negative."""
    w = np.random.default_rng(seed).normal(0.0, 0.3, (12, 40))
    w[3] = 0.0
    w[5, 7] = -2.5
    return w


def _array(value, name, shape, kind):
    if not isinstance(value, np.ndarray):
        raise StudentError(f"{name} must return a NumPy array, not {type(value).__name__}")
    if value.shape != shape:
        raise StudentError(f"{name} must return shape {shape}, not {value.shape}")
    if kind == "int" and not np.issubdtype(value.dtype, np.integer):
        raise StudentError(f"{name}'s q must hold integers, not {value.dtype}")
    return value


def check_quantize(files):
    """``quantize(w, bits)`` gives golden.quant.quantize_weights' integers and scales."""
    quantize = files.get("quantize")
    for seed, bits in ((0, 8), (1, 4), (2, 2)):
        w = _weights(seed)
        result = files.call(quantize, w.copy(), bits)
        if not isinstance(result, tuple) or len(result) != 2:
            raise StudentError(f"quantize must return a pair (q, scale), not {result!r:.60}")
        q = _array(result[0], "quantize", w.shape, "int")
        scale = _array(np.asarray(result[1], dtype=float), "quantize", (w.shape[0],),
                       "float")
        want_q, want_scale = quantize_weights(w, bits)
        for row in range(w.shape[0]):
            if not np.isclose(scale[row], want_scale[row], rtol=1e-9, atol=0):
                raise Divergence(f"{bits} bits, row {row} (largest magnitude "
                                 f"{np.abs(w[row]).max():.4f}): expected scale "
                                 f"{want_scale[row]:.6g}, got {scale[row]:.6g}")
        wrong = np.argwhere(q != want_q)
        if len(wrong):
            row, col = wrong[0]
            raise Divergence(f"{bits} bits, row {row}, column {col}: w = {w[row, col]:.4f}, "
                             f"scale {want_scale[row]:.6g}: expected q = {want_q[row, col]}, "
                             f"got {q[row, col]}")


def check_prune(files):
    """``prune(w, s)`` keeps what golden.prune.magnitude_prune keeps."""
    prune = files.get("prune")
    w = np.random.default_rng(3).normal(0.0, 1.0, (7, 9))
    for sparsity in (0.0, 0.3, 0.5, 0.9):
        keep = np.asarray(files.call(prune, w.copy(), sparsity))
        want = magnitude_prune(w, sparsity)
        if keep.shape != w.shape or keep.dtype != bool:
            raise StudentError(f"prune must return a bool mask of shape {w.shape}, not "
                               f"{keep.dtype} of shape {keep.shape}")
        if keep.sum() != want.sum():
            raise Divergence(f"sparsity {sparsity} of {w.size} weights: expected "
                             f"{want.sum()} kept (round({sparsity} x {w.size}) = "
                             f"{w.size - want.sum()} dropped), got {keep.sum()}")
        wrong = np.argwhere(keep != want)
        if len(wrong):
            row, col = wrong[0]
            verdict = "kept" if want[row, col] else "dropped"
            raise Divergence(f"sparsity {sparsity}: weight ({row}, {col}) = "
                             f"{w[row, col]:.4f} should be {verdict} (the smallest magnitudes "
                             f"go first)")


def _accuracy_value(value, what):
    if isinstance(value, bool) or not isinstance(value, (float, int, np.floating)):
        raise StudentError(f"{what} must be a number, not {value!r:.60}")
    return float(value)


def weight_only_reference(bits, sparsity):
    """The weight-only experiment with the golden quantizer and pruner."""
    model = float_network(0.0)
    weights = []
    for w in model.weights:
        q, scale = quantize_weights(w * magnitude_prune(w, sparsity), bits)
        weights.append(q * scale[:, None])
    _, x_test, _, y_test = digits_split()
    return FloatMLP(tuple(weights), model.biases).accuracy(x_test, y_test)


def check_weight_only(files):
    """``weight_only_accuracy`` at a few (bits, sparsity) points."""
    function = files.get("weight_only_accuracy")
    for bits, sparsity in WEIGHT_ONLY:
        got = _accuracy_value(files.call(function, bits, sparsity),
                              "weight_only_accuracy")
        want = weight_only_reference(bits, sparsity)
        if abs(got - want) > 1e-9:
            raise Divergence(f"weight_only_accuracy({bits}, {sparsity}): expected "
                             f"{want:.4f} on the test images, got {got:.4f}")


def check_table(files):
    """``accuracy_table`` equals the golden integer networks' test accuracy."""
    table = files.call(files.get("accuracy_table"), TABLE_BITS, TABLE_SPARSITIES)
    if not isinstance(table, dict):
        raise StudentError(f"accuracy_table must return a dict, not {type(table).__name__}")
    _, x_test, _, y_test = digits_split()
    for bits in TABLE_BITS:
        for sparsity in TABLE_SPARSITIES:
            if (bits, sparsity) not in table:
                raise Divergence(f"accuracy_table has no entry ({bits}, {sparsity})")
            got = _accuracy_value(table[bits, sparsity], "an accuracy_table entry")
            want = digits_network(bits, sparsity).accuracy(x_test, y_test)
            if abs(got - want) > 1e-9:
                raise Divergence(f"accuracy_table[({bits}, {sparsity})]: expected {want:.4f}"
                                 f" on the test images, got {got:.4f}")


def check_qat(files):
    """``qat_try(2)``: post-training and QAT accuracy of the golden 2-bit networks."""
    result = files.call(files.get("qat_try"), 2)
    if not isinstance(result, dict) or set(result) != {"ptq", "qat"}:
        raise StudentError(f"qat_try must return {{'ptq': ..., 'qat': ...}}, not "
                           f"{result!r:.60}")
    _, x_test, _, y_test = digits_split()
    for key, network in (("ptq", digits_network(2)), ("qat", qat_network(2))):
        got = _accuracy_value(result[key], f"qat_try's {key!r}")
        want = network.accuracy(x_test, y_test)
        if abs(got - want) > 1e-9:
            raise Divergence(f"qat_try(2)[{key!r}]: expected {want:.4f} on the test images, "
                             f"got {got:.4f}")


def check_plot(files):
    """``plot(table, path)`` writes a PNG of a line per bit width through the table's points."""
    plot = files.get("plot")
    table = {(bits, s): 0.5 + 0.05 * bits - 0.1 * s for bits in (2, 4, 8)
             for s in (0.5, 0.0, 0.9)}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "accuracy.png"
        try:
            figure = files.call(plot, table, str(path))
        except StudentError as error:
            if "matplotlib" in str(error):
                raise StudentError(f"{error} (pip install matplotlib)") from None
            raise
        if not path.is_file() or path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            raise Divergence(f"plot(table, path) wrote no PNG at {path.name}")
    lines = {} if not hasattr(figure, "axes") or not figure.axes else \
        {line.get_label(): line for line in figure.axes[0].get_lines()}
    for bits in (2, 4, 8):
        label = f"{bits}-bit"
        if label not in lines:
            raise Divergence(f"the figure plot returns has no line labelled {label!r} (its "
                             f"lines: {sorted(lines) or 'none'})")
        want = [(s, table[bits, s]) for s in (0.0, 0.5, 0.9)]
        got = list(zip(np.asarray(lines[label].get_xdata(), dtype=float).tolist(),
                       np.asarray(lines[label].get_ydata(), dtype=float).tolist()))
        if len(got) != len(want) or not np.allclose(got, want):
            raise Divergence(f"line {label!r}: expected the points (sparsity, accuracy) "
                             f"{want}, in order of sparsity, got {got}")


PARTS = [
    Part("quantize", 3, check_quantize, timeout=30),
    Part("prune", 2, check_prune, timeout=30),
    Part("weight-only accuracy", 2, check_weight_only, timeout=120),
    Part("accuracy table", 1, check_table, timeout=120),
    Part("2-bit QAT", 1, check_qat, timeout=180),
    Part("plot", 1, check_plot, timeout=60),
]
