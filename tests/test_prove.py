"""The formal proofs (``python -m sim.prove``): each property holds, and each can fail.

A property that passes says little unless a mistake makes it fail: every property is also
checked with each deliberate fault its harness can inject (a lane swapped on the way into the
PE, a result bit flipped, a bound one step too generous, a sink that loses a beat, a payload
that changes while it waits), and must then FAIL. The proofs that take minutes run with
``-m slow``; a fault is usually found in seconds.
"""

import json

import pytest

from rtl.fusion import modes
from sim.formal import run
from sim.prove import EXPECTED_SECONDS, PROPERTIES, announce, expected_seconds, main

BY_NAME = {p.name: p for p in PROPERTIES}

#: Faults found in seconds even on a property whose proof takes minutes: run by default (the
#: other modes' dot-product faults are as quick, but behind -m slow to keep the run short).
QUICK_FAULTS = {("fusion_dot_2x2", "lane_swap"), ("fusion_dot_2x2", "result_bit"),
                ("fusion_dot_8x8", "lane_swap"), ("fusion_dot_8x8", "result_bit"),
                ("fusion_dot_2x8_ss", "lane_swap"), ("fusion_dot_2x8_ss", "result_bit"),
                ("spmv_result_stream", "drop_beat"), ("spmv_result_stream", "unstable_payload")}


def _marked(prop, fast=False):
    return () if fast or not prop.slow else (pytest.mark.slow,)


@pytest.mark.parametrize("prop", [pytest.param(p, id=p.name, marks=_marked(p))
                                  for p in PROPERTIES])
def test_property_holds(prop):
    outcome = run(prop)
    assert outcome.status == "PASS", f"{prop.name}: {outcome.status} {outcome.detail}"


@pytest.mark.parametrize("prop, fault", [
    pytest.param(p, fault, id=f"{p.name}-{fault}",
                 marks=_marked(p, fast=(p.name, fault) in QUICK_FAULTS))
    for p in PROPERTIES for fault in p.faults])
def test_property_fails_on_a_deliberate_mistake(prop, fault):
    outcome = run(prop, fault)
    assert outcome.status == "FAIL", f"{prop.name} with {fault}: {outcome.status}"


def test_every_mode_has_a_dot_product_proof_over_every_signedness():
    # A mode is proved whole (any signedness) or split in four, one per signedness: a case
    # missing from a split would leave that mode partly unproved.
    covered = {}
    for prop in PROPERTIES:
        if prop.name.startswith("fusion_dot_"):
            harness = prop.harness(None)
            cases = ({(w, a) for w in (False, True) for a in (False, True)}
                     if harness.signedness is None else {harness.signedness})
            covered.setdefault(harness.widths, []).extend(cases)
    assert sorted(covered) == sorted(modes("mixed"))
    for widths, cases in covered.items():
        assert sorted(cases) == [(False, False), (False, True), (True, False), (True, True)], \
            widths


def test_every_property_has_a_fault_that_must_fail():
    assert all(p.faults for p in PROPERTIES)


def test_json_rows_name_property_engine_and_status_and_exit_is_1_on_failure(capsys):
    status = main(["--only", "systolic_config_bound", "--fault", "bound_plus_one", "--json"])
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert captured.err == ("[1/1] checking systolic_config_bound (expected about 4 s), "
                            "about 0:04 left in all ...\n")
    assert status == 1
    assert [(r["property"], r["engine"], r["status"]) for r in rows] == [
        ("systolic_config_bound", BY_NAME["systolic_config_bound"].engine, "FAIL")]
    assert rows[0]["method"] == "bmc" and rows[0]["depth"] == 10 and rows[0]["seconds"] >= 0


def test_every_property_has_an_expected_time():
    assert EXPECTED_SECONDS.keys() == BY_NAME.keys()


def test_line_before_a_check_gives_its_expected_time_and_the_time_left_at_the_pace_so_far():
    chosen = [BY_NAME["fusion_no_overflow"], BY_NAME["systolic_config_bound"]]
    expected = [expected_seconds(prop) for prop in chosen]
    assert expected == [17, 12]
    assert announce(chosen, expected, []) == (
        "[1/2] checking fusion_no_overflow (expected about 17 s), about 0:29 left in all ...")
    # The first check took twice as long as expected: so should the rest.
    assert announce(chosen, expected, [34.0]) == (
        "[2/2] checking systolic_config_bound (expected about 12 s), about 0:24 left in all ...")


@pytest.mark.parametrize("argv, message", [
    (["--only", "no_such_property"], "--only must name a property"),
    (["--fault", "drop_beat"], "--fault needs exactly one --only NAME"),
    (["--only", "topk_result_stream", "--fault", "bound_plus_one"],
     "--fault must be one of drop_beat, unstable_payload for topk_result_stream, not "
     "'bound_plus_one'"),
    (["--timeout", "0"], "--timeout must be a positive number of seconds"),
])
def test_bad_options_get_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
