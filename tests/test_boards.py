# amaranth: UnusedElaboratable=no
"""The boards: what docs/boards.md claims of each, and (slow) each top built at its claimed
size, fitting its device and meeting its board clock."""

import json
import re
from pathlib import Path

import pytest

from boards.top import BOARDS, uart_divisor
from gen.board import REPORT, build_board
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


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_the_default_baud_rate_is_within_uart_tolerance_on_every_board(name):
    clock = BOARDS[name].make_platform().default_clk_frequency
    divisor = uart_divisor(clock, 115200)
    assert abs(clock / divisor - 115200) <= 0.02 * 115200


@pytest.mark.parametrize("baud", [0, 3_500_000, 9_000_000])
def test_a_baud_rate_the_board_clock_cannot_make_is_refused(baud):
    # 12 MHz / 3.5 Mbaud = 3.43: a divisor of 3 is below the UART's minimum of 4 (and 3 would
    # be 14% off); 9 Mbaud is faster than a bit per cycle.
    with pytest.raises(ValueError, match=rf"baud must be within 2% .* not {baud}"):
        uart_divisor(12e6, baud)


def test_a_baud_rate_between_divisors_is_refused():
    # 12 MHz / 4.5 = 2.667 Mbaud: divisor 4 gives 3 Mbaud (+12.5%), 5 gives 2.4 (-10%).
    with pytest.raises(ValueError, match="not 2666667"):
        uart_divisor(12e6, 2_666_667)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_the_largest_claimed_array_fits_its_board_and_meets_the_board_clock(name, tmp_path):
    spec = BOARDS[name]
    rows, cols = map(int, re.fullmatch(r"(\d+)x(\d+)", spec.largest_array).groups())
    array = SystolicArray(rows, cols, "mixed", edge_registers=spec.edge_registers)
    # Place and route fail when the design does not fit the device (build_board raises).
    report = build_board(array, name, str(tmp_path))
    assert Path(report["bitstream"]).stat().st_size > 0
    utilization = json.loads((tmp_path / "board" / name / REPORT).read_text())["utilization"]
    for resource, use in utilization.items():
        assert use["used"] <= use["available"], resource
    clock_mhz = spec.make_platform().default_clk_frequency / 1e6
    assert report["fmax"], "nextpnr reported no clock"
    for clock, (mhz, need) in report["fmax"].items():
        assert need == pytest.approx(clock_mhz, rel=1e-3), clock
        assert mhz >= need, f"{clock}: {mhz} MHz, the board clock is {need} MHz"
