"""examples/host_accel.py: it runs the digits MLP on the simulated accelerator board
(boards.sim) as a user runs it, and its checks catch a wrong answer.

Loading the whole digits MLP into the simulated iCEBreaker takes two minutes of CPU (27 KB
over the link at 40 cycles a byte, 1.1 million cycles), so the fast tests run the example on
its output layer alone (1.5 KB, 61,000 cycles); the whole network runs in the slow test."""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from boards.host import AccelHost
from boards.sim import SLACK, SimulatedBoard, board_accelerator
from boards.top import BOARDS
from golden.accel import AccelModel, compile_network
from golden.network import PRECISIONS, QuantizedMLP, digits_network, digits_split
from rtl.accel.link import AccelLink, Command
from rtl.hostlink import HostLink
from test_host_example import Corrupting, load_script, status

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "host_accel.py"


@pytest.fixture(scope="module")
def example():
    return load_script(EXAMPLE)


def output_layer(bits, images):
    """The digits MLP's output layer as a network of its own, its input (the hidden layer's
    outputs) for the first ``images`` test images and their labels: ``digits`` of the
    example, with an eighteenth of the bytes to load."""
    network = digits_network(PRECISIONS[f"{bits}-bit"], sparsity=0.8)
    _, x_test, _, y_test = digits_split()
    a0 = network.layer_inputs(network.quantize_input(x_test[:images]))[-1]
    return QuantizedMLP(network.layers[-1:], 1.0), a0, y_test[:images]


@pytest.fixture
def small(example, monkeypatch):
    """The example on the output layer, on the iCEBreaker's accelerator."""
    monkeypatch.setattr(example, "digits", output_layer)
    return example


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_the_digits_mlp_fits_every_boards_accelerator(board):
    # What `host_accel.py --sim --board NAME` runs by default (8 bits, every array runs
    # them), in the smallest batch, as a board built with --board NAME runs it.
    config = BOARDS[board].accel
    compile_network(digits_network(PRECISIONS["8-bit"], sparsity=0.8), config, config.rows,
                    output="class" if config.topk is not None else "logits")


