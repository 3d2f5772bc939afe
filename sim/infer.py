"""Run an ONNX model on the project's integer models, the accelerator's RTL or a board
(docs/onnx.md).

    python -m sim.infer model.onnx --inputs x.npy --out y.npy                # golden (NumPy)
    python -m sim.infer model.onnx --inputs x.npy --out y.npy --on rtl       # Verilator
    python -m sim.infer model.onnx --inputs x.npy --out y.npy --on board --port /dev/ttyUSB1
    python -m sim.infer model.onnx --inputs x.npy --out y.npy --on board --sim   # simulated
    python -m sim.infer float.onnx --calibration c.npy --layer-bits 8,4,4 --inputs x.npy --out y.npy
    python -m sim.infer --supported

A model quantized by onnxruntime (quantize_static: QDQ or QOperator, uint8 activations,
int8 weights) runs as onnxruntime runs it, bit for bit; a float model is quantized by the
project's post-training quantization on --calibration inputs, --layer-bits per layer. The
outputs are written as .npy in the model's output dtype and shape, and the mapping is
printed: each operation, where it runs (the array, or the host), its precision (the array's
mode) and its cycles on an --array RxC --bits B array (golden.systolic.gemm_cycles), then
the totals.

--on rtl runs every array layer on the accelerator's RTL (python -m gen --unit accel, without
its sparse unit and top-k engine) under Verilator: each run of consecutive layers the
accelerator's compiler takes (golden.accel.compile_network) is loaded and its batches are
run, and every result word must equal the golden model's (the testbench checks it); the host
runs the operations between them. The outputs written are then the golden model's, which
the RTL has matched word for word.

--on board runs the same segments on a board flashed with an accelerator (python -m gen
--board NAME --program) through its host driver (boards.host.AccelHost) on --port, at --baud
(default 1 Mbaud), or with --sim on the simulated board (boards.sim.SimulatedBoard: the
board's accelerator behind its UART link in Amaranth's simulator, --sim icebreaker by
default). The board's accelerator (IDENTIFY) is the one the mapping is for: --array and
--bits, when given, must be its. Each segment's program is loaded once and its rows run a
batch per input page; every result word must equal the integer graph's, and the outputs
written are again the golden model's.

Exit status: 0 done; 1 the RTL or the board differed from the golden model, or the board's
link failed during the run; 2 a usage error, a board that does not answer or holds another
accelerator, or a model that cannot be mapped exactly (one line naming the node, its op
type and what is supported).
"""

import argparse
import asyncio
import sys
import time

import numpy as np

from gen.cli import OneLineParser, UsageError, parse_array

ENGINES = ("golden", "rtl", "board")
#: --array and --bits for the golden model and the RTL when not given.
DEFAULT_ARRAY, DEFAULT_BITS = "8x8", "mixed"


def build_parser():
    parser = OneLineParser(prog="python -m sim.infer", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="the ONNX model")
    parser.add_argument("--inputs", metavar="X.npy", help="the model's input (batch first)")
    parser.add_argument("--out", metavar="Y.npy", help="where to write the model's output")
    parser.add_argument("--on", default="golden",
                        help="golden (NumPy models, default), rtl (the accelerator's RTL "
                             "under Verilator) or board (--port or --sim)")
    parser.add_argument("--array", metavar="RxC",
                        help=f"the array the mapping is for (default {DEFAULT_ARRAY}; with "
                             f"--on board the board's)")
    parser.add_argument("--bits",
                        help=f"the array's precision: mixed, 8, 4 or 2 (default "
                             f"{DEFAULT_BITS}; with --on board the board's)")
    parser.add_argument("--calibration", metavar="C.npy",
                        help="a float model's calibration inputs (the project's quantization)")
    parser.add_argument("--layer-bits", default="8", metavar="B[,B...]",
                        help="a float model's precision, 8, 4 or 2, for every layer or one "
                             "per layer (default 8)")
    parser.add_argument("--batch", type=int, default=16,
                        help="with --on rtl: rows per accelerator run; with --on board: "
                             "the most rows per input page (default 16)")
    parser.add_argument("--port", help="with --on board: the board's serial port "
                                       "(/dev/ttyUSB1, COM3)")
    parser.add_argument("--baud", type=int,
                        help="with --port: the UART rate (default 1,000,000)")
    parser.add_argument("--sim", nargs="?", const="icebreaker", metavar="BOARD",
                        help="with --on board: the simulated board instead of --port, "
                             "icebreaker (default) or ulx3s-85f")
    parser.add_argument("--supported", action="store_true",
                        help="list the operators the import takes and exit")
    return parser


