"""Read an ONNX model quantized by onnxruntime into an :class:`~golden.onnx.graph.IntegerGraph`.

Both of onnxruntime's formats are read into the same operations: QOperator nodes
(QLinearMatMul, QGemm, QLinearConv, QLinearAdd, MatMulInteger, ConvInteger, ...) directly,
and QDQ graphs by recognising what onnxruntime fuses: a float MatMul, Gemm, Conv or Add whose
inputs are DequantizeLinear outputs and whose output goes to a QuantizeLinear is the
quantized operator with those parameters. Every node that cannot be mapped exactly is an
:class:`OnnxImportError` naming the node, its op type and what is supported.
"""

import numpy as np

from golden.onnx.fixed import exact_fixed_point
from golden.onnx.graph import (Add, AveragePool, Conv, Dense, Dequantize, IntegerGraph,
                               MatMul, MaxPool, Quantize, ReduceMax, Relu, Requant, Reshape,
                               Softmax, Transpose)

__all__ = ["OnnxImportError", "SUPPORTED", "read_quantized", "is_quantized"]

#: Operators read, and what each becomes.
SUPPORTED = {
    "QuantizeLinear": "float model input to uint8 (host)",
    "DequantizeLinear": "uint8 or int32 to a float32 output (host)",
    "QLinearMatMul": "dense layer on the array, constant int8 weights; or the product of "
                     "two run-time uint8 tensors (attention's Q K^T, P V; host)",
    "MatMulInteger": "dense layer on the array, int32 accumulators out",
    "QGemm (com.microsoft)": "dense layer on the array, int32 bias",
    "Gemm (QDQ)": "dense layer on the array, int32 bias",
    "MatMul (QDQ)": "dense layer on the array; or two run-time tensors (host)",
    "QLinearConv": "2-D convolution, im2col GEMM on the array (group 1)",
    "ConvInteger": "2-D convolution, int32 accumulators out",
    "Conv (QDQ)": "2-D convolution, im2col GEMM on the array",
    "QLinearAdd (com.microsoft)": "quantized add, a bias or two tensors (host)",
    "Add (QDQ)": "quantized add (host)",
    "Relu": "max(q, zero point) (host; usually folded into the output range)",
    "MaxPool": "2-D max pooling on uint8 (host)",
    "QLinearAveragePool (com.microsoft)": "2-D average pooling, no padding (host)",
    "AveragePool (QDQ)": "2-D average pooling, no padding (host)",
    "Flatten": "reshape keeping the batch axis (host)",
    "Reshape": "reshape keeping the batch axis (host)",
    "QLinearSoftmax (com.microsoft)": "softmax over the last axis, onnxruntime's lookup "
                                      "table (host)",
    "Transpose": "transposition keeping the batch axis first (host)",
    "ReduceMax": "maximum over non-batch axes, between DequantizeLinear and QuantizeLinear "
                 "(host)",
}
_FLOAT, _UINT8, _INT32 = 1, 2, 6
#: Width of the accelerator's requantization multiplier (rtl.accel.isa.Param).
HARDWARE_MULTIPLIER_BITS = 16


class OnnxImportError(ValueError):
    """A model the import cannot map exactly; the message is one line."""


def _supported_list():
    return ", ".join(name.split(" ")[0] for name in SUPPORTED)


def _fail(node, message):
    raise OnnxImportError(f"node {node.name or node.output[0]!r} ({node.op_type}): {message}")


def is_quantized(model):
    """Is the model quantized (quantized operators, or an integer input), else float?"""
    kinds = {node.op_type for node in model.graph.node}
    integer_input = any(value.type.tensor_type.elem_type != _FLOAT
                        for value in model.graph.input)
    return integer_input or bool(kinds & {"QuantizeLinear", "DequantizeLinear",
                                          "QLinearMatMul", "QGemm", "QLinearConv",
                                          "MatMulInteger", "ConvInteger"})


def input_shape(value):
    """The shape of a graph input ``value`` past its batch axis; every one of those axes must
    have a fixed size."""
    shape = []
    for axis, dim in enumerate(value.type.tensor_type.shape.dim[1:], start=1):
        if not dim.HasField("dim_value"):
            raise OnnxImportError(
                f"input {value.name!r}: axis {axis} is dynamic ({dim.dim_param or '?'}); "
                f"supported: a dynamic batch (axis 0) only, every other axis a fixed size")
        shape.append(dim.dim_value)
    return tuple(shape)


