"""Run an ONNX model on the project's integer models or on the accelerator's RTL (docs/onnx.md).

    python -m sim.infer model.onnx --inputs x.npy --out y.npy                # golden (NumPy)
    python -m sim.infer model.onnx --inputs x.npy --out y.npy --on rtl       # Verilator
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

Exit status: 0 done; 1 the RTL differed from the golden model; 2 a usage error or a model
that cannot be mapped exactly (one line naming the node, its op type and what is supported).
"""

import argparse
import sys
import time

import numpy as np

from gen.cli import OneLineParser, UsageError, parse_array

ENGINES = ("golden", "rtl")


def build_parser():
    parser = OneLineParser(prog="python -m sim.infer", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="the ONNX model")
    parser.add_argument("--inputs", metavar="X.npy", help="the model's input (batch first)")
    parser.add_argument("--out", metavar="Y.npy", help="where to write the model's output")
    parser.add_argument("--on", default="golden",
                        help="golden (NumPy models, default) or rtl (the accelerator's RTL "
                             "under Verilator)")
    parser.add_argument("--array", default="8x8", metavar="RxC",
                        help="the array the mapping is for (default 8x8)")
    parser.add_argument("--bits", default="mixed",
                        help="the array's precision: mixed (default), 8, 4 or 2")
    parser.add_argument("--calibration", metavar="C.npy",
                        help="a float model's calibration inputs (the project's quantization)")
    parser.add_argument("--layer-bits", default="8", metavar="B[,B...]",
                        help="a float model's precision, 8, 4 or 2, for every layer or one "
                             "per layer (default 8)")
    parser.add_argument("--batch", type=int, default=16,
                        help="with --on rtl: rows per accelerator run (default 16)")
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


def config_of(args, rtl):
    from rtl.accel.config import AccelConfig
    rows, cols = parse_array(args.array)
    precision = _precision(args.bits)
    try:
        if rtl:     # the array and memories only: the layers give their accumulators
            return AccelConfig(rows=rows, cols=cols, precision=precision, spmv=None, topk=None)
        return AccelConfig(rows=rows, cols=cols, precision=precision)
    except (ValueError, TypeError) as error:
        raise UsageError(f"--array/--bits: {error}") from None


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


def run_rtl(graph, env, config, batch, quiet=False):
    """Run every segment of ``graph`` on the accelerator's RTL (Verilator) on the inputs
    ``env`` holds; raise ``runner.SimulationFailed`` when a result word differs."""
    from golden.accel import AccelModel, compile_network
    from golden.onnx.mapping import gemm_inputs, segments
    from rtl.accel.core import Accelerator
    from sim import runner
    from sim.tb.accel import network_job
    jobs = []
    for number, segment in enumerate(segments(graph)):
        first, last = graph.ops[segment.ops[0]], graph.ops[segment.ops[-1]]
        rows = gemm_inputs(first, env[first.inputs[0]])
        try:
            program = compile_network(segment.network, config, batch, output="logits")
        except ValueError as error:
            raise UsageError(f"node {first.node!r} ({first.kind}) on the accelerator: "
                             f"{error}") from None
        model = AccelModel(config)
        model.load(program)
        got = model.infer(program, rows)
        want = last.accumulate(env[last.inputs[0]])
        want = want.transpose(0, 2, 3, 1) if want.ndim == 4 else want
        if not np.array_equal(got, want.reshape(got.shape)):
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
            raise UsageError(f"--on must be golden or rtl, not {args.on!r} (the board is not "
                             f"supported yet)")
        if args.batch < 1:
            raise UsageError(f"--batch must be at least 1, not {args.batch}")
        config = config_of(args, args.on == "rtl")
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
    np.save(args.out, y)
    print(f"wrote {args.out}: {y.dtype} {y.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
