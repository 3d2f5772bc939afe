"""The project's integer graph: what an imported ONNX model becomes (docs/onnx.md).

A :class:`IntegerGraph` is a sequence of integer operations over named tensors, in
topological order. Quantized tensors hold unsigned integers (int64 arrays, ``0..2^bits-1``)
with a real scale and an integer zero point: the real value is ``scale * (q - zero)``.

- :class:`Quantize` and :class:`Dequantize` are the graph's float edges (onnxruntime's
  QuantizeLinear and DequantizeLinear, float32).
- :class:`Dense` is ``acc = a W^T + bias`` on the systolic array; its input zero point is
  folded into the bias (``bias - z_a * sum_k W[o, k]``), so the array sees the raw
  unsigned inputs. :class:`Conv` is the same GEMM on the im2col patches of its input
  (:func:`im2col`, padding with the input zero point).
- :class:`Requant` turns accumulators into the next layer's unsigned activations, either as
  onnxruntime does (float32 scale, round half to even, plus the zero point, saturate:
  :func:`ort_requantize`) or with the hardware's fixed point ``(acc*M + 2^(shift-1)) >> shift``
  (:func:`golden.requant.requantize`), which the project's own quantization uses.
- :class:`Relu`, :class:`MaxPool`, :class:`AveragePool`, :class:`Add`, :class:`Reshape`: the
  quantized operators between layers, run by the host.
- :class:`MatMul` (a product of two run-time tensors, attention's ``Q K^T`` and ``P V``),
  :class:`Softmax` (onnxruntime's QLinearSoftmax), :class:`Transpose` and
  :class:`ReduceMax`: the operators of an attention layer between its projections, run by
  the host.
"""

import math
from dataclasses import dataclass

import numpy as np

from golden.requant import requantize

__all__ = ["ort_quantize", "ort_requantize", "im2col", "conv_output_size", "fma32",
           "softmax_table", "Requant", "Quantize", "Dequantize", "Dense", "Conv", "Relu",
           "MaxPool", "AveragePool", "Add", "Reshape", "MatMul", "Softmax", "Transpose",
           "ReduceMax", "IntegerGraph"]

_F32 = np.float32


def ort_quantize(x, scale, zero, bits=8):
    """onnxruntime's QuantizeLinear: ``saturate(round_half_even(x / scale) + zero)`` in float32."""
    q = np.rint(np.asarray(x, dtype=_F32) / _F32(scale)).astype(np.int64) + int(zero)
    return np.clip(q, 0, (1 << bits) - 1)


def ort_requantize(acc, scale, zero, bits=8):
    """onnxruntime's requantization of int32 accumulators (MLAS): ``saturate(round_half_even(
    float32(acc) * scale) + zero)``, the product in float32; ``scale`` broadcasts along the
    last axis of ``acc`` (per output channel) or, for convolutions, is given shaped to fit."""
    y = np.rint(np.asarray(acc).astype(_F32) * np.asarray(scale, dtype=_F32))
    return np.clip(y.astype(np.int64) + int(zero), 0, (1 << bits) - 1)


