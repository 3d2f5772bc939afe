"""Lab 2: the dataflow and cycle count of the output-stationary fusion array.

Reference solution. The student's starter is labs/02_systolic/dataflow.py.
"""

from golden.systolic import useful_macs


def arrival(r, c, edge_registers):
    """Cycles from the edge that accepts a step to the edge where PE ``(r, c)`` takes it.

    The step is steered into the first edge register as it is accepted; ``edge_registers``
    registers bring it to the array's corner PE (0, 0); from there it moves one PE a cycle,
    along its row (activations) and down its column (weights).
    """
    return edge_registers + r + c


def row_written(last_step, r, cols, pe_latency, edge_registers):
    """The edge at which row ``r`` of a tile is written to its row FIFO.

    ``last_step`` is the edge that accepted the tile's last step. Row ``r`` is written when
    its last PE, ``(r, cols - 1)``, has its finished sum: ``pe_latency`` cycles after that PE
    took the last step.
    """
    return last_step + arrival(r, cols - 1, edge_registers) + pe_latency


def predict_cycles(tiling, drain_rows, fifo_depth, pe_latency=5, edge_registers=2):
    """Cycles from the first step accepted to the last result beat taken.

    For an ideal source (always the next step) and sink (always takes a beat), the GEMM of
    ``tiling`` (a golden.systolic.Tiling) on an array draining ``drain_rows`` rows per beat
    with row FIFOs of ``fifo_depth`` tiles.
    """
    per_tile = tiling.rows // drain_rows
    starts, drained = [], []
    last_beat = -1
    for n in range(tiling.tiles):
        start = 0 if n == 0 else starts[-1] + tiling.k_steps
        if n >= fifo_depth:
            # A credit returns the cycle after the edge that takes a tile's last beat.
            start = max(start, drained[n - fifo_depth] + 1)
        starts.append(start)
        last_step = start + tiling.k_steps - 1
        for g in range(per_tile):
            written = row_written(last_step, (g + 1) * drain_rows - 1, tiling.cols,
                                  pe_latency, edge_registers)
            # Two edges through the FIFO (memory, then output register); one beat a cycle.
            last_beat = max(written + 2, last_beat + 1)
        drained.append(last_beat)
    return last_beat - starts[0] + 1


def utilization(tiling, cycles):
    """Useful multiply-accumulates over what the array could do in ``cycles``."""
    return useful_macs(tiling) / (cycles * tiling.rows * tiling.cols * tiling.lanes)


def drain_bound(tiling, drain_rows):
    """The best steady-state utilization when results drain ``drain_rows`` rows a cycle.

    A tile of ``k_steps`` steps leaves in ``rows / drain_rows`` beats; the array can take
    tiles no faster than they drain.
    """
    return min(1.0, tiling.k_steps * drain_rows / tiling.rows)
