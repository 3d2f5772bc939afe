"""Quantization-aware training and the per-layer precision search of the digits MLP."""

import itertools
import json
import re

import numpy as np
import pytest

from golden.accel import AccelModel, compile_network
from golden.network import (PRECISIONS, QuantizedMLP, digits_network, digits_split,
                            float_network, quantize_mlp)
from golden.qat import (LEARNING_RATE, _fine_tune, array_cycles, fine_tune, layer_cycles, main,
                        qat_network, search_precision)
from rtl.accel.config import AccelConfig

TWO_BIT = {a_bits: ((2, a_bits),) * 3 for a_bits in (2, 4, 8)}


@pytest.fixture(scope="module")
def split():
    return digits_split()


@pytest.fixture(scope="module")
def float_accuracy(split):
    _, x_test, _, y_test = split
    return float_network(0.0).accuracy(x_test, y_test)


@pytest.mark.parametrize("a_bits", [2, 4, 8])
def test_qat_2bit_weight_network_is_within_two_points_of_float(split, float_accuracy, a_bits):
    _, x_test, _, y_test = split
    ptq = digits_network(TWO_BIT[a_bits]).accuracy(x_test, y_test)
    qat = qat_network(TWO_BIT[a_bits]).accuracy(x_test, y_test)
    assert float_accuracy > 0.95
    assert qat >= float_accuracy - 0.02, (a_bits, qat, float_accuracy)
    assert ptq < 0.5  # what QAT repairs: post-training 2-bit weights collapse


@pytest.mark.parametrize("bits", [TWO_BIT[2], TWO_BIT[4], PRECISIONS["mixed"]],
                         ids=["2x2", "2x4", "mixed"])
def test_qat_network_runs_bit_exact_on_the_accelerator(split, bits):
    network = qat_network(bits)
    assert isinstance(network, QuantizedMLP)
    for layer, (w_bits, a_bits) in zip(network.layers, bits):
        assert (layer.w_bits, layer.a_bits) == (w_bits, a_bits)
    x = split[1][:16]
    config = AccelConfig()
    program = compile_network(network, config, 16, engines=("array",) * 3)
    assert [plan.mode for plan in program.layers] == list(bits)
    model = AccelModel(config)
    model.load(program)
    np.testing.assert_array_equal(model.infer(program, network.quantize_input(x)),
                                  network.predict(x))


def test_fine_tune_is_deterministic():
    bits = TWO_BIT[4]
    first = _fine_tune.__wrapped__(bits, 0, 2, LEARNING_RATE)
    second = _fine_tune.__wrapped__(bits, 0, 2, LEARNING_RATE)
    for a, b in zip(first[0].weights + first[0].biases, second[0].weights + second[0].biases):
        np.testing.assert_array_equal(a, b)
    assert first[1] == second[1]


@pytest.mark.parametrize("bits", [PRECISIONS["mixed"], ((2, 2), (2, 2), (4, 2)), 8],
                         ids=["mixed", "2x2-2x2-4x2", "8-bit"])
def test_layer_cycles_are_the_accelerator_array_cycles(bits):
    config = AccelConfig()
    network = digits_network(bits)
    program = compile_network(network, config, 16, engines=("array",) * 3)
    model = AccelModel(config)
    model.load(program)
    model.infer(program, network.quantize_input(digits_split()[1][:16]))
    gemms = [step["engine_cycles"] for step in model.timing.trace if step["opcode"] == "GEMM"]
    pairs = [(layer.w_bits, layer.a_bits) for layer in network.layers]
    assert gemms == [cycles[pair] for cycles, pair in zip(layer_cycles(config), pairs)]
    assert gemms == [plan.estimates["array"] for plan in program.layers]
    assert array_cycles(bits, config) == sum(gemms)


def test_fixed_precision_array_runs_only_its_own_mode():
    config = AccelConfig(precision=4, spmv=None)
    assert array_cycles(4, config) is not None
    assert array_cycles(8, config) is None
    assert array_cycles(2, config) == array_cycles(4, config)  # 2-bit runs in the 4x4 mode


SMALL = [2, 4, 8, PRECISIONS["mixed"], ((8, 8), (4, 4), (2, 4)), ((4, 8), (2, 4), (2, 2)),
         ((8, 8), (8, 8), (2, 2)), ((2, 8), (8, 2), (4, 4))]
# Three of 965 cycles: the first in order of bits is not the most accurate.
TIED = [8, ((2, 8), (8, 8), (8, 8)), ((4, 4), (8, 8), (8, 8)), ((4, 8), (8, 4), (8, 8))]


@pytest.mark.parametrize("candidates, budget", [(SMALL, 0.0), (SMALL, 1.0), (SMALL, 3.0),
                                                (SMALL, 70.0), (TIED, 1.0), (TIED, 10.0)])
