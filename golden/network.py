"""A real pruned and quantized network: an MLP on scikit-learn's digits.

The float model (64-64-32-10, ReLU) is trained with NumPy (Adam, softmax
cross-entropy, fixed seed) on a fixed training split; pruning removes the
smallest-magnitude weights of every layer and fine-tunes the survivors with the
mask held. Quantization then gives, per layer ``l`` with ``(w_bits, a_bits)``:

- unsigned input activations ``a_q = clamp(round(a / s_a), 0, 2^a_bits - 1)``
  (the first layer's input is the pixel value / 16);
- signed weights per output channel (per tensor for the output layer, so that
  the argmax of the raw accumulators is the prediction);
- a bias in accumulator units ``round(b / (s_w s_a))``;
- requantization to the next layer's ``a_bits`` with ``M / 2^shift ~= s_w s_a / s_next``
  (golden.requant), ReLU folded into the clamp.

Integer-only inference uses nothing but these operations: ``acc = a_q W_q^T + b_q``
in int64, requantize, and an argmax of the last accumulators.

Run ``python -m golden.network`` for the accuracy table.
"""

import argparse
import functools
import json
import sys
from dataclasses import dataclass

import numbers

import numpy as np

from golden.bitfusion import check_bits
from golden.checks import flag, integer, integer_array, real, real_array
from golden.prune import magnitude_prune
from golden.quant import activation_scale, kmeans_codebook, quantize_activations, quantize_weights
from golden.requant import quantize_multiplier, requantize

__all__ = ["LAYER_SIZES", "SPARSITIES", "PRECISIONS", "digits_split", "FloatMLP", "Adam",
           "mlp_gradients", "float_network", "QuantizedLayer", "QuantizedMLP", "quantize_mlp",
           "digits_network", "accuracy_table", "accumulator_bits"]

#: Neurons per layer, input first.
LAYER_SIZES = (64, 64, 32, 10)
#: Weight sparsities of the accuracy table.
SPARSITIES = (0.0, 0.5, 0.8, 0.9)
#: Precision rows of the accuracy table: (w_bits, a_bits) per layer.
PRECISIONS = {
    "8-bit": ((8, 8), (8, 8), (8, 8)),
    "4-bit": ((4, 4), (4, 4), (4, 4)),
    "2-bit": ((2, 2), (2, 2), (2, 2)),
    "mixed": ((8, 8), (4, 4), (8, 4)),
}
#: Percentile of the calibration activations mapped to the top quantization level.
CALIBRATION_PERCENTILE = 99.9


def digits_split(seed=0):
    """scikit-learn's digits as ``(x_train, x_test, y_train, y_test)``; pixels 0..16, 20% held out.

    ``seed`` (an integer, 0..2^32-1) seeds the split.
    """
    seed = integer("seed", seed, 0, (1 << 32) - 1)
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError("the digits network needs scikit-learn: pip install -e '.[test]'") from None
    digits = load_digits()
    return train_test_split(digits.data.astype(np.float64), digits.target.astype(np.int64),
                            test_size=0.2, random_state=seed, stratify=digits.target)


@dataclass(frozen=True)
class FloatMLP:
    """Float weights ``(out, in)`` and biases of each layer; ReLU between layers."""
    weights: tuple
    biases: tuple

    def activations(self, x):
        """Input of every layer (the first is the pixels / 16) and the final logits.

        ``x`` is (n, inputs) finite real numbers.
        """
        a = _samples(x, self.weights[0].shape[1]) / 16.0
        inputs = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            inputs.append(a)
            a = a @ w.T + b
            if i < len(self.weights) - 1:
                a = np.maximum(a, 0.0)
        return inputs, a

    def accuracy(self, x, y):
        """Fraction of the samples ``x`` whose predicted class is the label ``y``."""
        logits = self.activations(x)[1]
        return float((logits.argmax(axis=1) == _labels(y, len(logits))).mean())


def _samples(x, inputs):
    x = real_array("x", x, ndim=2)
    if x.shape[1] != inputs or not len(x):
        raise ValueError(f"x must have shape (n, {inputs}) with n at least 1, not {x.shape}")
    return x


def _labels(y, count):
    y = integer_array("y", y, ndim=1)
    if len(y) != count:
        raise ValueError(f"y needs one label per sample ({count}), not {len(y)}")
    return y


