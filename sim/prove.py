"""Run the formal proofs of the engines' properties and print one line per property.

Each property (``sim/formal/``) is checked with SymbiYosys and an SMT solver (z3, or Yices 2
for the dot products split by signedness), all from PyPI;
one line per property: PASS or FAIL, the engine and its configuration, the method (``prove``:
k-induction, for every reachable state; ``bmc``: every trace of ``depth`` cycles from reset),
the depth and the seconds taken. Exit status 0 only when every property passes. Before each
check, a line on standard error names it with the seconds it took when measured and the time
left in all. What is proved and what is not: docs/verification.md.

Examples::

    python -m sim.prove                          # every property (the slow ones take minutes)
    python -m sim.prove --fast                   # the ones that take seconds
    python -m sim.prove --only topk_result_stream --json
    python -m sim.prove --only systolic_config_bound --fault bound_plus_one   # must FAIL
"""

import argparse
import json
import sys

from rtl.fusion import modes
from sim.formal import Property, ToolMissing, run
from sim.formal import fusion, spmv, systolic, topk
from sim.progress import clock_time, time_left

__all__ = ["PROPERTIES", "EXPECTED_SECONDS", "main"]


#: Modes whose dot-product proof is split by signedness (``fusion_dot_2x8_su``: signed
#: weights, unsigned activations), each checked with Yices 2: over every signedness at once
#: it did not finish in 25 min with z3 nor in 30 min with Yices.
SPLIT_BY_SIGNEDNESS = {(2, 8)}

#: The letter of each signedness in a split proof's name.
_SIGNEDNESS = {False: "u", True: "s"}


def _dot_product(w_bits, a_bits, signedness=None):
    name, kinds = f"fusion_dot_{w_bits}x{a_bits}", "any signedness"
    if signedness is not None:
        name += "_" + "".join(_SIGNEDNESS[signed] for signed in signedness)
        kinds = " weights, ".join("signed" if s else "unsigned" for s in signedness) + \
            " activations"
    return Property(
        name=name, engine="FusionMAC(mixed, acc_width=17)",
        harness=lambda fault: fusion.DotProduct("mixed", (w_bits, a_bits), fault=fault,
                                                signedness=signedness),
        mode="prove", depth=6, slow=True, faults=fusion.DotProduct.faults,
        solver="z3" if signedness is None else "yices",
        what=f"every mode {w_bits}x{a_bits} step, {kinds}, any operands: result is the "
             f"integer dot product of the lanes")


def _dot_products(w_bits, a_bits):
    if (w_bits, a_bits) not in SPLIT_BY_SIGNEDNESS:
        return [_dot_product(w_bits, a_bits)]
    return [_dot_product(w_bits, a_bits, (w_signed, a_signed))
            for w_signed in (False, True) for a_signed in (False, True)]


#: Every property, in the order ``python -m sim.prove`` checks them.
PROPERTIES = [
    *(prop for w_bits, a_bits in modes("mixed") for prop in _dot_products(w_bits, a_bits)),
    Property(
        name="fusion_no_overflow", engine="FusionPE accumulate stage (mixed, acc_width=17)",
        harness=lambda fault: fusion.NoOverflow("mixed", 17, fault=fault),
        mode="prove", depth=4, faults=fusion.NoOverflow.faults,
        what="dot products of at most k_step_bound steps, any mode: every running sum is "
             "exact"),
    Property(
        name="systolic_config_bound", engine="SystolicArray(2x2, mixed, acc_width=17)",
        harness=lambda fault: systolic.ConfigBound(2, 2, "mixed", 17, fault=fault),
        mode="bmc", depth=10, faults=systolic.ConfigBound.faults,
        what="a configuration above k_step_bound (or with 0 steps or tiles) sets error and "
             "starts nothing; error is set only so"),
    Property(
        name="systolic_result_stream",
        engine="SystolicArray(2x1, 2-bit, acc_width=16, fifo_depth=3)",
        harness=lambda fault: systolic.ResultStream(2, 1, 2, 16, 3, fault=fault),
        mode="bmc", depth=22, slow=True, faults=systolic.ResultStream.faults,
        what="result keeps the stream contract; each finished tile's beats come out once, "
             "none withheld, under any back-pressure"),
    Property(
        name="spmv_result_stream", engine="SpMV(2 PEs, 4x4, 8 entries)",
        harness=lambda fault: spmv.ResultStream(2, 4, 4, 8, fault=fault),
        mode="bmc", depth=16, slow=True, faults=spmv.ResultStream.faults,
        what="result keeps the stream contract; ceil(rows/N) beats per vector, after its "
             "last beat, before the next vector"),
    Property(
        name="topk_result_stream", engine="TopK(n_max=4, k_max=2, par=2, 3-bit)",
        harness=lambda fault: topk.ResultStream(4, 2, 2, 3, fault=fault),
        mode="bmc", depth=12, faults=topk.ResultStream.faults,
        what="result keeps the stream contract; min(k, n) ascending indices per batch, "
             "last on the final one"),
]


