"""Lab 4: EIE's compressed sparse columns, and the load balance of the sparse unit.

Your file: fill in the TODO blocks, then run ``python -m labs check 4``. The handout is
labs/04_sparse/README.md.
"""

import numpy as np

from golden.csc import PEColumns, spmv_cycles


def encode(w, n_pes, z_bits=4):
    """The CSC image of the integer matrix ``w`` in each of ``n_pes`` PEs.

    Row ``r`` belongs to PE ``r mod n_pes`` as its local row ``r // n_pes``. Each PE stores,
    column by column, its non-zero weights as entries ``(value, z)``, ``z`` the zero local
    rows skipped since the previous entry of the column (since local row 0 for the first).
    A gap longer than ``2^z_bits - 1`` rows is bridged by padding entries
    ``(0, 2^z_bits - 1)``. ``pointers[j]`` is where column ``j`` starts.

    Returns
    -------
    list of golden.csc.PEColumns
        One per PE: ``values``, ``z`` (int64, one per entry) and ``pointers`` (int64,
        columns + 1).
    """
    z_max = (1 << z_bits) - 1
    images = []
    for pe in range(n_pes):
        # TODO 1: the rows of PE pe, then column by column its entries (value, z), with a
        # padding entry (0, z_max) wherever the gap to the next non-zero is too long for z.
        values, zs, pointers = [], [], [0]
        images.append(PEColumns(np.array(values, dtype=np.int64), np.array(zs, dtype=np.int64),
                                np.array(pointers, dtype=np.int64)))
    return images


def pe_work(images, x):
    """The multiplications each PE does for the vector ``x``: the weights (not the padding
    entries) of the columns ``j`` whose ``x[j]`` is not zero. Returns an int array, one per PE."""
    # TODO 2: the weights in the columns of the non-zero activations, PE by PE. Which
    # entries are not weights?
    return np.zeros(len(images), dtype=np.int64)


def imbalance(work):
    """The busiest PE's work over the mean work: 1.0 when every PE does the same."""
    # TODO 3
    return 1.0


def sweep(matrix, x, pe_counts, z_bits=4, lanes=4, queue_depth=8):
    """Load balance of ``y = matrix @ x`` on units of each PE count.

    Returns
    -------
    list of dict
        Per PE count, in order: ``n_pes``; ``cycles``, the unit's compute cycles (first
        activation beat taken to first result beat, ``golden.csc.spmv_cycles``); ``ideal``,
        the cycles if every PE did the same work, one weight a cycle (total work / PEs);
        ``imbalance`` of the PEs' work.
    """
    rows = []
    for n_pes in pe_counts:
        # TODO 4: encode for n_pes PEs, their work, the unit's cycles (golden.csc.spmv_cycles
        # with the unit's z_bits, lanes and queue_depth), the ideal cycles and the imbalance.
        rows.append({"n_pes": n_pes, "cycles": 1, "ideal": 0.0, "imbalance": 1.0})
    return rows


if __name__ == "__main__":
    from golden.network import digits_network, digits_split
    net = digits_network(8, 0.8)
    layer = net.layers[0].weight
    x = net.layer_inputs(net.quantize_input(digits_split()[1][:1]))[0][0]
    print(" PEs  cycles   ideal  imbalance  ideal/cycles")
    for row in sweep(layer, x, (1, 2, 4, 8, 16)):
        print(f"{row['n_pes']:4}  {row['cycles']:6}  {row['ideal']:6.1f}  {row['imbalance']:9.3f}"
              f"  {row['ideal'] / row['cycles']:12.3f}")