class Adam:
    """Adam (0.9, 0.999, eps 1e-8) over a list of parameter arrays, updated in place."""

    def __init__(self, params):
        self.params = params
        self.moments = [np.zeros_like(p) for p in params]
        self.velocities = [np.zeros_like(p) for p in params]
        self.steps = 0

    def step(self, grads, rate):
        """One update with the gradients ``grads`` (one per parameter) at learning ``rate``."""
        self.steps += 1
        for k, (param, grad) in enumerate(zip(self.params, grads)):
            self.moments[k] = 0.9 * self.moments[k] + 0.1 * grad
            self.velocities[k] = 0.999 * self.velocities[k] + 0.001 * grad * grad
            m_hat = self.moments[k] / (1 - 0.9 ** self.steps)
            v_hat = self.velocities[k] / (1 - 0.999 ** self.steps)
            param -= rate * m_hat / (np.sqrt(v_hat) + 1e-8)


def mlp_gradients(logits, onehot, inputs, weights, passes):
    """Softmax cross-entropy gradients of an MLP, the weights' then the biases'.

    ``inputs[i]`` is layer ``i``'s input, ``weights[i]`` the weights its forward pass used
    and ``passes[i]`` where layer ``i``'s output let the gradient through (ReLU, clamps).
    """
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    delta = (p - onehot) / len(logits)
    depth = len(weights)
    grads_w, grads_b = [None] * depth, [None] * depth
    for i in reversed(range(depth)):
        grads_w[i] = delta.T @ inputs[i]
        grads_b[i] = delta.sum(axis=0)
        if i:
            delta = (delta @ weights[i]) * passes[i - 1]
    return [*grads_w, *grads_b]


def _train(weights, biases, x, y, masks, epochs, seed, lr=3e-3, batch=64):
    """Adam on softmax cross-entropy, keeping masked weights at zero."""
    rng = np.random.default_rng(seed)
    adam = Adam([*weights, *biases])
    depth = len(weights)
    onehot = np.eye(LAYER_SIZES[-1])[y]
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            a = x[idx]
            inputs, passes = [], []
            for i in range(depth):
                inputs.append(a)
                z = a @ weights[i].T + biases[i]
                passes.append(z > 0)
                a = np.maximum(z, 0) if i < depth - 1 else z
            adam.step(mlp_gradients(a, onehot[idx], inputs, weights, passes), lr)
            for w, mask in zip(weights, masks):
                w *= mask


def _check_sparsity(sparsity):
    if not 0 <= real("sparsity", sparsity) < 1:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity!r}")
    return float(sparsity)


def float_network(sparsity=0.0, seed=0):
    """The trained float MLP, magnitude-pruned to ``sparsity`` per layer and fine-tuned (memoized).

    ``sparsity`` is in [0, 1); ``seed`` an integer, 0..2^32-1.
    """
    return _float_network(_check_sparsity(sparsity), integer("seed", seed, 0, (1 << 32) - 1))


@functools.lru_cache(maxsize=None)
def _float_network(sparsity, seed):
    if sparsity:
        dense = _float_network(0.0, seed)
        weights = [w.copy() for w in dense.weights]
        biases = [b.copy() for b in dense.biases]
        masks = [magnitude_prune(w, sparsity) for w in weights]
        for w, mask in zip(weights, masks):
            w *= mask
        x_train, _, y_train, _ = digits_split(seed)
        _train(weights, biases, x_train / 16.0, y_train, masks, epochs=40, seed=seed + 1)
        return FloatMLP(tuple(weights), tuple(biases))
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0.0, np.sqrt(2.0 / n_in), (n_out, n_in))
               for n_in, n_out in zip(LAYER_SIZES, LAYER_SIZES[1:])]
    biases = [np.zeros(n_out) for n_out in LAYER_SIZES[1:]]
    x_train, _, y_train, _ = digits_split(seed)
    masks = [np.ones_like(w, dtype=bool) for w in weights]
    _train(weights, biases, x_train / 16.0, y_train, masks, epochs=60, seed=seed)
    return FloatMLP(tuple(weights), tuple(biases))


