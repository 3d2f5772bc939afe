"""A small attention model on the 8x8 digits with SpAtten cascade token pruning: trained by
the project, written as ONNX, quantized by onnxruntime, run on the project's integer graph
(docs/onnx.md, Examples).

    python examples/onnx_attention.py                      # accuracy tables and the mapping
    python examples/onnx_attention.py --keep 8,6,4,2 --layers 2
    python examples/onnx_attention.py --on rtl --array 2x2 --bits 8 --images 1

Tokens are the image's rows (8 tokens of 8 pixels). The model (golden.onnx.train,
FloatAttention: an embedding with a per-position bias, --layers single-head encoder layers of
width --width, each Q/K/V projections, softmax attention, an output projection and a ReLU
feed-forward block with residuals, then the tokens max-pooled and a classifier) is trained in
NumPy (--epochs, --seed), written with onnx.helper and quantized by onnxruntime (8-bit, QDQ
and QOperator, weights per tensor and per channel). Each is imported with golden.onnx and run
on the 360 test images: its accuracy next to onnxruntime's and the output elements that
differ (0).

Then cascade token pruning on the QOperator model (golden.onnx.attention.run_pruned): after
each layer the K tokens of each image with the largest cumulative attention probability
(summed over the queries of every layer so far) survive, as the top-k engine's golden model
selects them; the next layers and the pooling see only those. For each K of --keep: the
accuracy (float and integer) and the array cycles of the projections (fewer tokens, fewer
rows), for the model trained as above and for one trained with pruning (a random 2..8
tokens kept in every mini-batch, golden.onnx.train.train_attention(pruning=True)).
The mapping is for an --array RxC --bits B array; with --on rtl, the first --images test
images (pruned to the last K of --keep) run through every projection on the accelerator's
RTL under Verilator, every result word checked against the golden model.

Exit status: 0 done; 1 the RTL differed from the golden model; 2 a usage error.
"""

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

from gen.cli import OneLineParser, UsageError
from sim.infer import accel_config

#: Tokens kept after each layer in the pruning table, by default.
KEEP = (8, 6, 4, 2)
#: Test images run on the RTL by default.
RTL_IMAGES = 1


