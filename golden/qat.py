"""Quantization-aware training of the digits MLP and a per-layer precision search (docs/qat.md).

Fine-tuning with fake quantization: the dense float MLP of :mod:`golden.network` is trained
on, for a few epochs, through the quantizers of its integer network, so that the weights
learn to live on the grid the hardware computes with. Per layer, with
``(w_bits, a_bits)``:

- the forward pass uses ``W~ = q(W) s_w`` (:func:`golden.quant.quantize_weights`: per output
  channel, per tensor for the output layer), ``b~ = round(b / (s_w s_a)) s_w s_a`` and
  ``a~ = clamp(round(z / s_a), 0, 2^a_bits - 1) s_a`` (ReLU folded into the clamp): the
  integer network's values, times its scales;
- the backward pass treats every rounding as the identity (the straight-through estimator)
  and the clamp as a clip: no gradient where ``z / s_a`` is outside ``(0, 2^a_bits - 1)``;
- before the first step each weight row is clipped to the fraction of its largest magnitude
  that quantizes it with the least squared error, so the largest weight no longer sets a
  coarse grid for the others; the row's largest magnitude stays its scale, as in
  ``quantize_weights``;
- at the start of every epoch and after the last, each hidden activation scale is the one of
  :data:`PERCENTILES` (``activation_scale``'s peak at a percentile) whose fake-quantized
  activations on the training images have the least squared error; the input's scale is
  ``golden.network``'s (pixel / 16, peak 1).

Adam with a cosine-decayed learning rate, softmax cross-entropy, a fixed seed. The result is
converted to a :class:`golden.network.QuantizedMLP` by :func:`golden.network.quantize_mlp`,
as :func:`golden.network.digits_network` converts its network (integer weights, the bias in
accumulator units, ``golden.requant.quantize_multiplier``), so it runs bit for bit as the
hardware does.

The precision search (:func:`search_precision`) picks, among ``(w_bits, a_bits)`` from
{2, 4, 8} for every layer, the assignment with the fewest array cycles whose held-out accuracy
is within a budget of the float model's.

Run ``python -m golden.qat`` for the table.
"""

import functools
import itertools
import json
import math
import sys
from dataclasses import dataclass

import numpy as np

from golden.bitfusion import BITS, lanes
from golden.checks import integer, real
from golden.network import (LAYER_SIZES, PRECISIONS, Adam, FloatMLP, _layer_bits,
                            digits_network, digits_split, float_network, mlp_gradients,
                            quantize_mlp)
from golden.quant import activation_scale, quantize_weights
from golden.systolic import Tiling

__all__ = ["QAT_PRECISIONS", "PERCENTILES", "CLIP_FRACTIONS", "EPOCHS", "LEARNING_RATE",
           "METHODS", "fine_tune", "qat_network", "layer_cycles",
           "array_cycles", "accelerator_cycles", "Candidate", "Search", "search_precision",
           "accuracy_table"]

#: Rows of the table: golden.network's precisions and 2-bit weights with wider activations.
QAT_PRECISIONS = {**PRECISIONS, "2w4a": ((2, 4),) * 3, "2w8a": ((2, 8),) * 3}
#: Percentiles of the calibration activations a hidden activation scale is chosen among.
PERCENTILES = (80.0, 85.0, 90.0, 93.0, 95.0, 97.0, 98.0, 99.0, 99.5, 99.9, 100.0)
#: Fractions of a weight row's largest magnitude its initial clip is chosen among.
CLIP_FRACTIONS = tuple(np.linspace(0.2, 1.0, 81))
#: Epochs of fine-tuning and the initial learning rate (cosine-decayed to 0).
EPOCHS, LEARNING_RATE = 30, 2e-3
#: Images per step of fine-tuning.
STEP_IMAGES = 64
#: How a candidate of the search is quantized.
METHODS = ("qat", "ptq")
#: The accelerator's default images per batch (``python -m sim.bench accel``).
DEFAULT_BATCH = 16