@dataclass(frozen=True)
class QuantizedLayer:
    """One integer layer: ``acc = a W^T + bias``, then requantize (or logits).

    Attributes
    ----------
    weight : int64 (out, in)
        Signed ``w_bits`` weights, pruned entries 0 (with weight sharing, the
        decoded codebook values).
    bias : int64 (out,)
        Bias in accumulator units.
    w_bits, a_bits : int
        Weight precision and the precision of this layer's unsigned inputs.
    multiplier : int64 (out,) or None
        Requantization multipliers ``M``; None for the output layer.
    shift : int or None
        Requantization shift, common to the layer.
    out_bits : int or None
        Precision of the outputs (the next layer's ``a_bits``); None for the
        output layer, whose outputs are the raw accumulators.
    codebook, weight_index : int64 arrays or None
        Weight sharing: ``weight == codebook[weight_index]``, index 0 meaning 0.

    The constructor checks all of this: the weights fit ``w_bits`` signed, the bias
    (signed 32-bit) and multipliers have one value per output, ``multiplier``, ``shift``
    (1..47) and ``out_bits`` (1..16) are given together or not at all.
    """
    weight: np.ndarray
    bias: np.ndarray
    w_bits: int
    a_bits: int
    multiplier: np.ndarray | None
    shift: int | None
    out_bits: int | None
    codebook: np.ndarray | None = None
    weight_index: np.ndarray | None = None

    def __post_init__(self):
        def store(name, value):
            object.__setattr__(self, name, value)
        store("w_bits", check_bits(self.w_bits, "w_bits"))
        store("a_bits", check_bits(self.a_bits, "a_bits"))
        lo, hi = -(1 << (self.w_bits - 1)), (1 << (self.w_bits - 1)) - 1
        store("weight", integer_array("weight", self.weight, lo, hi, ndim=2,
                                      fits=f"{self.w_bits} bits signed ({lo}..{hi})"))
        outputs = self.weight.shape[0]
        store("bias", integer_array("bias", self.bias, -(1 << 31), (1 << 31) - 1, ndim=1))
        if len(self.bias) != outputs:
            raise ValueError(f"bias needs one value per output ({outputs}), not {len(self.bias)}")
        given = [value is not None for value in (self.multiplier, self.shift, self.out_bits)]
        if any(given) and not all(given):
            raise ValueError("multiplier, shift and out_bits go together: all None (the output "
                             "layer) or all given")
        if all(given):
            store("multiplier", integer_array("multiplier", self.multiplier, 0,
                                              (1 << 31) - 1, ndim=1))
            if len(self.multiplier) != outputs:
                raise ValueError(f"multiplier needs one value per output ({outputs}), not "
                                 f"{len(self.multiplier)}")
            store("shift", integer("shift", self.shift, 1, 47))
            store("out_bits", integer("out_bits", self.out_bits, 1, 16))
        if (self.codebook is None) != (self.weight_index is None):
            raise ValueError("codebook and weight_index go together")
        if self.codebook is not None:
            store("codebook", integer_array("codebook", self.codebook, lo, hi, ndim=1))
            store("weight_index", integer_array("weight_index", self.weight_index, 0,
                                                len(self.codebook) - 1, ndim=2))
            if not np.array_equal(self.codebook[self.weight_index], self.weight):
                raise ValueError("weight must equal codebook[weight_index]")

    def accumulate(self, a):
        """``a @ weight.T + bias`` in int64; ``a`` is (n, in) unsigned ``a_bits`` integers."""
        hi = (1 << self.a_bits) - 1
        a = integer_array("a", a, 0, hi, ndim=2, fits=f"{self.a_bits} bits unsigned (0..{hi})")
        if a.shape[1] != self.weight.shape[1]:
            raise ValueError(f"layer input must have shape (n, {self.weight.shape[1]}), "
                             f"not {a.shape}")
        return a @ self.weight.T + self.bias

    def forward(self, a):
        """Requantized outputs, or the accumulators (logits) of the output layer."""
        acc = self.accumulate(a)
        if self.out_bits is None:
            return acc
        return requantize(acc, self.multiplier, self.shift, self.out_bits)


