"""The ONNX import (golden.onnx) against onnxruntime, the reference no one here wrote."""

import logging

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from golden.accel import AccelModel, compile_network
from golden.network import digits_split, float_network
from golden.onnx import (OnnxImportError, exact_fixed_point, im2col, load,
                         ort_requantize)
from golden.onnx.build import (float_cnn, float_mlp, model_of,
                               quantize_onnxruntime, run_onnxruntime)
from golden.onnx.fixed import thresholds
from golden.onnx.graph import Dense
from golden.onnx.mapping import gemm_inputs, segments
from golden.requant import requantize
from rtl.accel.config import AccelConfig

SEED = 17
FORMATS = ("QDQ", "QOperator")

logging.getLogger().setLevel(logging.ERROR)    # quantize_static's pre-processing advice


def _mlp(rng, gemm):
    return float_mlp([rng.normal(0, 0.3, (24, 16)), rng.normal(0, 0.3, (10, 24))],
                     [rng.normal(0, 0.1, 24), rng.normal(0, 0.1, 10)], gemm=gemm)


def _cnn(rng, pool):
    return float_cnn(rng.normal(0, 0.3, (4, 1, 3, 3)), rng.normal(0, 0.1, 4),
                     rng.normal(0, 0.2, (10, 4 * 4 * 4)), rng.normal(0, 0.1, 10), (1, 8, 8),
                     pool=pool)


#: name -> (float model builder, input shape without the batch)
MODELS = {
    "mlp-gemm": (lambda rng: _mlp(rng, True), (16,)),
    "mlp-matmul-add": (lambda rng: _mlp(rng, False), (16,)),
    "cnn-maxpool": (lambda rng: _cnn(rng, "MaxPool"), (1, 8, 8)),
    "cnn-avgpool": (lambda rng: _cnn(rng, "AveragePool"), (1, 8, 8)),
}


@pytest.fixture(scope="module", params=[(name, fmt, per_channel) for name in MODELS
                                        for fmt in FORMATS for per_channel in (False, True)],
                ids=lambda p: f"{p[0]}-{p[1]}-{'channel' if p[2] else 'tensor'}")
def quantized(request):
    name, fmt, per_channel = request.param
    build, shape = MODELS[name]
    rng = np.random.default_rng(SEED)
    calibration = rng.uniform(0, 1, (64, *shape))
    return quantize_onnxruntime(build(rng), calibration, fmt, per_channel), shape


def test_quantized_models_equal_onnxruntime_on_every_element(quantized):
    """MLP (Gemm, and MatMul + Add) and CNN (Conv, ReLU, MaxPool or AveragePool, Flatten,
    Gemm), QDQ and QOperator, per tensor and per channel: the integer graph's outputs are
    onnxruntime's, element for element, on inputs beyond the calibration range (saturation)."""
    model, shape = quantized
    rng = np.random.default_rng(SEED + 1)
    print(f"seed {SEED + 1}")
    x = rng.uniform(-0.3, 1.3, (400, *shape)).astype(np.float32)
    want, = run_onnxruntime(model, x)
    got, = load(model).run(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want), f"{(got != want).sum()} of {got.size} elements differ"


def _integer_model(node, inputs, output, inits):
    return model_of([node], inputs, [output], inits, "integer")