def _fake_weights(w, w_bits, last):
    """``(q(W) s_w, s_w)``: the weights the integer layer holds, in real units, and the scale
    per output (:func:`golden.quant.quantize_weights`, per tensor for the output layer)."""
    q, scale = quantize_weights(w, w_bits, per_channel=not last)
    scale = np.broadcast_to(scale, (w.shape[0],))
    return q * scale[:, None], scale


def _fake_activations(z, a_bits, scale):
    """``clamp(round(z / s), 0, 2^a_bits - 1) s`` and the mask where the gradient passes."""
    u = z / scale
    top = (1 << a_bits) - 1
    return np.clip(np.rint(u), 0, top) * scale, (u > 0) & (u < top)


def _clip_rows(w, w_bits, last):
    """``w`` with every row (the whole tensor for the output layer) clipped to the fraction of
    :data:`CLIP_FRACTIONS` of its largest magnitude that quantizes it with the least squared
    error."""
    rows = w.reshape(1, -1) if last else w
    peak = np.abs(rows).max(axis=1)
    clips = np.array(CLIP_FRACTIONS)[:, None] * peak[None, :]
    top = (1 << (w_bits - 1)) - 1
    scale = np.where(clips > 0, clips / top, 1.0)[..., None]
    clipped = np.clip(rows[None], -clips[..., None], clips[..., None])
    error = ((np.clip(np.rint(clipped / scale), -top - 1, top) * scale - rows[None]) ** 2)
    best = clips[error.sum(axis=2).argmin(axis=0), np.arange(len(rows))]
    return np.clip(rows, -best[:, None], best[:, None]).reshape(w.shape)


def _calibrate(weights, biases, x, bits):
    """Activation scale of every layer's input: the input's as golden.network's, each hidden
    one the least-squared-error choice of :data:`PERCENTILES` on the fake-quantized network."""
    scales = [activation_scale(x, bits[0][1])]
    a, _ = _fake_activations(x, bits[0][1], scales[0])
    for i in range(len(weights) - 1):
        w, s_w = _fake_weights(weights[i], bits[i][0], False)
        acc_scale = s_w * scales[i]
        z = np.maximum(a @ w.T + np.rint(biases[i] / acc_scale) * acc_scale, 0.0)
        a_bits = bits[i + 1][1]
        top = (1 << a_bits) - 1
        # activation_scale at each percentile, one sort for all.
        peaks = np.percentile(z, PERCENTILES)
        candidates = [peak / top if peak > 0 else 1.0 for peak in peaks]
        scale = min(candidates, key=lambda s: float(
            ((np.clip(np.rint(z / s), 0, top) * s - z) ** 2).sum()))
        scales.append(scale)
        a, _ = _fake_activations(z, a_bits, scale)
    return scales


def fine_tune(bits, seed=0, epochs=EPOCHS, lr=LEARNING_RATE):
    """Quantization-aware fine-tuning of the dense float digits MLP (see the module).

    Parameters
    ----------
    bits : int or sequence of (w_bits, a_bits)
        One precision from {2, 4, 8} for every layer, or a pair per layer.
    seed : int
        The float network's seed (split, initialisation); ``seed + 2`` orders the steps.
    epochs : int
        At least 1.
    lr : float
        Adam's initial learning rate, positive.

    Returns
    -------
    model : FloatMLP
        The fine-tuned weights and biases (before quantization).
    scales : list of float
        The activation scale of every layer's input.
    """
    bits = _layer_bits(bits)
    seed = integer("seed", seed, 0, (1 << 32) - 1)
    epochs = integer("epochs", epochs, 1)
    if not real("lr", lr) > 0:
        raise ValueError(f"lr must be positive, not {lr!r}")
    return _fine_tune(bits, seed, epochs, float(lr))


