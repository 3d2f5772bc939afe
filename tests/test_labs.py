"""The teaching labs' checker has teeth: it passes each reference solution, fails each
untouched starter, and fails seeded mistakes typical of students (small patches applied to a
copy of the solution); bad student files and bad input are one-line reports."""

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

import labs.grading.bitbrick
from labs.__main__ import main
from labs.check import grade, lab

#: Parts of each lab that run in seconds (lab 1's 8-bit modes take ~20 s, lab 2's and lab 4's
#: Verilator runs ~5-15 s once built, a minute or more to build).
FAST_PARTS = {1: ["brick", "slices", "fused 2/4-bit"],
              2: ["skew", "row timing", "cycle model", "utilization"],
              3: None,
              4: ["encode", "PE work", "load balance"],
              5: None,
              6: None}


def seeded(tmp_path, number, patches):
    """A copy of lab ``number``'s solution with ``patches`` (old, new) applied to its file."""
    entry = lab(number)
    directory = tmp_path / entry.directory.name
    shutil.copytree(entry.solution_directory, directory)
    path = directory / entry.files[0]
    text = path.read_text()
    for old, new in patches:
        assert text.count(old) == 1, f"patch does not apply: {old!r}"
        text = text.replace(old, new)
    path.write_text(text)
    return directory


def line_of(path, text):
    """The number of the line of ``path`` that holds ``text``."""
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def failed(report):
    return {part.name: part.feedback for part in report.parts if part.score < part.points}


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5, 6])
def test_reference_solution_passes_the_fast_parts(number):
    report = grade(number, solution=True, parts=FAST_PARTS[number])
    assert report.passed, failed(report)


@pytest.mark.slow
@pytest.mark.parametrize("number", [1, 2, 4])
def test_reference_solution_passes_every_part(number, capsys):
    assert main(["check", str(number), "--solution"]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5, 6])
def test_untouched_starter_fails_every_part_it_has_an_answer_for(number):
    report = grade(number, parts=FAST_PARTS[number])
    assert not report.passed
    assert set(failed(report)) == {part.name for part in report.parts}, failed(report)


# Lab 1: each mistake, and the part (and its first divergence) that must catch it.
LAB1_MISTAKES = {
    "signed top slice read as unsigned": (
        [("value = Mux(top & is_signed, raw.as_signed(), raw)", "value = raw")],
        "slices", "operand_slice(word=0b00000010, p=0, width=2 bits, signed): expected -2, got 2"),
    "shift by one bit a slice instead of two": (
        [("terms.append(brick.product << (2 * (p + q)))",
          "terms.append(brick.product << (p + q))")],
        "fused 2/4-bit", "mode 2x4 (w unsigned, a unsigned), w=1 a=4"),
    "sign bit of the brick's slice weighed +4": (
        [("- (Mux(a[2], self.w, 0) << 2)", "+ (Mux(a[2], self.w, 0) << 2)")],
        "brick", "BitBrick w=-2 a=-2: expected 4, got -12"),
    "slice above the operand not masked": (
        [("return Mux(used, value, 0)", "return value")],
        "slices",
        "operand_slice(word=0b00000100, p=1, width=2 bits, unsigned): expected 0, got 1"),
}


@pytest.mark.parametrize("mistake", LAB1_MISTAKES)
def test_lab1_checker_catches_a_typical_mistake(tmp_path, mistake):
    patches, part, feedback = LAB1_MISTAKES[mistake]
    report = grade(1, directory=seeded(tmp_path, 1, patches), parts=FAST_PARTS[1])
    assert part in failed(report)
    assert failed(report)[part].startswith(feedback), failed(report)[part]


