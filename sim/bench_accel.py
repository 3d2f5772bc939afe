"""The digits MLP through the accelerator's RTL: bit-exactness, cycles per inference, overhead.

Every precision of golden.network.PRECISIONS at two sparsities, compiled by golden.accel for
the accelerator ``python -m gen --unit accel`` makes (array 8x8 mixed by default), a batch
of test images per run, three runs back to back, on Verilator. ``cycles_per_inference`` is
measured on the RTL between consecutive publications (steady state) over the batch;
``model_cycles_per_inference`` is golden.accel's cycle model of the same;
``engine_cycles_per_inference`` the sum over the program's engine instructions of what the
engine alone takes with an ideal source and sink (``gemm_cycles``, ``spmv_cycles``, the
top-k engine's cycles), over the batch; ``overhead`` their ratio. ``link_bytes_per_inference``
is what the accelerator's UART link carries per image in the default mode (the class: a FILL
and a COLLECT per batch, docs/host-protocol.md), ``gemm_link_bytes_per_inference`` what the
array's GEMM-per-frame link of the board tops would carry for the same layers (a CONFIG per
layer and tile row, a STEP frame per step, a READ per result beat); the rates are inferences
per second at ``--clock-mhz`` (compute-bound) and at ``--baud`` (link-bound, 10 bits a byte).
"""

import json
import sys
import tempfile
from pathlib import Path

from boards.top import BAUD, BOARDS
from gen.cli import parse_array
from golden.bitfusion import lanes
from golden.network import PRECISIONS, digits_network, digits_split
from rtl.accel.config import AccelConfig
from rtl.accel.core import Accelerator
from rtl.accel.isa import Space
from rtl.accel.link import TRANSFER_BYTES
from rtl.framing import ResponseHeader
from rtl.hostlink import CONFIG_BYTES, step_layout
from sim import runner
from sim.progress import FIRST_BUILD, Progress

#: The clock the ULX3S's accelerator runs at (from its PLL), in MHz.
ULX3S_ACCEL_MHZ = BOARDS["ulx3s-85f"].clock_hz("accel") / 1e6
SPARSITIES = (0.5, 0.9)
RUNS = 3


def add_arguments(parser):
    parser.add_argument("--array", default="8x8", metavar="RxC",
                        help="the accelerator's array (default: 8x8)")
    parser.add_argument("--bits", default="mixed", help="its precision (default: mixed)")
    parser.add_argument("--images", type=int, default=16, metavar="B",
                        help="images per run (default: 16)")
    parser.add_argument("--sparse", action="store_true",
                        help="also run the hidden layers on the sparse unit")
    parser.add_argument("--clock-mhz", type=float, default=ULX3S_ACCEL_MHZ,
                        help=f"clock of the inference rate (default: {ULX3S_ACCEL_MHZ:g}, the "
                             f"ULX3S's accelerator's)")
    parser.add_argument("--baud", type=int, default=BAUD["accel"],
                        help=f"baud rate of the link-bound rate (default: {BAUD['accel']}, the "
                             f"accelerator's link's on both boards)")


#: Bytes of a frame besides its payload: the 4-byte header and the CRC.
FRAME_BYTES = ResponseHeader.size // 8 + 2


def link_bytes(program, config):
    """Bytes of one batch on the accelerator's link, class output: the FILL request (the input
    page's image groups) and its answer, the COLLECT request and its answer (a byte a class)."""
    groups = program.batch // config.rows
    words = program.input_src + (groups - 1) * program.input_stride + program.input_words
    fill = words * config.chunks(Space.ACT) * 4
    return 4 * FRAME_BYTES + fill + TRANSFER_BYTES + program.batch