def conv_output_size(size, kernel, stride, pad_begin, pad_end, dilation):
    """Output length of one spatial axis of a convolution or pool."""
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kernel, strides, pads, dilations, pad_value):
    """The patches of ``x`` (n, c, h, w) as rows: (n * oh * ow, c * kh * kw), and (oh, ow).

    Row ``(i, y, x)`` (image-major, then output row, then column) holds the input window of
    output position ``(y, x)`` of image ``i``, channel-major like the ONNX weight
    ``(out, c, kh, kw)`` flattened; positions in the padding hold ``pad_value`` (the input
    zero point, the integer that means real 0). ``pads`` is ``(top, left, bottom, right)``.
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    sy, sx = strides
    dy, dx = dilations
    top, left, bottom, right = pads
    dtype = np.result_type(x.dtype, np.int64)     # integers stay int64, floats float64
    padded = np.full((n, c, h + top + bottom, w + left + right), pad_value, dtype=dtype)
    padded[:, :, top:top + h, left:left + w] = x
    oh = conv_output_size(h, kh, sy, top, bottom, dy)
    ow = conv_output_size(w, kw, sx, left, right, dx)
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, i * dy:i * dy + sy * (oh - 1) + 1:sy,
                            j * dx:j * dx + sx * (ow - 1) + 1:sx]
            cols[:, :, :, :, i, j] = window.transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, c * kh * kw), (oh, ow)


@dataclass(frozen=True)
class Requant:
    """Accumulators to ``bits``-bit unsigned activations.

    Attributes
    ----------
    bits : int
        Output precision (8 for onnxruntime's uint8).
    zero : int
        Output zero point (0 for the hardware).
    scale : float32 array (out,) or None
        onnxruntime's real multiplier ``a_scale * w_scale / y_scale`` (float32, in that
        order); None for the project's own quantization, which is defined by ``multiplier``
        and ``shift``.
    multiplier : int64 array (out,) or None
        Fixed-point ``M``, with ``shift``: for an onnxruntime layer, only when
        :func:`golden.onnx.mapping.exact_fixed_point` proved it equal to the float form on
        every reachable accumulator; then the layer's requantization can run on the array.
    shift : int or None
    """
    bits: int
    zero: int
    scale: np.ndarray | None = None
    multiplier: np.ndarray | None = None
    shift: int | None = None

    def __call__(self, acc, axis=-1):
        """Requantize ``acc``; ``axis`` is the output-channel axis."""
        shape = [1] * acc.ndim
        shape[axis] = -1
        if self.scale is not None:
            return ort_requantize(acc, self.scale.reshape(shape), self.zero, self.bits)
        return requantize(acc, self.multiplier.reshape(shape), self.shift, self.bits)

    @property
    def hardware(self):
        """The array's requantizer can run it exactly: a fixed point and zero point 0."""
        return self.multiplier is not None and self.zero == 0


@dataclass(frozen=True)
class _Op:
    """Fields common to every operation: the ONNX node it came from, its tensors."""
    node: str
    inputs: tuple
    output: str

    kind = "op"


@dataclass(frozen=True)
class Quantize(_Op):
    """A float input to ``bits``-bit unsigned integers (onnxruntime's QuantizeLinear)."""
    scale: float = 1.0
    zero: int = 0
    bits: int = 8
    kind = "quantize"

    def __call__(self, x):
        return ort_quantize(x, self.scale, self.zero, self.bits)


@dataclass(frozen=True)
class Dequantize(_Op):
    """Integers to float32: ``(q - zero) * scale`` (onnxruntime's DequantizeLinear); for
    accumulators, ``scale`` is per output channel (the last axis)."""
    scale: np.ndarray = None
    zero: int = 0
    kind = "dequantize"

    def __call__(self, q):
        scale = np.asarray(self.scale, dtype=_F32)
        if scale.ndim and q.ndim > 2:        # per channel of a convolution: axis 1
            scale = scale.reshape(-1, *([1] * (q.ndim - 2)))
        return (q - self.zero).astype(_F32) * scale


@dataclass(frozen=True)
class Dense(_Op):
    """``acc = a W^T + bias`` over the last axis of ``a``, then :class:`Requant` (None: the
    int32 accumulators are the output, as MatMulInteger gives them).

    ``weight`` is int64 (out, in) signed ``w_bits``; ``bias`` int64 (out,) with the input
    zero point ``a_zero`` already folded in; ``a_bits`` the unsigned input precision.
    """
    weight: np.ndarray = None
    bias: np.ndarray = None
    a_zero: int = 0
    w_bits: int = 8
    a_bits: int = 8
    requant: Requant | None = None
    kind = "dense"

    def accumulate(self, a):
        return a @ self.weight.T + self.bias

    def __call__(self, a):
        acc = self.accumulate(a)
        return acc if self.requant is None else self.requant(acc)

    def gemm_shape(self, input_shape):
        """``(m, n, k)`` of the GEMM for an input of ``input_shape``."""
        return (math.prod(input_shape[:-1]), *self.weight.shape)

    def accumulator_range(self):
        """Per output channel, the smallest and largest accumulator the inputs can give."""
        top = (1 << self.a_bits) - 1
        flat = self.weight.reshape(self.weight.shape[0], -1)
        return (self.bias + top * np.minimum(flat, 0).sum(axis=1),
                self.bias + top * np.maximum(flat, 0).sum(axis=1))