def supported_text():
    from golden.onnx import SUPPORTED
    from golden.onnx.ptq import FLOAT_OPS
    width = max(map(len, SUPPORTED))
    lines = ["quantized models (onnxruntime quantize_static, QDQ or QOperator):"]
    lines += [f"  {name:<{width}}  {what}" for name, what in SUPPORTED.items()]
    lines.append(f"float models (--calibration): {', '.join(FLOAT_OPS)}; a Relu after every "
                 f"layer but the last")
    return "\n".join(lines)


def _precision(text):
    if text == "mixed":
        return "mixed"
    if text in ("2", "4", "8"):
        return int(text)
    raise UsageError(f"--bits must be mixed, 8, 4 or 2, not {text!r}")


def _layer_bits(text):
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--layer-bits must be 8, 4 or 2, or a comma-separated list of them, "
                         f"not {text!r}") from None
    if any(value not in (2, 4, 8) for value in values):
        raise UsageError(f"--layer-bits must be 8, 4 or 2 per layer, not {text!r}")
    return values[0] if len(values) == 1 else values


def _load_npy(option, path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UsageError(f"{option} {path}: {error}") from None


def accel_config(array, bits, rtl):
    """The accelerator configuration for ``--array RxC`` and ``--bits B`` (for the RTL, the
    array and memories only: the layers give their accumulators)."""
    from rtl.accel.config import AccelConfig
    rows, cols = parse_array(array)
    precision = _precision(bits)
    try:
        if rtl:
            return AccelConfig(rows=rows, cols=cols, precision=precision, spmv=None, topk=None)
        return AccelConfig(rows=rows, cols=cols, precision=precision)
    except (ValueError, TypeError) as error:
        raise UsageError(f"--array/--bits: {error}") from None


def config_of(args, rtl):
    return accel_config(args.array or DEFAULT_ARRAY, args.bits or DEFAULT_BITS, rtl)


def check_board_options(args):
    """Refuse --port, --baud and --sim without --on board, and --on board without exactly
    one of --port and --sim."""
    from boards.top import BOARDS
    given = [(option, value) for option, value in
             (("--port", args.port), ("--baud", args.baud), ("--sim", args.sim))
             if value is not None]
    if args.on != "board":
        if given:
            raise UsageError(f"{given[0][0]} is for --on board, not --on {args.on}")
        return
    if (args.port is None) == (args.sim is None):
        raise UsageError("--on board needs --port PORT (the board's serial port) or --sim "
                         "(the simulated board), one of them")
    if args.sim is not None and args.baud is not None:
        raise UsageError("--baud is the serial port's rate: use it with --port, not --sim")
    if args.sim is not None and args.sim not in BOARDS:
        raise UsageError(f"--sim must be {' or '.join(sorted(BOARDS))}, not {args.sim!r}")
    if args.baud is not None and args.baud < 1:
        raise UsageError(f"--baud must be a positive rate in bits per second, not {args.baud}")


def open_board(args):
    """The board's transport: the serial port --port at --baud, or the simulated board
    --sim; and the board's name for messages."""
    if args.sim is not None:
        from boards.sim import SimulatedBoard, board_accelerator
        return SimulatedBoard(board_accelerator(args.sim)), f"the simulated {args.sim}"
    from serial import SerialException
    from boards.host import SerialTransport
    from boards.top import BAUD
    try:
        return SerialTransport(args.port, args.baud or BAUD["accel"]), f"--port {args.port}"
    except (SerialException, ValueError) as error:
        raise UsageError(f"--port {args.port}: {error}") from None


def board_config(host, args, where):
    """The accelerator on the board behind ``host`` (IDENTIFY), which must be the --array
    and --bits given."""
    from serial import SerialException
    from boards.host import HostLinkError
    try:
        config = asyncio.run(host.identify())
    except (HostLinkError, SerialException) as error:
        raise UsageError(f"{where}: no accelerator answers IDENTIFY ({error})") from None
    board = {"--array": (config.rows, config.cols), "--bits": config.precision}
    asked = {"--array": None if args.array is None else parse_array(args.array),
             "--bits": None if args.bits is None else _precision(args.bits)}
    if any(value not in (None, board[option]) for option, value in asked.items()):
        precision = ("mixed-precision" if config.precision == "mixed"
                     else f"{config.precision}-bit")
        given = " ".join(f"{option} {getattr(args, option[2:])}"
                         for option, value in asked.items() if value is not None)
        raise UsageError(f"{where} holds an accelerator with a {config.rows}x{config.cols} "
                         f"{precision} array, not the {given} asked for (without --array "
                         f"and --bits the mapping is for the board's)")
    return config


def print_mapping(rows, config, images, source):
    from golden.onnx.mapping import macs, total_cycles
    print(f"{'layer':>5}  {'node':<28} {'op':<10} {'engine':<6} {'mode':<5} "
          f"{'cycles':>10}  requant")
    for row in rows:
        cycles = f"{row.cycles:,}" if row.cycles is not None else "-"
        print(f"{row.index:>5}  {row.node[:28]:<28} {row.kind:<10} {row.engine:<6} "
              f"{row.precision:<5} {cycles:>10}  {row.requant}")
    array = [row for row in rows if row.engine == "array"]
    host = len(rows) - len(array)
    cycles = total_cycles(rows)
    print(f"total: {len(array)} array layers, {macs(rows):,} MACs, {cycles:,} array cycles "
          f"for {images} inputs ({cycles / images:,.1f} per input) on the {config.rows}x"
          f"{config.cols} {config.precision} array; {host} host operations; "
          f"{'onnxruntime' if source == 'onnxruntime' else 'project'} quantization")


def segment_work(graph, env):
    """Each segment of ``graph``'s array layers (``golden.onnx.mapping.segments``) as
    ``(number, segment, first, last, rows, want)``: its first and last operations, its GEMM
    rows for the inputs ``env`` holds and the accumulators (one row per row) the integer
    graph gives for them."""
    from golden.onnx.mapping import gemm_inputs, segments
    for number, segment in enumerate(segments(graph)):
        first, last = graph.ops[segment.ops[0]], graph.ops[segment.ops[-1]]
        rows = gemm_inputs(first, env[first.inputs[0]])
        want = last.accumulate(env[last.inputs[0]])
        want = want.transpose(0, 2, 3, 1) if want.ndim == 4 else want
        yield number, segment, first, last, rows, want.reshape(len(rows), -1)


def compile_segment(segment, first, config, batch, where="the accelerator"):
    """The segment's program for ``config``: every layer on the array (as the mapping
    says), ``batch`` rows per run, the accumulators out; a one-line error naming the node
    when it does not fit."""
    from golden.accel import compile_network
    layers = len(segment.network.layers)
    try:
        return compile_network(segment.network, config, batch, engines=("array",) * layers,
                               output="logits")
    except ValueError as error:
        raise UsageError(f"node {first.node!r} ({first.kind}) on {where}: {error}") from None


def run_rtl(graph, env, config, batch, quiet=False):
    """Run every segment of ``graph`` on the accelerator's RTL (Verilator) on the inputs
    ``env`` holds; raise ``runner.SimulationFailed`` when a result word differs."""
    from golden.accel import AccelModel
    from rtl.accel.core import Accelerator
    from sim import runner
    from sim.tb.accel import network_job
    jobs = []
    for number, segment, first, last, rows, want in segment_work(graph, env):
        program = compile_segment(segment, first, config, batch)
        model = AccelModel(config)
        model.load(program)
        if not np.array_equal(model.infer(program, rows), want):
            raise AssertionError(f"segment {number}: the accelerator model's accumulators "
                                 f"differ from the integer graph's")
        # One job per batch, the testbench resetting and loading the program for each
        # (docs/onnx.md, "The RTL run").
        for start in range(0, len(rows), program.batch):
            chunk = rows[start:start + program.batch]
            job = network_job(config, segment.network, chunk, batch=batch, output="logits",
                              name=f"segment {number} ({first.node} .. {last.node}), "
                                   f"rows {start}..")
            jobs.append(job)
    name = f"infer_accel_{config.rows}x{config.cols}_{config.precision}"
    started = time.perf_counter()
    runner.run(Accelerator(config), "sim.tb.accel", name=name, testcase="networks_bit_exact",
               params={"jobs": jobs})
    if not quiet:
        print(f"rtl: {len(jobs)} accelerator runs of up to {jobs[0]['batch']} rows on "
              f"Verilator in {time.perf_counter() - started:.1f} s: every result word equals "
              f"the golden model's")
    return jobs


def board_program(segment, first, config, batch, where):
    """The segment's program for the board's accelerator ``config``: the largest batch of
    at most ``batch`` rows whose pages fit its memories (down to its array's rows)."""
    rows = config.rows
    for size in [batch] + list(range((batch - 1) // rows * rows, rows - 1, -rows)):
        try:
            return compile_segment(segment, first, config, size, where)
        except UsageError:
            if size <= rows:
                raise


class _Stopwatch:
    """The seconds, and a simulated board's cycles, spent inside ``with`` blocks."""

    def __init__(self, board):
        self.board = board
        self.seconds = 0.0
        self.cycles = None if getattr(board, "cycles", None) is None else 0

    def __enter__(self):
        self._started = time.perf_counter(), getattr(self.board, "cycles", None)

    def __exit__(self, *failure):
        seconds, cycles = self._started
        self.seconds += time.perf_counter() - seconds
        if self.cycles is not None:
            self.cycles += self.board.cycles - cycles

    def __str__(self):
        simulated = f" ({self.cycles:,} simulated cycles)" if self.cycles is not None else ""
        return f"{self.seconds:.1f} s{simulated}"


def run_board(graph, env, host, batch, where):
    """Run every segment of ``graph`` on the board behind ``host`` (an identified
    ``AccelHost``) on the inputs ``env`` holds: each segment's program loaded once, its rows
    run a batch of at most ``batch`` per input page.

    Returns
    -------
    str or None
        The first result word that differs from the integer graph's, described; None when
        every word is equal.
    """
    board = host.transport
    load, run = _Stopwatch(board), _Stopwatch(board)
    programs = pages = 0
    for number, segment, first, last, rows, want in segment_work(graph, env):
        program = board_program(segment, first, host.config, min(batch, len(rows)), where)
        with load:
            asyncio.run(host.load(program))
        with run:
            got = asyncio.run(host.infer(rows))
        programs += 1
        pages += -(-len(rows) // program.batch)
        if not np.array_equal(got, want):
            row, column = np.argwhere(got != want)[0]
            return (f"segment {number} ({first.node} .. {last.node}), row {row} of "
                    f"{len(rows)}, output {column}: the board gave {got[row, column]}, the "
                    f"golden model {want[row, column]}")
    print(f"board: {programs} program{'s' * (programs != 1)} loaded in {load}, {pages} "
          f"batch{'es' * (pages != 1)} run in {run}: every result word equals the golden "
          f"model's")
    return None


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.supported:
        print(supported_text())
        return 0
    try:
        if args.model is None or args.inputs is None or args.out is None:
            raise UsageError("give MODEL.onnx, --inputs X.npy and --out Y.npy (or --supported)")
        if args.on not in ENGINES:
            raise UsageError(f"--on must be golden, rtl or board, not {args.on!r}")
        if args.batch < 1:
            raise UsageError(f"--batch must be at least 1, not {args.batch}")
        check_board_options(args)
        config = config_of(args, args.on == "rtl")     # --on board: checks --array/--bits
        x = _load_npy("--inputs", args.inputs)
        calibration = None if args.calibration is None else \
            _load_npy("--calibration", args.calibration)
        from golden.onnx import load
        from golden.onnx.mapping import plan
        graph = load(args.model, calibration=calibration, bits=_layer_bits(args.layer_bits))
        if len(graph.outputs) != 1:
            raise UsageError(f"the model has {len(graph.outputs)} outputs; --out writes one")
        name, shape, dtype = graph.inputs[0]
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or not len(x):
            raise UsageError(f"--inputs {args.inputs}: shape {x.shape}; the model takes "
                             f"(batch, {', '.join(map(str, shape))})")
        if np.dtype(dtype).kind == "u" and not (x.dtype.kind in "iu" and x.min() >= 0 and
                                                x.max() <= 255):
            raise UsageError(f"--inputs {args.inputs}: the model takes uint8, not "
                             f"{x.dtype} values in {x.min()}..{x.max()}")
        (y,), env = graph.run(x.astype(dtype), keep=True)
        if args.on == "board":
            from boards.host import AccelHost
            board, where = open_board(args)
            host = AccelHost(board)
            config = board_config(host, args, where)
        rows = plan(graph, {key: value.shape for key, value in env.items()}, config)
    except (UsageError, ValueError, TypeError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"model: {args.model}, input {name} {x.shape} -> output {graph.outputs[0][0]} "
          f"{y.shape} {y.dtype}")
    print_mapping(rows, config, len(x), graph.source)
    if args.on == "rtl":
        from sim.runner import SimulationFailed, SimulatorMissing
        try:
            run_rtl(graph, env, config, args.batch)
        except UsageError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        except SimulatorMissing as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        except SimulationFailed as error:
            print(f"MISMATCH: the RTL differs from the golden model: "
                  f"{str(error).splitlines()[0]}", file=sys.stderr)
            return 1
    if args.on == "board":
        from serial import SerialException
        from boards.host import HostLinkError
        try:
            mismatch = run_board(graph, env, host, args.batch, where)
        except UsageError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        except (HostLinkError, SerialException) as error:
            print(f"{parser.prog}: the link failed: {error}", file=sys.stderr)
            return 1
        if mismatch:
            print(f"MISMATCH: the board differs from the golden model: {mismatch}",
                  file=sys.stderr)
            return 1
    np.save(args.out, y)
    print(f"wrote {args.out}: {y.dtype} {y.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