def gemm_link_bytes(program, config):
    """Bytes of one batch on the array's link (docs/host-protocol.md, the array's commands):
    per layer (``program`` all on the array) a CONFIG and its answer per batch, a STEP and its
    answer per step, a READ
    and its answer (a result beat) per beat; the layers' activations would come back through
    the host, which requantizes them."""
    step = step_layout(config.rows, config.cols, config.word_bits).size // 8
    beat = config.rows_per_beat * config.cols * config.acc_width // 8
    per_tile = config.rows // config.rows_per_beat
    total = 0
    for layer in program.layers:
        tiles = program.batch // config.rows * -(-layer.outputs // config.cols)
        k_steps = -(-layer.inputs // lanes(*layer.mode))
        total += 2 * FRAME_BYTES + CONFIG_BYTES
        total += tiles * k_steps * (2 * FRAME_BYTES + step)
        total += tiles * per_tile * (2 * FRAME_BYTES + beat)
    return total


def engine_cycles(model_trace):
    """Cycles of the engine instructions of one run (the first SYNC to the DONE)."""
    total, inside = 0, False
    for step in model_trace:
        if step["opcode"] == "SYNC":
            inside = True
        elif step["opcode"] == "DONE" and inside:
            return total
        elif inside and "engine_cycles" in step and step["opcode"] != "LOAD_SPMV":
            total += step["engine_cycles"]
    raise ValueError("the program has no SYNC ... DONE")


def run(args):
    from golden.accel import AccelModel, compile_network
    from sim.tb.accel import network_job
    rows, cols = parse_array(args.array)
    bits = int(args.bits) if args.bits.isdigit() else args.bits
    config = AccelConfig(rows=rows, cols=cols, precision=bits)
    x_test = digits_split()[1][:args.images * RUNS]
    jobs, rows_out = [], []
    choices = [("array", None)] + ([("spmv", ("spmv", "spmv", "array"))] if args.sparse else [])
    for precision in PRECISIONS:
        for sparsity in SPARSITIES:
            network = digits_network(PRECISIONS[precision], sparsity)
            a0 = network.quantize_input(x_test)
            for label, engines in choices:
                job = network_job(config, network, a0, batch=args.images, engines=engines,
                                  name=f"{precision} {sparsity} {label}")
                program = compile_network(network, config, args.images, engines=engines)
                model = AccelModel(config)
                model.load(program)
                model.infer(program, a0[:args.images])
                job["engine_cycles"] = engine_cycles(model.timing.trace)
                job["link_bytes"] = link_bytes(program, config)
                job["gemm_link_bytes"] = gemm_link_bytes(
                    compile_network(network, config, args.images, engines=("array",) * 3),
                    config)
                jobs.append(job)
                rows_out.append({"precision": precision, "sparsity": sparsity,
                                 "engines": "/".join(job["engines"]), "images": args.images})
    progress = Progress(2, None if args.quiet else sys.stderr, kinds=["Verilog", "simulation"])
    name = f"accel_{rows}x{cols}_{bits}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        with progress.job(f"accelerator {args.array} {bits}: Verilog"):
            accel = Accelerator(config)
            source = runner.verilog_of(accel, name)
            params = runner.resolve_params(accel, "sim.tb.accel",
                                           {"jobs": jobs, "out": str(out)})
        with progress.job(f"accelerator {args.array} {bits}: {len(jobs)} networks, {RUNS} runs "
                          f"of {args.images} images simulated", FIRST_BUILD):
            runner.run(source, "sim.tb.accel", name=name, testcase="benchmark", params=params)
        measured = {m["name"]: m for m in json.loads(out.read_text())}
    table = []
    for row, job in zip(rows_out, jobs):
        got = measured[job["name"]]
        steady = got["published"][-1] - got["published"][-2] if got["published"] else None
        model = job["published"][-1] - job["published"][-2]
        table.append({**row, "bit_exact": got["bit_exact"],
                      "cycles_per_inference": steady and round(steady / args.images, 2),
                      "model_cycles_per_inference": round(model / args.images, 2),
                      "engine_cycles_per_inference": round(job["engine_cycles"] / args.images, 2),
                      "overhead": steady and round(steady / job["engine_cycles"], 3),
                      "link_bytes_per_inference": round(job["link_bytes"] / args.images, 2),
                      "gemm_link_bytes_per_inference":
                          round(job["gemm_link_bytes"] / args.images, 1),
                      "inferences_per_s_compute":
                          steady and round(args.clock_mhz * 1e6 * args.images / steady),
                      "inferences_per_s_link":
                          round(args.baud / 10 * args.images / job["link_bytes"]),
                      "inferences_per_s_gemm_link":
                          round(args.baud / 10 * args.images / job["gemm_link_bytes"], 1)})
    document = {"accelerator": config.parameters(), "results": table}
    if not args.json:
        from sim.bench import print_table
        print(f"digits MLP on the accelerator {args.array} {bits} (RTL on Verilator), "
              f"{args.images} images per run, steady state of {RUNS} runs")
        print_table(table, list(table[0]))
    return document