@dataclass(frozen=True)
class Conv(Dense):
    """A 2-D convolution as a GEMM on the array: ``weight`` (out, c, kh, kw) flattened to
    (out, c*kh*kw) times the :func:`im2col` patches of the input, padded with ``a_zero``."""
    strides: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    dilations: tuple = (1, 1)
    kind = "conv"

    def patches(self, a):
        return im2col(a, self.weight.shape[2:], self.strides, self.pads, self.dilations,
                      self.a_zero)

    def accumulate(self, a):
        cols, (oh, ow) = self.patches(a)
        acc = cols @ self.weight.reshape(self.weight.shape[0], -1).T + self.bias
        return acc.reshape(len(a), oh, ow, -1).transpose(0, 3, 1, 2)

    def __call__(self, a):
        acc = self.accumulate(a)
        return acc if self.requant is None else self.requant(acc, axis=1)

    def gemm_shape(self, input_shape):
        n, _, h, w = input_shape
        kh, kw = self.weight.shape[2:]
        oh = conv_output_size(h, kh, self.strides[0], self.pads[0], self.pads[2],
                              self.dilations[0])
        ow = conv_output_size(w, kw, self.strides[1], self.pads[1], self.pads[3],
                              self.dilations[1])
        return n * oh * ow, self.weight.shape[0], math.prod(self.weight.shape[1:])


@dataclass(frozen=True)
class Relu(_Op):
    """ReLU on a quantized tensor: ``max(q, zero)`` (``zero`` means real 0)."""
    zero: int = 0
    kind = "relu"

    def __call__(self, q):
        return np.maximum(q, self.zero)


def _pool_windows(q, kernel, strides, pads, fill):
    """The pooling windows of ``q`` (n, c, h, w): (n, c, oh, ow, kh*kw), padding ``fill``."""
    n, c, h, w = q.shape
    cols, (oh, ow) = im2col(q, kernel, strides, pads, (1, 1), fill)
    return cols.reshape(n, oh, ow, c, -1).transpose(0, 3, 1, 2, 4)


@dataclass(frozen=True)
class MaxPool(_Op):
    """Max pooling on a quantized tensor (exact: the maximum commutes with dequantization)."""
    kernel: tuple = (2, 2)
    strides: tuple = (2, 2)
    pads: tuple = (0, 0, 0, 0)
    kind = "maxpool"

    def __call__(self, q):
        return _pool_windows(q, self.kernel, self.strides, self.pads, -1).max(axis=-1)


@dataclass(frozen=True)
class AveragePool(_Op):
    """Average pooling of quantized inputs into other quantization parameters; no padding.

    As onnxruntime's QLinearAveragePool (``float_path`` False): ``saturate(round_half_even(
    sum(q - z_x) * x_scale / count / y_scale) + z_y)`` in float32. As its float AveragePool
    between DequantizeLinear and QuantizeLinear, which it does not fuse (``float_path``
    True): the dequantized values summed one by one in float32 (window row by row), divided
    by the count, then QuantizeLinear.
    """
    kernel: tuple = (2, 2)
    strides: tuple = (2, 2)
    x_scale: float = 1.0
    x_zero: int = 0
    y_scale: float = 1.0
    y_zero: int = 0
    float_path: bool = False
    kind = "avgpool"

    def __call__(self, q):
        windows = _pool_windows(q, self.kernel, self.strides, (0, 0, 0, 0), 0)
        count = _F32(windows.shape[-1])
        if self.float_path:
            real = (windows - self.x_zero).astype(_F32) * _F32(self.x_scale)
            total = real[..., 0]
            for i in range(1, windows.shape[-1]):
                total = total + real[..., i]
            return ort_quantize(total / count, self.y_scale, self.y_zero)
        total = (windows - self.x_zero).sum(axis=-1).astype(_F32)
        y = np.rint(total * _F32(self.x_scale) / count / _F32(self.y_scale))
        return np.clip(y.astype(np.int64) + self.y_zero, 0, 255)


