# amaranth: UnusedElaboratable=no
"""The generator writes each module a design repeats once (gen.emit.ModuleLibrary): the
hierarchy it writes, its determinism, and its Verilog against the flat conversion's."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from gen.emit import ModuleLibrary, ports_of, to_rtlil, to_verilog
from rtl.baseline import PlainArray
from rtl.fusion import SliceSteer, mode_const, modes
from rtl.systolic import ArrayConfig, EdgeSkew, SystolicArray
from sim.bench import main as bench
from sim.runner import run
from sim.tb.systolic import PARAMS

ICARUS = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                            reason="Icarus Verilog (iverilog) is not installed")


def modules_and_cells(rtlil_text):
    """``{module: [cell type, ...]}`` of an RTLIL text; no module is defined twice."""
    found = re.findall(r"^module \\(\S+)\n(.*?)^end$", rtlil_text, re.M | re.S)
    modules = {name: re.findall(r"^  cell \\?(\S+) ", body, re.M) for name, body in found}
    assert len(modules) == len(found)
    return modules


def test_each_repeated_module_is_written_once_and_instantiated():
    modules = modules_and_cells(to_rtlil(SystolicArray(4, 3, "mixed"), "top"))
    assert modules["top.row"].count("top.pe") == 3
    assert modules["top"].count("top.row") == 4
    assert modules["top"].count("top.drain_column") == 3
    # The edge skew of each index serves its row and its column.
    for index in (1, 2):
        assert modules["top"].count(f"top.skew{index}") == 2
    assert modules["top"].count("top.skew3") == 1
    assert modules["top"].count("top.steer_a") == 4 and modules["top"].count("top.steer_w") == 3
    # Nothing else repeats: the other modules are the drain column's row FIFOs.
    shared = {"top", "top.pe", "top.row", "top.skew1", "top.skew2", "top.skew3", "top.steer_a",
              "top.steer_w", "top.drain_column"}
    assert {name for name in modules if "row_fifo" not in name} == shared


def test_modules_written_grow_with_the_skews_only():
    def repeated(modules):
        return {name for name in modules
                if re.fullmatch(r"top\.skew\d+", name) or "row_fifo" in name}
    small = modules_and_cells(to_rtlil(SystolicArray(2, 2, "mixed"), "top"))
    large = modules_and_cells(to_rtlil(SystolicArray(8, 8, "mixed"), "top"))
    assert len(repeated(large)) == 7 + 8           # skews 1..7, the row FIFOs of a column
    assert set(large) - repeated(large) == set(small) - repeated(small)


def test_flat_conversion_has_a_module_per_submodule():
    modules = modules_and_cells(to_rtlil(SystolicArray(2, 2, "mixed"), "top", shared=False))
    assert {"top.row0.pe0", "top.row0.pe1", "top.row1.pe0", "top.row1.pe1"} <= set(modules)
    assert not any(re.fullmatch(r"top\.pe", name) for name in modules)


def test_a_module_name_given_to_another_kind_of_component_is_refused():
    library = ModuleLibrary("top")
    library.share(EdgeSkew(32, 1), "skew")
    with pytest.raises(ValueError, match="module 'skew' stands for EdgeSkew and SliceSteer"):
        library.share(SliceSteer("mixed", "a"), "skew")


def test_a_submodule_named_as_a_shared_module_is_refused():
    class Wrapper(wiring.Component):
        error: Out(1)

        def elaborate(self, platform):
            m = Module()
            m.submodules.array = array = SystolicArray(1, 1, "mixed")
            m.submodules.pe = skew = EdgeSkew(8, 1)     # converted as the module top.pe
            m.d.comb += [skew.word.eq(array.error), self.error.eq(skew.skewed_word[0])]
            return m
    with pytest.raises(ValueError, match="module 'top.pe' is both a shared module and a "
                                         "submodule's"):
        to_rtlil(Wrapper(), "top")


def test_generated_files_are_the_same_bytes_whatever_the_hash_seed(tmp_path):
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-m", "gen", "--array", "3x2", "--bits", "4",
                                 "--out", str(tmp_path / seed)], capture_output=True, text=True,
                                env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
        assert result.returncode == 0, result.stderr
    for suffix in ("v", "il", "json"):
        first = (tmp_path / "1" / f"fusion_array_3x2_4.{suffix}").read_bytes()
        assert first == (tmp_path / "2" / f"fusion_array_3x2_4.{suffix}").read_bytes()


def _stimulus(array, inputs, cycles, rng):
    """Per cycle, every input port's value: resets at the start and halfway, configurations
    of short GEMMs in random modes (some with ``k_steps`` 0, to be rejected), random operand
    words and handshakes."""
    pick = {
        "rst": lambda i: int(i < 2 or i == cycles // 2),
        "config__valid": lambda i: int(rng.random() < 0.3),
        "config__payload": lambda i: ArrayConfig.const({
            "mode": mode_const(*modes(array.precision)[rng.integers(len(modes(array.precision)))],
                               rng.random() < 0.5, rng.random() < 0.5),
            "k_steps": 0 if rng.random() < 0.05 else int(rng.integers(1, 6)),
            "tiles": int(rng.integers(1, 4))}).as_value().value,
        "act__valid": lambda i: int(rng.random() < 0.8),
        "wgt__valid": lambda i: int(rng.random() < 0.8),
        "result__ready": lambda i: int(rng.random() < 0.7),
    }
    words = []
    for i in range(cycles):
        word = 0
        for port in inputs:
            value = pick[port["name"]](i) if port["name"] in pick else \
                int.from_bytes(rng.bytes((port["width"] + 7) // 8), "little")
            word = (word << port["width"]) | (value & ((1 << port["width"]) - 1))
        words.append(word)
    return words


def _testbench(inputs, outputs, cycles):
    """A Verilog testbench that applies ``stimulus.hex`` to modules ``flat`` and ``shared``
    and stops at the first cycle their outputs differ; it prints ``PASS <result beats>``."""
    in_width = sum(port["width"] for port in inputs)
    out_width = sum(port["width"] for port in outputs)

    def fields(ports, total):
        high = total
        for port in ports:
            yield port["name"], high - 1, high - port["width"]
            high -= port["width"]
    in_fields = dict((name, (hi, lo)) for name, hi, lo in fields(inputs, in_width))
    out_fields = dict((name, (hi, lo)) for name, hi, lo in fields(outputs, out_width))

    def connections(bus):
        return ", ".join([".clk(clk)", *(f".{name}(now[{hi}:{lo}])"
                                         for name, (hi, lo) in in_fields.items()),
                          *(f".{name}({bus}[{hi}:{lo}])" for name, (hi, lo) in out_fields.items())])
    valid, ready = out_fields["result__valid"][0], in_fields["result__ready"][0]
    return f"""
