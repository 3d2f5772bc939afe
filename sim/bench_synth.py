"""Resources and Fmax of fusion arrays beside the plain ``a*b`` baseline, from yosys and nextpnr.

For every array shape, precision and device asked for, synthesizes the fusion array
(out of context, every port kept) and, per shape and device, the plain 8-bit ``a*b``
array of the same shape, in the same run. Reports LUT4, FF, DSP, BRAM, Fmax, and peak
GOPS at Fmax per 1k LUT4 (2 ops per MAC, at the precision's peak MACs per cycle) for
each precision the design supports. A design that does not fit says so.
"""

import json
import sys
import tempfile
from pathlib import Path

from gen.cli import parse_array
from gen.synth import (DEVICES, SynthesisError, nextpnr_command, packed_utilization,
                       resources, synthesize)
from rtl.baseline import PlainArray, PlainPE
from rtl.fusion import FusionPE, SliceSteer, modes
from rtl.systolic import SystolicArray, peak_macs
from sim.progress import Progress


def add_arguments(parser):
    parser.add_argument("--array", action="append", metavar="RxC",
                        help="array shape, repeatable (default: 2x2, 4x4, 8x8)")
    parser.add_argument("--bits", action="append", choices=["2", "4", "8", "mixed"],
                        help="precision, repeatable (default: all)")
    parser.add_argument("--device", action="append", choices=sorted(DEVICES),
                        help="device, repeatable (default: ice40-up5k, ecp5-85k)")
    parser.add_argument("--freq", type=float, help="target MHz (default: the device's)")
    parser.add_argument("--pe", action="store_true",
                        help="instead: cost of one PE of each kind (with its accumulator), "
                             "of a slice steer and of a plain a*b MAC: yosys's cells, and on "
                             "ECP5 nextpnr's slices after packing")


def _row(report, shape, kind, macs):
    lut = report["resources"]["lut"]["used"]
    fmax = min(c["achieved_mhz"] for c in report["fmax"].values())
    return {"device": report["device"], "array": shape, "pe": kind, "lut": lut,
            "ff": report["resources"]["ff"]["used"], "dsp": report["resources"]["dsp"]["used"],
            "bram": report["resources"]["bram"]["used"], "fmax_mhz": fmax,
            "gops_per_klut": {mode: round(2 * m * fmax / 1e3 / (lut / 1e3), 3)
                              for mode, m in macs.items()}}


def pe_costs(progress_stream=None):
    """LUT4 and DSP of single PEs on iCE40 and ECP5 (yosys, ports as the top level); on ECP5
    also the carry cells and nextpnr's LUT/carry slices after packing (a carry cell takes two
    slices, and each carry chain's packing some more)."""
    designs = [*((f"fusion PE {p}", FusionPE(p)) for p in ("mixed", 8, 4, 2)),
               ("slice steer (one per row/column)", SliceSteer("mixed", "a")),
               ("plain a*b 8-bit MAC", PlainPE())]
    families = ("ice40", "ecp5")
    progress = Progress(len(designs) * len(families), progress_stream)
    table = []
    with tempfile.TemporaryDirectory() as out:
        for number, (kind, design) in enumerate(designs):
            row = {"design": kind}
            for family in families:
                work = Path(out) / f"{family}{number}"
                with progress.job(f"{kind}: yosys synth_{family}"):
                    counts = resources(design, kind, family, work)
                row[f"{family}_lut4"], row[f"{family}_dsp"] = counts["lut"], counts["dsp"]
                if family == "ecp5":
                    row.update(_ecp5_packing(work))
            table.append(row)
    return table


def _ecp5_packing(work):
    """The carry cells of the ECP5 netlist in ``work`` (yosys's ``stat.json``) and nextpnr's
    LUT/carry slices for it after packing."""
    cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    packed = packed_utilization([*nextpnr_command("ecp5-85k"), "--json", "top.json"], work)
    return {"ecp5_carry": cells.get("CCU2C", 0), "ecp5_slices": packed["TRELLIS_COMB"]["used"]}


def run(args):
    stream = None if args.quiet else sys.stderr
    if args.pe:
        table = pe_costs(stream)
        if not args.json:
            from sim.bench import print_table
            print_table(table, list(table[0]))
        return {"pe": table}
    shapes = args.array or ["2x2", "4x4", "8x8"]
    precisions = args.bits or ["2", "4", "8", "mixed"]
    devices = args.device or ["ice40-up5k", "ecp5-85k"]
    runs = []
    for device in devices:
        for shape in shapes:
            rows, cols = parse_array(shape)
            designs = [(f"{b}-bit fusion" if b != "mixed" else "mixed fusion",
                        SystolicArray(rows, cols, "mixed" if b == "mixed" else int(b)))
                       for b in precisions]
            designs.append(("plain a*b 8-bit", PlainArray(rows, cols)))
            runs += [(device, shape, kind, array) for kind, array in designs]
    # Synthesis and place-and-route times grow about as the PE count; gen relays their phases.
    progress = Progress([array.rows * array.cols for *_, array in runs], stream, interval=None)
    table = []
    with tempfile.TemporaryDirectory() as out:
        for device, shape, kind, array in runs:
            macs = {f"{w}x{a}": peak_macs(array.rows, array.cols, w, a)
                    for w, a in modes(array.precision) if w == a}
            name = f"{kind.split()[0].replace('-', '')}_{shape}"
            with progress.job(f"{device} {shape} {kind}"):
                try:
                    report = synthesize(array, name, device, out, args.freq, progress=stream)
                except SynthesisError as error:
                    table.append({"device": device, "array": shape, "pe": kind,
                                  "note": str(error)})
                    continue
            table.append(_row(report, shape, kind, macs))
    if not args.json:
        _print_results(table)
    return {"results": table}


def _print_results(table):
    """The sweep as a text table, one GOPS/kLUT column per mode, ``-`` where a PE lacks it."""
    from sim.bench import print_table
    modes_seen = sorted({mode for row in table for mode in row.get("gops_per_klut", {})})
    flat = [{**{k: v for k, v in row.items() if k != "gops_per_klut"},
             **{f"gops/klut {mode}": row.get("gops_per_klut", {}).get(mode, "-")
                for mode in modes_seen}}
            for row in table]
    columns = ["device", "array", "pe", "lut", "ff", "dsp", "bram", "fmax_mhz",
               *(f"gops/klut {mode}" for mode in modes_seen), "note"]
    print_table(flat, columns)
