"""``python -m gen`` rejects bad input with one line and no traceback, and explains itself."""

import gc
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil

from gen.cli import (STEPS, UNITS, UsageError, build_parser, main, option_name, options_named,
                     settings)
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
    assert not (tmp_path / "out").exists()


def assert_one_line_and_nothing_written(result, out, expected):
    """``python -m gen`` failed with exit 2, one line ``expected`` and no file in ``out``."""
    assert result.returncode == 2
    assert result.stderr == f"python -m gen: error: {expected}\n", result.stderr
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


@pytest.mark.parametrize("args, expected", [
    (["--freq", "-5"], "--freq -5 needs --synth DEVICE"),
    (["--freq", "100"], "--freq 100 needs --synth DEVICE"),
    (["--baud", "0"], "--baud 0 needs --board NAME"),
    (["--baud", "115200"], "--baud 115200 needs --board NAME"),     # the default, but given
    (["--program"], "--program needs --board NAME"),
    (["--unit", "spmv", "--program"], "--program needs --board NAME"),
])
def test_an_option_of_a_step_needs_the_step(args, expected, tmp_path):
    result = gen(*args, "--out", str(tmp_path / "out"))
    assert_one_line_and_nothing_written(result, tmp_path / "out", expected)


@pytest.mark.parametrize("args, expected", [
    (["--unit", "topk", "--array", "4x4"], "--array 4x4 is an option of --unit array, "
                                           "not of --unit topk"),
    (["--unit", "spmv", "--bits", "4"], "--bits 4 is an option of --unit array, "
                                        "not of --unit spmv"),
    (["--unit", "spmv", "--topk-k", "8"], "--topk-k 8 is an option of --unit topk, "
                                          "not of --unit spmv"),     # the default, but given
    (["--rows", "64"], "--rows 64 is an option of --unit spmv, not of --unit array"),
    (["--unit", "array", "--codebook"], "--codebook is an option of --unit spmv, "
                                        "not of --unit array"),
    (["--unit", "topk", "--value-bits", "4"], "--value-bits 4 is an option of --unit spmv, "
                                              "not of --unit topk"),
])
def test_an_option_of_another_unit_is_an_error_naming_its_unit(args, expected, tmp_path):
    result = gen(*args, "--out", str(tmp_path / "out"))
    assert_one_line_and_nothing_written(result, tmp_path / "out", expected)


@pytest.mark.parametrize("args, expected", [
    (["--synth", "ice40-up5k", "--freq", "-5"],
     "--freq must be between 1 and 1000 MHz, not -5"),
    (["--synth", "ice40-up5k", "--freq", "0"], "--freq must be between 1 and 1000 MHz, not 0"),
    (["--synth", "ecp5-25k", "--freq", "nan"],
     "--freq must be between 1 and 1000 MHz, not nan"),
    (["--synth", "ecp5-25k", "--freq", "inf"],
     "--freq must be between 1 and 1000 MHz, not inf"),
    (["--synth", "ecp5-25k", "--seeds", "1,x"],
     "--seeds must be whole numbers separated by commas, like 1,2,3, not '1,x'"),
    (["--synth", "ecp5-25k", "--seeds", "1,1"],
     "--seeds must be up to 8 distinct seeds 1..2147483647, not '1,1'"),
    (["--synth", "ecp5-25k", "--seeds", "0"],
     "--seeds must be up to 8 distinct seeds 1..2147483647, not '0'"),
    (["--seeds", "1,2"], "--seeds 1,2 needs --synth DEVICE"),
    (["--board", "icebreaker", "--baud", "0"],
     "--baud must be within 2% of 12000000 Hz divided by a whole number of at least 4, not 0"),
    (["--board", "icebreaker", "--array", "1x1", "--baud", "-9600"],
     "--baud must be within 2% of 12000000 Hz divided by a whole number of at least 4, "
     "not -9600"),
    (["--unit", "topk", "--board", "icebreaker"],
     "--board builds --unit accel or --unit array, not --unit topk"),
    (["--out", ""], "--out must name a directory, not ''"),
])
def test_a_bad_step_option_is_refused_before_any_file_is_written(args, expected, tmp_path):
    # Run in an empty directory, so "nothing written" covers --out "" too.
    result = gen(*(args if "--out" in args else [*args, "--out", "out"]), cwd=tmp_path)
    assert_one_line_and_nothing_written(result, tmp_path, expected)