@functools.lru_cache(maxsize=None)
def _fine_tune(bits, seed, epochs, lr):
    dense = float_network(0.0, seed)
    depth = len(dense.weights)
    weights = [_clip_rows(w, bits[i][0], i == depth - 1) for i, w in enumerate(dense.weights)]
    biases = [b.copy() for b in dense.biases]
    x_train, _, y_train, _ = digits_split(seed)
    x = x_train / 16.0
    onehot = np.eye(LAYER_SIZES[-1])[y_train]
    rng = np.random.default_rng(seed + 2)
    adam = Adam([*weights, *biases])
    steps = epochs * math.ceil(len(x) / STEP_IMAGES)
    for _ in range(epochs):
        scales = _calibrate(weights, biases, x, bits)
        order = rng.permutation(len(x))
        for start in range(0, len(x), STEP_IMAGES):
            idx = order[start:start + STEP_IMAGES]
            a, _ = _fake_activations(x[idx], bits[0][1], scales[0])
            inputs, fake, passes = [], [], []
            for i in range(depth):
                last = i == depth - 1
                w, s_w = _fake_weights(weights[i], bits[i][0], last)
                acc_scale = s_w * scales[i]
                z = a @ w.T + np.rint(biases[i] / acc_scale) * acc_scale
                inputs.append(a)
                fake.append(w)
                if not last:
                    a, mask = _fake_activations(z, bits[i + 1][1], scales[i + 1])
                    passes.append(mask)
            rate = lr * 0.5 * (1 + math.cos(math.pi * adam.steps / steps))
            adam.step(mlp_gradients(z, onehot[idx], inputs, fake, passes), rate)
    scales = _calibrate(weights, biases, x, bits)
    return FloatMLP(tuple(weights), tuple(biases)), scales


def qat_network(bits=2, seed=0):
    """The digits MLP fine-tuned with fake quantization and converted to integers (memoized).

    ``bits`` is one precision from {2, 4, 8} for every layer or a ``(w_bits, a_bits)`` pair
    per layer; ``seed`` as :func:`golden.network.digits_network`'s (dense, no weight sharing).
    """
    bits = _layer_bits(bits)
    model, scales = fine_tune(bits, seed)
    return quantize_mlp(model, bits, scales)


# ---------------------------------------------------------------------------------------------
# Cycles.

def _accel():
    """golden.accel and rtl.accel.config, imported when cycles are asked for (Amaranth)."""
    from golden import accel
    from rtl.accel.config import AccelConfig
    return accel, AccelConfig


def _check_config(config):
    _, AccelConfig = _accel()
    if config is None:
        return AccelConfig()
    if not isinstance(config, AccelConfig):
        raise TypeError(f"config must be a rtl.accel.config.AccelConfig, not {config!r}")
    return config


def layer_cycles(config=None, batch=DEFAULT_BATCH):
    """The array's cycles of every layer of the digits MLP in every mode, as compiled.

    Parameters
    ----------
    config : AccelConfig, optional
        The accelerator (by default ``AccelConfig()``: the 8x8 mixed array).
    batch : int
        Images per run, at least 1 (rounded up to the array's rows by the compiler).

    Returns
    -------
    list of dict
        Per layer, ``{(w_bits, a_bits): cycles}``: ``golden.systolic.gemm_cycles`` of the
        layer's GEMM for the batch, as ``golden.accel.compile_network`` tiles it on the
        array, in the smallest mode of the array holding ``w_bits x a_bits``; the pairs the
        array cannot hold are missing.
    """
    return _layer_cycles(_check_config(config), integer("batch", batch, 1))


@functools.lru_cache(maxsize=None)
def _layer_cycles(config, batch):
    accel, _ = _accel()
    widest = 8 if config.precision == "mixed" else config.precision
    program = accel.compile_network(digits_network(widest), config, batch,
                                    engines=("array",) * (len(LAYER_SIZES) - 1),
                                    output="logits")
    table = []
    for plan in program.layers:
        cycles = {}
        for w_bits, a_bits in itertools.product(BITS, BITS):
            mode = accel.array_mode(config.precision, w_bits, a_bits)
            if mode is not None:
                tiling = Tiling(program.batch, plan.outputs, plan.inputs, config.rows,
                                config.cols, lanes(*mode))
                cycles[w_bits, a_bits] = accel.array_cycles(config, tiling)
        table.append(cycles)
    return table


