"""A small CNN on the 8x8 digits, trained by the project, written as ONNX, quantized by
onnxruntime and run on the project's integer graph (docs/onnx.md, Examples).

    python examples/onnx_cnn.py                           # accuracy table and the mapping
    python examples/onnx_cnn.py --on rtl --array 2x2 --bits 8 --images 1   # and the RTL

The CNN (Conv 3x3 with --channels filters, padding 1 -> ReLU -> MaxPool 2x2 -> Flatten ->
Gemm to 10) is trained in NumPy (golden.onnx.train, --epochs, --seed) on scikit-learn's
digits (1,437 training images), written with onnx.helper, and quantized by onnxruntime's
quantize_static (8-bit, MinMax calibration on the training images) in both of its formats,
QDQ and QOperator, with weights per tensor and per channel. Each is imported with
golden.onnx and run on the 360 test images: its accuracy next to onnxruntime's, and the
number of output elements that differ from onnxruntime's (0: the integer graph runs as
onnxruntime does). The float model is also quantized by the project's own post-training
quantization at 8, 4 and 2 bits. Then the mapping of the QOperator model (per tensor) onto
an --array RxC --bits B array (the convolution as an im2col GEMM). With --on rtl, the first --images test images run through the array layers on
the accelerator's RTL under Verilator, every result word checked against the golden model.

Exit status: 0 done; 1 the RTL differed from the golden model; 2 a usage error.
"""

import argparse
import logging
import sys

from gen.cli import OneLineParser, UsageError
from sim.infer import accel_config

#: Test images run on the RTL by default.
RTL_IMAGES = 1


