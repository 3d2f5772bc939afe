"""The digits MLP on the board's accelerator over its UART link, checked against the golden
model (docs/boards.md).

    python examples/host_accel.py --port /dev/ttyUSB1     # a board built with --board NAME
    python examples/host_accel.py --sim                   # the simulated iCEBreaker, no board
    python examples/host_accel.py --sim --board ulx3s-85f --bits mixed --images 32

It identifies the accelerator, compiles the digits MLP (golden.network.digits_network, 80%
of its weights pruned, --bits 8, 4, 2 or mixed: a precision the board's array runs) for it
(golden.accel.compile_network), loads the program and runs --images test images through it,
a batch per input page. With a top-k engine the board gives each image's class; without
one, its logits, and the host takes their argmax. Every output is checked against the golden
model (golden.accel.AccelModel, which equals the layer-by-layer network bit for bit).
--sim sends the program over the simulated link too (27 KB, 1.1 million cycles): about
2.5 minutes of CPU for the iCEBreaker, half an hour for the ULX3S's 8x8 array.
Exit status: 0 every output matches; 1 one does not, or the link failed; 2 a usage error.
"""

import argparse
import asyncio
import sys
import time

import numpy as np
from serial import SerialException

from boards.host import AccelHost, HostLinkError, SerialTransport
from boards.sim import SimulatedBoard, board_accelerator
from boards.top import BAUD, BOARDS
from gen.cli import OneLineParser
from golden.accel import AccelModel, compile_network
from golden.network import PRECISIONS, digits_network, digits_split

#: --bits: the precision of every layer, or the mixed one (golden.network.PRECISIONS).
BITS = {"8": "8-bit", "4": "4-bit", "2": "2-bit", "mixed": "mixed"}
#: Fraction of the digits MLP's weights pruned, as in examples/host_gemm.py.
SPARSITY = 0.8
#: The most images per batch (per input page) the program is compiled for.
MOST_BATCH = 16


