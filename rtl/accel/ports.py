"""Signatures shared by the accelerator's blocks: memory ports and the host port."""

from amaranth import unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.accel.isa import CHUNK_BITS, HostRead, HostWrite, Status

__all__ = ["ReadPort", "WritePort", "HostPort"]


class ReadPort(wiring.Signature):
    """A synchronous memory read port, from the reader's side: ``data`` is the word at the
    ``addr`` of the previous cycle in which ``en`` was high (held while ``en`` is low).

    Members
    -------
    addr : Out(addr_bits)
    en : Out(1)
    data : In(data_bits)
    """

    def __init__(self, addr_bits, data_bits):
        super().__init__({
            "addr": Out(unsigned(addr_bits)),
            "en":   Out(1),
            "data": In(unsigned(data_bits)),
        })


class WritePort(wiring.Signature):
    """A memory write port, from the writer's side: at the cycle's end the bytes of ``data``
    whose bit of ``en`` is set are written to word ``addr`` (one bit per byte, or one bit for
    the whole word when ``granular`` is false).

    Members
    -------
    addr : Out(addr_bits)
    data : Out(data_bits)
    en : Out(data_bits // 8 or 1)
    """

    def __init__(self, addr_bits, data_bits, granular=True):
        super().__init__({
            "addr": Out(unsigned(addr_bits)),
            "data": Out(unsigned(data_bits)),
            "en":   Out(data_bits // 8 if granular else 1),
        })


class HostPort(wiring.Signature):
    """The accelerator as its host sees it (docs/accel.md, Host port), from the host's side.

    Members
    -------
    write : Out(stream.Signature(HostWrite))
        Chunk writes into the memories (docs/isa.md, Memories).
    read : Out(stream.Signature(HostRead))
        Chunk read requests; each is answered on ``read_data``.
    read_data : In(stream.Signature(CHUNK_BITS))
        The chunks read, in the order asked.
    start : Out(1)
        Start the program at instruction 0 (when it is not running).
    input_filled : Out(1)
        The host has filled input page ``status.input_page``.
    results_taken : Out(1)
        The host has read the published page ``status.results_page``.
    status : In(Status)
    """

    def __init__(self):
        super().__init__({
            "write":         Out(stream.Signature(HostWrite)),
            "read":          Out(stream.Signature(HostRead)),
            "read_data":     In(stream.Signature(unsigned(CHUNK_BITS))),
            "start":         Out(1),
            "input_filled":  Out(1),
            "results_taken": Out(1),
            "status":        In(Status),
        })