def parse_args(argv):
    parser = OneLineParser(prog="onnx_cnn.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=8, help="convolution filters (8)")
    parser.add_argument("--epochs", type=int, default=20, help="training passes (20)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (0)")
    parser.add_argument("--array", default="8x8", metavar="RxC", help="the array (8x8)")
    parser.add_argument("--bits", default="mixed", help="its precision: mixed, 8, 4 or 2")
    parser.add_argument("--on", default="golden", help="golden (default) or rtl")
    parser.add_argument("--images", type=int, default=RTL_IMAGES,
                        help=f"with --on rtl: test images run on the RTL ({RTL_IMAGES})")
    args = parser.parse_args(argv)
    for name in ("channels", "epochs", "images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.seed < 0:
        parser.error(f"--seed must be at least 0, not {args.seed}")
    if args.on not in ("golden", "rtl"):
        parser.error(f"--on must be golden or rtl, not {args.on!r}")
    return parser, args


def cnn_results(channels=8, epochs=20, seed=0):
    """Train the CNN and run it every way.

    Returns
    -------
    dict
        ``model`` (the :class:`~golden.onnx.train.FloatCNN`), ``float`` (its test accuracy),
        ``onnxruntime``: per ``(format, per_channel)`` (QDQ or QOperator, False or True)
        ``(quantized model, integer graph, onnxruntime accuracy, integer graph accuracy,
        elements differing)``, ``ptq``: per
        bits (8, 4, 2) ``(integer graph, accuracy)``, and the test ``images`` and ``labels``.
    """
    from golden.onnx import load
    from golden.onnx.train import accuracy, digits_images, train_cnn
    x_train, x_test, y_train, y_test = digits_images()
    model = train_cnn(x_train, y_train, channels, epochs, seed=seed)
    float_model = model.onnx_model()
    images, calibration = x_test[:, None], x_train[:, None]
    results = {"model": model, "float": accuracy(model.logits(images), y_test),
               "onnxruntime": {}, "ptq": {}, "images": images, "labels": y_test}
    results["onnxruntime"] = onnxruntime_rows(float_model, calibration, images, y_test)
    for bits in (8, 4, 2):
        graph = load(float_model, calibration=calibration, bits=bits)
        results["ptq"][bits] = (graph, accuracy(graph.run(images)[0], y_test))
    return results


def onnxruntime_rows(float_model, calibration, images, labels):
    """``float_model`` quantized by onnxruntime in each format, per tensor and per channel,
    run by onnxruntime and by the integer graph on ``images``: ``{(format, per_channel):
    (quantized model, integer graph, onnxruntime accuracy, integer graph accuracy, output
    elements differing)}``."""
    from golden.onnx import load
    from golden.onnx.build import FORMATS, quantize_onnxruntime, run_onnxruntime
    from golden.onnx.train import accuracy
    rows = {}
    for quant_format in FORMATS:
        for per_channel in (False, True):
            quantized = quantize_onnxruntime(float_model, calibration, quant_format, per_channel)
            want, = run_onnxruntime(quantized, images)
            graph = load(quantized)
            got, = graph.run(images)
            rows[quant_format, per_channel] = (quantized, graph, accuracy(want, labels),
                                               accuracy(got, labels), int((got != want).sum()))
    return rows


def print_onnxruntime_rows(rows, outputs):
    """Print :func:`onnxruntime_rows`' table; ``outputs`` is the number of output elements."""
    print(f"{'quantization':<40} {'onnxruntime':>11} {'integer graph':>13}  differing elements")
    for (quant_format, per_channel), (_, _, ort, ours, differ) in rows.items():
        name = f"onnxruntime 8-bit {quant_format}, per {'channel' if per_channel else 'tensor'}"
        print(f"{name:<40} {ort:>11.1%} {ours:>13.1%}  {differ} of {outputs:,}")


def print_results(results):
    print(f"CNN on the 8x8 digits: {len(results['labels'])} test images; float (NumPy) "
          f"accuracy {results['float']:.1%}")
    print_onnxruntime_rows(results["onnxruntime"], len(results["labels"]) * 10)
    for bits, (_, ours) in results["ptq"].items():
        print(f"{f'project PTQ {bits}-bit':<40} {'-':>11} {ours:>13.1%}  -")


def print_plan(graph, images, config):
    """Print the mapping of ``graph`` on ``images``."""
    from golden.onnx.mapping import plan
    from sim.infer import print_mapping
    _, env = graph.run(images, keep=True)
    rows = plan(graph, {key: value.shape for key, value in env.items()}, config)
    print_mapping(rows, config, len(images), graph.source)


def main(argv=None):
    logging.getLogger().setLevel(logging.ERROR)     # onnxruntime's quantization advice
    parser, args = parse_args(argv)
    try:
        config = accel_config(args.array, args.bits, False)
        rtl_config = accel_config(args.array, args.bits, True) if args.on == "rtl" else None
    except UsageError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    results = cnn_results(args.channels, args.epochs, args.seed)
    print_results(results)
    _, graph, *_ = results["onnxruntime"]["QOperator", False]
    print(f"\nmapping of the QOperator model (per tensor), {len(results['labels'])} images:")
    print_plan(graph, results["images"], config)
    if rtl_config is not None:
        _, env = graph.run(results["images"][:args.images], keep=True)
        return run_on_rtl(graph, env, rtl_config)
    return 0


def rtl_batch(graph, config):
    """The largest rows per accelerator run, 16 at most, that every array layer of ``graph``
    fits in the memory pages of ``config`` with."""
    from golden.accel import compile_network
    from golden.onnx.mapping import segments
    for batch in (16, 8, 4, 2, 1):
        try:
            for segment in segments(graph):
                compile_network(segment.network, config, batch, output="logits")
        except ValueError:
            continue
        return batch
    raise UsageError(f"the model's layers do not fit the {config.rows}x{config.cols} "
                     f"accelerator's memory pages even one row at a time")


def run_on_rtl(graph, env, config):
    """Run the array layers of ``graph`` on the RTL, on the tensors ``env`` of a run: 0, 1
    when the RTL differs from the golden model, 2 when the layers do not fit."""
    from sim.infer import run_rtl
    from sim.runner import SimulationFailed, SimulatorMissing
    try:
        batch = rtl_batch(graph, config)
        print(f"rtl: {batch} rows per accelerator run")
        run_rtl(graph, env, config, batch)
    except (UsageError, SimulatorMissing) as error:
        print(f"onnx example: error: {error}", file=sys.stderr)
        return 2
    except SimulationFailed as error:
        print(f"MISMATCH: the RTL differs from the golden model: "
              f"{str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