LAB2_MISTAKES = {
    "skew off by one cycle": (
        [("return edge_registers + r + c\n", "return edge_registers + r + c - 1\n")],
        "skew", "arrival(r=0, c=0, edge_registers=2): expected 2, got 1"),
    "row finished at the last-but-one PE": (
        [("arrival(r, cols - 1, edge_registers)", "arrival(r, cols - 2, edge_registers)")],
        "row timing", "row_written(last_step=0, r=0, cols=1, pe_latency=5, edge_registers=2): "
                      "expected 7, got 6"),
    "FIFO credit forgotten": (
        [("        if n >= fifo_depth:\n", "        if False:\n")],
        "cycle model", "GEMM 9x6x37 (M x N x K) on array 2x3, 4 lanes: 10 steps per tile, "
                       "10 tiles; 1 row per beat, FIFOs of 2 tiles, 1 edge register: "
                       "expected 115 cycles, got 111"),
    "FIFO output register forgotten": (
        [("last_beat = max(written + 2, last_beat + 1)",
          "last_beat = max(written + 1, last_beat + 1)")],
        "cycle model", "GEMM 1x1x1 (M x N x K) on array 2x2, 1 lane: 1 step per tile, 1 tile; "
                       "1 row per beat, FIFOs of 7 tiles, 2 edge registers: expected 12 "
                       "cycles, got 11"),
    "utilization without the lanes": (
        [("(cycles * tiling.rows * tiling.cols * tiling.lanes)",
          "(cycles * tiling.rows * tiling.cols)")],
        "utilization", "utilization of the GEMM 1x1x1 (M x N x K) on array 2x2, 4 lanes: "
                       "1 step per tile, 1 tile in 12 cycles: expected 0.0052"),
}


@pytest.mark.parametrize("mistake", LAB2_MISTAKES)
def test_lab2_checker_catches_a_typical_mistake(tmp_path, mistake):
    patches, part, feedback = LAB2_MISTAKES[mistake]
    report = grade(2, directory=seeded(tmp_path, 2, patches), parts=FAST_PARTS[2])
    assert part in failed(report)
    assert failed(report)[part].startswith(feedback), failed(report)[part]


@pytest.mark.slow
def test_lab2_verilator_part_catches_a_cycle_model_off_by_one(tmp_path):
    directory = seeded(tmp_path, 2, LAB2_MISTAKES["FIFO output register forgotten"][0])
    report = grade(2, directory=directory, parts=["RTL on Verilator"])
    assert failed(report)["RTL on Verilator"].startswith("on Verilator, mode 2x2, GEMM 9x6x37")


LAB3_MISTAKES = {
    "scale over 2^(b-1) instead of 2^(b-1) - 1": (
        [("top = (1 << (bits - 1)) - 1", "top = 1 << (bits - 1)")],
        "quantize", "8 bits, row 0 (largest magnitude 0.6975): expected scale 0.0054922, "
                    "got 0.005449"),
    "floor instead of round": (
        [("np.rint(w / scale[:, None])", "np.floor(w / scale[:, None])")],
        "quantize", "8 bits, row 0, column 0: w = 0.0377"),
    "one scale per tensor": (
        [("peak = np.abs(w).max(axis=1)", "peak = np.abs(w).max() * np.ones(len(w))")],
        "quantize", "8 bits, row 0 (largest magnitude 0.6975): expected scale 0.0054922, "
                    "got 0.019685"),
    "dropped count truncated": (
        [("drop = int(round(sparsity * w.size))", "drop = int(sparsity * w.size)")],
        "prune", "sparsity 0.3 of 63 weights: expected 44 kept"),
    "largest weights pruned": (
        [("np.argsort(np.abs(w).ravel()", "np.argsort(-np.abs(w).ravel()")],
        "prune", "sparsity 0.3: weight (0, 0)"),
    "accuracy on the training images": (
        [("    _, x_test, _, y_test = digits_split()\n    return {(bits",
          "    x_test, _, y_test, _ = digits_split()\n    return {(bits")],
        "accuracy table", "accuracy_table[(2, 0.0)]: expected 0.3056 on the test images"),
}


@pytest.mark.parametrize("mistake", LAB3_MISTAKES)
def test_lab3_checker_catches_a_typical_mistake(tmp_path, mistake):
    patches, part, feedback = LAB3_MISTAKES[mistake]
    report = grade(3, directory=seeded(tmp_path, 3, patches))
    assert part in failed(report)
    assert failed(report)[part].startswith(feedback), failed(report)[part]