def test_matmulinteger_and_convinteger_accumulators_are_identical():
    """MatMulInteger and ConvInteger (input zero point folded into the bias, padding with the
    zero point): the int32 accumulators equal onnxruntime's exactly."""
    rng = np.random.default_rng(SEED)
    w = rng.integers(-128, 128, (16, 7)).astype(np.int8)
    matmul = _integer_model(
        helper.make_node("MatMulInteger", ["x", "W", "xz", "wz"], ["y"], name="mm"),
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["batch", 16])],
        helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 7]),
        {"W": w, "xz": np.uint8(37), "wz": np.int8(0)})
    x = rng.integers(0, 256, (300, 16)).astype(np.uint8)
    assert np.array_equal(load(matmul).run(x)[0], run_onnxruntime(matmul, x)[0])
    wc = rng.integers(-128, 128, (3, 2, 3, 3)).astype(np.int8)
    conv = _integer_model(
        helper.make_node("ConvInteger", ["x", "W", "xz"], ["y"], name="conv", pads=[1, 1, 1, 1],
                         strides=[2, 1]),
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["batch", 2, 7, 6])],
        helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 3, 4, 6]),
        {"W": wc, "xz": np.uint8(200)})
    x = rng.integers(0, 256, (50, 2, 7, 6)).astype(np.uint8)
    got, = load(conv).run(x)
    want, = run_onnxruntime(conv, x)
    assert got.dtype == np.int32 and np.array_equal(got, want)


def _qgemm(sa, za, w, ws, bias, ys, yz):
    n = w.shape[1]
    return _integer_model(
        helper.make_node("QGemm", ["a", "sa", "za", "W", "ws", "wz", "b", "ys", "yz"], ["y"],
                         name="qgemm", domain="com.microsoft"),
        [helper.make_tensor_value_info("a", TensorProto.UINT8, ["batch", w.shape[0]])],
        helper.make_tensor_value_info("y", TensorProto.UINT8, ["batch", n]),
        {"sa": sa, "za": za, "W": w, "ws": ws, "wz": np.zeros(n, np.int8), "b": bias,
         "ys": ys, "yz": yz})


@pytest.mark.parametrize("trial", range(6))
def test_requantization_emulates_onnxruntime_and_differs_from_fixed_point(trial):
    """onnxruntime's requantization (float32 ``a_s * w_s / y_s``, float32 product, round half
    to even, zero point, saturate) is emulated exactly on random scales and accumulators; the
    hardware's 16-bit fixed point from ``quantize_multiplier`` is not always equal (the
    difference docs/onnx.md counts)."""
    rng = np.random.default_rng(SEED + trial)
    k, n = 64, 32
    sa, ys = np.float32(rng.uniform(1e-3, 0.1)), np.float32(rng.uniform(0.01, 1))
    ws = rng.uniform(1e-3, 0.05, n).astype(np.float32)
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    za, yz = np.uint8(rng.integers(0, 256)), np.uint8(rng.integers(0, 256))
    model = _qgemm(sa, za, w, ws, bias, ys, yz)
    a = rng.integers(0, 256, (500, k)).astype(np.uint8)
    want, = run_onnxruntime(model, a)
    graph = load(model)
    assert np.array_equal(graph.run(a)[0], want)
    acc = (a.astype(np.int64) - int(za)) @ w.astype(np.int64) + bias
    assert np.array_equal(ort_requantize(acc, (sa * ws) / ys, int(yz)), want)


def test_requantization_scale_is_taken_in_onnxruntimes_order():
    """``(a_s * w_s) / y_s`` in float32, not ``a_s * (w_s / y_s)``: with these scales the two
    differ in the last bit, and accumulator 6540 then rounds to 115 one way and 114 the
    other; onnxruntime gives the first."""
    sa, ws, ys = np.float32(0.030671477), np.float32(0.021711674), np.float32(0.038036473)
    assert np.rint(np.float32(6540) * ((sa * ws) / ys)) != np.rint(np.float32(6540) *
                                                                  (sa * (ws / ys)))
    model = _qgemm(sa, np.uint8(0), np.ones((1, 1), np.int8), np.array([ws]),
                   np.array([6540 - 100], np.int32), ys, np.uint8(0))
    a = np.array([[99], [100], [101]], np.uint8)
    want, = run_onnxruntime(model, a)
    assert want[1, 0] == 115
    assert np.array_equal(load(model).run(a)[0], want)