def array_cycles(bits, config=None, batch=DEFAULT_BATCH):
    """The array's cycles of a batch of the digits MLP at ``bits``: the sum over the layers
    of :func:`layer_cycles`; None when the array has no mode for a layer."""
    bits = _layer_bits(bits)
    table = layer_cycles(config, batch)
    if any(pair not in cycles for pair, cycles in zip(bits, table)):
        return None
    return sum(cycles[pair] for pair, cycles in zip(bits, table))


def accelerator_cycles(network, config=None, batch=DEFAULT_BATCH, seed=0):
    """Cycles of a batch of ``network`` on the whole accelerator, every layer on the array,
    the class by the top-k engine: between the first two publications of
    ``golden.accel.AccelModel`` on held-out images (the steady state).

    Returns ``(cycles, exact)``: ``exact`` is whether the accelerator's classes equal
    ``network.predict`` on those images.
    """
    accel, _ = _accel()
    config = _check_config(config)
    program = accel.compile_network(network, config, integer("batch", batch, 1),
                                    engines=("array",) * len(network.layers))
    x = digits_split(seed)[1][:2 * program.batch]
    model = accel.AccelModel(config)
    model.load(program)
    classes = model.infer(program, network.quantize_input(x))
    first, second = model.timing.published[:2]
    return second - first, bool((classes == network.predict(x)).all())


# ---------------------------------------------------------------------------------------------
# The search.

@dataclass(frozen=True)
class Candidate:
    """An assignment of ``(w_bits, a_bits)`` per layer, its array cycles (:func:`array_cycles`;
    None where the array cannot run it) and its held-out accuracy (a fraction)."""
    bits: tuple
    cycles: int | None
    accuracy: float


@dataclass(frozen=True)
class Search:
    """What :func:`search_precision` found.

    Attributes
    ----------
    method : str
        ``"qat"`` or ``"ptq"``: how every candidate was quantized.
    float_accuracy, budget : float
        The float model's held-out accuracy and the budget below it (fractions).
    chosen, baseline : Candidate
        The pick, and every layer at 8x8 (quantized by the same method).
    evaluated : tuple of Candidate
        The candidates whose accuracy was measured, in order of cycles.
    candidates : int
        Candidates the array can run.
    """
    method: str
    float_accuracy: float
    budget: float
    chosen: Candidate
    baseline: Candidate
    evaluated: tuple
    candidates: int


@functools.lru_cache(maxsize=None)
def _held_out(seed):
    """The held-out images and labels of ``seed``'s split (loaded once)."""
    _, x_test, _, y_test = digits_split(seed)
    return x_test, y_test


def _network(bits, method, seed):
    """The integer network of ``bits`` quantized by ``method``."""
    return qat_network(bits, seed) if method == "qat" else digits_network(bits, seed=seed)


def _accuracy(bits, method, seed):
    return _network(bits, method, seed).accuracy(*_held_out(seed))


