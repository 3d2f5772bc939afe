"""Lab 2: the dataflow and cycle count of the output-stationary fusion array.

Your file: fill in the TODO blocks, then run ``python -m labs check 2``. The handout is
labs/02_systolic/README.md.
"""

from golden.systolic import useful_macs


def arrival(r, c, edge_registers):
    """Cycles from the edge that accepts a step to the edge where PE ``(r, c)`` takes it.

    The step is steered into the first edge register as it is accepted; ``edge_registers``
    registers bring it to the array's corner PE (0, 0); from there it moves one PE a cycle,
    along its row (activations) and down its column (weights).
    """
    # TODO 1: the skew. The timing table in docs/systolic.md shows one step's way in.
    return 0


def row_written(last_step, r, cols, pe_latency, edge_registers):
    """The edge at which row ``r`` of a tile is written to its row FIFO.

    ``last_step`` is the edge that accepted the tile's last step. Row ``r`` is written when
    its last PE, ``(r, cols - 1)``, has its finished sum: ``pe_latency`` cycles after that PE
    took the last step.
    """
    # TODO 2: which PE of the row finishes last, and when?
    return 0


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
        # TODO 3: the edge that accepts tile n's first step: right behind the previous
        # tile's steps, unless fifo_depth tiles are started and not yet drained (a tile's
        # credit is seen the cycle after the edge that takes its last beat).
        start = 0
        starts.append(start)
        last_step = start + tiling.k_steps - 1
        for g in range(per_tile):
            # TODO 4: the edge that takes beat g of tile n: its group of rows leaves two
            # edges after its last row is written (FIFO memory, then output register), and
            # the sink takes one beat a cycle.
            last_beat = last_beat + 1
        drained.append(last_beat)
    return last_beat - starts[0] + 1


def utilization(tiling, cycles):
    """Useful multiply-accumulates over what the array could do in ``cycles``."""
    # TODO 5
    return 0.0


def drain_bound(tiling, drain_rows):
    """The best steady-state utilization when results drain ``drain_rows`` rows a cycle.

    A tile of ``k_steps`` steps leaves in ``rows / drain_rows`` beats; the array can take
    tiles no faster than they drain.
    """
    # TODO 6
    return 1.0
