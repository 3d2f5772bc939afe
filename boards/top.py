"""Board top levels: the systolic array behind the UART host link, on a real board.

``BOARDS`` lists the supported boards with their amaranth-boards platform, the
programmer that flashes them and the largest array configuration that fits and
meets timing at the board clock (see docs/results.md).
"""

from dataclasses import dataclass

from amaranth import Elaboratable, Module

from rtl.hostlink import HostLink

__all__ = ["Board", "BOARDS", "BoardTop"]


@dataclass(frozen=True)
class Board:
    platform: str        # "module:Class" in amaranth_boards
    programmer: str      # the command its platform programs with
    largest_array: str   # the largest --array that fits and meets timing, mixed precision
    edge_registers: int  # the array's edge_registers there (1 where the device is nearly full)

    def make_platform(self):
        import importlib
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)()


BOARDS = {
    "icebreaker": Board("icebreaker:ICEBreakerPlatform", "iceprog", "2x2", 1),
    "ulx3s-85f": Board("ulx3s:ULX3S_85F_Platform", "openFPGALoader", "8x8", 2),
}


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
        divisor = round(platform.default_clk_frequency / self.baud)
        uart = platform.request("uart", 0)
        m.submodules.link = link = HostLink(self.array, divisor)
        m.d.comb += [link.rx.eq(uart.rx.i), uart.tx.o.eq(link.tx)]
        return m