def test_exact_fixed_point_is_equal_on_every_reachable_accumulator_or_none():
    """Where exact_fixed_point gives ``(M, shift)``, the fixed point equals the float form on
    every accumulator of the range (checked exhaustively); with 16-bit multipliers it is
    often None, with 24-bit ones mostly found."""
    rng = np.random.default_rng(SEED)
    acc = np.arange(-20_000, 40_001)[:, None]
    found = {16: 0, 24: 0}
    for trial in range(12):
        scale = rng.uniform(2e-3, 0.05, 3).astype(np.float32)
        for bits in found:
            fixed = exact_fixed_point(scale, 8, np.full(3, -20_000), np.full(3, 40_000), bits)
            if fixed is None:
                continue
            found[bits] += 1
            multiplier, shift = fixed
            assert multiplier.max() < 1 << bits
            assert np.array_equal(requantize(acc, multiplier, shift, 8),
                                  ort_requantize(acc, scale, 0)), (trial, bits)
    assert found[24] >= 10 and found[16] < found[24], found


def test_thresholds_are_the_steps_of_the_float_form():
    scale = np.float32(0.0123)
    steps = thresholds(scale, 8)
    f = ort_requantize(np.concatenate([steps, steps - 1]), scale, 0)
    levels = np.arange(1, 256)
    assert (f[:255] >= levels).all() and (f[255:] < levels).all()


def test_im2col_gemm_is_the_direct_convolution_with_zero_point_padding():
    rng = np.random.default_rng(SEED)
    x = rng.integers(0, 256, (2, 3, 6, 5))
    w = rng.integers(-128, 128, (4, 3, 3, 2))
    pads, strides, zero = (1, 0, 2, 1), (2, 1), 9
    cols, (oh, ow) = im2col(x, (3, 2), strides, pads, (1, 1), zero)
    got = (cols @ w.reshape(4, -1).T).reshape(2, oh, ow, 4).transpose(0, 3, 1, 2)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)), constant_values=zero)
    want = np.zeros_like(got)
    for y in range(oh):
        for xx in range(ow):
            window = padded[:, :, y * 2:y * 2 + 3, xx:xx + 2]
            want[:, :, y, xx] = np.einsum("nchw,ochw->no", window, w)
    assert np.array_equal(got, want)


def _digits_float_model(gemm=True):
    net = float_network(0.0)
    return float_mlp(net.weights, net.biases, gemm=gemm), net


@pytest.mark.parametrize("bits,floor", [(8, 0.95), ((8, 4, 4), 0.93), (4, 0.93)])
def test_float_model_takes_the_projects_quantization(bits, floor):
    """A float ONNX model (the digits MLP, written with onnx.helper) and calibration inputs:
    the project's post-training quantization at 8, 4 or mixed bits per layer keeps its
    accuracy close to the float model's."""
    model, net = _digits_float_model(gemm=bits != 8)
    x_train, x_test, _, y_test = digits_split()
    graph = load(model, calibration=(x_train / 16).astype(np.float32), bits=bits)
    assert graph.source == "ptq"
    y, = graph.run((x_test / 16).astype(np.float32))
    accuracy = (y.argmax(axis=1) == y_test).mean()
    assert accuracy >= floor and accuracy >= net.accuracy(x_test, y_test) - 0.03


def test_array_layers_run_on_the_accelerator_model_bit_for_bit():
    """The segments the compiler takes (a PTQ MLP: one network of three layers with the
    array's requantization; an onnxruntime CNN: a convolution on its patches, then a dense
    layer) give on golden.accel's model the accumulators of the integer graph."""
    model, _ = _digits_float_model()
    x_train, x_test, _, _ = digits_split()
    ptq = load(model, calibration=(x_train / 16).astype(np.float32), bits=(8, 4, 4))
    rng = np.random.default_rng(SEED)
    cnn = load(quantize_onnxruntime(_cnn(rng, "MaxPool"), rng.uniform(0, 1, (32, 1, 8, 8))))
    config = AccelConfig(spmv=None, topk=None)
    for graph, x, count in ((ptq, (x_test[:20] / 16).astype(np.float32), 1),
                            (cnn, rng.uniform(0, 1, (3, 1, 8, 8)).astype(np.float32), 2)):
        _, env = graph.run(x, keep=True)
        parts = segments(graph)
        assert len(parts) == count
        for part in parts:
            first, last = graph.ops[part.ops[0]], graph.ops[part.ops[-1]]
            rows = gemm_inputs(first, env[first.inputs[0]])
            program = compile_network(part.network, config, 16, output="logits")
            accel = AccelModel(config)
            accel.load(program)
            want = last.accumulate(env[last.inputs[0]])
            want = want.transpose(0, 2, 3, 1).reshape(len(rows), -1) if want.ndim == 4 else want
            assert np.array_equal(accel.infer(program, rows), want)


