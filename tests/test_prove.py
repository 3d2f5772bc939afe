"""The formal proofs (``python -m sim.prove``): each property holds, and each can fail.

A property that passes says little unless a mistake makes it fail: every property is also
checked with each deliberate fault its harness can inject (a lane swapped on the way into the
PE, a result bit flipped, a bound one step too generous, a sink that loses a beat, a payload
that changes while it waits), and must then FAIL. The proofs that take minutes run with
``-m slow``; a fault is usually found in seconds.
"""

import json

import pytest

from sim.formal import run
from sim.prove import PROPERTIES, main

BY_NAME = {p.name: p for p in PROPERTIES}

#: Faults found in seconds even on a property whose proof takes minutes: run by default (the
#: other modes' dot-product faults are as quick, but behind -m slow to keep the run short).
QUICK_FAULTS = {("fusion_dot_2x2", "lane_swap"), ("fusion_dot_2x2", "result_bit"),
                ("fusion_dot_8x8", "lane_swap"), ("fusion_dot_8x8", "result_bit"),
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


def test_every_property_has_a_fault_that_must_fail():
    assert all(p.faults for p in PROPERTIES)


def test_json_rows_name_property_engine_and_status_and_exit_is_1_on_failure(capsys):
    status = main(["--only", "systolic_config_bound", "--fault", "bound_plus_one", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert status == 1
    assert [(r["property"], r["engine"], r["status"]) for r in rows] == [
        ("systolic_config_bound", BY_NAME["systolic_config_bound"].engine, "FAIL")]
    assert rows[0]["method"] == "bmc" and rows[0]["depth"] == 10 and rows[0]["seconds"] >= 0


@pytest.mark.parametrize("argv, message", [
    (["--only", "no_such_property"], "--only must name a property"),
    (["--fault", "drop_beat"], "--fault needs exactly one --only NAME"),
    (["--only", "topk_result_stream", "--fault", "bound_plus_one"],
     "fault must be one of drop_beat, unstable_payload for topk_result_stream"),
    (["--timeout", "0"], "--timeout must be a positive number of seconds"),
])
def test_bad_options_get_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