LAB4_MISTAKES = {
    "relative index off by one": (
        [("zs.append(row - previous - 1)", "zs.append(row - previous)")],
        "encode", "random 13x9 on 3 PEs, z_bits=4, PE 0, column 0 (non-zero local rows "
                  "[0, 3, 4]), entry 0: expected (value, z) = (57, 0), got (57, 1)"),
    "padding one row too early": (
        [("while row - previous - 1 > z_max:", "while row - previous - 1 >= z_max:")],
        "encode", "random 20x11 on 2 PEs, z_bits=2, PE 0, column 10 (non-zero local rows "
                  "[3]), entry 0: expected (value, z) = (82, 3), got (0, 3)"),
    "rows dealt to the PEs in blocks": (
        [("local = np.asarray(w)[pe::n_pes]",
          "local = np.array_split(np.asarray(w), n_pes)[pe]")],
        "encode", "random 13x9 on 3 PEs, z_bits=4, PE 0, column 0 (non-zero local rows "
                  "[0, 3, 4]), entry 1: expected (value, z) = (49, 2), got (22, 3)"),
    "padding entry counted as a weight": (
        [("weights += int(np.count_nonzero(column))", "weights += len(column)")],
        "PE work", "24x20 matrix on 3 PEs, z_bits=2, 12 non-zero activations: PE 0 "
                   "multiplies 27 weights, got 30"),
    "columns of zero activations counted": (
        [("active = np.flatnonzero(np.asarray(x) != 0)", "active = np.arange(len(x))")],
        "PE work", "24x20 matrix on 3 PEs, z_bits=2, 12 non-zero activations: PE 0 "
                   "multiplies 27 weights, got 48"),
    "golden.csc.encode called": (
        [("from golden.csc import PEColumns",
          "from golden import csc\nfrom golden.csc import PEColumns"),
         ("    z_max = (1 << z_bits) - 1\n    images = []\n",
          "    return csc.encode(w, n_pes, z_bits)\n")],
        "encode", "encode calls encode: write it yourself"),
    "total cycles taken for the compute cycles": (
        [("cycles, _ = spmv_cycles(", "_, cycles = spmv_cycles(")],
        "load balance", "40x24 matrix, 16 non-zero activations, 1 PE (work per PE [185]): "
                        "expected cycles 203, got 243"),
}


@pytest.mark.parametrize("mistake", LAB4_MISTAKES)
def test_lab4_checker_catches_a_typical_mistake(tmp_path, mistake):
    patches, part, feedback = LAB4_MISTAKES[mistake]
    report = grade(4, directory=seeded(tmp_path, 4, patches), parts=FAST_PARTS[4])
    assert part in failed(report)
    assert failed(report)[part].startswith(feedback), failed(report)[part]


@pytest.mark.slow
def test_lab4_verilator_part_catches_total_cycles_for_compute_cycles(tmp_path):
    directory = seeded(tmp_path, 4, LAB4_MISTAKES["total cycles taken for the compute cycles"][0])
    report = grade(4, directory=directory, parts=["RTL on Verilator"])
    assert failed(report)["RTL on Verilator"] == (
        "on Verilator, the digits layer 0 (64x64, 80% pruned) on SpMV(n_pes=3, z_bits=3, "
        "lanes=4, queue_depth=6): the unit took 161 cycles from its first activation beat to "
        "its first result, your sweep gives 183")