def _cnn_example():
    """examples/onnx_cnn.py, for its accelerator and RTL helpers."""
    path = Path(__file__).with_name("onnx_cnn.py")
    spec = importlib.util.spec_from_file_location("onnx_cnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keep_list(text):
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--keep must be comma-separated token counts 1..8, not {text!r}") \
            from None
    if any(not 1 <= value <= 8 for value in values):
        raise UsageError(f"--keep must be token counts 1..8, not {text!r}")
    return values


def parse_args(argv):
    parser = OneLineParser(prog="onnx_attention.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="encoder layers (2)")
    parser.add_argument("--width", type=int, default=16, help="token width d (16)")
    parser.add_argument("--epochs", type=int, default=30, help="training passes (30)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (0)")
    parser.add_argument("--keep", default=",".join(map(str, KEEP)), metavar="K[,K...]",
                        help="tokens kept after each layer, one table row each (8,6,4,2)")
    parser.add_argument("--array", default="8x8", metavar="RxC", help="the array (8x8)")
    parser.add_argument("--bits", default="mixed", help="its precision: mixed, 8, 4 or 2")
    parser.add_argument("--on", default="golden", help="golden (default) or rtl")
    parser.add_argument("--images", type=int, default=RTL_IMAGES,
                        help=f"with --on rtl: test images run on the RTL ({RTL_IMAGES})")
    args = parser.parse_args(argv)
    for name in ("layers", "width", "epochs", "images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.seed < 0:
        parser.error(f"--seed must be at least 0, not {args.seed}")
    if args.on not in ("golden", "rtl"):
        parser.error(f"--on must be golden or rtl, not {args.on!r}")
    try:
        args.keep = _keep_list(args.keep)
    except UsageError as error:
        parser.error(str(error))
    return parser, args


def attention_results(layers=2, width=16, epochs=30, seed=0, pruning=False):
    """Train the model (``pruning``: with token pruning) and run it through onnxruntime and
    the integer graph, unpruned.

    Returns
    -------
    dict
        ``model`` (the :class:`~golden.onnx.train.FloatAttention`), ``float`` (its test
        accuracy), ``onnxruntime`` (``onnx_cnn.onnxruntime_rows``: per ``(format,
        per_channel)``, ``(quantized model, integer graph, onnxruntime accuracy, integer
        graph accuracy, elements differing)``), and the test ``images`` and ``labels``.
    """
    from golden.onnx.train import accuracy, digits_images, train_attention
    x_train, x_test, y_train, y_test = digits_images()
    model = train_attention(x_train, y_train, width=width, layers=layers, epochs=epochs,
                            seed=seed, pruning=pruning)
    return {"model": model, "float": accuracy(model.logits(x_test), y_test),
            "onnxruntime": _cnn_example().onnxruntime_rows(model.onnx_model(), x_train,
                                                           x_test, y_test),
            "images": x_test, "labels": y_test}


def pruning_table(results, keeps, config):
    """Per tokens kept ``k`` (after every layer): ``(k, float accuracy, integer accuracy,
    array cycles)`` of the model of ``results`` (its QOperator per-tensor integer graph)
    with cascade token pruning on the test images."""
    from golden.onnx.attention import run_pruned
    from golden.onnx.mapping import plan, total_cycles
    from golden.onnx.train import accuracy
    model, images, labels = results["model"], results["images"], results["labels"]
    _, graph, *_ = results["onnxruntime"]["QOperator", False]
    rows = []
    for k in keeps:
        keep = (k,) * model.layers
        outputs, _, _, env = run_pruned(graph, images, keep)
        mapped = plan(graph, {key: value.shape for key, value in env.items()}, config)
        rows.append((k, accuracy(model.logits(images, keep), labels),
                     accuracy(outputs, labels), total_cycles(mapped)))
    return rows


def print_results(plain, pruned, tables):
    """Print the accuracy of the two models and the pruning table."""
    cnn = _cnn_example()
    for name, results in (("trained without pruning", plain), ("trained with pruning", pruned)):
        print(f"attention, {name}: {len(results['labels'])} test images, float (NumPy) "
              f"accuracy {results['float']:.1%}")
        cnn.print_onnxruntime_rows(results["onnxruntime"], len(results["labels"]) * 10)
    images = len(plain["images"])
    print(f"\ncascade token pruning, k tokens kept after each layer (QOperator, per tensor; "
          f"float / integer graph accuracy):")
    print(f"{'k':>2} {'trained without pruning':>24} {'trained with pruning':>22} "
          f"{'array cycles per image':>23}")
    for (k, a, b, cycles), (_, c, d, _) in zip(*tables):
        print(f"{k:>2} {a:>13.1%} / {b:>6.1%} {c:>13.1%} / {d:>6.1%} {cycles / images:>23,.1f}")


def main(argv=None):
    logging.getLogger().setLevel(logging.ERROR)     # onnxruntime's quantization advice
    parser, args = parse_args(argv)
    cnn = _cnn_example()
    try:
        config = accel_config(args.array, args.bits, False)
        rtl_config = accel_config(args.array, args.bits, True) if args.on == "rtl" \
            else None
    except UsageError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    plain, pruned = (attention_results(args.layers, args.width, args.epochs, args.seed, pruning)
                     for pruning in (False, True))
    print_results(plain, pruned, [pruning_table(results, args.keep, config)
                                  for results in (plain, pruned)])
    results = pruned
    _, graph, *_ = results["onnxruntime"]["QOperator", False]
    keep = (args.keep[-1],) * args.layers
    print(f"\nmapping of the model trained with pruning (QOperator, per tensor), "
          f"{len(results['labels'])} images, {args.keep[-1]} tokens kept after each layer:")
    from golden.onnx.attention import run_pruned
    from golden.onnx.mapping import plan
    from sim.infer import print_mapping
    _, _, _, env = run_pruned(graph, results["images"], keep)
    print_mapping(plan(graph, {key: value.shape for key, value in env.items()}, config),
                  config, len(results["images"]), graph.source)
    if rtl_config is None:
        return 0
    _, _, _, env = run_pruned(graph, results["images"][:args.images], keep)
    return cnn.run_on_rtl(graph, env, rtl_config)


if __name__ == "__main__":
    sys.exit(main())