def fma32(x, y, z):
    """``x * y + z`` rounded once to float32 (a fused multiply-add), exactly: the product of
    two float32 is exact in float64, the sum's rounding error is recovered (TwoSum) and
    decides the one case the float64 sum cannot, a float32 midpoint."""
    x, y, z = (np.asarray(v, dtype=_F32) for v in (x, y, z))
    product = x.astype(np.float64) * y.astype(np.float64)
    z = np.broadcast_to(z.astype(np.float64), product.shape)
    total = product + z
    virtual = total - product
    error = (product - (total - virtual)) + (z - virtual)
    rounded = total.astype(_F32)
    low = np.where(rounded.astype(np.float64) > total, np.nextafter(rounded, _F32(-np.inf)),
                   rounded)
    high = np.nextafter(low, _F32(np.inf))
    midpoint = total == (low.astype(np.float64) + high.astype(np.float64)) / 2
    return np.where(midpoint & (error > 0), high,
                    np.where(midpoint & (error < 0), low, rounded))


@dataclass(frozen=True)
class Add(_Op):
    """Quantized addition (QLinearAdd), as onnxruntime's x86-64 AVX2 kernel (MLAS
    ``MlasQLinearAddKernelAvx2Helper``) computes it, in float32 with fused multiply-adds:
    ``r_a = s_a / s_c``, ``r_b = s_b / s_c``, ``fixed = z_c - fma(r_a, z_a, r_b * z_b)``,
    ``c = saturate(round_half_even(fma(a, r_a, fma(b, r_b, fixed))))``.
    ``constant`` is the second operand when it is an initializer (a bias), else None."""
    scales: tuple = (1.0, 1.0, 1.0)
    zeros: tuple = (0, 0, 0)
    constant: np.ndarray | None = None
    kind = "add"

    def __call__(self, a, b=None):
        b = self.constant if b is None else b
        (sa, sb, sc), (za, zb, zc) = self.scales, self.zeros
        ratio_a, ratio_b = _F32(sa) / _F32(sc), _F32(sb) / _F32(sc)
        fixed = _F32(zc) - fma32(ratio_a, _F32(za), ratio_b * _F32(zb))
        a, b = np.broadcast_arrays(a, b)
        c = fma32(a.astype(_F32), ratio_a, fma32(b.astype(_F32), ratio_b, fixed))
        return np.clip(np.rint(c).astype(np.int64), 0, 255)


@dataclass(frozen=True)
class Reshape(_Op):
    """Reshape keeping the batch axis: ``shape`` is the rest (Flatten: ``(-1,)``)."""
    shape: tuple = (-1,)
    kind = "reshape"

    def __call__(self, q):
        return q.reshape(len(q), *self.shape)


@dataclass(frozen=True)
class MatMul(_Op):
    """The product of two run-time quantized tensors (QLinearMatMul without constant weights):
    ``acc = (a - a_zero) @ (b - b_zero)`` over the last axis of ``a`` and the second last of
    ``b`` (leading axes batched), then :class:`Requant` with one scale for the tensor."""
    a_zero: int = 0
    b_zero: int = 0
    requant: Requant = None
    kind = "matmul"

    def accumulate(self, a, b):
        return (a - self.a_zero) @ (b - self.b_zero)

    def __call__(self, a, b):
        return self.requant(self.accumulate(a, b))


def softmax_table(x_scale, size):
    """onnxruntime's QLinearSoftmax lookup table (float32, 256 entries) for inputs of scale
    ``x_scale`` reduced over ``size`` values: ``table[i] = exp((i - 255) * x_scale + shift)``
    in double, rounded to float32, ``shift = max(0, ln(FLT_MAX / size) - 5)`` keeping the
    sum of ``size`` entries below FLT_MAX."""
    shift = max(0.0, float(np.log(np.finfo(_F32).max / _F32(size))) - 5.0) / float(_F32(x_scale))
    i = np.arange(256, dtype=np.float64)
    return np.exp((i - 255 + shift) * float(_F32(x_scale))).astype(_F32)


