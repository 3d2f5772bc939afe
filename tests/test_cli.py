"""``python -m gen`` rejects bad input with one line and no traceback, and explains itself."""

import gc
import importlib
import inspect
import subprocess
import sys

import pytest

from gen.cli import UNITS, UsageError, build_parser, options_named
from rtl.spmv import SpMV
from rtl.systolic import SystolicArray
from rtl.topk import TopK


def gen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_help_shows_examples():
    result = gen("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert "python -m gen --array 8x8 --bits mixed" in result.stdout


@pytest.mark.parametrize("args, named", [
    (["--array", "0x8"], "not 0"),
    (["--array", "8x33"], "not 33"),
    (["--array", "8"], "not '8'"),
    (["--array", "eightxeight"], "not 'eightxeight'"),
    (["--bits", "3"], "not 3"),
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


def test_a_constructor_error_is_reported_under_the_option_of_its_parameter():
    with pytest.raises(UsageError) as error:
        with options_named({"rows": "--array rows", "drain_rows": "--drain-rows"}):
            raise ValueError("drain_rows must divide rows=6, not 4")
    assert str(error.value) == "--drain-rows must divide rows=6, not 4"


@pytest.mark.parametrize("message", [
    "fifo_depth must be between 1 and 128, not 0",      # a parameter the CLI never sets
    "the configuration is wrong",                       # not a parameter check
])
def test_other_value_errors_pass_unchanged(message):
    with pytest.raises(ValueError) as error:
        with options_named({"rows": "--rows"}):
            raise ValueError(message)
    assert str(error.value) == message


@pytest.mark.parametrize("unit, component", [
    ("array", SystolicArray), ("spmv", SpMV), ("topk", TopK)])
def test_option_tables_name_constructor_parameters_and_real_options(unit, component):
    parameters = inspect.signature(component).parameters
    help_text = build_parser().format_help()
    for parameter, option in importlib.import_module(UNITS[unit]).OPTIONS.items():
        assert parameter in parameters, parameter
        assert f"{option.split()[0]} " in help_text, option


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_the_array_generator_leaves_the_arguments_as_given():
    # --board picks the array's defaults (icebreaker: 2x2, one edge register) without
    # writing them into the options the later steps read.
    args = build_parser().parse_args(["--board", "icebreaker"])
    given = dict(vars(args))
    design = importlib.import_module(UNITS["array"]).design(args)
    assert vars(args) == given
    assert (design.component.rows, design.component.cols) == (2, 2)
    assert design.component.edge_registers == 1
    del design
    gc.collect()                # the unconverted array warns here, where the filter applies
