"""A float ONNX model quantized by the project's own post-training quantization.

The model is a chain of MatMul (+ Add of a constant bias), Gemm or Conv layers with Relu,
MaxPool and Flatten/Reshape between them. Calibration inputs give the activation ranges;
then, per layer, with ``golden.quant``: signed ``w_bits`` weights per output channel, the
input unsigned ``a_bits`` (the model input asymmetric, its zero point folded into the first
bias; hidden inputs after a ReLU with zero point 0, the 99.9th percentile at the top level,
as the digits network), the bias in accumulator units, and the hardware's fixed-point
requantization (``golden.requant.quantize_multiplier`` with the accelerator's 16-bit ``M``).
The last layer's accumulators are dequantized to float32. Every layer but the last must be
followed by a Relu: the array's activations are unsigned with zero point 0.
"""

import numpy as np

from golden.bitfusion import check_bits
from golden.network import CALIBRATION_PERCENTILE
from golden.onnx.graph import (Conv, Dense, Dequantize, IntegerGraph, MaxPool, Quantize,
                               Requant, Reshape, im2col)
from golden.onnx.reader import OnnxImportError, _fail, input_shape
from golden.quant import activation_scale, asymmetric_params, quantize_weights
from golden.requant import quantize_multiplier

__all__ = ["FLOAT_OPS", "quantize_float", "MULTIPLIER_BITS"]

#: Operators of a float model the project's quantization takes.
FLOAT_OPS = ("MatMul", "Add", "Gemm", "Conv", "Relu", "MaxPool", "Flatten", "Reshape")
#: Width of the accelerator's requantization multiplier (its PARAM word).
MULTIPLIER_BITS = 16


class _Layer:
    """A float layer: weight (out, in...) and bias; ``conv`` its attributes or None."""

    def __init__(self, node, weight, bias, conv=None):
        self.node, self.weight, self.bias, self.conv = node, weight, bias, conv

    def forward(self, x):
        w = self.weight.reshape(len(self.weight), -1)
        if self.conv is None:
            return x @ w.T + self.bias
        cols, (oh, ow) = im2col(x, self.weight.shape[2:], self.conv["strides"],
                                self.conv["pads"], self.conv["dilations"], 0.0)
        out = cols @ w.T + self.bias
        return out.reshape(len(x), oh, ow, -1).transpose(0, 3, 1, 2)


def _chain(model):
    """The model's nodes as float stages: _Layer, or ("relu"|"maxpool"|"reshape", op)."""
    from onnx import helper, numpy_helper
    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init).astype(np.float64)
              for init in graph.initializer}
    stages = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kind = node.op_type
        if kind not in FLOAT_OPS or node.domain not in ("", "ai.onnx"):
            _fail(node, f"unsupported operator in a float model; supported: "
                        f"{', '.join(FLOAT_OPS)}")
        if kind == "MatMul":
            stages.append(_Layer(node, consts[node.input[1]].T, np.zeros(
                consts[node.input[1]].shape[1])))
        elif kind == "Add":
            if not stages or not isinstance(stages[-1], _Layer) or stages[-1].bias.any() or \
                    node.input[1] not in consts:
                _fail(node, "supported: Add of a constant bias right after a MatMul")
            stages[-1].bias = consts[node.input[1]].reshape(-1)
        elif kind == "Gemm":
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1 or \
                    attrs.get("beta", 1.0) != 1:
                _fail(node, "supported: transA 0, alpha 1, beta 1")
            w = consts[node.input[1]]
            w = w if attrs.get("transB", 0) else w.T
            bias = consts[node.input[2]] if len(node.input) > 2 else np.zeros(len(w))
            stages.append(_Layer(node, w, bias))
        elif kind == "Conv":
            if attrs.get("group", 1) != 1:
                _fail(node, f"group {attrs['group']}; supported: group 1")
            w = consts[node.input[1]]
            bias = consts[node.input[2]] if len(node.input) > 2 else np.zeros(len(w))
            stages.append(_Layer(node, w, bias, {
                "strides": tuple(attrs.get("strides", (1, 1))),
                "pads": tuple(attrs.get("pads", (0, 0, 0, 0))),
                "dilations": tuple(attrs.get("dilations", (1, 1)))}))
        elif kind == "Relu":
            stages.append(("relu", node, None))
        elif kind == "MaxPool":
            stages.append(("maxpool", node, (tuple(attrs["kernel_shape"]),
                                             tuple(attrs.get("strides", (1, 1))),
                                             tuple(attrs.get("pads", (0, 0, 0, 0))))))
        else:                               # Flatten, Reshape: keep the batch axis
            target = consts.get(node.input[1]) if kind == "Reshape" else None
            if (kind == "Flatten" and attrs.get("axis", 1) != 1) or (
                    kind == "Reshape" and (target is None or len(target) != 2 or
                                           target[1] != -1 or target[0] not in (0, -1))):
                _fail(node, "supported: flattening to (batch, -1)")
            stages.append(("reshape", node, None))
    return stages