# ---- Bad input: one line naming the node, its op type and what is supported ---------------

def _bad(kind):
    """A model with one mistake the import must refuse, and what the error must name."""
    f, u8 = TensorProto.FLOAT, TensorProto.UINT8
    w8 = np.ones((4, 3), np.int8)
    if kind == "unsupported operator":
        node = helper.make_node("Sigmoid", ["x"], ["y"], name="sig")
        return model_of([node], [helper.make_tensor_value_info("x", u8, ["batch", 4])],
                      [helper.make_tensor_value_info("y", u8, ["batch", 4])], {},
                      "bad"), ("'sig' (Sigmoid)", "supported: QuantizeLinear")
    if kind == "dynamic axis":
        node = helper.make_node("MatMulInteger", ["x", "W"], ["y"], name="mm")
        return model_of([node], [helper.make_tensor_value_info("x", u8, ["batch", "features"])],
                      [helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 3])],
                      {"W": w8}, "bad"), ("axis 1 is dynamic (features)", "batch")
    if kind == "weight wider than 8 bits":
        node = helper.make_node("MatMulInteger", ["x", "W"], ["y"], name="wide")
        return model_of([node], [helper.make_tensor_value_info("x", u8, ["batch", 4])],
                      [helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 3])],
                      {"W": w8.astype(np.int16)}, "bad"), ("'wide' (MatMulInteger)",
                                                           "int16, wider than 8 bits")
    if kind == "per-channel weight zero point":
        node = helper.make_node("QLinearMatMul", ["x", "s", "z", "W", "ws", "wz", "s", "z"],
                                ["y"], name="qmm")
        return model_of([node], [helper.make_tensor_value_info("x", u8, ["batch", 4])],
                      [helper.make_tensor_value_info("y", u8, ["batch", 3])],
                      {"s": np.float32(0.1), "z": np.uint8(0), "W": w8,
                       "ws": np.full(3, 0.1, np.float32), "wz": np.array([0, 3, 0], np.int8)},
                      "bad"), ("'qmm' (QLinearMatMul)", "zero point 3 at channel 1")
    if kind == "float output in QDQ":
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="dq"),
                 helper.make_node("DequantizeLinear", ["W", "ws"], ["wd"], name="wdq"),
                 helper.make_node("MatMul", ["d", "wd"], ["y"], name="mm")]
        return model_of(nodes, [helper.make_tensor_value_info("x", f, ["batch", 4])],
                      [helper.make_tensor_value_info("y", f, ["batch", 3])],
                      {"s": np.float32(0.1), "z": np.uint8(0), "W": w8,
                       "ws": np.float32(0.1)}, "bad"), ("'mm' (MatMul)", "QuantizeLinear")
    raise AssertionError(kind)


BAD = ("unsupported operator", "dynamic axis", "weight wider than 8 bits",
       "per-channel weight zero point", "float output in QDQ")


