"""The attention example as ONNX, and its integer run with SpAtten cascade token pruning.

:func:`float_attention` writes :class:`golden.onnx.train.FloatAttention` as a float ONNX
model with ``onnx.helper`` (MatMul, Add, Transpose, Softmax, Relu, ReduceMax, Gemm), which
onnxruntime quantizes: the projections become QLinearMatMul with constant int8 weights (the
array's GEMMs), ``Q K^T`` and ``P V`` QLinearMatMul of two run-time tensors, the softmax
QLinearSoftmax (host).

:func:`run_pruned` runs the imported :class:`~golden.onnx.graph.IntegerGraph` keeping, after
each encoder layer, the ``keep[l]`` tokens of each image with the largest cumulative
importance: the integer attention probabilities each token has received (summed over the
queries of every layer so far), selected by the top-k engine's golden model
(:func:`golden.topk.topk`: ties to the lower index, survivors in token order). The pruned
tokens are removed from the layer's output, so the next layer's projections, attention and
the final pooling see only the survivors; a pruned token never returns.
"""

import functools

import numpy as np

from golden.topk import topk

__all__ = ["TOKENS", "float_attention", "graph_tensor", "run_pruned", "digits_attention"]

#: Tokens per image: its rows.
TOKENS = 8


def float_attention(params, layers):
    """The float ONNX model of an attention encoder (:class:`~golden.onnx.train.FloatAttention`
    ``params``): input ``x`` (batch, 8, 8), output ``y`` (batch, 10); the softmax of layer
    ``l`` is tensor ``p{l}``, its output ``h{l+1}``."""
    from onnx import TensorProto, helper
    from golden.onnx.build import model_of
    width = params["embed"].shape[1]
    inits = {"embed": params["embed"], "position": params["position"],
             "classifier": params["classifier"], "classifier_bias": params["classifier_bias"]}
    node = helper.make_node
    nodes = [node("MatMul", ["x", "embed"], ["e"], name="embed"),
             node("Add", ["e", "position"], ["h0"], name="position")]
    for l in range(layers):
        h = f"h{l}"
        inits.update({f"q{l}": params[f"q{l}"] / np.sqrt(width), f"k{l}": params[f"k{l}"],
                      f"v{l}": params[f"v{l}"], f"o{l}": params[f"o{l}"],
                      f"up{l}": params[f"up{l}"], f"up_bias{l}": params[f"up_bias{l}"],
                      f"down{l}": params[f"down{l}"],
                      f"down_bias{l}": params[f"down_bias{l}"]})
        nodes += [node("MatMul", [h, f"q{l}"], [f"q{l}_out"], name=f"query{l}"),
                  node("MatMul", [h, f"k{l}"], [f"k{l}_out"], name=f"key{l}"),
                  node("MatMul", [h, f"v{l}"], [f"v{l}_out"], name=f"value{l}"),
                  node("Transpose", [f"k{l}_out"], [f"kt{l}"], name=f"keys{l}",
                       perm=[0, 2, 1]),
                  node("MatMul", [f"q{l}_out", f"kt{l}"], [f"s{l}"], name=f"scores{l}"),
                  node("Softmax", [f"s{l}"], [f"p{l}"], name=f"softmax{l}", axis=-1),
                  node("MatMul", [f"p{l}", f"v{l}_out"], [f"a{l}"], name=f"attend{l}"),
                  node("MatMul", [f"a{l}", f"o{l}"], [f"o{l}_out"], name=f"output{l}"),
                  node("Add", [h, f"o{l}_out"], [f"r{l}"], name=f"residual{l}"),
                  node("MatMul", [f"r{l}", f"up{l}"], [f"u{l}_mm"], name=f"up{l}"),
                  node("Add", [f"u{l}_mm", f"up_bias{l}"], [f"u{l}"], name=f"up_bias{l}"),
                  node("Relu", [f"u{l}"], [f"g{l}"], name=f"relu{l}"),
                  node("MatMul", [f"g{l}", f"down{l}"], [f"f{l}_mm"], name=f"down{l}"),
                  node("Add", [f"f{l}_mm", f"down_bias{l}"], [f"f{l}"], name=f"down_bias{l}"),
                  node("Add", [f"r{l}", f"f{l}"], [f"h{l + 1}"], name=f"block{l}")]
    nodes += [node("ReduceMax", [f"h{layers}"], ["pooled"], name="pool", axes=[1],
                   keepdims=0),
              node("Gemm", ["pooled", "classifier", "classifier_bias"], ["y"],
                   name="classifier")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", TOKENS, 8])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])]
    return model_of(nodes, inputs, outputs,
                    {key: np.asarray(value, dtype=np.float32) for key, value in inits.items()},
                    "attention")


def graph_tensor(graph, name):
    """The integer tensor of ``graph`` that the float ONNX tensor ``name`` became:
    ``name`` itself or onnxruntime's renaming of it (``name_quantized``,
    ``name_QuantizeLinear_Output``)."""
    for op in graph.ops:
        if op.output == name or op.output.startswith(f"{name}_"):
            return op.output
    raise ValueError(f"the graph has no tensor made from {name!r}")


def run_pruned(graph, images, keep):
    """The integer graph of an attention model run with cascade token pruning.

    Parameters
    ----------
    graph : IntegerGraph
        The imported model of :func:`float_attention` (quantized by onnxruntime).
    images : (n, 8, 8) float32
    keep : sequence of int
        Tokens kept after each layer, non-increasing, 1..8; ``(8,) * layers`` prunes none.

    Returns
    -------
    outputs : float32 (n, 10)
        The dequantized logits.
    survivors : int64 (layers, n, keep)
        Per layer, each image's surviving tokens, ascending (``survivors[l]`` has
        ``keep[l]`` columns).
    probabilities : list of int64 (n, 8, 8)
        Per layer, the integer attention probabilities (query, key) over all 8 tokens;
        those of tokens pruned before the layer are 0.
    env : dict
        Every tensor of the run, as ``graph.run(..., keep=True)`` gives it (pruned shapes).
    """
    keep = [int(k) for k in keep]
    layers = sum(1 for op in graph.ops if op.kind == "softmax")
    if len(keep) != layers or any(not 1 <= k <= TOKENS for k in keep) or \
            any(b > a for a, b in zip(keep, keep[1:])):
        raise ValueError(f"keep must be {layers} non-increasing counts of 1..{TOKENS} "
                         f"tokens, not {keep}")
    probs_name = [graph_tensor(graph, f"p{l}") for l in range(layers)]
    out_name = [graph_tensor(graph, f"h{l + 1}") for l in range(layers)]
    (name, _, dtype), = graph.inputs
    env = {name: np.asarray(images, dtype=dtype)}
    n = len(images)
    alive = np.tile(np.arange(TOKENS), (n, 1))
    importance = np.zeros((n, TOKENS), dtype=np.int64)
    rows = np.arange(n)[:, None]
    layer, probabilities, survivors = 0, [], []
    for op in graph.ops:
        env[op.output] = op(*(env[i] for i in op.inputs))
        if layer < layers and op.output == probs_name[layer]:
            block = env[op.output]
            full = np.zeros((n, TOKENS, TOKENS), dtype=np.int64)
            full[rows[:, :, None], alive[:, :, None], alive[:, None, :]] = block
            probabilities.append(full)
            importance[rows, alive] += block.sum(axis=1)
        if layer < layers and op.output == out_name[layer]:
            chosen = np.stack([topk(importance[i, alive[i]], keep[layer])[0]
                               for i in range(n)])
            alive = alive[rows, chosen]
            env[op.output] = env[op.output][rows, chosen]
            survivors.append(alive.copy())
            layer += 1
    (out, out_dtype), = graph.outputs
    return env[out].astype(out_dtype), survivors, probabilities, env


@functools.lru_cache(maxsize=None)
def digits_attention(pruning=False):
    """The attention model of docs/results.md (*ONNX models*) on the 8x8 digits, each image's
    8 rows its tokens: trained in NumPy (:func:`golden.onnx.train.train_attention`, seed 0;
    ``pruning``: with a random 2..8 tokens kept in every mini-batch), quantized by onnxruntime
    (8-bit, QOperator, per tensor) and imported as an integer graph. Returns ``(graph, test
    images, test labels)``: 360 held-out digits. About 3 s, then memoized."""
    import logging

    from golden.onnx import load
    from golden.onnx.build import quantize_onnxruntime
    from golden.onnx.train import digits_images, train_attention
    logging.getLogger().setLevel(logging.ERROR)     # onnxruntime's quantization advice
    x_train, x_test, y_train, y_test = digits_images()
    model = train_attention(x_train, y_train, pruning=pruning)
    graph = load(quantize_onnxruntime(model.onnx_model(), x_train, "QOperator"))
    return graph, x_test, y_test