def search_precision(budget=1.0, method="qat", config=None, batch=DEFAULT_BATCH, seed=0,
                     candidates=None):
    """The per-layer precision with the fewest array cycles within ``budget`` of float accuracy.

    The candidates are taken in order of :func:`array_cycles` (then of their bits); every
    candidate of the fewest cycles at which one is within the budget is evaluated, and the
    most accurate of those (the first in order of bits on a tie) is the pick: no candidate
    within the budget has fewer cycles.

    Parameters
    ----------
    budget : float
        Percentage points of held-out accuracy below the float model's allowed, 0..100.
    method : str
        ``"qat"`` (:func:`qat_network`) or ``"ptq"`` (``golden.network.digits_network``).
    config : AccelConfig, optional
        The accelerator whose array the cycles are of (default ``AccelConfig()``).
    batch : int
        Images per run, at least 1.
    seed : int
        The network's seed.
    candidates : sequence of bits, optional
        The assignments to choose among (each as ``digits_network``'s ``bits``); by default
        every ``(w_bits, a_bits)`` from {2, 4, 8} for every layer (729).

    Raises
    ------
    ValueError
        An argument outside the above, or no candidate within the budget.
    """
    budget = real("budget", budget)
    if not 0 <= budget <= 100:
        raise ValueError(f"budget must be between 0 and 100 percentage points, not {budget!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    config = _check_config(config)
    batch = integer("batch", batch, 1)
    seed = integer("seed", seed, 0, (1 << 32) - 1)
    depth = len(LAYER_SIZES) - 1
    if candidates is None:
        candidates = itertools.product(itertools.product(BITS, BITS), repeat=depth)
    elif not isinstance(candidates, (list, tuple)) or not candidates:
        raise ValueError(f"candidates must be a non-empty list of bits, not {candidates!r}")
    pool = sorted({(cycles, bits) for bits in map(_layer_bits, candidates)
                   if (cycles := array_cycles(bits, config, batch)) is not None})
    if not pool:
        raise ValueError(f"the {config.precision}-bit array runs none of the candidates")
    float_accuracy = float_network(0.0, seed).accuracy(*_held_out(seed))
    floor = float_accuracy - budget / 100 - 1e-12
    evaluated, chosen = [], None
    for cycles, group in itertools.groupby(pool, key=lambda entry: entry[0]):
        for _, bits in group:
            evaluated.append(Candidate(bits, cycles, _accuracy(bits, method, seed)))
            if evaluated[-1].accuracy >= floor and \
                    (chosen is None or evaluated[-1].accuracy > chosen.accuracy):
                chosen = evaluated[-1]
        if chosen is not None:
            break
    if chosen is None:
        raise ValueError(f"no candidate reaches {100 * float_accuracy:.1f}% - {budget:g} "
                         f"points with {method}; allow a larger budget")
    widest = ((8, 8),) * depth
    baseline = Candidate(widest, array_cycles(widest, config, batch),
                         _accuracy(widest, method, seed))
    return Search(method, float_accuracy, budget / 100, chosen, baseline, tuple(evaluated),
                  len(pool))


# ---------------------------------------------------------------------------------------------
# The command.

def accuracy_table(seed=0, config=None, batch=DEFAULT_BATCH):
    """``{row: {"bits", "cycles", "ptq", "qat"}}`` for every row of :data:`QAT_PRECISIONS`
    (accuracies as fractions on the held-out split)."""
    return {name: {"bits": bits, "cycles": array_cycles(bits, config, batch),
                   **{method: _accuracy(bits, method, seed) for method in ("ptq", "qat")}}
            for name, bits in QAT_PRECISIONS.items()}


def _layers_text(bits):
    return " ".join(f"{w}x{a}" for w, a in bits)


def _report(args):
    """Everything the command prints: ``{"config", "float", "table", "searches",
    "accelerator"}``."""
    from gen.cli import UsageError
    _, AccelConfig = _accel()
    config = AccelConfig()
    if args.seed < 0:
        raise UsageError(f"--seed must be at least 0, not {args.seed}")
    searches = {method: search_precision(args.budget, method, config, args.batch, args.seed)
                for method in METHODS}
    accelerator = {}
    for method, search in searches.items():
        for c in (search.chosen, search.baseline):
            accelerator[method, c.bits] = accelerator_cycles(_network(c.bits, method, args.seed),
                                                             config, args.batch, args.seed)
    return {"config": config, "float": searches["qat"].float_accuracy,
            "table": accuracy_table(args.seed, config, args.batch), "searches": searches,
            "accelerator": accelerator}


def _document(report, batch):
    config = report["config"]

    def candidate(method, c):
        cycles, exact = report["accelerator"][method, c.bits]
        return {"bits": [list(pair) for pair in c.bits], "array_cycles": c.cycles,
                "accelerator_cycles": cycles, "accelerator_exact": exact,
                "accuracy": c.accuracy}
    return {"array": f"{config.rows}x{config.cols}", "precision": config.precision,
            "batch": batch, "float": report["float"],
            "precisions": {name: {"bits": [list(pair) for pair in row["bits"]],
                                  "array_cycles": row["cycles"], "ptq": row["ptq"],
                                  "qat": row["qat"]} for name, row in report["table"].items()},
            "search": {method: {"budget_points": 100 * search.budget,
                                "candidates": search.candidates,
                                "evaluated": len(search.evaluated),
                                "chosen": candidate(method, search.chosen),
                                "all_8bit": candidate(method, search.baseline)}
                       for method, search in report["searches"].items()}}


def _print_table(report, batch):
    config, searches = report["config"], report["searches"]
    print(f"digits MLP {'-'.join(map(str, LAYER_SIZES))}, held-out accuracy (%); array cycles "
          f"of a batch of {batch} on the {config.rows}x{config.cols} {config.precision} array")
    print(f"{'':10}{'w x a per layer':>16}{'cycles':>8}{'PTQ':>8}{'QAT':>8}")
    print(f"{'float':10}{'':16}{'':8}{100 * report['float']:8.1f}")
    for name, row in report["table"].items():
        print(f"{name:10}{_layers_text(row['bits']):>16}{row['cycles']:8}"
              f"{100 * row['ptq']:8.1f}{100 * row['qat']:8.1f}")
    budget = 100 * searches["qat"].budget
    print(f"precision search: the fewest array cycles at most {budget:g} "
          f"point{'' if budget == 1 else 's'} below float "
          f"({100 * report['float'] - budget:.1f}%), of {searches['qat'].candidates} "
          f"assignments")
    print(f"{'':10}{'w x a per layer':>16}{'cycles':>8}{'accel':>8}{'acc %':>8}"
          f"{'evaluated':>10}")
    for method, search in searches.items():
        for name, c, evaluated in ((f"{method.upper()} pick", search.chosen,
                                    len(search.evaluated)),
                                   (f"{method.upper()} 8-bit", search.baseline, "")):
            cycles, exact = report["accelerator"][method, c.bits]
            line = (f"{name:10}{_layers_text(c.bits):>16}{c.cycles:8}{cycles:8}"
                    f"{100 * c.accuracy:8.1f}{evaluated:>10}")
            print(line.rstrip() + ("" if exact else "  (the accelerator's classes differ)"))
    print("cycles: golden.systolic.gemm_cycles summed over the layers; accel: the whole "
          "accelerator's cycles a batch (golden.accel.Timing, steady state)")


def main(argv=None):
    import argparse
    from gen.cli import OneLineParser, UsageError
    parser = OneLineParser(
        prog="python -m golden.qat",
        description="Quantization-aware training of the digits MLP and a per-layer precision\n"
                    "search under an accuracy budget, with post-training (PTQ) and\n"
                    "quantization-aware (QAT) candidates (docs/qat.md).",
        epilog="examples:\n  python -m golden.qat\n  python -m golden.qat --budget 0.5 --json\n"
               "  python -m golden.qat --batch 32",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--seed", type=int, default=0, help="the network's seed (default 0)")
    parser.add_argument("--budget", type=float, default=1.0, metavar="POINTS",
                        help="accuracy below float allowed, percentage points (default 1)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                        help=f"images per run on the default accelerator (default {DEFAULT_BATCH})")
    args = parser.parse_args(argv)
    try:
        report = _report(args)
    except (ValueError, TypeError, UsageError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_document(report, args.batch), indent=2))
    else:
        _print_table(report, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