def _run_float(stages, x):
    """Every stage's float output on ``x``."""
    outs = []
    for stage in stages:
        if isinstance(stage, _Layer):
            x = stage.forward(x)
        elif stage[0] == "relu":
            x = np.maximum(x, 0.0)
        elif stage[0] == "maxpool":
            kernel, strides, pads = stage[2]
            x = MaxPool("", (), "", kernel=kernel, strides=strides, pads=pads)(x)
        else:
            x = x.reshape(len(x), -1)
        outs.append(x)
    return outs


def _layer_bits(bits, depth):
    if isinstance(bits, (int, np.integer)) and not isinstance(bits, bool):
        return [check_bits(bits)] * depth
    bits = list(bits)
    if len(bits) != depth:
        raise OnnxImportError(f"bits needs one precision per layer ({depth}), not {len(bits)}")
    return [check_bits(b) for b in bits]


def quantize_float(model, calibration, bits=8):
    """The :class:`IntegerGraph` of a float ``model`` quantized on ``calibration`` inputs.

    ``bits`` is 2, 4 or 8 for every layer or one per layer (weights and that layer's inputs).
    """
    graph = model.graph
    inputs = [value for value in graph.input
              if value.name not in {init.name for init in graph.initializer}]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise OnnxImportError("the project's quantization takes a model of one input and one "
                              "output")
    value = inputs[0]
    shape = input_shape(value)
    x = np.asarray(calibration, dtype=np.float64)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or not len(x):
        raise OnnxImportError(f"calibration inputs must have shape (n, "
                              f"{', '.join(map(str, shape))}), not {x.shape}")
    stages = _chain(model)
    layers = [i for i, stage in enumerate(stages) if isinstance(stage, _Layer)]
    if not layers:
        raise OnnxImportError("the model has no MatMul, Gemm or Conv layer")
    layer_bits = _layer_bits(bits, len(layers))
    outs = _run_float(stages, x)
    ops = []
    a_bits = layer_bits[0]
    low = min(0.0, float(x.min()))
    high = max(float(x.max()), low + 1e-12)
    a_scale, offset = asymmetric_params(low, high, a_bits)
    a_zero = -offset
    name_in, current = value.name, f"{value.name} (quantized)"
    ops.append(Quantize("input", (name_in,), current, scale=a_scale, zero=a_zero, bits=a_bits))
    for number, index in enumerate(layers):
        stage = stages[index]
        last = number == len(layers) - 1
        w_bits = layer_bits[number]
        flat = stage.weight.reshape(len(stage.weight), -1)
        q, w_scale = quantize_weights(flat, w_bits, per_channel=True)
        acc_scale = np.broadcast_to(w_scale, (len(flat),)) * a_scale
        bias = np.rint(stage.bias / acc_scale).astype(np.int64) - a_zero * q.sum(axis=1)
        following = stages[index + 1:layers[number + 1]] if not last else stages[index + 1:]
        requant = None
        if not last:
            if not following or following[0][0] != "relu":
                _fail(stage.node, "is not followed by a Relu; the project's quantization "
                                  "keeps activations unsigned (quantize with onnxruntime, or "
                                  "add the Relu)")
            next_bits = layer_bits[number + 1]
            next_scale = activation_scale(outs[index + 1], next_bits, CALIBRATION_PERCENTILE)
            multiplier, shift = quantize_multiplier(acc_scale / next_scale, MULTIPLIER_BITS)
            requant = Requant(next_bits, 0, None, multiplier, shift)
        out = stage.node.output[0]
        common = dict(node=stage.node.name or out, inputs=(current,), output=out,
                      weight=q.reshape(stage.weight.shape) if stage.conv else q, bias=bias,
                      a_zero=a_zero, w_bits=w_bits, a_bits=a_bits, requant=requant)
        ops.append(Conv(**common, **stage.conv) if stage.conv else Dense(**common))
        current = out
        for kind, node, params in following:
            out = node.output[0]
            if kind == "relu":
                if requant is None:
                    _fail(node, "a Relu after the last layer; supported: the last layer gives "
                                "the (dequantized) accumulators")
                continue                    # folded into the requantization's clamp at 0
            if kind == "maxpool":
                kernel, strides, pads = params
                ops.append(MaxPool(node.name or out, (current,), out, kernel=kernel,
                                   strides=strides, pads=pads))
            else:
                ops.append(Reshape(node.name or out, (current,), out, shape=(-1,)))
            current = out
        if not last:
            a_scale, a_zero, a_bits = next_scale, 0, layer_bits[number + 1]
    output = graph.output[0].name
    ops.append(Dequantize("output", (current,), output, scale=acc_scale.astype(np.float32)))
    return IntegerGraph(((value.name, shape, np.float32),), ((output, np.float32),),
                        tuple(ops), "ptq")