def test_search_picks_the_fewest_cycles_within_budget_as_brute_force(split, float_accuracy,
                                                                     candidates, budget):
    _, x_test, _, y_test = split
    search = search_precision(budget, "ptq", candidates=candidates)
    floor = float_accuracy - budget / 100 - 1e-12
    measured = [(array_cycles(bits), digits_network(bits).accuracy(x_test, y_test), bits)
                for bits in candidates]
    within = [(cycles, accuracy) for cycles, accuracy, _ in measured if accuracy >= floor]
    fewest = min(cycles for cycles, _ in within)
    assert search.chosen.accuracy >= floor
    assert search.chosen.cycles == fewest
    assert search.chosen.accuracy == max(a for c, a in within if c == fewest)
    assert search.baseline.bits == ((8, 8),) * 3 and search.candidates == len(candidates)
    assert [c.cycles for c in search.evaluated] == sorted(c.cycles for c in search.evaluated)


def test_search_with_qat_accepts_2bit_weights_ptq_refuses(float_accuracy):
    candidates = [TWO_BIT[2], TWO_BIT[4], 8]
    qat = search_precision(1.0, "qat", candidates=candidates)
    ptq = search_precision(1.0, "ptq", candidates=candidates)
    assert qat.chosen.bits[0][0] == 2 and qat.chosen.accuracy >= float_accuracy - 0.01
    assert ptq.chosen.bits == ((8, 8),) * 3
    assert qat.chosen.cycles < ptq.chosen.cycles


def test_search_without_a_candidate_within_budget_is_an_error():
    with pytest.raises(ValueError, match="no candidate reaches .* allow a larger budget"):
        search_precision(1.0, "ptq", candidates=[2])


def test_qat_search_of_all_729_assignments_has_none_cheaper_within_budget(float_accuracy):
    search = search_precision(1.0, "qat")
    assert search.candidates == 729 and search.method == "qat"
    assert search.chosen.accuracy >= float_accuracy - 0.01 - 1e-12
    cheaper = [c for c in search.evaluated if c.cycles < search.chosen.cycles]
    assert cheaper and all(c.accuracy < float_accuracy - 0.01 for c in cheaper)
    # The pool is taken in order of cycles: nothing unevaluated is cheaper than the pick.
    every = {array_cycles(bits) for bits in itertools.product(
        itertools.product((2, 4, 8), repeat=2), repeat=3)}
    assert min(every) == search.evaluated[0].cycles
    assert search.chosen.cycles < search.baseline.cycles == 1733


@pytest.mark.slow
def test_command_reports_both_searches_bit_exact_on_the_accelerator(capsys):
    assert main(["--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document["search"]) == {"qat", "ptq"}
    for search in document["search"].values():
        chosen, baseline = search["chosen"], search["all_8bit"]
        assert search["candidates"] == 729
        assert chosen["accuracy"] >= document["float"] - 0.01 - 1e-12
        assert chosen["array_cycles"] < baseline["array_cycles"] == 1733
        assert chosen["accelerator_cycles"] < baseline["accelerator_cycles"]
        assert chosen["accelerator_exact"] and baseline["accelerator_exact"]
    # QAT lets the search go below what post-training quantization reaches.
    qat, ptq = document["search"]["qat"]["chosen"], document["search"]["ptq"]["chosen"]
    assert qat["array_cycles"] < ptq["array_cycles"]
    two_bit = document["precisions"]["2-bit"]
    assert two_bit["array_cycles"] == 179
    assert two_bit["qat"] >= document["float"] - 0.02 and two_bit["ptq"] < 0.5


@pytest.mark.parametrize("call, message", [
    (lambda: search_precision(-1), "budget must be between 0 and 100"),
    (lambda: search_precision(101), "budget must be between 0 and 100"),
    (lambda: search_precision(1, "fp32"), "method must be one of qat, ptq, not 'fp32'"),
    (lambda: search_precision(1, batch=0), "batch must be"),
    (lambda: search_precision(1, candidates=[]), "candidates must be a non-empty list"),
    (lambda: search_precision(1, candidates=[((3, 3),) * 3]), "w_bits must be 2, 4 or 8"),
    (lambda: search_precision(1, candidates=[((2, 2),) * 2]), "one (w_bits, a_bits) pair"),
    (lambda: qat_network(3), "bits must be 2, 4 or 8, not 3"),
    (lambda: fine_tune(2, epochs=0), "epochs must be"),
    (lambda: fine_tune(2, lr=0), "lr must be positive"),
    (lambda: quantize_mlp(float_network(0.0), 8, [1.0, 1.0]), "scales must be 3 positive"),
])
def test_bad_arguments_are_one_line_errors(call, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        call()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("argv, message", [
    (["--budget", "-1"], "budget must be between 0 and 100"),
    (["--batch", "1000"], "needs input page words 0..499 for 1000 images but a page has 64"),
    (["--budget", "x"], "argument --budget: invalid float value: 'x'"),
    (["--batch", "0"], "batch must be"),
    (["--seed", "-1"], "--seed must be at least 0"),
])
def test_command_bad_input_exits_2_with_one_line(capsys, argv, message):
    try:
        status = main(argv)
    except SystemExit as exit:
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and err.count("\n") == 1 and err.startswith("python -m golden.qat")