def test_the_same_models_without_the_mistake_are_taken():
    """Each refusal of test_bad_models_are_refused_in_one_line is the mistake's: the model
    with it mended imports."""
    u8 = TensorProto.UINT8
    node = helper.make_node("QLinearMatMul", ["x", "s", "z", "W", "ws", "wz", "s", "z"], ["y"],
                            name="qmm")
    model = model_of([node], [helper.make_tensor_value_info("x", u8, ["batch", 4])],
                   [helper.make_tensor_value_info("y", u8, ["batch", 3])],
                   {"s": np.float32(0.1), "z": np.uint8(0), "W": np.ones((4, 3), np.int8),
                    "ws": np.full(3, 0.1, np.float32), "wz": np.zeros(3, np.int8)}, "good")
    graph = load(model)
    assert [op.kind for op in graph.ops] == ["dense"] and isinstance(graph.ops[0], Dense)
    wide, _ = _bad("weight wider than 8 bits")
    wide.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((4, 3), np.int8), "W"))
    assert load(wide).run(np.full((2, 4), 5, np.uint8))[0].tolist() == [[20] * 3] * 2


def test_float_model_without_relu_between_layers_is_refused():
    rng = np.random.default_rng(SEED)
    model = float_mlp([rng.normal(size=(4, 3)), rng.normal(size=(2, 4))],
                      [np.zeros(4), np.zeros(2)])
    model.graph.node.remove(model.graph.node[1])          # the Relu
    model.graph.node[1].input[0] = "h0"
    with pytest.raises(OnnxImportError, match=r"'gemm0' \(Gemm\): is not followed by a Relu"):
        load(model, calibration=rng.uniform(size=(8, 3)))



# Attention's operators (docs/onnx.md, "Operators"): each against onnxruntime.

def _uint8(name, *shape):
    return helper.make_tensor_value_info(name, TensorProto.UINT8, ["batch", *shape])


def _avx2():
    try:
        with open("/proc/cpuinfo") as info:
            return " avx2 " in f" {info.read().replace(chr(10), ' ')} "
    except OSError:
        return False


@pytest.mark.parametrize("size", [1, 3, 8, 17])
def test_qlinear_softmax_equals_onnxruntime_and_not_a_float_softmax(size):
    """QLinearSoftmax over the last axis, random input scales, zero points and rows (the row
    maximum moves the lookup table), output scale 1/256 as the quantization tool writes it
    and 0.0049 (onnxruntime multiplies by floor(1 / y_scale) = 204): equal to onnxruntime on
    every element, where a float softmax quantized to the output scale is not (but for rows
    of one value, whose float32 product overflows in the kernel: 204 or 255 both ways)."""
    rng = np.random.default_rng(SEED + size)
    float_misses = 0
    for scale in (0.004, 0.03, 0.2, 1.5):
        for y_scale in (1 / 256, 0.0049):
            zero = int(rng.integers(0, 256))
            node = helper.make_node("QLinearSoftmax", ["x", "s", "z", "ys", "yz"], ["y"],
                                    name="soft", domain="com.microsoft", axis=-1, opset=17)
            model = _integer_model(node, [_uint8("x", 4, size)], _uint8("y", 4, size),
                                   {"s": np.float32(scale), "z": np.uint8(zero),
                                    "ys": np.float32(y_scale), "yz": np.uint8(0)})
            x = rng.integers(0, 256, (300, 4, size)).astype(np.uint8)
            x[:50] = rng.integers(120, 136, (50, 4, size))        # close values: many ties
            want, = run_onnxruntime(model, x)
            got, = load(model).run(x)
            assert np.array_equal(got, want), f"scale {scale}: {(got != want).sum()} differ"
            logits = (x.astype(np.float64) - zero) * np.float32(scale)
            probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
            naive = np.clip(np.rint(probs / np.float32(y_scale)), 0, 255)
            float_misses += int((naive != want).sum())
    assert (float_misses > 0) == (size > 1)