def parse_args(argv):
    parser = OneLineParser(prog="host_accel.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="the board's serial port (/dev/ttyUSB1, COM3)")
    where.add_argument("--sim", action="store_true", help="the simulated board instead")
    parser.add_argument("--baud", type=int,
                        help=f"with --port: UART rate (default {BAUD['accel']:,})")
    parser.add_argument("--board", help=f"with --sim: the board simulated, "
                        f"{' or '.join(sorted(BOARDS))} (default icebreaker)")
    parser.add_argument("--images", type=int, default=16, help="test images (default 16)")
    parser.add_argument("--bits", default="8", help="the network's precision: 8, 4, 2 or "
                        "mixed, one the board's array runs (default 8)")
    args = parser.parse_args(argv)
    if args.sim and args.baud is not None:
        parser.error("--baud is the serial port's rate: use it with --port, not --sim")
    if args.port is not None and args.board is not None:
        parser.error("--board picks the simulated board: use it with --sim (over --port "
                     "the board is identified)")
    if args.board is not None and args.board not in BOARDS:
        parser.error(f"--board must be {' or '.join(sorted(BOARDS))}, not {args.board!r}")
    if args.bits not in BITS:
        parser.error(f"--bits must be 8, 4, 2 or mixed, not {args.bits!r}")
    return parser, args


def digits(bits, images):
    """The digits MLP at ``bits`` (a key of :data:`BITS`), its quantized input for the first
    ``images`` test images and their labels."""
    _, x_test, _, y_test = digits_split()
    if not 1 <= images <= len(x_test):
        raise ValueError(f"--images must be between 1 and {len(x_test)}, not {images}")
    network = digits_network(PRECISIONS[BITS[bits]], sparsity=SPARSITY)
    return network, network.quantize_input(x_test[:images]), y_test[:images]


def check_bits(bits, config):
    """Refuse ``bits`` unless the accelerator's array runs it: a fixed-precision array its
    own precision only, a mixed one any."""
    if config.precision != "mixed" and bits != str(config.precision):
        raise ValueError(f"--bits {bits}: the board's array is {config.precision}-bit, it runs "
                         f"--bits {config.precision} only")


def compile_for(network, config, images):
    """The network's program for ``config``: output classes with a top-k engine, else
    logits; the largest batch that fits, of at most ``images`` (and :data:`MOST_BATCH`)."""
    output = "class" if config.topk is not None else "logits"
    batch = min(images, MOST_BATCH)
    while True:
        try:
            return compile_network(network, config, batch, output=output)
        except ValueError as error:
            if batch <= config.rows:
                raise ValueError(f"the digits MLP does not fit the board's accelerator: "
                                 f"{error}") from None
            batch = max(config.rows, batch // 2)


class CountingTransport:
    """``transport``, counting the bytes sent and received."""

    def __init__(self, transport):
        self.transport = transport
        self.sent = self.received = 0

    async def write(self, data):
        self.sent += len(data)
        await self.transport.write(data)

    async def read(self, count):
        data = await self.transport.read(count)
        self.received += len(data)
        return data

    async def discard(self):
        await self.transport.discard()


class Phase:
    """The bytes, seconds and (simulated) board cycles of a part of the run."""

    def __init__(self, link, board):
        self.link, self.board = link, board
        self.sent, self.received = link.sent, link.received
        self.cycles, self.seconds = getattr(board, "cycles", 0), time.perf_counter()

    def end(self):
        self.sent, self.received = self.link.sent - self.sent, self.link.received - self.received
        self.cycles = getattr(self.board, "cycles", 0) - self.cycles
        self.seconds = time.perf_counter() - self.seconds
        return self

    def __str__(self):
        cycles = f", {self.cycles:,} simulated cycles" if self.cycles else ""
        return (f"{self.sent:,} bytes sent, {self.received:,} received, {self.seconds:.1f} s"
                + cycles)


async def run(board, network, a0, bits):
    """Identify the accelerator, compile ``network`` for it, load it and run ``a0``: the
    config, the program, the outputs and the load's and the run's :class:`Phase`."""
    link = CountingTransport(board)
    host = AccelHost(link)
    config = await host.identify()
    check_bits(bits, config)
    program = compile_for(network, config, len(a0))
    load = Phase(link, board)
    await host.load(program)
    load.end()
    infer = Phase(link, board)
    outputs = await host.infer(a0)
    return config, program, outputs, load, infer.end()


def describe(config, simulated):
    """The accelerator in a line."""
    precision = ("mixed-precision" if config.precision == "mixed"
                 else f"{config.precision}-bit")
    spmv = f"{config.spmv.n_pes}-PE sparse unit" if config.spmv else "no sparse unit"
    topk = "top-k engine" if config.topk else "no top-k engine"
    return (f"board: accelerator, {config.rows}x{config.cols} {precision} array, "
            f"{config.acc_width}-bit accumulators, {spmv}, {topk}"
            + (" (simulated)" if simulated else ""))


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        network, a0, labels = digits(args.bits, args.images)
        board = (SimulatedBoard(board_accelerator(args.board or "icebreaker"))
                 if args.sim else SerialTransport(args.port, args.baud or BAUD["accel"]))
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except SerialException as error:
        parser.exit(2, f"{parser.prog}: error: --port {args.port}: {error}\n")
    try:
        config, program, outputs, load, infer = asyncio.run(run(board, network, a0, args.bits))
    except ValueError as error:         # refused before the program was sent
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except (HostLinkError, SerialException) as error:
        parser.exit(1, f"{parser.prog}: the link failed: {error}\n")

    sizes = [network.layers[0].weight.shape[1]] + [layer.weight.shape[0]
                                                   for layer in network.layers]
    print(describe(config, args.sim))
    print(f"network: digits MLP {'-'.join(map(str, sizes))}, --bits {args.bits}, "
          f"{SPARSITY:.0%} pruned; batches of {program.batch} images; "
          + ("the board gives classes (its top-k engine)" if program.output == "class"
             else "the board gives logits, the host their argmax (no top-k engine)"))
    print(f"load: {load}")
    print(f"run: {len(a0)} images, {infer}")
    model = AccelModel(program.config)
    model.load(program)
    golden = model.infer(program, a0)
    wrong = [i for i in range(len(a0)) if not np.array_equal(outputs[i], golden[i])]
    if wrong:
        i, kind = wrong[0], "class" if program.output == "class" else "logits"
        print(f"MISMATCH: {len(wrong)} of {len(a0)} images differ from the golden model, "
              f"first image {i}: {kind} {outputs[i].tolist()}, not {golden[i].tolist()}")
        return 1
    kinds = "classes" if program.output == "class" else "logits"
    print(f"match: the {kinds} of all {len(a0)} images equal the golden model's")
    predicted = outputs if program.output == "class" else outputs.argmax(axis=1)
    right = int((predicted == labels).sum())
    print(f"predicted {predicted.tolist()}")
    print(f"labels    {labels.tolist()}")
    print(f"accuracy: {right} of {len(a0)} ({right / len(a0):.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