#: Seconds each property's check took on the development machine (2 cores shared with other
#: jobs; docs/verification.md, "Measured times"), for the line printed before each check.
EXPECTED_SECONDS = {
    "fusion_dot_2x2": 279, "fusion_dot_2x4": 289, "fusion_dot_2x8_uu": 2294,
    "fusion_dot_2x8_us": 171, "fusion_dot_2x8_su": 36, "fusion_dot_2x8_ss": 41,
    "fusion_dot_4x2": 54, "fusion_dot_4x4": 89, "fusion_dot_4x8": 1404,
    "fusion_dot_8x2": 100, "fusion_dot_8x4": 93, "fusion_dot_8x8": 262,
    "fusion_no_overflow": 17, "systolic_config_bound": 12, "systolic_result_stream": 408,
    "spmv_result_stream": 60, "topk_result_stream": 16,
}

#: Seconds a check with a deliberate mistake took where it was not the usual 2 to 4.
EXPECTED_FAULT_SECONDS = {("systolic_result_stream", "unstable_payload"): 10,
                          ("systolic_result_stream", "drop_beat"): 196}


def expected_seconds(prop, fault=None):
    """Seconds the check of ``prop`` (with ``fault``, if not None) is expected to take."""
    if fault is not None:
        return EXPECTED_FAULT_SECONDS.get((prop.name, fault), 4)
    return EXPECTED_SECONDS[prop.name]


def _duration(seconds):
    return f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} min"


def announce(chosen, expected, seconds):
    """The line printed before the next of the ``chosen`` checks.

    ``expected`` lists each check's expected seconds; ``seconds`` the seconds the checks done
    so far took. The time left is the expected time of the checks still to run, at the pace
    of those done against their expectation (before any is done, as expected).
    """
    number = len(seconds)
    line = (f"[{number + 1}/{len(chosen)}] checking {chosen[number].name} "
            f"(expected about {_duration(expected[number])})")
    expected_left = sum(expected[number:])
    left = time_left(sum(seconds), sum(expected[:number]), expected_left)
    return (line + f", about {clock_time(expected_left if left is None else left)} "
            f"left in all ...")


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m sim.prove", description=__doc__.split("\n\n")[0],
        epilog="examples:\n" + __doc__.split("Examples::")[1].strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="check only this property (repeatable); names: "
                             + ", ".join(p.name for p in PROPERTIES))
    parser.add_argument("--fast", action="store_true",
                        help="skip the properties that take minutes")
    parser.add_argument("--fault", metavar="FAULT",
                        help="inject this deliberate mistake (with one --only); the property "
                             "must then FAIL")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="give up on a property after this long (status TIMEOUT)")
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep each property's files and traces in DIR/<name>")
    parser.add_argument("--json", action="store_true", help="print JSON rows, one per property")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    by_name = {p.name: p for p in PROPERTIES}
    try:
        for name in args.only or ():
            if name not in by_name:
                raise ValueError(f"--only must name a property ({', '.join(by_name)}), "
                                 f"not {name!r}")
        if args.fault is not None and len(args.only or ()) != 1:
            raise ValueError("--fault needs exactly one --only NAME")
        if args.timeout is not None and args.timeout <= 0:
            raise ValueError(f"--timeout must be a positive number of seconds, not "
                             f"{args.timeout!r}")
        chosen = [by_name[n] for n in args.only] if args.only else [
            p for p in PROPERTIES if not (args.fast and p.slow)]
        if args.fault is not None and args.fault not in chosen[0].faults:
            raise ValueError(f"--fault must be one of {', '.join(chosen[0].faults)} for "
                             f"{chosen[0].name}, not {args.fault!r}")
        expected = [expected_seconds(prop, args.fault) for prop in chosen]
        outcomes = []
        for prop in chosen:
            print(announce(chosen, expected, [o.seconds for o in outcomes]), file=sys.stderr,
                  flush=True)
            workdir = f"{args.workdir}/{prop.name}" if args.workdir else None
            outcome = run(prop, args.fault, workdir=workdir, timeout=args.timeout)
            outcomes.append(outcome)
            if not args.json:
                print(f"{outcome.status:7} {prop.name:24} {prop.engine:52} {prop.mode} depth "
                      f"{prop.depth:<3} {outcome.seconds:7.1f} s"
                      + (f"  {outcome.detail}" if outcome.detail else ""), flush=True)
    except (ValueError, ToolMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([o.row() for o in outcomes], indent=1))
    return 0 if all(o.status == "PASS" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