def test_qlinear_matmul_of_two_run_time_tensors_equals_onnxruntime():
    """Attention's Q K^T: QLinearMatMul of two run-time uint8 tensors with zero points (a
    Transpose between), batched over the leading axes; a host operation in the mapping."""
    rng = np.random.default_rng(SEED)
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], name="t", perm=[0, 2, 1]),
             helper.make_node("QLinearMatMul", ["q", "sq", "zq", "kt", "sk", "zk", "ys", "yz"],
                              ["y"], name="scores")]
    inits = {"sq": np.float32(0.02), "zq": np.uint8(131), "sk": np.float32(0.03),
             "zk": np.uint8(97), "ys": np.float32(0.35), "yz": np.uint8(120)}
    model = model_of(nodes, [_uint8("q", 8, 16), _uint8("k", 8, 16)], [_uint8("y", 8, 8)],
                     inits, "scores")
    q, k = (rng.integers(0, 256, (50, 8, 16)).astype(np.uint8) for _ in range(2))
    want, = run_onnxruntime(model, {"q": q, "k": k})
    graph = load(model)
    assert np.array_equal(graph.run({"q": q, "k": k})[0], want)
    assert [op.kind for op in graph.ops] == ["transpose", "matmul"]


def test_qlinear_add_is_onnxruntimes_avx2_kernel_not_the_float_form():
    """QLinearAdd on every pair of uint8 inputs: the AVX2 kernel's fused multiply-adds give
    onnxruntime's result on all of them; the plain float form (dequantize, add, quantize)
    misses some, which is why the emulation is the kernel's (docs/onnx.md)."""
    if not _avx2():
        pytest.skip("onnxruntime's QLinearAdd is the AVX2 kernel only on an AVX2 CPU")
    rng = np.random.default_rng(SEED)
    a = np.repeat(np.arange(256), 256).astype(np.uint8)[None]
    b = np.tile(np.arange(256), 256).astype(np.uint8)[None]
    float_form_misses = 0
    for _ in range(12):
        sa, sb, sc = rng.uniform(0.005, 0.1, 3).astype(np.float32)
        za, zb, zc = (np.uint8(v) for v in rng.integers(0, 256, 3))
        node = helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"],
                                ["c"], name="add", domain="com.microsoft")
        model = model_of([node], [_uint8("a", 65536), _uint8("b", 65536)],
                         [_uint8("c", 65536)], {"sa": sa, "za": za, "sb": sb, "zb": zb,
                                                "sc": sc, "zc": zc}, "add")
        want, = run_onnxruntime(model, {"a": a, "b": b})
        assert np.array_equal(load(model).run({"a": a, "b": b})[0], want)
        real = (a - np.int64(za)).astype(np.float32) * sa + \
            (b - np.int64(zb)).astype(np.float32) * sb
        float_form = np.clip(np.rint(real / sc).astype(np.int64) + int(zc), 0, 255)
        float_form_misses += int((float_form != want).sum())
    assert float_form_misses > 0


