"""``python -m gen --unit spmv`` and ``--unit topk``: files, manifests, one-line errors."""

import json
import subprocess
import sys

import pytest


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


@pytest.mark.parametrize("args, message", [
    (["--unit", "spmv", "--spmv-pes", "65"], "--spmv-pes must be between 1 and 64, not 65"),
    (["--unit", "spmv", "--value-bits", "3"], "--value-bits must be 2, 4 or 8, not 3"),
    (["--unit", "spmv", "--z-bits", "0"], "--z-bits must be between 1 and 8, not 0"),
    (["--unit", "topk", "--topk-n", "4", "--topk-k", "8"], "--topk-k must be between 1 and 4, not 8"),
    (["--unit", "topk", "--topk-par", "64"], "--topk-par must be between 1 and 32, not 64"),
])
def test_bad_unit_parameters_are_one_line(tmp_path, args, message):
    result = gen(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"python -m gen: error: {message}"