module tb;
  reg clk = 0;
  reg [{in_width - 1}:0] stimulus [0:{cycles - 1}];
  reg [{in_width - 1}:0] now;
  wire [{out_width - 1}:0] flat_out, shared_out;
  integer i, beats = 0;
  flat flat_dut({connections("flat_out")});
  shared shared_dut({connections("shared_out")});
  initial begin
    $readmemh("stimulus.hex", stimulus);
    for (i = 0; i < {cycles}; i = i + 1) begin
      now = stimulus[i];
      #1;
      if (flat_out !== shared_out) begin
        $display("MISMATCH at cycle %0d: %h vs %h", i, flat_out, shared_out);
        $finish;
      end
      beats = beats + (flat_out[{valid}] & now[{ready}]);
      clk = 1; #1; clk = 0;
    end
    $display("PASS %0d", beats);
    $finish;
  end
endmodule
"""


@ICARUS
@pytest.mark.parametrize("build", [
    lambda: SystolicArray(3, 4, "mixed", acc_width=24),
    lambda: SystolicArray(1, 3, 8, edge_registers=1),
    lambda: SystolicArray(4, 2, 2, drain_rows=4, fifo_depth=1),
    lambda: PlainArray(2, 2),
], ids=["3x4-mixed", "1x3-8bit-edge1", "4x2-2bit-drain4-depth1", "2x2-plain"])
def test_shared_verilog_behaves_cycle_for_cycle_as_the_flat_one(build, tmp_path):
    cycles = 2000
    array = build()
    ports = ports_of(array)
    inputs = [port for port in ports if port["direction"] == "input" and port["name"] != "clk"]
    outputs = [port for port in ports if port["direction"] == "output"]
    (tmp_path / "flat.v").write_text(to_verilog(to_rtlil(build(), "flat", shared=False)))
    (tmp_path / "shared.v").write_text(to_verilog(to_rtlil(build(), "shared")))
    (tmp_path / "tb.v").write_text(_testbench(inputs, outputs, cycles))
    words = _stimulus(array, inputs, cycles, np.random.default_rng(3))
    (tmp_path / "stimulus.hex").write_text("".join(f"{word:x}\n" for word in words))
    subprocess.run(["iverilog", "-g2005", "-o", "tb.vvp", "tb.v", "flat.v", "shared.v"],
                   cwd=tmp_path, check=True)
    result = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, capture_output=True,
                            text=True, check=True)
    match = re.search(r"PASS (\d+)", result.stdout)
    assert match, result.stdout
    assert int(match[1]) > 100          # results did come out, under back-pressure


def test_generated_verilog_passes_the_arrays_cocotb_tests():
    array = SystolicArray(3, 4, "mixed", acc_width=24)
    verilog = to_verilog(to_rtlil(array, "array_3x4_mixed_shared"))
    run(verilog, "sim.tb.systolic", name="array_3x4_mixed_shared",
        testcase=["random_gemms_in_every_mode_under_stalls", "cycle_count_matches_golden_model",
                  "reset_mid_gemm_then_a_clean_gemm",
                  "result_back_pressure_stalls_the_array_without_loss"],
        # The test module's defaults, worked out from the component (the runner only gets
        # its Verilog); the network's layers are not used by these tests.
        params={name: default(array) if callable(default) else default
                for name, default in PARAMS.items() if name != "layers"} | {"layers": []})


def test_benchmark_times_both_ways_for_each_size(capsys):
    assert bench(["gen", "--array", "1x1", "--array", "2x3", "--flat", "--json", "--quiet"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [row["array"] for row in document["runs"]] == ["1x1", "2x3"]
    assert [row["pes"] for row in document["runs"]] == [1, 6]
    for row in document["runs"]:
        assert row["shared_s"] > 0 and row["flat_s"] > 0


@pytest.mark.parametrize("args, message", [
    (["--array", "0x4"], "--array rows must be between 1 and 32, not 0"),
    (["--array", "4by4"], "--array must be ROWSxCOLS such as 8x8, not '4by4'"),
    (["--array", "2x2", "--repeat", "0"], "--repeat must be 1 or more, not 0"),
])
def test_benchmark_refuses_a_bad_shape_in_one_line(args, message, capsys):
    assert bench(["gen", *args]) == 2
    err = capsys.readouterr().err
    assert err == f"python -m sim.bench: error: {message}\n"