def shared(module):
    """The options a unit takes from other units (the accelerator's ``--array``, ...)."""
    return set(getattr(importlib.import_module(module), "SHARED", ()))


def test_every_option_belongs_to_the_common_options_or_one_unit_or_step():
    # The table of each unit and step lists its options: what the checks above go by. An
    # option is one unit's own, unless another unit declares it SHARED (same meaning).
    tables = [set(importlib.import_module(module).DEFAULTS) - shared(module)
              for module in (*UNITS.values(), *STEPS)]
    owned = [dest for table in tables for dest in table]
    assert len(owned) == len(set(owned))
    assert set(vars(build_parser().parse_args([]))) == {"unit", "out", "json", *owned}
    for module in UNITS.values():
        assert shared(module) <= set(owned) - set(importlib.import_module(module).DEFAULTS) \
            | shared(module)


#: A valid value for each option whose default is worked out rather than fixed.
SAMPLE = {"array": "4x4", "drain_rows": "1", "edge_registers": "1"}


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_every_option_of_every_other_unit_is_refused(unit, capsys, tmp_path):
    mine = importlib.import_module(UNITS[unit]).DEFAULTS
    for other, module in sorted(UNITS.items()):
        if other == unit:
            continue
        for dest, default in importlib.import_module(module).DEFAULTS.items():
            if dest in mine or dest in shared(module):
                continue                # the unit's own (shared), or refused as its owner's
            option = "--" + dest.replace("_", "-")
            value = [] if default is False else [SAMPLE.get(dest, str(default))]
            assert main(["--unit", unit, option, *value, "--out", str(tmp_path)]) == 2
            [line] = capsys.readouterr().err.splitlines()
            assert line == (f"python -m gen: error: {' '.join([option, *value])} is an option "
                            f"of --unit {other}, not of --unit {unit}")
    assert not any(tmp_path.iterdir())


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


SPMV = ["--unit", "spmv", "--spmv-pes", "2", "--rows", "16", "--cols", "16"]
TOPK = ["--unit", "topk", "--topk-n", "16"]
ACCEL = ["--unit", "accel", "--array", "2x2", "--spmv-pes", "2", "--rows", "16", "--cols", "16",
         "--topk-n", "16", "--topk-k", "2"]

