# amaranth: UnusedElaboratable=no
"""``python -m sim.run``: simulate one engine with its default tests, optionally with waveforms.

Each engine takes the options of ``python -m gen`` for it and runs the cocotb tests of its
test module (``sim/tb/<engine>.py``) with their default parameters (random work in every
mode and a layer of the digits network: see docs/simulation.md). It prints a line per test,
the total, and where the waveform is and how to open it. Exit status: 0 when every test
passes, 1 when one fails (or the build or the simulator does), 2 for a usage mistake.
"""

import argparse
import logging
import re
import sys
import threading
import time
from pathlib import Path

from amaranth.hdl import Value

from gen import spmv as gen_spmv, systolic as gen_systolic, topk as gen_topk
from gen.cli import OneLineParser, UsageError, options_named, parse_array
from gen.progress import LogFollower
from rtl.hostlink import HostLink
from rtl.systolic import SystolicArray
from sim.runner import (SIMULATORS, SimulationFailed, SimulatorMissing, build_root, clean,
                        default_simulator, results, run, waves_file)

__all__ = ["ENGINES", "main"]

#: Each engine's test module and the tests of its default run (every test but the
#: benchmark, which the ``sim.bench`` commands run).
ENGINES = {
    "array": ("sim.tb.systolic", [
        "random_gemms_in_every_mode_under_stalls", "cycle_count_matches_golden_model",
        "digits_mlp_layers_bit_exact", "back_to_back_gemms_of_different_modes",
        "result_back_pressure_stalls_the_array_without_loss", "reset_mid_gemm_then_a_clean_gemm",
        "configuration_beyond_the_k_bound_is_rejected"]),
    "spmv": ("sim.tb.spmv", ["matrices_and_vectors_bit_exact", "reset_mid_vector_then_clean_run"]),
    "topk": ("sim.tb.topk", ["batches_bit_exact", "overlapped_batches", "cycle_model_exact",
                             "spatten_cascade_token_pruning",
                             "reset_mid_batch_then_clean_batch", "k_out_of_range_sets_error"]),
    "hostlink": ("sim.tb.hostlink", [
        "identify_and_counters", "the_board_and_the_host_compute_the_same_crc",
        "digits_layer_over_the_link", "bad_frames_are_answered_and_the_link_recovers",
        "a_frame_whose_crc_does_not_match_is_refused",
        "a_byte_with_a_low_stop_bit_is_a_framing_error",
        "bytes_sent_during_an_answer_are_an_overrun",
        "the_array_refuses_a_configuration_and_the_link_answers_rejected",
        "a_failure_in_the_middle_of_a_gemm_leaves_the_array_reset",
        "fuzz_the_link_then_run_an_exact_gemm"]),
}

#: GTKWave save files of each engine's default design (:func:`save_file`); a run with other
#: options writes its own beside its waveform.
WAVES_DIR = Path(__file__).parent / "waves"

EXAMPLES = """\
examples:
  python -m sim.run array --array 2x2 --bits mixed --waves    a 2x2 array, waveform for GTKWave
  python -m sim.run spmv --spmv-pes 2 --sim icarus            the sparse unit on Icarus Verilog
  python -m sim.run topk --topk-n 64 --topk-k 4 --seed 3
  python -m sim.run hostlink                                  the iCEBreaker's UART link + array
  python -m sim.run --clean                                   empty the build cache (sim_build/)
"""


def _hostlink_arguments(parser):
    group = parser.add_argument_group("host link")
    group.add_argument("--array", metavar="RxC", default="2x2",
                       help="the linked array's PE rows x columns (default: 2x2, the "
                            "iCEBreaker's; mixed precision, 32-bit accumulators, one edge "
                            "register)")
    group.add_argument("--divisor", type=int, default=4, metavar="N",
                       help="clock cycles per UART bit, at least 4 (default: 4)")


def save_file(scopes):
    """The text of a GTKWave save file showing the ports of each ``(scope, component)``.

    Clock and reset come first, then the ports of each component in its signature's order,
    a stream's valid, ready and payload together under the stream's name; one-bit signals in
    binary, wider ones in hexadecimal, named with their bit range as GTKWave needs (it finds
    no vector by its name alone).
    """
    top = scopes[0][0]
    lines = ["[*] python -m sim.run: the ports of the design under test", "[timestart] 0",
             f"[treeopen] {top}.", "@28", f"{top}.clk", f"{top}.rst"]
    handshake = {"valid": 0, "ready": 1}
    for scope, component in scopes:
        groups = {}
        for path, _, value in component.signature.flatten(component):
            groups.setdefault(path[0], []).append((path, len(Value.cast(value))))
        for group, ports in groups.items():
            if len(ports) > 1:
                lines += ["@200", f"-{scope}.{group}"]
            for path, width in sorted(ports, key=lambda port: handshake.get(port[0][-1], 2)):
                name = f"{scope}.{'__'.join(map(str, path))}"
                lines += ["@28", name] if width == 1 else ["@22", f"{name}[{width - 1}:0]"]
    return "\n".join(lines) + "\n"


def _hostlink(args):
    rows, cols = parse_array(args.array)
    with options_named(gen_systolic.OPTIONS):
        array = SystolicArray(rows, cols, "mixed", edge_registers=1)
    try:
        link = HostLink(array, args.divisor)
    except ValueError as error:
        raise UsageError(f"--{error}") from None
    return link, [("hostlink", link), ("hostlink.array", array)]