def _attention_block(fmt):
    """A float block with Transpose, MatMul of two run-time tensors, Softmax and ReduceMax,
    quantized by onnxruntime, and its inputs."""
    rng = np.random.default_rng(SEED)
    node = helper.make_node
    nodes = [node("MatMul", ["x", "Wq"], ["q"], name="query"),
             node("MatMul", ["x", "Wk"], ["k"], name="key"),
             node("Transpose", ["k"], ["kt"], name="keys", perm=[0, 2, 1]),
             node("MatMul", ["q", "kt"], ["s"], name="scores"),
             node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
             node("MatMul", ["p", "x"], ["a"], name="attend"),
             node("ReduceMax", ["a"], ["m"], name="pool", axes=[1], keepdims=0),
             node("Gemm", ["m", "Wc"], ["y"], name="classifier")]
    inits = {"Wq": rng.normal(0, 0.5, (6, 6)), "Wk": rng.normal(0, 0.5, (6, 6)),
             "Wc": rng.normal(0, 0.5, (6, 3))}
    model = model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                           ["batch", 5, 6])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
                     {key: value.astype(np.float32) for key, value in inits.items()}, "block")
    quantized = quantize_onnxruntime(model, rng.uniform(0, 1, (64, 5, 6)), fmt)
    return quantized, rng.uniform(-0.2, 1.2, (300, 5, 6)).astype(np.float32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_attention_block_equals_onnxruntime_and_maps_projections_to_the_array(fmt):
    model, x = _attention_block(fmt)
    want, = run_onnxruntime(model, x)
    graph = load(model)
    assert np.array_equal(graph.run(x)[0], want)
    kinds = [op.kind for op in graph.ops]
    for kind in ("transpose", "matmul", "softmax", "reducemax"):
        assert kind in kinds
    assert sum(isinstance(op, Dense) for op in graph.ops) == 3     # query, key, classifier


def _bad_attention(kind):
    u8, f = TensorProto.UINT8, TensorProto.FLOAT
    params = {"s": np.float32(0.1), "z": np.uint8(0), "ys": np.float32(1 / 256),
              "yz": np.uint8(0)}
    if kind == "softmax axis":
        node = helper.make_node("QLinearSoftmax", ["x", "s", "z", "ys", "yz"], ["y"],
                                name="soft", domain="com.microsoft", axis=1, opset=17)
        return _integer_model(node, [_uint8("x", 4, 5)], _uint8("y", 4, 5), params), \
            ("'soft' (QLinearSoftmax)", "axis 1", "the last axis")
    if kind == "matmul shapes":
        node = helper.make_node("QLinearMatMul", ["a", "s", "z", "b", "s", "z", "s", "z"],
                                ["y"], name="mm")
        return model_of([node], [_uint8("a", 4, 5), _uint8("b", 4, 5)], [_uint8("y", 4, 5)],
                        params, "bad"), ("'mm' (QLinearMatMul)", "(4, 5) and (4, 5)")
    if kind == "transpose batch":
        nodes = [helper.make_node("Transpose", ["x"], ["t"], name="tr", perm=[1, 0, 2]),
                 helper.make_node("QLinearSoftmax", ["t", "s", "z", "ys", "yz"], ["y"],
                                  name="soft", domain="com.microsoft", opset=17)]
        return model_of(nodes, [_uint8("x", 4, 5)], [_uint8("y", 4, 5)], params, "bad"), \
            ("'tr' (Transpose)", "perm [1, 0, 2]", "batch axis kept first")
    if kind == "reducemax batch":
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="dq"),
                 helper.make_node("ReduceMax", ["d"], ["m"], name="max", axes=[0]),
                 helper.make_node("QuantizeLinear", ["m", "s", "z"], ["y"], name="qy")]
        return model_of(nodes, [helper.make_tensor_value_info("x", f, ["batch", 4])],
                        [_uint8("y", 4)], params, "bad"), ("'max' (ReduceMax)", "batch axis")
    raise AssertionError(kind)


@pytest.mark.parametrize("build, kind", [
    *((_bad, kind) for kind in BAD),
    *((_bad_attention, kind) for kind in ("softmax axis", "matmul shapes", "transpose batch",
                                          "reducemax batch")),
])
def test_bad_models_are_refused_in_one_line(build, kind):
    model, named = build(kind)
    with pytest.raises(OnnxImportError) as error:
        load(model)
    message = str(error.value)
    assert "\n" not in message and "supported" in message
    for text in named:
        assert text in message, message


def test_im2col_keeps_float_inputs_float():
    """The project's quantization calibrates a convolution on the float patches: im2col must
    not truncate them to integers (it did, and the CNN's 4-bit calibration saw zeros)."""
    x = np.full((1, 1, 2, 2), 0.5)
    cols, _ = im2col(x, (2, 2), (1, 1), (1, 1, 1, 1), (1, 1), 0.0)
    assert cols.dtype == np.float64 and set(cols.ravel().tolist()) == {0.0, 0.5}
    ints, _ = im2col(np.full((1, 1, 2, 2), 7), (2, 2), (1, 1), (1, 1, 1, 1), (1, 1), 3)
    assert ints.dtype == np.int64 and set(ints.ravel().tolist()) == {3, 7}