@dataclass(frozen=True)
class QuantizedMLP:
    """The integer-only network: quantized input, then :class:`QuantizedLayer` s."""
    layers: tuple
    input_scale: float

    def __post_init__(self):
        layers = self.layers
        if not isinstance(layers, tuple) or not layers or \
                not all(isinstance(layer, QuantizedLayer) for layer in layers):
            raise TypeError("layers must be a non-empty tuple of QuantizedLayer")
        for i, (layer, after) in enumerate(zip(layers, layers[1:])):
            if layer.out_bits != after.a_bits or layer.weight.shape[0] != after.weight.shape[1]:
                raise ValueError(f"layer {i} outputs do not feed layer {i + 1}: "
                                 f"{layer.weight.shape[0]} of {layer.out_bits} bits into "
                                 f"{after.weight.shape[1]} of {after.a_bits} bits")
        if layers[-1].out_bits is not None:
            raise ValueError("the last layer gives accumulators: its out_bits must be None")
        if not real("input_scale", self.input_scale) > 0:
            raise ValueError(f"input_scale must be positive, not {self.input_scale!r}")

    def quantize_input(self, x):
        """Pixels (0..16; (n, inputs) finite real numbers) to the first layer's inputs."""
        x = _samples(x, self.layers[0].weight.shape[1])
        return quantize_activations(x / 16.0, self.layers[0].a_bits, self.input_scale)

    def layer_inputs(self, a0):
        """The integer input of every layer, starting with ``a0`` (checked by layer 0)."""
        first = self.layers[0]
        hi = (1 << first.a_bits) - 1
        inputs = [integer_array("a0", a0, 0, hi, ndim=2,
                                fits=f"{first.a_bits} bits unsigned (0..{hi})")]
        for layer in self.layers[:-1]:
            inputs.append(layer.forward(inputs[-1]))
        return inputs

    def forward(self, a0):
        """The output layer's accumulators (logits, in a common scale)."""
        return self.layers[-1].forward(self.layer_inputs(a0)[-1])

    def predict(self, x):
        """The class of every sample of ``x`` (pixels, as :meth:`quantize_input` takes)."""
        return self.forward(self.quantize_input(x)).argmax(axis=1)

    def accuracy(self, x, y):
        """Fraction of the samples ``x`` whose predicted class is the label ``y``."""
        predicted = self.predict(x)
        return float((predicted == _labels(y, len(predicted))).mean())


def _layer_bits(bits):
    depth = len(LAYER_SIZES) - 1
    if isinstance(bits, (numbers.Number, np.bool_)):
        bits = check_bits(bits)
        return tuple((bits, bits) for _ in range(depth))
    pairs = bits if isinstance(bits, (tuple, list)) else None
    if pairs is None or len(pairs) != depth or \
            not all(isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in pairs):
        raise ValueError(f"bits must be 2, 4 or 8, or one (w_bits, a_bits) pair per layer "
                         f"({depth}), not {bits!r}")
    return tuple((check_bits(w_bits, "w_bits"), check_bits(a_bits, "a_bits"))
                 for w_bits, a_bits in pairs)


@functools.lru_cache(maxsize=None)
def _digits_network(bits, sparsity, codebook_bits, seed):
    model = float_network(sparsity, seed)
    x_train = digits_split(seed)[0]
    inputs, _ = model.activations(x_train)
    a_scales = [activation_scale(inputs[0], bits[0][1])]
    a_scales += [activation_scale(a, a_bits, CALIBRATION_PERCENTILE)
                 for a, (_, a_bits) in zip(inputs[1:], bits[1:])]
    return quantize_mlp(model, bits, a_scales, codebook_bits)


def quantize_mlp(model, bits, scales, codebook_bits=None):
    """The integer network of a float ``model`` (the steps of the module docstring).

    Parameters
    ----------
    model : FloatMLP
    bits : int or sequence of (w_bits, a_bits)
        One precision from {2, 4, 8} for every layer, or a pair per layer.
    scales : sequence of float
        The activation scale of every layer's input, one positive number per layer.
    codebook_bits : int, optional
        Share each layer's weights through a k-means codebook of 2^codebook_bits entries.
    """
    if not isinstance(model, FloatMLP):
        raise TypeError(f"model must be a golden.network.FloatMLP, not {model!r}")
    bits = _layer_bits(bits)
    depth = len(model.weights)
    if len(scales) != depth or not all(real("scale", s) > 0 for s in scales):
        raise ValueError(f"scales must be {depth} positive numbers, one per layer, not "
                         f"{scales!r}")
    layers = []
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        w_bits, a_bits = bits[i]
        last = i == depth - 1
        weight, w_scale = quantize_weights(w, w_bits, per_channel=not last)
        codebook = weight_index = None
        if codebook_bits is not None:
            codebook, weight_index = kmeans_codebook(weight, codebook_bits)
            weight = codebook[weight_index]
        acc_scale = np.broadcast_to(w_scale, (w.shape[0],)) * scales[i]
        bias = np.rint(b / acc_scale).astype(np.int64)
        multiplier = shift = out_bits = None
        if not last:
            out_bits = bits[i + 1][1]
            multiplier, shift = quantize_multiplier(acc_scale / scales[i + 1])
        layers.append(QuantizedLayer(weight, bias, w_bits, a_bits, multiplier, shift, out_bits,
                                     codebook, weight_index))
    return QuantizedMLP(tuple(layers), scales[0])


