"""Grading of lab 4 (sparse matrix-vector): the student's CSC encoding against golden.csc,
entry for entry; the work and load balance of the PEs against golden.csc.pe_loads,
ideal_cycles and spmv_cycles; and the cycles of one vector on the real unit
(rtl.spmv.SpMV) under Verilator (the ``benchmark`` test of sim.tb.spmv)."""

import json

import numpy as np

from golden.csc import PEColumns, encode, ideal_cycles, pe_loads, spmv_cycles
from labs.check import Divergence, Part, StudentError

NUMBER = 4
TITLE = "Sparse matrix-vector: CSC with relative indices and padding, load balance on the RTL"
FILES = ["csc_encode.py"]

#: The unit under Verilator: tests/test_spmv.py's, so the same Verilog and the same build.
RTL_UNIT = {"n_pes": 3, "rows": 64, "cols": 96, "value_bits": 8, "z_bits": 3, "lanes": 4,
            "queue_depth": 6}
#: PE counts of the load-balance sweep.
PE_COUNTS = (1, 2, 3, 4, 8)


def _matrices():
    """(name, matrix, n_pes, z_bits): random ones, empty columns, gaps of exactly 2^Z - 1
    and 2^Z rows, a gap of several padding entries, a last row far down."""
    rng = np.random.default_rng(4)
    cases = []
    for rows, cols, density, n_pes, z_bits in ((13, 9, 0.5, 3, 4), (20, 11, 0.2, 2, 2),
                                               (31, 7, 0.1, 1, 3), (24, 6, 0.3, 5, 1),
                                               (40, 16, 0.05, 4, 2)):
        matrix = rng.integers(-128, 128, size=(rows, cols))
        matrix[matrix == 0] = 1
        matrix *= rng.random((rows, cols)) < density
        cases.append((f"random {rows}x{cols}", matrix, n_pes, z_bits))
    gaps = np.zeros((40, 6), dtype=np.int64)
    gaps[3, 0] = 5                       # column 0: first entry after 3 zero rows (z_bits 2)
    gaps[4, 1] = gaps[8, 1] = 7          # column 1: a gap of 3 rows, z = 3 = 2^2 - 1, no padding
    gaps[4, 2] = gaps[9, 2] = -2         # column 2: a gap of 4 rows, one padding entry
    gaps[39, 3] = 1                      # column 3: 39 zero rows, many padding entries
    gaps[0, 5] = -9                      # column 4 empty; column 5: a first entry at row 0
    cases.append(("zero runs", gaps, 1, 2))
    cases.append(("zero runs, 2 PEs", gaps, 2, 2))
    return cases


def _pes(count):
    return f"{count} PE" if count == 1 else f"{count} PEs"


def _pairs(image, j):
    start, end = image.pointers[j], image.pointers[j + 1]
    return list(zip(image.values[start:end].tolist(), image.z[start:end].tolist()))


def _image(value, pe, where):
    for field in ("values", "z", "pointers"):
        if not hasattr(value, field):
            raise StudentError(f"encode must return golden.csc.PEColumns, one per PE; for "
                               f"{where}, PE {pe}'s is a {type(value).__name__}")
    values, z, pointers = (np.asarray(getattr(value, f)) for f in ("values", "z", "pointers"))
    if len(values) != len(z):
        raise StudentError(f"{where}, PE {pe}: {len(values)} values but {len(z)} z fields")
    if len(pointers) == 0 or pointers[0] != 0 or (np.diff(pointers) < 0).any() \
            or pointers[-1] != len(values):
        raise Divergence(f"{where}, PE {pe}: the column pointers must rise from 0 to the "
                         f"entry count {len(values)}, got {pointers.tolist()[:12]}")
    return PEColumns(values, z, pointers)


def check_encode(files):
    """``encode`` gives golden.csc.encode's entries (value, z) and pointers, column by column."""
    student = files.own("encode", "encode")
    for name, matrix, n_pes, z_bits in _matrices():
        got = files.call(student, matrix.copy(), n_pes, z_bits)
        want = encode(matrix, n_pes, z_bits)
        where = f"{name} on {_pes(n_pes)}, z_bits={z_bits}"
        if not isinstance(got, (list, tuple)) or len(got) != n_pes:
            raise StudentError(f"encode({where}) must return a list of {n_pes} PEColumns, "
                               f"not {got!r:.60}")
        for pe, (image, reference) in enumerate(zip(got, want)):
            image = _image(image, pe, where)
            if len(image.pointers) != matrix.shape[1] + 1:
                raise Divergence(f"{where}, PE {pe}: expected {matrix.shape[1] + 1} column "
                                 f"pointers (one per column and the end), got "
                                 f"{len(image.pointers)}")
            for j in range(matrix.shape[1]):
                mine, theirs = _pairs(image, j), _pairs(reference, j)
                if mine == theirs:
                    continue
                rows = np.flatnonzero(matrix[pe::n_pes, j]).tolist()
                for e, (a, b) in enumerate(zip(mine, theirs)):
                    if a != b:
                        raise Divergence(
                            f"{where}, PE {pe}, column {j} (non-zero local rows {rows}), "
                            f"entry {e}: expected (value, z) = {b}, got {a}")
                raise Divergence(f"{where}, PE {pe}, column {j} (non-zero local rows "
                                 f"{rows}): expected {len(theirs)} entries {theirs}, got "
                                 f"{len(mine)} {mine}")