LAB5_MISTAKES = {
    "ties broken toward the higher index": (
        [("ties = np.flatnonzero(scores == threshold)[:k",
          "ties = np.flatnonzero(scores == threshold)[::-1][:k")],
        "threshold filter", "ties at the threshold (k=4, scores [3, 7, 5, 7, 5, 1, 5, 7, 5, "
                            "0]): expected indices [1, 2, 3, 7], got [1, 3, 7, 8]"),
    "threshold of the (k+1)-th largest": (
        [("threshold = int(np.sort(scores)[::-1][k - 1])",
          "threshold = int(np.sort(scores)[::-1][k])")],
        "engine (RTL)", "the engine rtl.topk.TopK in the Amaranth simulator (k=6, scores "
                        "[5, -3, 9, 5, 0, 9, -7, 5, 2, 5, 11, -3, 5, 0, 9, 1, 5, 2, -1, 9, 3, "
                        "5, 8]): expected threshold 8 (the 6-th largest), got 5"),
    "indices in order of score": (
        [("return np.flatnonzero(selected), threshold",
          'return np.argsort(-scores, kind="stable")[:k], threshold')],
        "threshold filter", "random (k=7, 40 scores): expected indices [1, 3, 8, 19, 27, 29, "
                            "31], got [19, 8, 27, 29, 31, 3, 1]"),
    "importance not cumulative": (
        [("importance[alive] += block.sum(axis=(0, 1))",
          "importance[alive] = block.sum(axis=(0, 1))")],
        "cascade", "24 tokens, 3 heads, keep [16, 12, 8, 4]: after layer 1 expected tokens "
                   "[0, 4, 8, 11, 12, 13, 15, 16, 18, 19, 20, 22], got"),
    "pruned queries still counted": (
        [("block = probs[layer][:, alive][:, :, alive]", "block = probs[layer][:, :, alive]")],
        "cascade", "12 tokens, 2 heads, keep [9, 6, 3]: after layer 2 expected tokens "
                   "[0, 1, 2], got [0, 2, 3]"),
    "golden.topk.topk called": (
        [("from golden.topk import attention_probabilities",
          "from golden.topk import attention_probabilities, topk"),
         ("    scores = np.asarray(scores)\n    k = min(k, len(scores))\n",
          "    return topk(scores, k)\n")],
        "threshold filter", "threshold_filter calls topk: write it yourself"),
    "schedule one layer late": (
        [("ratio ** ((layer + 1) / layers)", "ratio ** (layer / layers)")],
        "schedule", "schedule(tokens=64, layers=6, ratio=0.5): expected [58, 51, 46, 41, 36, "
                    "32], got [64, 58, 51, 46, 41, 36]"),
    "trained model pruned by the last layer's probability, not the cumulative one": (
        [("importance[rows, alive] += env[op.output].sum(axis=1)",
          "importance[rows, alive] = env[op.output].sum(axis=1)")],
        "trained model", "keep ratio 0.75 (tokens kept after each layer [7, 6]): after layer 1, "
                         "test image 0: expected tokens [1, 3, 4, 5, 6, 7], got [1, 2, 3, 4, 5, "
                         "7] (cumulative importance of its tokens [1, 2, 3, 4, 5, 6, 7]: [847, "
                         "323, 349, 846, 403, 633, 366])"),
    "trained model's importance summed over the keys (what a query gives)": (
        [("importance[rows, alive] += env[op.output].sum(axis=1)",
          "importance[rows, alive] += env[op.output].sum(axis=2)")],
        "trained model", "keep ratio 0.75 (tokens kept after each layer [7, 6]): after layer 0, "
                         "test image 0: expected tokens [1, 2, 3, 4, 5, 6, 7], got [0, 1, 2, 3, "
                         "5, 6, 7]"),
    "trained model's last pruned tokens still pooled": (
        [("            env[op.output] = env[op.output][rows, chosen]\n",
          "            if layer < layers - 1:\n"
          "                env[op.output] = env[op.output][rows, chosen]\n")],
        "trained model", "keep ratio 0.75 (tokens kept after each layer [7, 6]): test image 0 "
                         "(its survivors right): expected logits [-3.186, -13.542, -10.621, "
                         "-2.390, -3.983, -10.090, -13.011, 14.073, -8.232, 3.452], got "
                         "[-5.045, -18.322, -10.887, -1.328,"),
    "trained model's survivors as positions among the alive tokens": (
        [("            alive = alive[rows, chosen]\n", "            alive = chosen\n")],
        "trained model", "keep ratio 0.75 (tokens kept after each layer [7, 6]): after layer 1, "
                         "test image 0: expected tokens [1, 3, 4, 5, 6, 7], got [0, 2, 3, 4, 5, "
                         "6]"),
    "golden.onnx.attention.run_pruned called": (
        [("from golden.onnx.attention import TOKENS, digits_attention, graph_tensor",
          "from golden.onnx.attention import TOKENS, digits_attention, graph_tensor, run_pruned"),
         ("    layers = len(keep)\n", "    return run_pruned(graph, images, keep)[:2]\n")],
        "trained model", "prune_tokens calls run_pruned: write it yourself"),
    "accuracy with the final count kept after every layer, not the schedule": (
        [("prune_tokens(graph, images, schedule(TOKENS, layers, ratio))",
          "prune_tokens(graph, images, [math.ceil(TOKENS * ratio)] * layers)")],
        "accuracy curve", "accuracy_curve at keep ratio 0.75 (tokens kept after each layer [7, "
                          "6]), 360 test images: expected 0.9194, got 0.8750"),
}


