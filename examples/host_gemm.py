"""A GEMM on the board's systolic array over the UART host link, checked against the golden
model (docs/boards.md).

    python examples/host_gemm.py --port /dev/ttyUSB1     # built with --unit array --board NAME
    python examples/host_gemm.py --sim                   # the simulated iCEBreaker, no board
    python examples/host_gemm.py --sim --random 4x16x4 --mode 4x4

The operands: by default the output layer of the digits MLP (golden.network) on --images
test images, a (images, 32) uint8 in 0..15 (unsigned 4-bit) and w (32, 10) int8 in
-128..127 (signed 8-bit), mode 8x4; with --random MxKxN, a (M, K) and w (K, N) int8, signed
in the widths of --mode WxA: -128..127 for 8 bits, -8..7 for 4, -2..1 for 2.
Exit status: 0 the result matches; 1 it does not, or the link failed; 2 a usage error.
"""

import argparse
import asyncio
import re
import sys
import time

import numpy as np
from serial import SerialException

from boards.host import Host, HostLinkError, SerialTransport
from boards.sim import SimulatedBoard
from gen.cli import OneLineParser
from golden.bitfusion import value_range
from golden.network import PRECISIONS, digits_network, digits_split
from golden.systolic import Mode


def parse_args(argv):
    parser = OneLineParser(prog="host_gemm.py", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="the board's serial port (/dev/ttyUSB1, COM3)")
    where.add_argument("--sim", action="store_true", help="the simulated board instead")
    parser.add_argument("--baud", type=int, help="with --port: UART rate (default 115200)")
    parser.add_argument("--images", type=int, help="digits: test images, M (default 2)")
    parser.add_argument("--random", metavar="MxKxN", help="random int8 operands, this shape")
    parser.add_argument("--mode", metavar="WxA", help="with --random: weight x activation "
                        "bits, 2, 4 or 8 each (default 8x8)")
    args = parser.parse_args(argv)
    if args.sim and args.baud is not None:
        parser.error("--baud is the serial port's rate: use it with --port, not --sim")
    if args.random is None and args.mode is not None:
        parser.error("--mode needs --random (the digits layer runs in mode 8x4)")
    if args.random is not None and args.images is not None:
        parser.error("--images is for the digits layer: with --random, M is in MxKxN")
    return parser, args


def digits_layer(images):
    """a, w, mode of the digits MLP's output layer on ``images`` test images; the layer and
    the images' labels."""
    _, x_test, _, y_test = digits_split()
    if not 1 <= images <= len(x_test):
        raise ValueError(f"--images must be between 1 and {len(x_test)}, not {images}")
    net = digits_network(PRECISIONS["mixed"], sparsity=0.8)
    layer = net.layers[-1]
    a = net.layer_inputs(net.quantize_input(x_test[:images]))[-1].astype(np.uint8)
    mode = Mode(layer.w_bits, layer.a_bits, w_signed=True, a_signed=False)
    return a, layer.weight.T.astype(np.int8), mode, layer, y_test[:images]


def random_operands(shape, mode):
    """Signed int8 a (M, K) and w (K, N) in the widths of ``mode`` ("WxA"), and the mode."""
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", shape)
    if not match or min(int(size) for size in match.groups()) < 1:
        raise ValueError(f"--random must be MxKxN, sizes of at least 1, not {shape!r}")
    if not re.fullmatch(r"[248]x[248]", mode):
        raise ValueError(f"--mode must be WxA, each 2, 4 or 8 (such as 8x8), not {mode!r}")
    mode = Mode(int(mode[0]), int(mode[2]), w_signed=True, a_signed=True)
    m, k, n = (int(size) for size in match.groups())
    rng = np.random.default_rng(0)
    a_lo, a_hi = value_range(mode.a_bits, signed=True)
    w_lo, w_hi = value_range(mode.w_bits, signed=True)
    return (rng.integers(a_lo, a_hi + 1, size=(m, k), dtype=np.int8),
            rng.integers(w_lo, w_hi + 1, size=(k, n), dtype=np.int8), mode)


async def run(host, a, w, mode):
    """The board's identity, ``A @ W`` from the board, its counts and the seconds it took."""
    ident = await host.identify()
    before, start = await host.counters(), time.perf_counter()
    c = await host.gemm(a, w, mode)
    seconds, after = time.perf_counter() - start, await host.counters()
    return ident, c, {name: after[name] - before[name] for name in after}, seconds


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        a, w, mode, layer, labels = (
            digits_layer(2 if args.images is None else args.images) if args.random is None
            else (*random_operands(args.random, args.mode or "8x8"), None, None))
        transport = (SimulatedBoard() if args.sim                   # the only difference
                     else SerialTransport(args.port, args.baud or 115200))
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except SerialException as error:
        parser.exit(2, f"{parser.prog}: error: --port {args.port}: {error}\n")
    try:
        ident, c, counts, seconds = asyncio.run(run(Host(transport), a, w, mode))
    except (ValueError, TypeError) as error:        # refused before anything was sent
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except (HostLinkError, SerialException) as error:
        parser.exit(1, f"{parser.prog}: the link failed: {error}\n")

    bits = ident["precision"] if ident["precision"] == "mixed" else f"{ident['precision']}-bit"
    print(f"board: {ident['rows']}x{ident['cols']} array, {bits} precision, "
          f"{ident['acc_width']}-bit accumulators" + (" (simulated)" if args.sim else ""))
    kinds = ["signed" if signed else "unsigned" for signed in (mode.w_signed, mode.a_signed)]
    print(f"a {a.shape} {a.dtype} @ w {w.shape} {w.dtype}, mode {mode.w_bits}x{mode.a_bits} "
          f"(w {kinds[0]}, a {kinds[1]}): {counts['steps']} steps, {counts['beats']} result "
          f"beats, {counts['cycles']:,} board cycles, {seconds:.1f} s")
    golden = a.astype(np.int64) @ w.astype(np.int64)
    wrong = np.argwhere(c != golden)
    if len(wrong):
        (i, j), count = wrong[0], len(wrong)
        print(f"MISMATCH: {count} of {c.size} values differ from the golden model, "
              f"first C[{i}, {j}] = {c[i, j]}, not {golden[i, j]}")
        return 1
    print(f"match: all {c.size} values of C {c.shape} equal the golden model's")
    if layer is not None:
        print(f"predicted digits {(c + layer.bias).argmax(axis=1).tolist()}, labels "
              f"{labels.tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