def digits_network(bits=8, sparsity=0.0, codebook_bits=None, seed=0):
    """The digits MLP, pruned to ``sparsity`` and quantized (memoized).

    Parameters
    ----------
    bits : int or sequence of (w_bits, a_bits)
        One precision from {2, 4, 8} for every layer, or a pair per layer.
    sparsity : float
        Fraction of the weights of every layer pruned, in [0, 1).
    codebook_bits : int, optional
        Share each layer's weights through a k-means codebook of 2^codebook_bits
        integer entries (index 0 is 0).
    seed : int
        Seed of the split, the initialisation and the training order.
    """
    sparsity = _check_sparsity(sparsity)
    if codebook_bits is not None:
        codebook_bits = integer("codebook_bits", codebook_bits, 1, 8)
    seed = integer("seed", seed, 0, (1 << 32) - 1)
    return _digits_network(_layer_bits(bits), sparsity, codebook_bits, seed)


def accumulator_bits(k, w_bits, a_bits, w_signed=True, a_signed=False, bias_bits=0):
    """Signed accumulator width that holds any sum of ``k`` products (plus a bias).

    ``|acc| <= k * max|w| * max|a| + 2^(bias_bits-1)``; the result is the smallest
    two's complement width holding that bound. ``k`` and ``bias_bits`` are integers of at
    least 0, the widths at least 1, the signedness True or False.
    """
    k, bias_bits = integer("k", k, 0), integer("bias_bits", bias_bits, 0)
    w_bits, a_bits = integer("w_bits", w_bits, 1), integer("a_bits", a_bits, 1)
    w_signed, a_signed = flag("w_signed", w_signed), flag("a_signed", a_signed)
    w_peak = 1 << (w_bits - 1) if w_signed else (1 << w_bits) - 1
    a_peak = 1 << (a_bits - 1) if a_signed else (1 << a_bits) - 1
    bound = k * w_peak * a_peak + ((1 << (bias_bits - 1)) if bias_bits else 0)
    return int(bound).bit_length() + 1


def accuracy_table(seed=0):
    """``{row: {sparsity: accuracy}}`` on the held-out split, float and every precision."""
    _, x_test, _, y_test = digits_split(seed)
    table = {"float": {s: float_network(s, seed).accuracy(x_test, y_test) for s in SPARSITIES}}
    for name, bits in PRECISIONS.items():
        table[name] = {s: digits_network(bits, s, seed=seed).accuracy(x_test, y_test)
                       for s in SPARSITIES}
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m golden.network",
                                     description="Accuracy of the pruned, quantized digits MLP.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = accuracy_table(args.seed)
    if args.json:
        print(json.dumps({row: {f"{s:.0%}": acc for s, acc in cols.items()}
                          for row, cols in table.items()}, indent=2))
        return 0
    print(f"digits MLP {'-'.join(map(str, LAYER_SIZES))}, held-out accuracy (%) "
          f"by weight sparsity")
    print(f"{'':8}" + "".join(f"{s:>8.0%}" for s in SPARSITIES))
    for row, cols in table.items():
        print(f"{row:8}" + "".join(f"{100 * acc:8.1f}" for acc in cols.values()))
    print("mixed = (w_bits, a_bits) per layer " +
          ", ".join(f"{w}x{a}" for w, a in PRECISIONS["mixed"]))
    print("accumulator bound (signed bits) per layer at 8x8: " + ", ".join(
        str(accumulator_bits(k, 8, 8)) for k in LAYER_SIZES[:-1]) + " (before bias)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