@pytest.mark.parametrize("mistake", LAB5_MISTAKES)
def test_lab5_checker_catches_a_typical_mistake(tmp_path, mistake):
    patches, part, feedback = LAB5_MISTAKES[mistake]
    report = grade(5, directory=seeded(tmp_path, 5, patches), parts=[part])
    assert part in failed(report)
    assert failed(report)[part].startswith(feedback), failed(report)[part]


LAB6_MISTAKES = {
    "LUTs read from the logic cells": (
        [('figures["cells"], figures["cells_available"] = logic["used"], logic["available"]\n',
          'figures["cells"], figures["cells_available"] = logic["used"], logic["available"]\n'
          '    figures["lut"] = logic["used"]\n')],
        "read report", "fusion_array_1x1_2.synth-ice40-up5k: expected lut 678 (report.json "
                       "resources.lut.used), got 1034"),
    "Fmax read from the constraint": (
        [('min(clock["achieved"]', 'min(clock["constraint"]')],
        "read report", "fusion_array_1x1_2.synth-ice40-up5k: expected fmax_mhz 44.1"),
    "flip-flops of one cell type only": (
        [("if cell.startswith(tuple(names)))", "if cell in names)")],
        "read report", "fusion_array_1x1_2.synth-ice40-up5k: expected ff 558"),
    "fit judged by LUT4 instead of logic cells": (
        [('if design["cells"] <= design["cells_available"]',
          'if design["lut"] <= design["cells_available"]')],
        "largest array", "its LUT4 fit but not its logic cells: of 1x2 (1436 of 5280 cells, "
                         "37.4 MHz), 2x2 (2588 of 5280 cells, 39.5 MHz), 2x3 (5400 of 5280 "
                         "cells, 30.0 MHz) at 12 MHz, expected 2x2, got 2x3"),
    "a mixed array's peak at mode 8x8": (
        [('width = 2 if bits == "mixed" else bits', 'width = 8 if bits == "mixed" else bits')],
        "throughput", "peak_gops(rows=8, cols=8, bits='mixed', fmax_mhz=103.6): expected "
                      "212.1728 GOPS (16 multiplies per PE per cycle), got 13.2608"),
}


@pytest.mark.parametrize("mistake", LAB6_MISTAKES)
def test_lab6_checker_catches_a_typical_mistake(tmp_path, mistake):
    patches, part, feedback = LAB6_MISTAKES[mistake]
    report = grade(6, directory=seeded(tmp_path, 6, patches))
    assert part in failed(report)
    assert failed(report)[part].startswith(feedback), failed(report)[part]


@pytest.mark.slow
def test_lab6_solution_reads_a_live_synthesis_as_gen_synth_reports_it(tmp_path):
    """Array 1x1 8-bit on the iCE40 UP5K (about 10 s): the reference solution's figures of
    the fresh reports equal gen.synth's report and nextpnr's."""
    from gen.cli import main as gen_main
    from labs.check import Files
    from labs.grading.board import expected_figures
    assert gen_main(["--array", "1x1", "--bits", "8", "--synth", "ice40-up5k",
                     "--out", str(tmp_path)]) == 0
    directory = tmp_path / "fusion_array_1x1_8.synth-ice40-up5k"
    read_report = Files(lab(6), lab(6).solution_directory).get("read_report")
    got = read_report(directory, "ice40-up5k")
    want = expected_figures(directory, "ice40-up5k")
    assert {key: got[key] for key in want} == pytest.approx(
        {key: value for key, (value, _) in want.items()}, abs=0.05)
    assert got["lut"] < got["cells"] <= got["cells_available"] == 5280


