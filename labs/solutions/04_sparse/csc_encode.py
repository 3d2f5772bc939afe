"""Lab 4: EIE's compressed sparse columns, and the load balance of the sparse unit.

Reference solution. The student's starter is labs/04_sparse/csc_encode.py.
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
        local = np.asarray(w)[pe::n_pes]
        values, zs, pointers = [], [], [0]
        for column in local.T:
            previous = -1                       # the local row of the column's last entry
            for row in np.flatnonzero(column):
                while row - previous - 1 > z_max:
                    values.append(0)
                    zs.append(z_max)
                    previous += z_max + 1
                values.append(int(column[row]))
                zs.append(row - previous - 1)
                previous = row
            pointers.append(len(values))
        images.append(PEColumns(np.array(values, dtype=np.int64), np.array(zs, dtype=np.int64),
                                np.array(pointers, dtype=np.int64)))
    return images


def pe_work(images, x):
    """The multiplications each PE does for the vector ``x``: the weights (not the padding
    entries) of the columns ``j`` whose ``x[j]`` is not zero. Returns an int array, one per PE."""
    active = np.flatnonzero(np.asarray(x) != 0)
    work = []
    for image in images:
        weights = 0
        for j in active:
            column = image.values[image.pointers[j]:image.pointers[j + 1]]
            weights += int(np.count_nonzero(column))
        work.append(weights)
    return np.array(work, dtype=np.int64)


def imbalance(work):
    """The busiest PE's work over the mean work: 1.0 when every PE does the same."""
    work = np.asarray(work, dtype=float)
    return float(work.max() / work.mean())


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
        work = pe_work(encode(matrix, n_pes, z_bits), x)
        cycles, _ = spmv_cycles(matrix, x, n_pes, z_bits=z_bits, lanes=lanes,
                                queue_depth=queue_depth)
        rows.append({"n_pes": n_pes, "cycles": cycles, "ideal": work.sum() / n_pes,
                     "imbalance": imbalance(work)})
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
