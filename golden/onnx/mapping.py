"""How an :class:`~golden.onnx.graph.IntegerGraph` maps onto the hardware (docs/onnx.md).

Every :class:`~golden.onnx.graph.Dense` and :class:`~golden.onnx.graph.Conv` is a GEMM on the
systolic array (a convolution on its im2col patches), in the smallest mode of the array
that holds its ``w_bits x a_bits``; its cycles are :func:`golden.systolic.gemm_cycles`'.
The other operations run on the host. A layer's requantization runs on the array when it is
the hardware's fixed point with zero point 0 (:attr:`Requant.hardware`), else on the host,
on the accumulators the array gives.

:func:`segments` cuts the array's layers into networks the accelerator's compiler takes
(:class:`golden.network.QuantizedMLP`): consecutive dense layers whose requantization runs
on the array, the last of each giving its accumulators; a convolution is a one-layer network
whose images are its patches.
"""

import math
from dataclasses import dataclass

from golden.accel import array_cycles, array_mode
from golden.network import QuantizedLayer, QuantizedMLP
from golden.onnx.graph import Conv, Dense, Reshape
from golden.systolic import Tiling

__all__ = ["MappedOp", "plan", "Segment", "segments", "gemm_inputs",
           "total_cycles", "macs"]


@dataclass(frozen=True)
class MappedOp:
    """One row of the mapping: an operation, where it runs, its precision and cycles."""
    index: int
    node: str
    kind: str
    engine: str
    precision: str
    cycles: int | None
    gemm: tuple | None
    requant: str


def plan(graph, shapes, config):
    """The :class:`MappedOp` of every operation of ``graph``.

    ``shapes`` gives each tensor's shape (batch first) for the inputs run (``graph.run(x,
    keep=True)``'s tensors); ``config`` is the accelerator's :class:`AccelConfig` (its array
    and precision).
    """
    rows = []
    for i, op in enumerate(graph.ops):
        if isinstance(op, Reshape) and tuple(shapes[op.inputs[0]]) == tuple(shapes[op.output]):
            continue                      # a renaming, nothing runs
        if not isinstance(op, Dense):
            rows.append(MappedOp(i, op.node, op.kind, "host", "-", None, None, "-"))
            continue
        m, n, k = op.gemm_shape(shapes[op.inputs[0]])
        mode = array_mode(config.precision, op.w_bits, op.a_bits)
        if mode is None:
            raise ValueError(f"node {op.node!r} ({op.kind}) needs a {op.w_bits}x{op.a_bits} "
                             f"mode; the {config.precision}-bit array has none holding it")
        from golden.bitfusion import lanes
        tiling = Tiling(m, n, k, config.rows, config.cols, lanes(*mode))
        cycles = array_cycles(config, tiling)
        where = ("accumulators" if op.requant is None else
                 "array" if op.requant.hardware else "host")
        rows.append(MappedOp(i, op.node, op.kind, "array", f"{mode[0]}x{mode[1]}", cycles,
                             (m, n, k), where))
    return rows


@dataclass(frozen=True)
class Segment:
    """Array layers run as one network on the accelerator.

    ``ops`` are the graph's operations (indices), ``network`` the
    :class:`~golden.network.QuantizedMLP` the compiler takes; its last layer gives the
    accumulators, which the host requantizes (``ops[-1]``'s :class:`Requant`) or returns.
    """
    ops: tuple
    network: QuantizedMLP
    conv: bool


def _layer(op, last):
    weight = op.weight.reshape(op.weight.shape[0], -1)
    if last:
        return QuantizedLayer(weight, op.bias, op.w_bits, op.a_bits, None, None, None)
    r = op.requant
    return QuantizedLayer(weight, op.bias, op.w_bits, op.a_bits, r.multiplier, r.shift, r.bits)


def segments(graph):
    """The :class:`Segment` s of ``graph``'s array layers, in order."""
    out, chain = [], []
    tail = None                         # the tensor the open chain ends in

    def close():
        if chain:
            layers = tuple(_layer(graph.ops[i], j == len(chain) - 1)
                           for j, i in enumerate(chain))
            out.append(Segment(tuple(chain), QuantizedMLP(layers, 1.0), False))
            chain.clear()

    for i, op in enumerate(graph.ops):
        if isinstance(op, Conv):
            close()
            out.append(Segment((i,), QuantizedMLP((_layer(op, True),), 1.0), True))
            tail = None
        elif isinstance(op, Dense):
            if chain and op.inputs[0] != tail:
                close()
            chain.append(i)
            tail = op.output
            if op.requant is None or not op.requant.hardware:
                close()
        elif chain and isinstance(op, Reshape) and len(op.shape) == 1 and \
                op.inputs[0] == tail:
            tail = op.output            # flattening a vector: nothing moves
        else:
            close()
    close()
    return out


def gemm_inputs(op, a):
    """The GEMM's rows for the operation's input ``a``: the patches of a convolution."""
    if isinstance(op, Conv):
        return op.patches(a)[0]
    return a.reshape(-1, a.shape[-1])


def total_cycles(rows):
    """Array cycles of the :class:`MappedOp` s ``rows``."""
    return sum(row.cycles for row in rows if row.cycles is not None)


def macs(rows):
    """Multiply-accumulates of the array layers of ``rows``."""
    return sum(math.prod(row.gemm) for row in rows if row.gemm)