@dataclass(frozen=True)
class Softmax(_Op):
    """onnxruntime's QLinearSoftmax over the last axis (uint8 in and out), exactly.

    Each row's values are looked up in :func:`softmax_table` shifted so the row's largest
    value is entry 255: ``e_j = table[255 - max + q_j]``; the row sum ``s`` is accumulated
    in float32 in order; ``y_j = min(255, round_half_even((e_j * floor(1 / y_scale)) / s) +
    y_zero)``, in float32. (So the output scale that counts is ``1 / floor(1 / y_scale)``:
    onnxruntime's quantization tool writes 1/256.)
    """
    x_scale: float = 1.0
    y_scale: float = 1.0
    y_zero: int = 0
    kind = "softmax"

    def __call__(self, q):
        table = softmax_table(self.x_scale, q.shape[-1])
        e = table[255 - q.max(axis=-1, keepdims=True) + q]
        total = e[..., 0]
        for j in range(1, q.shape[-1]):
            total = total + e[..., j]
        y_inverse = _F32(np.floor(_F32(1.0) / _F32(self.y_scale)))
        with np.errstate(over="ignore"):
            y = (e * y_inverse) / total[..., None]
        # Where the float32 product overflows (a row of few values and a small y_scale),
        # onnxruntime's compiled kernel gives the quotient of the exact product.
        wide = (e.astype(np.float64) * float(y_inverse)) / total[..., None]
        y = np.where(np.isfinite(y), y, wide)
        return np.minimum(np.rint(y) + self.y_zero, 255).astype(np.int64)


@dataclass(frozen=True)
class Transpose(_Op):
    """A transposition of a quantized tensor; ``perm`` keeps the batch axis first."""
    perm: tuple = (0,)
    kind = "transpose"

    def __call__(self, q):
        return q.transpose(self.perm)


@dataclass(frozen=True)
class ReduceMax(_Op):
    """The maximum over ``axes`` (never the batch), then the dequantized maximum quantized to
    the output's parameters, as onnxruntime runs a float ReduceMax between DequantizeLinear
    and QuantizeLinear: the maximum commutes with the (non-decreasing) float32
    dequantization, so taking it on the integers is exact."""
    axes: tuple = (1,)
    keepdims: bool = False
    x_scale: float = 1.0
    x_zero: int = 0
    y_scale: float = 1.0
    y_zero: int = 0
    kind = "reducemax"

    def __call__(self, q):
        top = q.max(axis=self.axes, keepdims=self.keepdims)
        return ort_quantize((top - self.x_zero).astype(_F32) * _F32(self.x_scale),
                            self.y_scale, self.y_zero)


@dataclass(frozen=True)
class IntegerGraph:
    """An imported model: inputs, operations in order, outputs.

    Attributes
    ----------
    inputs : tuple of (name, shape without the batch, dtype)
        The model's inputs (``dtype`` a NumPy dtype: float32 for a float model input, uint8
        for an integer one).
    outputs : tuple of (name, dtype)
        The model's outputs and their dtypes (float32 after a DequantizeLinear, uint8 for a
        quantized output, int32 for MatMulInteger's accumulators).
    ops : tuple of operations
    source : str
        ``"onnxruntime"`` (a model quantized by onnxruntime, run as it runs it) or
        ``"ptq"`` (a float model quantized by the project's own post-training quantization).
    """
    inputs: tuple
    outputs: tuple
    ops: tuple
    source: str = "onnxruntime"

    def run(self, feeds, keep=False):
        """The outputs for ``feeds`` (``{name: array}``, or one array for a single input),
        in the output dtypes; with ``keep``, also every tensor by name."""
        if not isinstance(feeds, dict):
            if len(self.inputs) != 1:
                raise ValueError(f"the model has {len(self.inputs)} inputs: give a dict")
            feeds = {self.inputs[0][0]: feeds}
        env = {}
        for name, shape, dtype in self.inputs:
            if name not in feeds:
                raise ValueError(f"input {name!r} is missing")
            x = np.asarray(feeds[name])
            if tuple(x.shape[1:]) != tuple(shape):
                raise ValueError(f"input {name!r} must have shape (batch, "
                                 f"{', '.join(map(str, shape))}), not {x.shape}")
            env[name] = x.astype(np.int64) if np.dtype(dtype).kind in "iu" else x
        for op in self.ops:
            env[op.output] = op(*(env[name] for name in op.inputs))
        outputs = [env[name].astype(dtype) for name, dtype in self.outputs]
        return (outputs, env) if keep else outputs
