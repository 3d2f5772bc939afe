"""``python -m gen --unit spmv`` and ``--unit topk``: files, manifests, one-line errors."""

import json
import subprocess
import sys

import pytest
from amaranth.back import rtlil, verilog

from gen.emit import Design, write_design
from rtl.topk import TopK


def gen(*args, cwd):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize("args, stem, parameters", [
    (["--unit", "spmv", "--spmv-pes", "3", "--rows", "40", "--cols", "24", "--codebook"],
     "spmv_3pe_40x24_codebook", {"n_pes": 3, "rows": 40, "cols": 24, "codebook": True}),
    (["--unit", "topk", "--topk-n", "100", "--topk-k", "5", "--topk-par", "3",
      "--unsigned-scores"],
     "topk_n100_k5_p3_u16", {"n_max": 100, "k_max": 5, "par": 3, "signed": False}),
])
def test_unit_is_written_deterministically_with_its_manifest(tmp_path, args, stem, parameters):
    for out in ("a", "b"):
        result = gen(*args, "--out", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    for suffix in ("v", "il", "json"):
        first = (tmp_path / "a" / f"{stem}.{suffix}").read_bytes()
        assert first == (tmp_path / "b" / f"{stem}.{suffix}").read_bytes()
    manifest = json.loads((tmp_path / "a" / f"{stem}.json").read_text())
    assert parameters.items() <= manifest["parameters"].items()
    names = {port["name"] for port in manifest["ports"]}
    assert {"clk", "rst", "result__valid", "result__ready", "result__payload"} <= names


def test_written_files_are_amaranths_own_conversions(tmp_path):
    # The .v is made from the .il (one elaboration) and is the Verilog that Amaranth's public
    # verilog.convert, and so the simulator runner, makes of the component.
    engine = TopK(n_max=8, k_max=2, par=2, score_bits=4)
    paths = write_design(Design(engine, "small_topk", {}, "small"), tmp_path)
    assert paths["il"].read_text() == rtlil.convert(engine, name="small_topk", emit_src=False)
    assert paths["v"].read_text() == verilog.convert(engine, name="small_topk", emit_src=False)


@pytest.mark.parametrize("args, option, rule, value", [
    (["--unit", "spmv", "--spmv-pes", "65"], "--spmv-pes", "between 1 and 64", "65"),
    (["--unit", "spmv", "--rows", "0"], "--rows", "between 1 and 4096", "0"),
    (["--unit", "spmv", "--value-bits", "3"], "--value-bits", "2, 4 or 8", "3"),
    (["--unit", "spmv", "--z-bits", "0"], "--z-bits", "between 1 and 8", "0"),
    (["--unit", "spmv", "--act-lanes", "17"], "--act-lanes", "between 1 and 16", "17"),
    (["--unit", "spmv", "--queue-depth", "1"], "--queue-depth", "between 2 and 256", "1"),
    (["--unit", "topk", "--topk-n", "4", "--topk-k", "8"], "--topk-k", "between 1 and 4", "8"),
    (["--unit", "topk", "--topk-par", "64"], "--topk-par", "between 1 and 32", "64"),
    (["--unit", "topk", "--score-bits", "1"], "--score-bits", "between 2 and 32", "1"),
])
def test_bad_unit_parameters_are_one_line_naming_the_option(tmp_path, args, option, rule,
                                                            value):
    result = gen(*args, cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"python -m gen: error: {option} must "), line
    assert rule in line and line.endswith(f", not {value}"), line
    assert not any(tmp_path.iterdir())          # not even build/


@pytest.mark.parametrize("args, stem, parameters", [
    (["--unit", "spmv"], "spmv_4pe_256x256_8b",
     {"n_pes": 4, "rows": 256, "cols": 256, "value_bits": 8, "codebook": False, "z_bits": 4,
      "queue_depth": 8, "act_lanes": 4}),
    (["--unit", "topk"], "topk_n256_k8_p4_s16",
     {"n_max": 256, "k_max": 8, "par": 4, "score_bits": 16, "signed": True}),
])
def test_options_left_out_take_the_defaults_in_the_help(tmp_path, args, stem, parameters):
    # The options' argparse defaults are None (to tell a given option from one left out);
    # the unit fills in the defaults that --help states.
    result = gen(*args, "--json", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["top"] == stem
    assert parameters.items() <= manifest["parameters"].items()