def _design(args):
    """``(component, its scopes for save_file)`` of the engine ``args`` describe.

    The Verilog module is named after the engine.
    """
    if args.engine == "hostlink":
        return _hostlink(args)
    module = {"array": gen_systolic, "spmv": gen_spmv, "topk": gen_topk}[args.engine]
    with options_named(module.OPTIONS):
        design = module.design(args).component
    return design, [(args.engine, design)]


def build_parser():
    parser = OneLineParser(prog="python -m sim.run", epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Simulate an engine's generated Verilog with its default "
                                 "cocotb tests (docs/simulation.md).")
    parser.add_argument("--clean", action="store_true",
                        help="remove every build in the cache (sim_build/) not in use, and exit")
    engines = parser.add_subparsers(dest="engine", metavar="ENGINE",
                                    parser_class=OneLineParser)
    adders = {"array": gen_systolic.add_arguments, "spmv": gen_spmv.add_arguments,
              "topk": gen_topk.add_arguments, "hostlink": _hostlink_arguments}
    helps = {"array": "Bit Fusion systolic array (gen --unit array)",
             "spmv": "CSC sparse matrix-vector unit (gen --unit spmv)",
             "topk": "top-k engine (gen --unit topk)",
             "hostlink": "the board's UART host link with an array, driven by boards.host.Host"}
    for engine, add in adders.items():
        sub = engines.add_parser(engine, help=helps[engine], description=helps[engine])
        add(sub)
        sub.add_argument("--sim", choices=SIMULATORS,
                         help="simulator (default: $SIM, else verilator)")
        sub.add_argument("--waves", action="store_true",
                         help="write a waveform (Verilator: VCD, Icarus: FST) and print how "
                              "to open it")
        sub.add_argument("--seed", type=int, metavar="N",
                         help="seed of the random work and stalls (default: the test "
                              "module's)")
    return parser


def _clean():
    removed, freed, kept = clean()
    print(f"removed {len(removed)} builds ({freed / 2**20:.0f} MB) from {build_root()}"
          + (f"; {kept} in use kept" if kept else ""))
    return 0


class _Follower(threading.Thread):
    """Prints each test as the simulator starts it, from the run's ``sim.log``."""

    STARTED = re.compile(r"running \S+\.(\w+) \((\d+)/(\d+)\)")

    def __init__(self):
        super().__init__(daemon=True)
        self.log = None
        self.done = threading.Event()

    def follow(self, test_dir):
        self.log = LogFollower(test_dir / "sim.log")
        self.start()

    def run(self):
        while not self.done.wait(0.5):
            for line in self.log.new_lines():
                match = self.STARTED.search(line)
                if match:
                    print(f"[{match[2]}/{match[3]}] {match[1]} ...", flush=True)

    def stop(self):
        self.done.set()
        if self.is_alive():
            self.join()


def _report(results, elapsed):
    for result in results:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.name}  ({result.seconds:.1f} s)")
    passed = sum(result.passed for result in results)
    print(f"{passed} of {len(results)} tests passed in {elapsed:.0f} s")


def _viewing(test_dir, simulator, scopes, engine):
    """Where the waveform of the run in ``test_dir`` is, and the commands that open it."""
    path = waves_file(test_dir, simulator)
    text = save_file(scopes)
    save = WAVES_DIR / f"{engine}.gtkw"
    if not save.is_file() or save.read_text() != text:
        save = test_dir / f"{engine}.gtkw"
        save.write_text(text)
    return (f"waveform: {path}\n"
            f"  open it: gtkwave {path} {save}\n"
            f"       or: surfer {path}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.clean:
        if args.engine:
            parser.error("--clean takes no engine")
        return _clean()
    if args.engine is None:
        parser.error(f"choose an engine: {', '.join(ENGINES)} (or --clean)")
    try:
        if args.seed is not None and args.seed < 0:
            raise UsageError(f"--seed must be a whole number of at least 0, not {args.seed}")
        simulator = args.sim or default_simulator()
        design, scopes = _design(args)
    except (UsageError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    params = {} if args.seed is None else {"seed": args.seed}
    test_module, tests = ENGINES[args.engine]
    print(f"{args.engine}: {len(tests)} tests of {test_module} on {simulator}", flush=True)
    start = time.monotonic()
    follower = _Follower()
    building = logging.StreamHandler(sys.stderr)     # the runner says when it builds
    logger = logging.getLogger("sim.runner")
    logger.addHandler(building)
    logger.setLevel(logging.INFO)
    try:
        test_dir = run(design, test_module, name=args.engine, simulator=simulator, testcase=tests,
                       params=params, waves=args.waves, seed=args.seed, started=follower.follow)
    except SimulatorMissing as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except SimulationFailed as failure:
        if failure.results is None:
            print(f"{parser.prog}: {str(failure).splitlines()[0]}", file=sys.stderr)
            return 1
        _report(failure.results, time.monotonic() - start)
        print(f"log: {failure.test_dir / 'sim.log'}")
        if args.waves:
            print(_viewing(failure.test_dir, simulator, scopes, args.engine))
        return 1
    finally:
        follower.stop()
        logger.removeHandler(building)
    _report(results(test_dir), time.monotonic() - start)
    if args.waves:
        print(_viewing(test_dir, simulator, scopes, args.engine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