def test_a_file_that_does_not_import_is_one_line_and_the_check_goes_on(tmp_path, capsys):
    directory = seeded(tmp_path, 3, [("def prune(w, sparsity):", "def prune(w, sparsity)")])
    line = line_of(directory / "quantize_prune.py", "def prune(w, sparsity)")
    report = grade(3, directory=directory, parts=["quantize", "prune"])
    assert [p.feedback for p in report.parts] == [
        f"quantize_prune.py does not import: SyntaxError at quantize_prune.py:{line}: "
        f"expected ':'"] * 2


def test_a_students_exception_names_the_students_line(tmp_path):
    directory = seeded(tmp_path, 3, [("    drop = int(round(sparsity * w.size))\n",
                                      "    drop = int(round(sparsity * w.size))\n"
                                      "    drop = [][drop]\n")])
    line = line_of(directory / "quantize_prune.py", "drop = [][drop]")
    report = grade(3, directory=directory, parts=["quantize", "prune"])
    assert report.parts[0].score == report.parts[0].points
    assert report.parts[1].feedback == (
        f"IndexError at quantize_prune.py:{line}: list index out of range")


def test_wrong_class_name_and_port_width_are_one_line(tmp_path):
    directory = seeded(tmp_path, 1, [("class BitBrick(", "class Brick("),
                                     ("BitBrick()", "Brick()"),
                                     ("product: Out(signed(17))", "product: Out(signed(16))")])
    report = grade(1, directory=directory, parts=["brick", "fused 2/4-bit"])
    assert [p.feedback for p in report.parts] == [
        "bitbrick.py defines no BitBrick",
        "FusedMultiplier.product must be Out(signed(17)), not Out(signed(16))"]


def test_a_hung_part_is_stopped_and_the_others_graded(tmp_path, monkeypatch):
    directory = seeded(tmp_path, 1, [("    raw = word[2 * p:2 * p + 2]\n",
                                      "    while True:\n        pass\n")])
    parts = [dataclasses.replace(part, timeout=1) for part in labs.grading.bitbrick.PARTS]
    monkeypatch.setattr(labs.grading.bitbrick, "PARTS", parts)
    report = grade(1, directory=directory, parts=["brick", "slices"])
    assert [p.score for p in report.parts] == [2, 0]
    assert report.parts[1].feedback.startswith("stopped after 1 s")


def test_cli_lists_the_labs_and_rejects_an_unknown_lab_in_one_line():
    listed = subprocess.run([sys.executable, "-m", "labs", "list"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["1", "2", "3", "4", "5", "6"]
    bad = subprocess.run([sys.executable, "-m", "labs", "check", "9"], capture_output=True,
                         text=True)
    assert bad.returncode == 2
    assert bad.stderr == "error: no lab '9': the labs are 1, 2, 3, 4, 5, 6\n"


def test_cli_exit_status_and_json_score_file(tmp_path, capsys):
    assert main(["check", "3", "--solution", "--json", str(tmp_path / "solution.json")]) == 0
    assert main(["check", "3", "--json", str(tmp_path / "starter.json")]) == 1
    solution = json.loads((tmp_path / "solution.json").read_text())
    starter = json.loads((tmp_path / "starter.json").read_text())
    assert (solution["passed"], solution["score"], solution["points"]) == (True, 10, 10)
    assert starter["passed"] is False and starter["score"] < 10
    out = capsys.readouterr().out
    assert "total 10/10: all parts pass" in out and "Traceback" not in out


def test_cli_grades_a_submission_directory(tmp_path, capsys):
    submission = seeded(tmp_path, 3, LAB3_MISTAKES["largest weights pruned"][0])
    assert main(["check", "3", "--dir", str(submission)]) == 1
    assert "  prune                  0/2  FAIL" in capsys.readouterr().out
    assert main(["check", "3", "--dir", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err == f"error: --dir {str(tmp_path / 'absent')!r} is not a " \
                                      f"directory\n"