def _case(seed, rows=24, cols=20):
    rng = np.random.default_rng(seed)
    matrix = rng.integers(1, 8, size=(rows, cols)) * (rng.random((rows, cols)) < 0.3)
    matrix[:, 3] = 0
    matrix[2, 3] = matrix[rows - 1, 3] = 5        # long gaps: padding entries at z_bits 2
    x = rng.integers(1, 200, size=cols) * (rng.random(cols) < 0.6)
    x[3] = 17
    return matrix, x


def check_work(files):
    """``pe_work`` counts each PE's weights in the active columns (golden.csc.pe_loads)."""
    student = files.own("pe_work", "pe_loads")
    for seed, n_pes in ((1, 3), (2, 1), (3, 4)):
        matrix, x = _case(seed)
        images = encode(matrix, n_pes, 2)
        got = np.asarray(files.call(student, images, x.copy()))
        want = pe_loads(matrix, n_pes, activity=(x != 0).astype(float)).astype(np.int64)
        if got.shape != want.shape:
            raise StudentError(f"pe_work must return one count per PE ({n_pes}), not shape "
                               f"{got.shape}")
        for pe in range(n_pes):
            if got[pe] != want[pe]:
                entries = sum(int(images[pe].pointers[j + 1] - images[pe].pointers[j])
                              for j in np.flatnonzero(x))
                raise Divergence(f"{matrix.shape[0]}x{matrix.shape[1]} matrix on "
                                 f"{_pes(n_pes)}, z_bits=2, {np.count_nonzero(x)} non-zero "
                                 f"activations: PE {pe} multiplies {want[pe]} weights, got "
                                 f"{got[pe]} (its active columns hold {entries} entries, "
                                 f"padding included)")


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise StudentError(f"{what} must be a number, not {value!r:.60}")
    return float(value)


def _rows(files, matrix, x, pe_counts, unit):
    rows = files.call(files.get("sweep"), matrix.copy(), x.copy(), pe_counts, **unit)
    if not isinstance(rows, (list, tuple)) or len(rows) != len(pe_counts) or \
            not all(isinstance(row, dict) for row in rows):
        raise StudentError(f"sweep must return a list of {len(pe_counts)} dicts, one per PE "
                           f"count, not {rows!r:.60}")
    return rows


def check_sweep(files):
    """``sweep``: cycles, ideal cycles and imbalance of every PE count."""
    unit = {"z_bits": 2, "lanes": 4, "queue_depth": 8}
    for seed in (5, 6):
        matrix, x = _case(seed, 40, 24)
        for row, n_pes in zip(_rows(files, matrix, x, PE_COUNTS, unit), PE_COUNTS):
            loads = pe_loads(matrix, n_pes, activity=(x != 0).astype(float))
            want = {"n_pes": n_pes, "cycles": spmv_cycles(matrix, x, n_pes, **unit)[0],
                    "ideal": ideal_cycles(matrix, x, n_pes, unit["z_bits"]),
                    "imbalance": loads.max() / loads.mean()}
            for key, value in want.items():
                if key not in row:
                    raise StudentError(f"sweep's rows need the key {key!r}, not only "
                                       f"{sorted(row)}")
                got = _number(row[key], f"sweep's {key!r}")
                if abs(got - value) > 1e-9:
                    raise Divergence(f"40x24 matrix, {np.count_nonzero(x)} non-zero "
                                     f"activations, {_pes(n_pes)} (work per PE "
                                     f"{loads.astype(int).tolist()}): expected {key} "
                                     f"{value:.4g}, got {got:.4g}")


def lab_vector():
    """The lab's layer: the digits MLP's first layer pruned to 80%, on the first test image."""
    from golden.network import digits_network, digits_split
    net = digits_network(8, 0.8)
    x = net.layer_inputs(net.quantize_input(digits_split()[1][:1]))[0][0]
    return net.layers[0].weight, x


def check_rtl(files):
    """The unit under Verilator takes the compute cycles ``sweep`` gives for it."""
    from rtl.spmv import SpMV
    from sim.runner import SimulationFailed, SimulatorMissing, run
    unit = SpMV(**RTL_UNIT)
    matrix, x = lab_vector()
    options = {"z_bits": unit.z_bits, "lanes": unit.lanes, "queue_depth": unit.queue_depth}
    row, = _rows(files, matrix, x, (unit.n_pes,), options)
    try:
        test_dir = run(unit, "sim.tb.spmv", name="spmv_3pe_cycles", testcase="benchmark",
                       params={"jobs": [{"name": "lab 4", "matrix": matrix.tolist(),
                                         "x": x.tolist()}], "out": "lab4.json"})
    except (SimulatorMissing, SimulationFailed) as error:
        raise StudentError(f"the unit did not run under Verilator: "
                           f"{str(error).splitlines()[0]}") from None
    mark, = json.loads((test_dir / "lab4.json").read_text())
    measured = mark["first_result"] - mark["first_act"]
    got = _number(row.get("cycles"), "sweep's 'cycles'")
    if got != measured:
        raise Divergence(f"on Verilator, the digits layer 0 (64x64, 80% pruned) on "
                         f"SpMV(n_pes=3, z_bits=3, lanes=4, queue_depth=6): the unit took "
                         f"{measured} cycles from its first activation beat to its first "
                         f"result, your sweep gives {got:g}")


PARTS = [
    Part("encode", 4, check_encode, timeout=30),
    Part("PE work", 2, check_work, timeout=30),
    Part("load balance", 2, check_sweep, timeout=60),
    Part("RTL on Verilator", 2, check_rtl, timeout=280),
]