class _Reader:
    """The state of one import: constants, quantized tensors, float aliases, the ops."""

    def __init__(self, model):
        from onnx import numpy_helper
        self.graph = model.graph
        self.consts = {init.name: numpy_helper.to_array(init) for init in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant":
                from onnx import helper
                self.consts[node.output[0]] = numpy_helper.to_array(
                    helper.get_attribute_value(node.attribute[0]))
        #: name -> (scale float32, zero int, dtype) of each integer tensor computed at run time
        self.quant = {}
        #: float tensor name -> integer tensor name it is the dequantization of
        self.alias = {}
        #: float tensor name -> the float compute node waiting for its QuantizeLinear
        self.pending = {}
        self.shapes = {}
        self.ops = []
        consumers = {}
        for node in self.graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        self.consumers = consumers

    # -- helpers -------------------------------------------------------------------------

    def const(self, node, name, what):
        if name not in self.consts:
            _fail(node, f"{what} {name!r} must be a constant (an initializer)")
        return self.consts[name]

    def scalar_zero(self, node, name, what):
        if not name:
            return 0
        zero = self.const(node, name, what)
        if zero.size != 1:
            _fail(node, f"{what} must be one value per tensor, not {zero.size}")
        return int(zero.reshape(-1)[0])

    def scale(self, node, name, what, per_channel=False):
        scale = self.const(node, name, what).astype(np.float32)
        if scale.size != 1 and not per_channel:
            _fail(node, f"{what} must be one value per tensor, not {scale.size}")
        if (scale <= 0).any() or not np.isfinite(scale).all():
            _fail(node, f"{what} must be positive and finite")
        return scale.reshape(-1) if per_channel else np.float32(scale.reshape(-1)[0])

    def activation(self, node, name, scale_name="", zero_name=""):
        """``(scale, zero)`` of the uint8 tensor ``name`` computed at run time; the node's
        own ``scale_name`` and ``zero_name`` (QOperator inputs) must agree with them, and
        give them to a uint8 model input."""
        if name not in self.quant:
            if name in self.consts:
                _fail(node, f"input {name!r} is a constant where the array needs run-time "
                            f"activations; supported: a constant second operand (weights)")
            _fail(node, f"input {name!r} is not a quantized tensor (float operators run only "
                        f"between DequantizeLinear and QuantizeLinear)")
        scale, zero, dtype = self.quant[name]
        if dtype != np.uint8:
            _fail(node, f"input {name!r} is {np.dtype(dtype).name}; supported: uint8 "
                        f"activations")
        if scale_name:
            given = (self.scale(node, scale_name, "input scale"),
                     self.scalar_zero(node, zero_name, "input zero point"))
            if scale is None:
                self.quant[name] = (*given, dtype)
                return given
            if given != (scale, zero):
                _fail(node, f"input {name!r} is read with scale and zero point {given}, not "
                            f"those it was quantized with ({scale}, {zero})")
        if scale is None:
            _fail(node, f"input {name!r} has no scale; supported: a uint8 input read by "
                        f"QLinear operators")
        return scale, zero

    def weights(self, node, array, zero, what):
        """The int8 weights, checked: 8 bits signed, zero point 0 (per channel)."""
        if array.dtype != np.int8:
            if array.dtype == np.uint8:
                _fail(node, f"{what} are uint8; supported: signed int8 weights (quantize "
                            f"with weight_type=QInt8)")
            _fail(node, f"{what} are {array.dtype.name}, wider than 8 bits; supported: int8 "
                        f"weights")
        zero = np.asarray(zero).reshape(-1)
        if (zero != 0).any():
            channel = int(np.flatnonzero(zero)[0])
            _fail(node, f"{what} zero point {int(zero[channel])} at channel {channel}; "
                        f"supported: symmetric weights (zero point 0 on every channel)")
        return array.astype(np.int64)

    def out_params(self, node, scale_name, zero_name, output):
        scale = self.scale(node, scale_name, "output scale")
        zero = self.scalar_zero(node, zero_name, "output zero point")
        zero_array = self.consts.get(zero_name)
        if zero_array is not None and zero_array.dtype != np.uint8:
            _fail(node, f"output is {zero_array.dtype.name}; supported: uint8 activations")
        self.quant[output] = (scale, zero, np.uint8)
        return scale, zero

    def bias_vector(self, node, name, outputs):
        if not name:
            return np.zeros(outputs, dtype=np.int64)
        bias = self.const(node, name, "bias")
        if bias.dtype != np.int32:
            _fail(node, f"bias is {bias.dtype.name}; supported: int32 in accumulator units")
        return bias.astype(np.int64).reshape(-1)

    def dense(self, node, a, a_scale, a_zero, weight, w_scale, bias, output, out_scale,
              out_zero, conv=None):
        """Append a :class:`Dense` or :class:`Conv` on ``a``; ``weight`` is (out, in...)."""
        outputs = weight.shape[0]
        w_scale = np.broadcast_to(np.asarray(w_scale, dtype=np.float32), (outputs,))
        folded = bias - a_zero * weight.reshape(outputs, -1).sum(axis=1)
        args = dict(node=node.name or output, inputs=(a,), output=output, weight=weight,
                    bias=folded, a_zero=a_zero)
        op = Dense(**args) if conv is None else Conv(**args, **conv)
        lo, hi = op.accumulator_range()
        if lo.min() < -(1 << 31) or hi.max() >= 1 << 31 or \
                np.abs(folded).max(initial=0) >= 1 << 31:
            _fail(node, "accumulators or the folded bias can exceed 32 bits; supported: int32")
        if out_scale is not None:
            # onnxruntime: a_scale * w_scale / y_scale, float32, in that order.
            scale = ((np.float32(a_scale) * w_scale) / np.float32(out_scale)).astype(np.float32)
            fixed = exact_fixed_point(scale, 8, lo, hi, HARDWARE_MULTIPLIER_BITS) \
                if out_zero == 0 else None
            multiplier, shift = fixed if fixed is not None else (None, None)
            op = type(op)(**{**op.__dict__, "requant": Requant(8, out_zero, scale, multiplier,
                                                               shift)})
        self.ops.append(op)
        self.shapes[output] = self.out_shape(op, self.shapes[a])

    def out_shape(self, op, shape):
        if isinstance(op, Conv):
            m, n, _ = op.gemm_shape((1, *shape))
            kh, kw = op.weight.shape[2:]
            from golden.onnx.graph import conv_output_size
            oh = conv_output_size(shape[1], kh, op.strides[0], op.pads[0], op.pads[2],
                                  op.dilations[0])
            return (n, oh, m // oh)
        return (*shape[:-1], op.weight.shape[0])

    def conv_attributes(self, node, rank_of_input):
        from onnx import helper
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if rank_of_input != 3:
            _fail(node, f"input has {rank_of_input} axes past the batch; supported: 2-D "
                        f"convolutions (N, C, H, W)")
        if attrs.get("group", 1) != 1:
            _fail(node, f"group {attrs['group']}; supported: group 1")
        pad_mode = attrs.get("auto_pad", b"NOTSET")
        pad_mode = pad_mode.decode() if isinstance(pad_mode, bytes) else pad_mode
        if pad_mode not in ("NOTSET", "VALID"):
            _fail(node, f"auto_pad {pad_mode}; supported: explicit pads (NOTSET) or VALID")
        pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
        return {"strides": tuple(attrs.get("strides", (1, 1))), "pads": pads,
                "dilations": tuple(attrs.get("dilations", (1, 1)))}

    # -- inputs and outputs --------------------------------------------------------------

    def read_inputs(self):
        inputs = []
        for value in self.graph.input:
            if value.name in self.consts:
                continue
            tensor = value.type.tensor_type
            shape = input_shape(value)
            dtype = {_FLOAT: np.float32, _UINT8: np.uint8}.get(tensor.elem_type)
            if dtype is None:
                raise OnnxImportError(f"input {value.name!r}: element type {tensor.elem_type}; "
                                      f"supported: float32 or uint8")
            if dtype == np.uint8:           # its scale and zero point: its first reader's
                self.quant[value.name] = (None, 0, np.uint8)
            inputs.append((value.name, shape, dtype))
            self.shapes[value.name] = shape
        return tuple(inputs)

    def read_outputs(self):
        outputs = []
        for value in self.graph.output:
            name = value.name
            if name in self.pending:
                node = self.pending[name]
                _fail(node, "its float output is a model output; QDQ needs a QuantizeLinear "
                            "after it (nothing runs in float)")
            dtype = {_FLOAT: np.float32, _UINT8: np.uint8, _INT32: np.int32}.get(
                value.type.tensor_type.elem_type)
            if dtype is None:
                raise OnnxImportError(f"output {name!r}: element type "
                                      f"{value.type.tensor_type.elem_type}; supported: float32, "
                                      f"uint8 or int32")
            if name in self.alias and dtype == np.float32:
                source = self.alias[name]
                scale, zero, _ = self.quant[source]
                self.ops.append(Dequantize(f"{name} (DequantizeLinear)", (source,), name,
                                           scale=scale, zero=zero))
            outputs.append((name, dtype))
        return tuple(outputs)

    # -- nodes ---------------------------------------------------------------------------

    def read(self):
        inputs = self.read_inputs()
        for node in self.graph.node:
            if node.op_type == "Constant":
                continue
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None or node.domain not in ("", "ai.onnx", "com.microsoft"):
                _fail(node, f"unsupported operator; supported: {_supported_list()} "
                            f"(python -m sim.infer --supported)")
            handler(node)
        outputs = self.read_outputs()
        return IntegerGraph(inputs, outputs, tuple(self.ops), "onnxruntime")

    def op_QuantizeLinear(self, node):
        x, out = node.input[0], node.output[0]
        scale = self.scale(node, node.input[1], "scale")
        zero = self.scalar_zero(node, node.input[2] if len(node.input) > 2 else "", "zero point")
        zero_dtype = self.consts[node.input[2]].dtype if len(node.input) > 2 else np.uint8
        if x in self.consts:
            _fail(node, "quantizes a float constant at run time; supported: weights stored "
                        "quantized (as quantize_static writes them)")
        if zero_dtype != np.uint8:
            _fail(node, f"quantizes to {np.dtype(zero_dtype).name}; supported: uint8 "
                        f"activations (activation_type=QUInt8)")
        if x in self.pending:
            self.emit_pending(self.pending.pop(x), out, scale, zero)
            return
        if x in self.alias:             # requantizing a dequantized tensor: only identity
            source = self.alias[x]
            if self.quant[source][:2] != (scale, zero):
                _fail(node, "requantizes a tensor to other parameters; supported: the same "
                            "scale and zero point")
            self.quant[out] = self.quant[source]
            self._rename(source, out)
            return
        if x not in self.shapes:
            _fail(node, f"input {x!r} is computed in float; supported: a model input")
        self.ops.append(Quantize(node.name or out, (x,), out, scale=float(scale), zero=zero))
        self.quant[out] = (scale, zero, np.uint8)
        self.shapes[out] = self.shapes[x]

    def _rename(self, source, out):
        """``out`` is the same integers as ``source``."""
        self.ops.append(Reshape(f"{out} (identity)", (source,), out,
                                shape=tuple(self.shapes[source])))
        self.shapes[out] = self.shapes[source]

    def op_DequantizeLinear(self, node):
        x, out = node.input[0], node.output[0]
        if x in self.consts:            # weights or bias: kept as integers with their scale
            self.consts[out] = ("dq", x, node)
            return
        if x not in self.quant:
            _fail(node, f"input {x!r} is not a quantized tensor")
        scale = self.scale(node, node.input[1], "scale")
        zero = self.scalar_zero(node, node.input[2] if len(node.input) > 2 else "", "zero point")
        if self.quant[x][:2] != (scale, zero):
            _fail(node, "dequantizes with other parameters than the tensor was quantized with")
        self.alias[out] = x

    def dq_const(self, node, name, what):
        """The integers, scale and zero point of a DequantizeLinear of a constant."""
        entry = self.consts.get(name)
        if not (isinstance(entry, tuple) and entry[0] == "dq"):
            _fail(node, f"{what} {name!r} must be a dequantized constant")
        _, source, dq = entry
        scale = self.const(dq, dq.input[1], "scale").astype(np.float32).reshape(-1)
        zero = (self.const(dq, dq.input[2], "zero point") if len(dq.input) > 2
                else np.zeros(1, dtype=self.consts[source].dtype))
        from onnx import helper
        axis = {a.name: helper.get_attribute_value(a) for a in dq.attribute}.get("axis", 1)
        return self.consts[source], scale, zero, axis

    # QDQ: float compute nodes wait for their QuantizeLinear.

    def defer(self, node):
        out = node.output[0]
        if not any(name in self.alias for name in node.input):
            _fail(node, f"input {node.input[0]!r} is not the output of a DequantizeLinear; "
                        f"supported in QDQ: DequantizeLinear -> operator -> QuantizeLinear")
        users = self.consumers.get(out, [])
        if not users or any(user.op_type != "QuantizeLinear" for user in users):
            _fail(node, "its float output is used without a QuantizeLinear; supported in QDQ: "
                        "DequantizeLinear -> operator -> QuantizeLinear")
        self.pending[out] = node

    op_MatMul = op_Gemm = op_Conv = op_AveragePool = op_ReduceMax = op_Softmax = defer

    def op_Add(self, node):
        if node.input[0] in self.alias or node.input[1] in self.alias:
            self.defer(node)
            return
        _fail(node, "adds float tensors; supported: quantized (QDQ) or QLinearAdd")

    def emit_pending(self, node, out, out_scale, out_zero):
        self.quant[out] = (out_scale, out_zero, np.uint8)
        kind = node.op_type
        if kind == "Add":
            a, b = node.input
            if a not in self.alias:
                a, b = b, a
            self.add(node, self.alias[a], b, out, out_scale, out_zero)
            return
        if kind == "AveragePool":
            source = self.alias[node.input[0]]
            self.average_pool(node, source, out, out_scale, out_zero, float_path=True)
            return
        if kind == "Softmax":
            self.softmax(node, self.alias[node.input[0]], out, out_scale, out_zero)
            return
        if kind == "ReduceMax":
            self.reduce_max(node, self.alias[node.input[0]], out, out_scale, out_zero)
            return
        if kind == "MatMul" and node.input[1] in self.alias:
            a, b = (self.alias.get(name) for name in node.input[:2])
            if a is None:
                _fail(node, f"input {node.input[0]!r} is not a dequantized activation")
            self.matmul(node, a, b, out, out_scale, out_zero)
            return
        a = node.input[0]
        if a not in self.alias:
            _fail(node, f"input {a!r} is not a dequantized activation")
        source = self.alias[a]
        a_scale, a_zero = self.activation(node, source)
        w, w_scale, w_zero, axis = self.dq_const(node, node.input[1], "weight")
        from onnx import helper
        attrs = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        if kind == "Conv":
            weight = self.weights(node, w, w_zero, "weights")
            bias = self.qdq_bias(node, node.input[2] if len(node.input) > 2 else "",
                                 a_scale, w_scale, weight.shape[0])
            conv = self.conv_attributes(node, len(self.shapes[source]))
            self.dense(node, source, a_scale, a_zero, weight, w_scale, bias, out, out_scale,
                       out_zero, conv)
            return
        if kind == "Gemm":
            self.gemm_attributes(node, attrs)
            trans_b = attrs.get("transB", 0)
        else:
            trans_b = 0
        weight = self.weights(node, w, w_zero, "weights")
        weight = weight if trans_b else weight.T
        bias = self.qdq_bias(node, node.input[2] if len(node.input) > 2 else "",
                             a_scale, w_scale, weight.shape[0])
        self.dense(node, source, a_scale, a_zero, weight, w_scale, bias, out, out_scale,
                   out_zero)

    def qdq_bias(self, node, name, a_scale, w_scale, outputs):
        if not name:
            return np.zeros(outputs, dtype=np.int64)
        bias, scale, zero, _ = self.dq_const(node, name, "bias")
        if bias.dtype != np.int32 or (np.asarray(zero) != 0).any():
            _fail(node, f"bias is {bias.dtype.name} with zero point; supported: int32, zero "
                        f"point 0, scale a_scale * w_scale")
        want = np.float32(a_scale) * np.broadcast_to(w_scale, (outputs,)).astype(np.float32)
        if not np.allclose(np.broadcast_to(scale, (outputs,)), want, rtol=1e-6, atol=0):
            _fail(node, "bias scale is not a_scale * w_scale; it cannot be added to the "
                        "accumulators exactly")
        return bias.astype(np.int64).reshape(-1)

    def gemm_attributes(self, node, attrs):
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or \
                attrs.get("beta", 1.0) != 1.0:
            _fail(node, "transA, alpha or beta set; supported: transA 0, alpha 1, beta 1")

    # QOperator nodes.

    def op_QLinearMatMul(self, node):
        a, a_s, a_z, b, b_s, b_z, y_s, y_z = node.input
        a_scale, a_zero = self.activation(node, a, a_s, a_z)
        if b not in self.consts:
            self.activation(node, b, b_s, b_z)
            out_scale, out_zero = self.out_params(node, y_s, y_z, node.output[0])
            self.matmul(node, a, b, node.output[0], out_scale, out_zero)
            return
        w = self.weights(node, self.const(node, b, "weight"), self.const(node, b_z, "weight "
                         "zero point"), "weights")
        if w.ndim != 2:
            _fail(node, f"weight has {w.ndim} axes; supported: a 2-D constant weight (K, N)")
        w_scale = self.scale(node, b_s, "weight scale", per_channel=True)
        out_scale, out_zero = self.out_params(node, y_s, y_z, node.output[0])
        self.dense(node, a, a_scale, a_zero, w.T, w_scale, np.zeros(w.shape[1], np.int64),
                   node.output[0], out_scale, out_zero)

    def matmul(self, node, a, b, out, out_scale, out_zero):
        """Append a :class:`MatMul` of the run-time uint8 tensors ``a`` and ``b``."""
        a_scale, a_zero = self.activation(node, a)
        b_scale, b_zero = self.activation(node, b)
        shape_a, shape_b = self.shapes[a], self.shapes[b]
        if len(shape_a) != len(shape_b) or len(shape_a) < 2 or \
                shape_a[:-2] != shape_b[:-2] or shape_a[-1] != shape_b[-2]:
            _fail(node, f"operands of shapes {shape_a} and {shape_b} past the batch; "
                        f"supported: (..., m, k) times (..., k, n), the same leading axes")
        if shape_a[-1] * 255 * 255 >= 1 << 31:
            _fail(node, f"{shape_a[-1]} products per accumulator can exceed 32 bits; "
                        f"supported: int32 accumulators")
        # onnxruntime: a_scale * b_scale / y_scale, float32, in that order.
        scale = (np.float32(a_scale) * np.float32(b_scale)) / np.float32(out_scale)
        self.ops.append(MatMul(node.name or out, (a, b), out, a_zero=a_zero, b_zero=b_zero,
                               requant=Requant(8, out_zero, np.array([scale], np.float32))))
        self.quant[out] = (out_scale, out_zero, np.uint8)
        self.shapes[out] = (*shape_a[:-1], shape_b[-1])

    def op_MatMulInteger(self, node):
        a, b = node.input[:2]
        a_zero = self.integer_input(node, a, node.input[2] if len(node.input) > 2 else "")
        w_zero = self.const(node, node.input[3], "weight zero point") if len(node.input) > 3 \
            else np.zeros(1, np.int8)
        w = self.weights(node, self.const(node, b, "weight"), w_zero, "weights")
        if w.ndim != 2:
            _fail(node, f"weight has {w.ndim} axes; supported: a 2-D constant weight (K, N)")
        self.dense(node, a, 1.0, a_zero, w.T, 1.0, np.zeros(w.shape[1], np.int64),
                   node.output[0], None, 0)
        self.quant[node.output[0]] = (np.float32(1), 0, np.int32)

    def integer_input(self, node, name, zero_name):
        """The zero point of a uint8 input of MatMulInteger or ConvInteger (its own)."""
        if name not in self.quant or self.quant[name][2] != np.uint8:
            self.activation(node, name)
        zero = self.scalar_zero(node, zero_name, "input zero point")
        if self.quant[name][0] is None:
            self.quant[name] = (np.float32(1), zero, np.uint8)
        return zero

    def op_QGemm(self, node):
        from onnx import helper
        attrs = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        self.gemm_attributes(node, attrs)
        names = list(node.input) + [""] * (9 - len(node.input))
        a, a_s, a_z, b, b_s, b_z, c, y_s, y_z = names
        if not y_s:
            _fail(node, "gives float outputs (no y_scale); supported: quantized outputs")
        a_scale, a_zero = self.activation(node, a, a_s, a_z)
        w = self.weights(node, self.const(node, b, "weight"), self.const(node, b_z, "weight "
                         "zero point"), "weights")
        w = w if attrs.get("transB", 0) else w.T
        w_scale = self.scale(node, b_s, "weight scale", per_channel=True)
        bias = self.bias_vector(node, c, w.shape[0])
        out_scale, out_zero = self.out_params(node, y_s, y_z, node.output[0])
        self.dense(node, a, a_scale, a_zero, w, w_scale, bias, node.output[0], out_scale,
                   out_zero)

    def op_QLinearConv(self, node):
        names = list(node.input) + [""] * (9 - len(node.input))
        x, x_s, x_z, w, w_s, w_z, y_s, y_z, b = names
        a_scale, a_zero = self.activation(node, x, x_s, x_z)
        weight = self.weights(node, self.const(node, w, "weight"), self.const(
            node, w_z, "weight zero point"), "weights")
        w_scale = self.scale(node, w_s, "weight scale", per_channel=True)
        bias = self.bias_vector(node, b, weight.shape[0])
        conv = self.conv_attributes(node, len(self.shapes[x]))
        out_scale, out_zero = self.out_params(node, y_s, y_z, node.output[0])
        self.dense(node, x, a_scale, a_zero, weight, w_scale, bias, node.output[0], out_scale,
                   out_zero, conv)

    def op_ConvInteger(self, node):
        x, w = node.input[:2]
        a_zero = self.integer_input(node, x, node.input[2] if len(node.input) > 2 else "")
        w_zero = self.const(node, node.input[3], "weight zero point") if len(node.input) > 3 \
            else np.zeros(1, np.int8)
        weight = self.weights(node, self.const(node, w, "weight"), w_zero, "weights")
        conv = self.conv_attributes(node, len(self.shapes[x]))
        self.dense(node, x, 1.0, a_zero, weight, 1.0, np.zeros(weight.shape[0], np.int64),
                   node.output[0], None, 0, conv)
        self.quant[node.output[0]] = (np.float32(1), 0, np.int32)

    def add(self, node, a, b, out, out_scale, out_zero):
        a_scale, a_zero = self.activation(node, a)
        constant = None
        if b in self.alias:
            b = self.alias[b]
            b_scale, b_zero = self.activation(node, b)
            inputs = (a, b)
        else:
            values, b_scale, b_zero, _ = self.dq_const(node, b, "second operand")
            if values.dtype != np.uint8 or np.asarray(b_scale).size != 1:
                _fail(node, "the constant operand must be uint8, per tensor")
            constant = values.astype(np.int64)
            b_scale, b_zero = np.float32(b_scale.reshape(-1)[0]), int(np.asarray(b_zero).flat[0])
            inputs = (a,)
        self.ops.append(Add(node.name or out, inputs, out, scales=(a_scale, b_scale, out_scale),
                            zeros=(a_zero, b_zero, out_zero), constant=constant))
        self.shapes[out] = self.shapes[a]

    def op_QLinearAdd(self, node):
        a, a_s, a_z, b, b_s, b_z, c_s, c_z = node.input
        out_scale, out_zero = self.out_params(node, c_s, c_z, node.output[0])
        if b in self.consts:
            values = self.consts[b]
            if values.dtype != np.uint8:
                _fail(node, "the constant operand must be uint8")
            constant = values.astype(np.int64)
            a_scale, a_zero = self.activation(node, a, a_s, a_z)
            b_scale, b_zero = self.scale(node, b_s, "scale"), self.scalar_zero(node, b_z, "zero")
            self.ops.append(Add(node.name or node.output[0], (a,), node.output[0],
                                scales=(a_scale, b_scale, out_scale),
                                zeros=(a_zero, b_zero, out_zero), constant=constant))
            self.shapes[node.output[0]] = self.shapes[a]
            return
        a_scale, a_zero = self.activation(node, a, a_s, a_z)
        b_scale, b_zero = self.activation(node, b, b_s, b_z)
        self.ops.append(Add(node.name or node.output[0], (a, b), node.output[0],
                            scales=(a_scale, b_scale, out_scale),
                            zeros=(a_zero, b_zero, out_zero)))
        self.shapes[node.output[0]] = self.shapes[a]

    def op_QLinearSoftmax(self, node):
        from onnx import helper
        x, x_s, x_z, y_s, y_z = node.input
        opset = {a.name: helper.get_attribute_value(a) for a in node.attribute}.get("opset", 13)
        if opset < 13:
            _fail(node, f"opset {opset} (a softmax over all axes from 1); supported: opset 13 "
                        f"or later, the last axis")
        self.activation(node, x, x_s, x_z)
        out_scale, out_zero = self.out_params(node, y_s, y_z, node.output[0])
        self.softmax(node, x, node.output[0], out_scale, out_zero)

    def softmax(self, node, x, out, out_scale, out_zero):
        """Append a :class:`Softmax` of ``x`` over the node's ``axis`` (the last)."""
        from onnx import helper
        axis = {a.name: helper.get_attribute_value(a) for a in node.attribute}.get("axis", -1)
        if axis not in (-1, len(self.shapes[x])):
            _fail(node, f"axis {axis}; supported: the last axis")
        x_scale, _ = self.activation(node, x)
        self.ops.append(Softmax(node.name or out, (x,), out, x_scale=x_scale,
                                y_scale=out_scale, y_zero=out_zero))
        self.quant[out] = (out_scale, out_zero, np.uint8)
        self.shapes[out] = self.shapes[x]

    def reduce_max(self, node, source, out, out_scale, out_zero):
        from onnx import helper
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        rank = len(self.shapes[source]) + 1
        axes = attrs.get("axes")
        if axes is None or len(node.input) > 1:
            _fail(node, "axes not given as an attribute; supported: opset 17 or earlier, "
                        "axes listed")
        axes = tuple(sorted(a % rank for a in axes))
        if 0 in axes:
            _fail(node, "reduces the batch axis; supported: axes past the batch")
        x_scale, x_zero = self.activation(node, source)
        keepdims = bool(attrs.get("keepdims", 1))
        self.ops.append(ReduceMax(node.name or out, (source,), out, axes=axes,
                                  keepdims=keepdims, x_scale=x_scale, x_zero=x_zero,
                                  y_scale=out_scale, y_zero=out_zero))
        self.shapes[out] = tuple(1 if i in axes else size
                                 for i, size in enumerate(self.shapes[source], start=1)
                                 if keepdims or i not in axes)

    def pool_attributes(self, node, source):
        from onnx import helper
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if len(self.shapes[source]) != 3:
            _fail(node, "supported: 2-D pooling on (N, C, H, W)")
        if tuple(attrs.get("dilations", (1, 1))) != (1, 1) or attrs.get("ceil_mode", 0):
            _fail(node, "dilations or ceil_mode set; supported: neither")
        pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
        return tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", (1, 1))), pads, attrs

    def pooled_shape(self, shape, kernel, strides, pads):
        from golden.onnx.graph import conv_output_size
        c, h, w = shape
        return (c, conv_output_size(h, kernel[0], strides[0], pads[0], pads[2], 1),
                conv_output_size(w, kernel[1], strides[1], pads[1], pads[3], 1))

    def average_pool(self, node, source, out, out_scale, out_zero, float_path=False):
        kernel, strides, pads, attrs = self.pool_attributes(node, source)
        if any(pads):
            _fail(node, "padding; supported: average pooling without padding")
        x_scale, x_zero = self.activation(node, source)
        self.ops.append(AveragePool(node.name or out, (source,), out, kernel=kernel,
                                    strides=strides, x_scale=x_scale, x_zero=x_zero,
                                    y_scale=out_scale, y_zero=out_zero,
                                    float_path=float_path))
        self.shapes[out] = self.pooled_shape(self.shapes[source], kernel, strides, pads)

    def op_QLinearAveragePool(self, node):
        x, x_s, x_z, y_s, y_z = node.input
        self.activation(node, x, x_s, x_z)
        out_scale, out_zero = self.out_params(node, y_s, y_z, node.output[0])
        self.average_pool(node, x, node.output[0], out_scale, out_zero)

    # Operators that commute with dequantization.

    def passthrough_source(self, node):
        """The integer tensor the node reads and whether its output is a float alias."""
        x = node.input[0]
        if x in self.alias:
            return self.alias[x], True
        if x in self.quant:
            return x, False
        _fail(node, f"input {x!r} is not quantized")

    def finish_passthrough(self, node, op, source, is_alias, shape):
        out = node.output[0]
        integer_name = f"{out} (integers)" if is_alias else out
        op = type(op)(**{**op.__dict__, "output": integer_name})
        self.ops.append(op)
        self.quant[integer_name] = self.quant[source]
        self.shapes[integer_name] = shape
        if is_alias:
            self.alias[out] = integer_name

    def op_Relu(self, node):
        source, is_alias = self.passthrough_source(node)
        zero = self.quant[source][1]
        self.finish_passthrough(node, Relu(node.name or node.output[0], (source,),
                                           node.output[0], zero=zero), source, is_alias,
                                self.shapes[source])

    def op_MaxPool(self, node):
        source, is_alias = self.passthrough_source(node)
        kernel, strides, pads, attrs = self.pool_attributes(node, source)
        if attrs.get("storage_order", 0) or len(node.output) > 1:
            _fail(node, "indices output or storage_order; supported: values only")
        self.finish_passthrough(node, MaxPool(node.name or node.output[0], (source,),
                                              node.output[0], kernel=kernel, strides=strides,
                                              pads=pads), source, is_alias,
                                self.pooled_shape(self.shapes[source], kernel, strides, pads))

    def op_Transpose(self, node):
        from onnx import helper
        source, is_alias = self.passthrough_source(node)
        shape = self.shapes[source]
        perm = {a.name: helper.get_attribute_value(a) for a in node.attribute}.get(
            "perm", list(reversed(range(len(shape) + 1))))
        perm = tuple(int(p) for p in perm)
        if not perm or perm[0] != 0:
            _fail(node, f"perm {list(perm)}; supported: the batch axis kept first")
        self.finish_passthrough(node, Transpose(node.name or node.output[0], (source,),
                                                node.output[0], perm=perm), source, is_alias,
                                tuple(shape[p - 1] for p in perm[1:]))

    def op_Flatten(self, node):
        from onnx import helper
        source, is_alias = self.passthrough_source(node)
        axis = {a.name: helper.get_attribute_value(a) for a in node.attribute}.get("axis", 1)
        if axis != 1:
            _fail(node, f"axis {axis}; supported: 1 (keep the batch axis)")
        size = int(np.prod(self.shapes[source]))
        self.finish_passthrough(node, Reshape(node.name or node.output[0], (source,),
                                              node.output[0], shape=(size,)), source, is_alias,
                                (size,))

    def op_Reshape(self, node):
        source, is_alias = self.passthrough_source(node)
        target = [int(v) for v in self.const(node, node.input[1], "shape")]
        shape = self.shapes[source]
        if not target or target[0] not in (0, -1) or \
                (target[0] == -1 and -1 in target[1:]):
            _fail(node, f"shape {target}; supported: the batch axis kept (first entry 0 or "
                        f"-1, the rest fixed)")
        rest = [shape[i - 1] if v == 0 else v for i, v in enumerate(target[1:], start=1)]
        if -1 in rest:
            known = int(np.prod([v for v in rest if v != -1]))
            rest[rest.index(-1)] = int(np.prod(shape)) // known
        if int(np.prod(rest)) != int(np.prod(shape)):
            _fail(node, f"shape {target} does not hold the {int(np.prod(shape))} values of "
                        f"an image")
        self.finish_passthrough(node, Reshape(node.name or node.output[0], (source,),
                                              node.output[0], shape=tuple(rest)), source,
                                is_alias, tuple(rest))


def read_quantized(model):
    """The :class:`IntegerGraph` of an onnxruntime-quantized ``model`` (an ``onnx.ModelProto``).

    Raises
    ------
    OnnxImportError
        A node that cannot be mapped exactly: one line naming it, its op type and what is
        supported.
    """
    return _Reader(model).read()
