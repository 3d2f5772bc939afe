"""``python -m gen --unit array``: files, manifest, determinism."""

import json
import re
import subprocess
import sys

import pytest


def gen(*args, cwd):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    first = gen("--array", "3x5", "--bits", "mixed", "--out", "a", cwd=out)
    second = gen("--array", "3x5", "--bits", "mixed", "--out", "b", cwd=out)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    return out, first.stdout


def test_writes_verilog_rtlil_and_manifest(generated):
    out, stdout = generated
    stem = "fusion_array_3x5_mixed"
    for suffix in ("v", "il", "json"):
        assert (out / "a" / f"{stem}.{suffix}").stat().st_size > 0
    assert "module fusion_array_3x5_mixed" in (out / "a" / f"{stem}.v").read_text()
    assert "Bit Fusion systolic array, array 3x5" in stdout and "mode 2x2: 240" in stdout


def test_summary_says_array_for_the_shape_and_mode_for_each_precision_mode(generated):
    # "8x8" alone could be the array's shape or a precision mode (8-bit weights x 8-bit
    # activations): the summary names each as one.
    _, stdout = generated
    summary = stdout.split("wrote ")[0]
    assert "array 3x5" in summary
    assert "mode 2x2: 240, mode 4x4: 60, mode 8x8: 15" in summary
    assert set(re.findall(r"(\S+) \d+x\d+\b", summary)) == {"array", "mode"}


def test_same_parameters_give_the_same_bytes_and_no_paths(generated):
    out, _ = generated
    for suffix in ("v", "il", "json"):
        a = (out / "a" / f"fusion_array_3x5_mixed.{suffix}").read_bytes()
        assert a == (out / "b" / f"fusion_array_3x5_mixed.{suffix}").read_bytes()
        assert str(out).encode() not in a


def test_manifest_describes_ports_modes_and_latency(generated):
    out, _ = generated
    manifest = json.loads((out / "a" / "fusion_array_3x5_mixed.json").read_text())
    assert manifest["parameters"]["rows"] == 3 and manifest["parameters"]["cols"] == 5
    ports = {port["name"]: port for port in manifest["ports"]}
    assert ports["act__payload"] == {"name": "act__payload", "direction": "input", "width": 3 * 32}
    assert ports["wgt__payload"]["width"] == 5 * 32
    assert ports["result__ready"]["direction"] == "input"
    assert ports["result__payload"]["width"] == manifest["parameters"]["drain_rows"] * 5 * 32
    peaks = {(m["w_bits"], m["a_bits"]): m["peak_macs_per_cycle"] for m in manifest["modes"]}
    assert peaks == {(w, a): 15 * 16 // ((w // 2) * (a // 2)) for w in (2, 4, 8) for a in (2, 4, 8)}
    assert manifest["latency"]["pe_cycles"] >= 1


def test_fixed_precision_array_is_smaller_in_words(tmp_path):
    result = gen("--array", "2x2", "--bits", "8", "--json", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["parameters"]["word_bits"] == 8
    assert [(m["w_bits"], m["a_bits"]) for m in manifest["modes"]] == [(8, 8)]


@pytest.mark.parametrize("args, option, rule, value", [
    (["--acc-bits", "8"], "--acc-bits", "between 17 and 64", "8"),
    (["--acc-bits", "16", "--bits", "8"], "--acc-bits", "between 17 and 64", "16"),
    (["--acc-bits", "65", "--bits", "2"], "--acc-bits", "between 16 and 64", "65"),
    (["--array", "4x0"], "--array columns", "between 1 and 32", "0"),
    (["--array", "33x4"], "--array rows", "between 1 and 32", "33"),
    (["--bits", "16"], "--bits", "8", "16"),
    (["--bits", "two"], "--bits", "8", "'two'"),
    (["--array", "6x2", "--drain-rows", "4"], "--drain-rows", "divide", "4"),
    (["--array", "6x2", "--drain-rows", "0"], "--drain-rows", "divide", "0"),
    (["--edge-registers", "3"], "--edge-registers", "1 or 2", "3"),
    (["--edge-registers", "0"], "--edge-registers", "1 or 2", "0"),
])
def test_bad_parameters_are_one_line_errors_naming_the_option(args, option, rule, value,
                                                               tmp_path):
    # The array's constructor checks the parameters; the message names the option instead.
    result = gen(*args, "--out", "o", cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"python -m gen: error: {option} must "), line
    assert rule in line and line.endswith(f", not {value}"), line
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_drain_rows_sets_the_result_beat(tmp_path):
    result = gen("--array", "8x2", "--drain-rows", "4", "--json", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["parameters"]["drain_rows"] == 4
    ports = {port["name"]: port["width"] for port in manifest["ports"]}
    assert ports["result__payload"] == 4 * 2 * 32


def test_one_edge_register_takes_a_cycle_off_the_latency(tmp_path):
    manifests = []
    for edge_registers in ("1", "2"):
        result = gen("--array", "3x5", "--edge-registers", edge_registers, "--json",
                     "--out", edge_registers, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        manifests.append(json.loads(result.stdout))
    one, two = manifests
    assert one["parameters"]["edge_registers"] == 1 and two["parameters"]["edge_registers"] == 2
    assert (one["latency"]["last_step_to_first_result_cycles"]
            == two["latency"]["last_step_to_first_result_cycles"] - 1)


def test_a_16_bit_accumulator_is_enough_for_2_bit_pes(tmp_path):
    result = gen("--array", "2x2", "--bits", "2", "--acc-bits", "16", "--json", "--out", "o",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    bounds = json.loads(result.stdout)["modes"][0]["k_steps_bound"]
    assert bounds["u2xu2"] == (2**15 - 1) // (16 * 3 * 3)


def test_options_left_out_take_the_defaults_in_the_help(tmp_path):
    # The options' argparse defaults are None (to tell a given option from one left out);
    # the generator fills in the defaults that --help states: 8x8 mixed, a 32-bit
    # accumulator, two edge registers, drain rows the smallest divisor of 8 at least 8/4.
    result = gen("--json", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["top"] == "fusion_array_8x8_mixed"
    assert {"rows": 8, "cols": 8, "precision": "mixed", "acc_width": 32, "edge_registers": 2,
            "drain_rows": 2}.items() <= manifest["parameters"].items()
