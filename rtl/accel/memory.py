"""A single-port memory: one address for reading and writing, in the iCE40UP5K's SPRAM when
it fits there (the accelerator's ``WEIGHT``, docs/accel.md)."""

from amaranth import Cat, ClockSignal, Instance, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["SPRAM_BITS", "SPRAM_DEPTH", "SPRAM_BLOCKS", "SinglePortMemory", "in_spram"]

#: An iCE40UP5K SPRAM block (``SB_SPRAM256KA``): 16,384 words of 16 bits, written by nibbles.
SPRAM_BITS = 16
SPRAM_DEPTH = 16384
#: The blocks of the UP5K.
SPRAM_BLOCKS = 4


def in_spram(platform, width, depth):
    """Whether a :class:`SinglePortMemory` of ``width`` bits and ``depth`` words goes into
    SPRAM on ``platform``: an iCE40UP device, and the words fit its blocks side by side."""
    device = getattr(platform, "device", "") or ""
    return (device.startswith("iCE40UP") and depth <= SPRAM_DEPTH
            and -(-width // SPRAM_BITS) <= SPRAM_BLOCKS)


class SinglePortMemory(wiring.Component):
    """``depth`` words of ``width`` bits (a multiple of 8) behind one address.

    In each cycle either bytes are written (``write_en``) or the word is read (``read_en``),
    not both. ``read_data`` is the word read at the last read, held while no read or write
    comes; after a write it is undefined until the next read (SPRAM's output changes on a
    write).

    Parameters
    ----------
    width, depth : int

    Attributes
    ----------
    addr : In(range(depth))
    read_en : In(1)
    read_data : Out(width)
    write_data : In(width)
    write_en : In(width // 8)
        One bit per byte of ``write_data``.
    """

    def __init__(self, width, depth):
        if not isinstance(width, int) or width < 8 or width % 8:
            raise ValueError(f"width must be a positive multiple of 8, not {width!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive whole number, not {depth!r}")
        self._width, self._depth = width, depth
        super().__init__({
            "addr":       In(range(depth)),
            "read_en":    In(1),
            "read_data":  Out(width),
            "write_data": In(width),
            "write_en":   In(width // 8),
        })

    def elaborate(self, platform):
        m = Module()
        if not in_spram(platform, self._width, self._depth):
            m.submodules.storage = storage = Memory(shape=unsigned(self._width),
                                                    depth=self._depth, init=[])
            read, write = storage.read_port(), storage.write_port(granularity=8)
            m.d.comb += [read.addr.eq(self.addr), read.en.eq(self.read_en),
                         self.read_data.eq(read.data), write.addr.eq(self.addr),
                         write.data.eq(self.write_data), write.en.eq(self.write_en)]
            return m
        # Blocks side by side, each 16 bits of the word, its nibbles written with their byte.
        writing = self.write_en.any()
        address = Signal(14)
        m.d.comb += address.eq(self.addr)
        for block in range(-(-self._width // SPRAM_BITS)):
            data_in, data_out = Signal(SPRAM_BITS), Signal(SPRAM_BITS)
            bits = slice(SPRAM_BITS * block, SPRAM_BITS * (block + 1))
            m.d.comb += [data_in.eq(self.write_data[bits]),
                         self.read_data[bits].eq(data_out)]
            nibbles = Cat(*(bit for bit in self.write_en[2 * block:2 * block + 2]
                            for _ in range(2)))
            m.submodules[f"spram{block}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=address, i_DATAIN=data_in, i_MASKWREN=nibbles, i_WREN=writing,
                i_CHIPSELECT=writing | self.read_en, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=data_out)
        return m
