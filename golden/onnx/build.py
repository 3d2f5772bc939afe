"""Small ONNX models built with ``onnx.helper``, quantized and run by onnxruntime: the
reference side of the ONNX import (tests, examples, docs/onnx.md).

``onnx`` and ``onnxruntime`` are imported when a function is called.
"""

import tempfile
from pathlib import Path

import numpy as np

__all__ = ["OPSET", "FORMATS", "model_of", "float_mlp", "float_cnn", "quantize_onnxruntime",
           "run_onnxruntime"]

#: The ONNX opset of the models built here.
OPSET = 17
#: onnxruntime's quantized formats.
FORMATS = ("QDQ", "QOperator")


def model_of(nodes, inputs, outputs, initializers, name):
    """A model of ``nodes`` (``onnx.helper.make_node``), the value infos ``inputs`` and
    ``outputs``, and the ``initializers`` (``{name: array}``), opset :data:`OPSET` and
    ``com.microsoft`` 1."""
    from onnx import helper, numpy_helper
    graph = helper.make_graph(nodes, name, inputs, outputs,
                              [numpy_helper.from_array(np.asarray(value), key)
                               for key, value in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


def _float(name, shape):
    from onnx import TensorProto, helper
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape])


def float_mlp(weights, biases, *, gemm=True):
    """A float MLP: per layer ``x W^T + b`` (a Gemm, or a MatMul and an Add), ReLU between
    layers; ``weights`` are (out, in) arrays; the batch axis is symbolic."""
    from onnx import helper
    nodes, inits, current = [], {}, "x"
    for i, (w, b) in enumerate(zip(weights, biases)):
        inits[f"W{i}"] = np.asarray(w, dtype=np.float32).T.copy()
        inits[f"b{i}"] = np.asarray(b, dtype=np.float32)
        out = f"h{i}"
        if gemm:
            nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [out],
                                          name=f"gemm{i}"))
        else:
            nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [f"m{i}"],
                                          name=f"matmul{i}"))
            nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [out], name=f"add{i}"))
        current = out
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"r{i}"], name=f"relu{i}"))
            current = f"r{i}"
    nodes[-1].output[0] = "y"
    return model_of(nodes, [_float("x", (np.shape(weights[0])[1],))],
                  [_float("y", (np.shape(weights[-1])[0],))], inits, "mlp")


def float_cnn(conv_weight, conv_bias, dense_weight, dense_bias, image, *, pool="MaxPool",
              pads=(1, 1, 1, 1)):
    """A float CNN: Conv (``conv_weight`` (out, c, kh, kw)), ReLU, a 2x2 ``pool`` (MaxPool or
    AveragePool) of stride 2, Flatten, Gemm (``dense_weight`` (out, in)); ``image`` is the
    input's (c, h, w)."""
    from onnx import helper
    inits = {"Wc": np.asarray(conv_weight, dtype=np.float32),
             "bc": np.asarray(conv_bias, dtype=np.float32),
             "Wd": np.asarray(dense_weight, dtype=np.float32),
             "bd": np.asarray(dense_bias, dtype=np.float32)}
    nodes = [helper.make_node("Conv", ["x", "Wc", "bc"], ["c"], name="conv", pads=list(pads)),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node(pool, ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "Wd", "bd"], ["y"], name="dense", transB=1)]
    return model_of(nodes, [_float("x", tuple(image))],
                  [_float("y", (np.shape(dense_weight)[0],))], inits, "cnn")


def quantize_onnxruntime(model, calibration, quant_format="QDQ", per_channel=False,
                         batches=4):
    """``model`` quantized by onnxruntime's ``quantize_static``: uint8 activations, int8
    symmetric weights, MinMax calibration on ``calibration`` (split into ``batches``)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    if quant_format not in FORMATS:
        raise ValueError(f"quant_format must be QDQ or QOperator, not {quant_format!r}")
    name = model.graph.input[0].name
    chunks = np.array_split(np.asarray(calibration, dtype=np.float32), batches)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.chunks = iter(chunks)

        def get_next(self):
            chunk = next(self.chunks, None)
            return None if chunk is None else {name: chunk}

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "quantized.onnx"
        onnx.save(model, source)
        quantize_static(str(source), str(target), Reader(),
                        quant_format=getattr(QuantFormat, quant_format),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=per_channel)
        return onnx.load(str(target))


def run_onnxruntime(model, feeds):
    """onnxruntime's outputs (CPU) of ``model`` on ``feeds`` (``{name: array}`` or the one
    input's array)."""
    import onnxruntime
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    if not isinstance(feeds, dict):
        feeds = {session.get_inputs()[0].name: feeds}
    return session.run(None, feeds)
