"""ONNX import: a model quantized by onnxruntime, or a float model quantized here, as the
project's integer graph (docs/onnx.md).

    from golden.onnx import load
    graph = load("model.onnx")                      # quantized by onnxruntime (QDQ or QOperator)
    graph = load("float.onnx", calibration=x, bits=(8, 4, 4))   # the project's own PTQ
    y, = graph.run(x)

``onnx`` is imported only when a model is loaded (``pip install -e '.[onnx]'``).
"""

from golden.onnx.fixed import exact_fixed_point
from golden.onnx.graph import IntegerGraph, im2col, ort_quantize, ort_requantize
from golden.onnx.reader import SUPPORTED, OnnxImportError

__all__ = ["load", "IntegerGraph", "OnnxImportError", "SUPPORTED", "exact_fixed_point",
           "im2col", "ort_quantize", "ort_requantize"]


def _model(source):
    try:
        import onnx
    except ImportError:
        raise ImportError("the ONNX import needs onnx: pip install -e '.[onnx]'") from None
    if isinstance(source, onnx.ModelProto):
        return source
    try:
        return onnx.load(str(source))
    except OSError as error:
        raise OnnxImportError(f"cannot read {source}: {error}") from None
    except Exception as error:          # protobuf's DecodeError and kin
        raise OnnxImportError(f"{source} is not an ONNX model: {type(error).__name__}") \
            from None


def load(source, *, calibration=None, bits=8):
    """The :class:`IntegerGraph` of an ONNX model.

    Parameters
    ----------
    source : str, path or onnx.ModelProto
    calibration : array, optional
        For a float model: inputs to calibrate the activation ranges on (required).
    bits : int or sequence of int
        For a float model: the precision (2, 4 or 8) of every layer's weights and inputs, or
        one per layer.

    Raises
    ------
    OnnxImportError
        A node that cannot be mapped exactly, a dynamic axis other than the batch, a weight
        wider than 8 bits, a weight zero point other than 0; one line each.
    """
    from golden.onnx.reader import is_quantized, read_quantized
    model = _model(source)
    if is_quantized(model):
        if calibration is not None:
            raise OnnxImportError("the model is already quantized: calibration inputs are for "
                                  "float models")
        return read_quantized(model)
    if calibration is None:
        raise OnnxImportError("the model is a float model: give calibration inputs "
                              "(--calibration X.npy) for the project's quantization")
    from golden.onnx.ptq import quantize_float
    return quantize_float(model, calibration, bits)
