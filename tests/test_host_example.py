"""examples/host_gemm.py: it runs as a user runs it, against the simulated board
(boards.sim), its checks catch a wrong answer, and docs/boards.md shows it as it is."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from boards.host import seal
from boards.sim import SimulatedBoard
from rtl.hostlink import Command, Status

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "host_gemm.py"
#: A GEMM of one tile and two steps: a second on the simulated board.
SMALL = ["--sim", "--random", "2x8x2", "--mode", "4x4"]


def load_script(path):
    """The example script at ``path`` as a module, to run its ``main`` in this process."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return load_script(EXAMPLE)


def status(example, argv):
    """The exit status of the script on ``argv``."""
    try:
        return example.main(argv)
    except SystemExit as stop:
        return stop.code


def test_the_example_runs_the_digits_layer_on_the_simulated_board_as_written():
    # As a user runs it from the checkout (an installed package puts ROOT on the path).
    result = subprocess.run([sys.executable, str(EXAMPLE), "--sim"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    # Nothing on stderr: the simulation outlives the script's asyncio loop without a word.
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "board: 2x2 array, mixed precision, 32-bit accumulators (simulated)"
    assert lines[1].startswith("a (2, 32) uint8 @ w (32, 10) int8, mode 8x4 (w signed, "
                               "a unsigned): 80 steps, 10 result beats, ")
    assert lines[2] == "match: all 20 values of C (2, 10) equal the golden model's"
    assert re.fullmatch(r"predicted digits \[\d, \d\], labels \[\d, \d\]", lines[3])


class Corrupting(SimulatedBoard):
    """The simulated board with bit 0 of the first result byte it sends flipped on the line
    (the first payload byte of the first OK answer to ``flips``, a command of ``commands``);
    with ``reseal`` the answer carries the CRC of the flipped bytes, as a board that computed
    a wrong value would send it. Its arguments are ``SimulatedBoard``'s."""

    reseal = False
    commands, flips = Command, Command.READ

    def __init__(self, *args):
        super().__init__(*args)
        self.command = self.header = None
        self.flipped = False

    async def write(self, data):
        self.command = self.commands(data[1])
        await super().write(data)

    async def read(self, count):
        data = await super().read(count)
        if count == 4:
            self.header = data
        elif (self.command == self.flips and self.header[1] == Status.OK.value
              and not self.flipped):
            self.flipped = True
            body = bytearray(self.header[1:] + data[:-2])
            body[3] ^= 1                                    # the first payload byte
            data = bytes(body[3:]) + (seal(body)[-2:] if self.reseal else data[-2:])
        return data


class Resealing(Corrupting):
    reseal = True


@pytest.mark.parametrize("board, code, message", [
    (SimulatedBoard, 0, "match: all 4 values of C (2, 2) equal the golden model's"),
    (Corrupting, 1, "host_gemm.py: the link failed: the board answered bad response CRC"),
    (Resealing, 1, "MISMATCH: 1 of 4 values differ from the golden model, first C[0, 0]")])
def test_a_result_changed_on_the_way_is_caught(example, monkeypatch, capsys, board, code,
                                               message):
    # Flipped on the line: the host's CRC check refuses the answer. Flipped with a CRC that
    # matches: the comparison with the golden model finds it.
    monkeypatch.setattr(example, "SimulatedBoard", board)
    assert status(example, SMALL) == code
    out, err = capsys.readouterr()
    assert message in out + err


def test_over_a_serial_port_a_line_that_echoes_is_a_link_failure(example, capsys):
    # pyserial's loop:// reads back what the host writes: a request, not an answer. The
    # script's serial path runs, and a line with no board behind it fails in one line.
    assert status(example, ["--port", "loop://", "--random", "2x2x2"]) == 1
    out, err = capsys.readouterr()
    assert err == "host_gemm.py: the link failed: the board answered bad response sync byte a5\n"


@pytest.mark.parametrize("argv, message", [
    ([], "one of the arguments --port --sim is required"),
    (["--sim", "--port", "/dev/ttyUSB1"], "argument --port: not allowed with argument --sim"),
    (["--sim", "--baud", "9600"], "--baud is the serial port's rate: use it with --port"),
    (["--sim", "--mode", "4x4"], "--mode needs --random"),
    (["--sim", "--random", "2x2x2", "--images", "3"], "--images is for the digits layer"),
    (["--sim", "--random", "2x0x2"], "--random must be MxKxN, sizes of at least 1, not '2x0x2'"),
    (["--sim", "--random", "8x8"], "--random must be MxKxN, sizes of at least 1, not '8x8'"),
    (["--sim", "--random", "2x2x2", "--mode", "3x8"], "--mode must be WxA, each 2, 4 or 8"),
    (["--sim", "--images", "0"], "--images must be between 1 and 360, not 0"),
    (["--port", "/nonexistent/ttyUSB1"], "--port /nonexistent/ttyUSB1: "),
    # Refused by the host against the board's answer to IDENTIFY, before the GEMM is sent.
    (["--sim", "--random", "1x70000x1"], "K must be at most 65535 for signed 8-bit weights"),
])
def test_bad_arguments_are_one_line_errors_with_status_2(example, capsys, argv, message):
    assert status(example, argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("host_gemm.py: error: ") and message in err, err


def test_the_docs_show_the_example_script_as_it_is():
    docs = (ROOT / "docs" / "boards.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, re.S)
    script = EXAMPLE.read_text()
    assert script in blocks, "docs/boards.md must show examples/host_gemm.py as it is"
    assert "python examples/host_gemm.py --sim" in docs
