"""``python -m gen`` rejects bad input with one line and no traceback, and explains itself."""

import subprocess
import sys

import pytest


def gen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_help_shows_examples():
    result = gen("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert "python -m gen --array 8x8 --bits mixed" in result.stdout


@pytest.mark.parametrize("args, named", [
    (["--array", "0x8"], "0"),
    (["--array", "8x33"], "33"),
    (["--array", "8"], "'8'"),
    (["--array", "eightxeight"], "'eightxeight'"),
    (["--bits", "3"], "'3'"),
    (["--unit", "fft"], "'fft'"),
    (["--spmv-pes", "many"], "'many'"),
])
def test_bad_argument_gets_one_line_naming_the_value(args, named, tmp_path):
    result = gen(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("python -m gen: error:")
    assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_unwritable_out_directory_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = gen("--array", "2x2", "--out", str(blocker / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(blocker / "out") in lines[0], result.stderr
    assert "Traceback" not in result.stderr