#: For each option of every unit and step, a command line without it and the option that
#: changes it from there: ``[(arguments, variant), ...]``. Every option must be here (see
#: below), so an option added later must show how the output names follow it.
VARIANTS = {
    "array": [(["--array", "2x2"], ["--array", "3x2"])],
    "bits": [(["--array", "2x2"], ["--bits", "8"])],
    "acc_bits": [(["--array", "2x2"], ["--acc-bits", "24"])],
    "drain_rows": [(["--array", "4x2"], ["--drain-rows", "2"]),     # the default is 1
                   (["--array", "4x2"], ["--drain-rows", "1"])],    # the default, but given
    "edge_registers": [(["--array", "2x2"], ["--edge-registers", "1"])],
    "spmv_pes": [(SPMV, ["--spmv-pes", "3"])],
    "rows": [(SPMV, ["--rows", "20"])],
    "cols": [(SPMV, ["--cols", "24"])],
    "value_bits": [(SPMV, ["--value-bits", "4"])],
    "codebook": [(SPMV, ["--codebook"])],
    "z_bits": [(SPMV, ["--z-bits", "3"])],
    "queue_depth": [(SPMV, ["--queue-depth", "4"])],
    "act_lanes": [(SPMV, ["--act-lanes", "2"])],
    "topk_n": [(TOPK, ["--topk-n", "32"])],
    "topk_k": [(TOPK, ["--topk-k", "4"])],
    "topk_par": [(TOPK, ["--topk-par", "2"])],
    "score_bits": [(TOPK, ["--score-bits", "8"])],
    "unsigned_scores": [(TOPK, ["--unsigned-scores"])],
    "synth": [(["--array", "2x2"], ["--synth", "ice40-up5k"]),
              (["--array", "2x2", "--synth", "ice40-up5k"], ["--synth", "ecp5-25k"])],
    "freq": [(["--array", "2x2", "--synth", "ice40-up5k"], ["--freq", "50"])],
    "estimate": [(["--array", "2x2"], ["--estimate"])],     # writes nothing: prints instead
    "force": [(["--array", "2x2", "--synth", "ice40-up5k"], ["--force"])],
    "seeds": [(["--array", "2x2", "--synth", "ice40-up5k"], ["--seeds", "1,2,3"]),
              (["--array", "2x2", "--synth", "ice40-up5k"], ["--seeds", "1"])],
    "board": [(["--array", "2x2"], ["--board", "icebreaker"]),
              (["--array", "2x2", "--board", "icebreaker"], ["--board", "ulx3s-85f"]),
              ([], ["--board", "icebreaker"])],         # and its largest array
    "baud": [(["--array", "2x2", "--board", "icebreaker"], ["--baud", "9600"])],
    "program": [(["--array", "2x2", "--board", "icebreaker"], ["--program"])],
    "no_spmv": [(ACCEL, ["--no-spmv"])],
    "no_topk": [(ACCEL, ["--no-topk"])],
    **{dest: [(ACCEL, ["--" + dest.replace("_", "-"), str(value)])]
       for dest, value in (("program_words", 64), ("act_words", 256), ("input_words", 32),
                           ("weight_words", 512), ("param_words", 32), ("csc_words", 512),
                           ("result_words", 32), ("output_words", 128))},
}
# The options the accelerator shares change its name too.
for _dest, _variant in (("array", ["--array", "3x2"]), ("bits", ["--bits", "8"]),
                        ("acc_bits", ["--acc-bits", "24"]), ("spmv_pes", ["--spmv-pes", "4"]),
                        ("rows", ["--rows", "20"]), ("cols", ["--cols", "24"]),
                        ("act_lanes", ["--act-lanes", "2"]), ("topk_n", ["--topk-n", "32"]),
                        ("topk_k", ["--topk-k", "4"]), ("topk_par", ["--topk-par", "1"])):
    VARIANTS[_dest].append((ACCEL, _variant))

#: Options that write no file: --program flashes the bitstream that --board wrote.
WRITES_NOTHING = {"program"}


def outputs(argv):
    """The design ``python -m gen argv`` writes and each step's output directory (or None)."""
    args = build_parser().parse_args([*argv, "--out", "o"])
    design = importlib.import_module(UNITS[args.unit]).design(args)
    steps = {step: importlib.import_module(step) for step in STEPS}
    return design, {step: (module.directory(args, design),
                           {dest: value for dest, value in settings(args, module.DEFAULTS).items()
                            if dest not in WRITES_NOTHING})
                    for step, module in steps.items()}


def contents(design):
    """What the design's files hold: its RTLIL (the Verilog is made from it) and manifest."""
    return rtlil.convert(design.component, name=design.name, emit_src=False), design.manifest


ALL_OPTIONS = sorted(dest for module in (*UNITS.values(), *STEPS)
                     for dest in importlib.import_module(module).DEFAULTS)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("dest", ALL_OPTIONS)