def test_the_example_runs_a_network_on_the_simulated_board_and_checks_it(small, capsys):
    assert status(small, ["--sim", "--images", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == "" and len(lines) == 8, out + err
    assert lines[0] == ("board: accelerator, 2x1 8-bit array, 32-bit accumulators, no sparse "
                        "unit, no top-k engine (simulated)")
    # Three images in batches of two: the last batch padded.
    assert lines[1] == ("network: digits MLP 32-10, --bits 8, 80% pruned; batches of 2 "
                        "images; the board gives logits, the host their argmax (no top-k "
                        "engine)")
    assert re.fullmatch(r"load: [\d,]+ bytes sent, [\d,]+ received, [\d.]+ s, [\d,]+ "
                        r"simulated cycles", lines[2]), lines[2]
    assert re.fullmatch(r"run: 3 images, [\d,]+ bytes sent, [\d,]+ received, [\d.]+ s, "
                        r"[\d,]+ simulated cycles", lines[3]), lines[3]
    assert lines[4] == "match: the logits of all 3 images equal the golden model's"
    # The board's logits equal the golden model's, their argmax the layer-by-layer network's.
    network, a0, _ = output_layer(8, 3)
    assert lines[5] == f"predicted {network.forward(a0).argmax(axis=1).tolist()}"
    assert lines[6] == "labels    [7, 6, 3]"
    assert re.fullmatch(r"accuracy: [0-3] of 3 \(\d+\.\d%\)", lines[7])


class Resealing(Corrupting):
    """The simulated board with bit 0 of the first payload byte of the first COLLECT answer
    flipped, and the answer's CRC computed over the flipped bytes: as a board that computed
    a wrong value would send it."""
    commands, flips, reseal = Command, Command.COLLECT, True


def test_an_output_changed_by_the_board_is_caught(small, monkeypatch, capsys):
    # The CRC matches, the host takes the answer: the comparison with the golden model finds
    # the changed logit, image 0's first (the low byte of its first RESULT word).
    monkeypatch.setattr(small, "SimulatedBoard", Resealing)
    assert status(small, ["--sim", "--images", "2"]) == 1
    out, err = capsys.readouterr()
    match = re.fullmatch(r"MISMATCH: 1 of 2 images differ from the golden model, first image "
                         r"0: logits \[(-?\d+), (.*)\], not \[(-?\d+), \2\]",
                         out.splitlines()[-1])
    assert err == "" and match, out
    assert int(match[1]) ^ int(match[3]) == 1                # the bit flipped


@pytest.mark.parametrize("argv, message", [
    ([], "one of the arguments --port --sim is required"),
    (["--sim", "--baud", "9600"], "--baud is the serial port's rate: use it with --port"),
    (["--port", "loop://", "--board", "ulx3s-85f"], "--board picks the simulated board"),
    (["--sim", "--board", "arty"], "--board must be icebreaker or ulx3s-85f, not 'arty'"),
    (["--sim", "--bits", "3"], "--bits must be 8, 4, 2 or mixed, not '3'"),
    (["--sim", "--images", "0"], "--images must be between 1 and 360, not 0"),
    (["--port", "/nonexistent/ttyUSB1"], "--port /nonexistent/ttyUSB1: "),
    # Refused against the board's answer to IDENTIFY, before the program is sent.
    (["--sim", "--bits", "4"], "--bits 4: the board's array is 8-bit, it runs --bits 8 only"),
])
def test_bad_arguments_are_one_line_errors_with_status_2(example, capsys, argv, message):
    assert status(example, argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("host_accel.py: error: ") and message in err, err


def test_over_a_serial_port_a_line_that_echoes_is_a_link_failure(example, capsys):
    # pyserial's loop:// reads back what the host writes: a request, not an answer.
    assert status(example, ["--port", "loop://"]) == 1
    out, err = capsys.readouterr()
    assert err == "host_accel.py: the link failed: the board answered bad response sync byte a5\n"


@pytest.mark.slow
def test_the_example_checks_the_classes_of_the_simulated_ulx3s(example, monkeypatch, capsys):
    # The top-k engine's classes, collected a byte each: 3 minutes of CPU for the output
    # layer alone in the 8x8 mixed array (600 simulated cycles a second).
    monkeypatch.setattr(example, "digits", output_layer)
    assert status(example, ["--sim", "--board", "ulx3s-85f", "--images", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("board: accelerator, 8x8 mixed-precision array, 24-bit accumulators, "
                        "4-PE sparse unit, top-k engine (simulated)")
    assert lines[1].endswith("batches of 16 images; the board gives classes (its top-k "
                             "engine)")
    assert lines[4] == "match: the classes of all 16 images equal the golden model's"
    network, a0, _ = output_layer(8, 16)
    assert lines[5] == f"predicted {network.forward(a0).argmax(axis=1).tolist()}"


@pytest.mark.slow
def test_the_example_runs_the_digits_mlp_on_the_simulated_icebreaker_as_written():
    # As a user runs it from the checkout: the whole network, loaded over the link.
    result = subprocess.run([sys.executable, str(EXAMPLE), "--sim"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("network: digits MLP 64-64-32-10, --bits 8, 80% pruned; ")
    assert lines[4].startswith("match: the logits of all ")


@pytest.mark.parametrize("make, error, message", [
    (lambda: board_accelerator("icebreaker2"), ValueError,
     "board must be one of icebreaker, ulx3s-85f, not 'icebreaker2'"),
    (lambda: SimulatedBoard(BOARDS["icebreaker"].accel), TypeError,
     "engine must be an rtl.systolic.SystolicArray or an rtl.accel.core.Accelerator, not "
     "AccelConfig")])
def test_a_simulated_accelerator_board_refuses_bad_parameters(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make()


def test_a_simulated_accelerator_board_is_the_boards_and_waits_long_enough_for_a_batch(example):
    board = SimulatedBoard(board_accelerator("icebreaker"))
    assert isinstance(board.link, AccelLink)
    assert asyncio.run(AccelHost(board).identify()) == BOARDS["icebreaker"].accel
    # COLLECT is answered once a batch is published: a read waits its slack for it, by
    # default far longer for the accelerator's link than the array's; longer than a batch
    # of the digits MLP takes on the accelerator (the golden model's cycles).
    assert board.slack == SLACK[AccelLink] > SLACK[HostLink]
    config = BOARDS["icebreaker"].accel
    network, a0, _ = example.digits("8", config.rows)
    program = compile_network(network, config, config.rows, output="logits")
    model = AccelModel(config)
    model.load(program)
    model.infer(program, a0)
    assert board.slack * board.divisor > 5 * model.timing.published[0]