def test_an_option_that_changes_the_files_changes_their_names(dest):
    # Two runs that would write different bytes under one name (the design's files, or a
    # step's directory) would overwrite each other's results in the same --out.
    assert dest in VARIANTS, f"add {option_name(dest)} to VARIANTS: which names does it change?"
    for argv, variant in VARIANTS[dest]:
        (first, first_steps), (second, second_steps) = outputs(argv), outputs([*argv, *variant])
        if first.name == second.name:
            assert contents(first) == contents(second), (argv, variant, first.name)
        for step in STEPS:
            (first_dir, first_settings), (second_dir, second_settings) = (
                first_steps[step], second_steps[step])
            if first_dir is not None and first_dir == second_dir:
                assert first.name == second.name, (argv, variant, first_dir)
                assert contents(first) == contents(second), (argv, variant, first_dir)
                assert first_settings == second_settings, (argv, variant, first_dir)
    del first, second
    gc.collect()                # the unconverted designs warn here, where the filter applies


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("argv, name", [
    ([], "fusion_array_8x8_mixed"),
    (["--array", "8x8", "--bits", "mixed", "--acc-bits", "32", "--edge-registers", "2"],
     "fusion_array_8x8_mixed"),                         # the defaults, given
    (["--unit", "array", "--board", "icebreaker"], "fusion_array_2x2_mixed_edge1"),
    (["--board", "icebreaker"],                         # the board's accelerator
     "accel_2x1_8_nospmv_notopk_prog32_act256_wgt16384_par128_res20_out16"),
    (["--board", "ulx3s-85f"], "accel_8x8_mixed_acc24_drain1_spmv4_64_64_4_topk256_8_1"),
    (["--board", "ulx3s-85f", "--no-topk"], "accel_8x8_mixed_acc24_drain1_spmv4_64_64_4_notopk"),
    (["--board", "ulx3s-85f", "--drain-rows", "2"],     # the array's default, given
     "accel_8x8_mixed_acc24_spmv4_64_64_4_topk256_8_1"),
    (["--board", "icebreaker", "--topk-k", "1"],        # a top-k option adds the engine
     "accel_2x1_8_nospmv_topk256_1_prog32_act256_wgt16384_par128_res20_out16"),
    (["--array", "4x4", "--acc-bits", "24", "--drain-rows", "2", "--edge-registers", "1"],
     "fusion_array_4x4_mixed_acc24_drain2_edge1"),
    (["--unit", "spmv"], "spmv_4pe_256x256_8b"),
    (["--unit", "spmv", "--z-bits", "3", "--act-lanes", "2", "--queue-depth", "4"],
     "spmv_4pe_256x256_8b_z3_lanes2_q4"),
    (["--unit", "accel"], "accel_8x8_mixed"),
    (["--unit", "accel", "--drain-rows", "2"], "accel_8x8_mixed"),
    (["--unit", "accel", "--drain-rows", "4"], "accel_8x8_mixed_drain4"),
    (["--unit", "accel", "--array", "8x8", "--spmv-pes", "4", "--topk-k", "8"], "accel_8x8_mixed"),
    (["--unit", "accel", "--array", "4x4", "--bits", "8", "--no-topk", "--act-words", "256"],
     "accel_4x4_8_notopk_act256"),
])
def test_default_parameters_keep_the_short_name(argv, name):
    design, _ = outputs(argv)
    assert design.name == name
    del design
    gc.collect()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_step_outputs_sit_beside_the_design_files():
    design, steps = outputs(["--unit", "array", "--array", "2x2", "--synth", "ecp5-85k",
                             "--freq", "50", "--board", "ulx3s-85f", "--baud", "9600"])
    assert steps["gen.synth"][0] == Path("o/fusion_array_2x2_mixed.synth-ecp5-85k-50mhz")
    assert steps["gen.board"][0] == Path("o/fusion_array_2x2_mixed.board-ulx3s-85f-9600baud")
    del design
    gc.collect()


def test_help_says_array_for_shapes_and_mode_for_precision_modes():
    # "8x8" alone could be an array shape or a precision mode (8-bit weights x 8-bit
    # activations): each shape or mode in the help is named as one.
    text = " ".join(gen("--help").stdout.split())
    sizes = re.findall(r"([\w-]+) \d+x\d+\b", text)
    assert sizes and set(sizes) <= {"array", "mode", "--array"}, sizes
