"""Parsers of crm_simulate's XML output and saved graphs, on captured real outputs.

The fixtures in tests/unit/data/planner/ were captured from Pacemaker 2.1.5 (see the
README there for the exact commands).
"""

from __future__ import annotations

import pathlib

import pytest

from xenha.admission.resources import Resources
from xenha.planner.naive import naive_argv, parse_revised_status, stopped_guests
from xenha.planner.scheduler import (
    GraphAction,
    SchedulerError,
    SimulationRequest,
    final_placement,
    interpret,
    parse_graph,
    parse_simulate_output,
    scheduler_environment,
    simulate_argv,
)
from xenha.runner import CommandResult

DATA = pathlib.Path(__file__).parent / "data" / "planner"


def test_argv_computes_the_transition_without_simulating_it() -> None:
    request = SimulationRequest("/tmp/cib.xml", ("host1", "host2"), False, "/tmp/g.xml")
    assert simulate_argv(request) == [
        "crm_simulate",
        "--xml-file",
        "/tmp/cib.xml",
        "--run",
        "--show-utilization",
        "--output-as=xml",
        "--save-graph",
        "/tmp/g.xml",
        "--node-fail",
        "host1",
        "--node-fail",
        "host2",
        "--quorum=false",
    ]
    assert "--quorum" not in " ".join(simulate_argv(SimulationRequest("c", (), None, "g")))


def test_the_allocator_setting_is_added_once() -> None:
    assert scheduler_environment({"PATH": "/bin"})["GLIBC_TUNABLES"] == "glibc.malloc.mxfast=0"
    assert (
        scheduler_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"]
        == "glibc.malloc.arena_max=2:glibc.malloc.mxfast=0"
    )
    kept = scheduler_environment({"GLIBC_TUNABLES": "glibc.malloc.mxfast=64"})
    assert kept["GLIBC_TUNABLES"] == "glibc.malloc.mxfast=64"


def test_output_before_the_failure_and_the_assignments() -> None:
    output = parse_simulate_output((DATA / "fail-host03.output.xml").read_bytes())
    assert output.active_before["vm0003"] == ("host03",)
    assert output.active_before["vm0009"] == ("host01",)
    assert output.active_before["xen-host"] == ("host01", "host02", "host03")
    assert output.assignments["vm0003"] == "host02"
    assert "vm0007" not in output.assignments  # the scheduler could not place it
    assert output.remaining["host01"] == Resources(1024, 8)
    assert output.remaining["host02"] == Resources(2048, 5)
    assert "move resource=vm0003 source=host03 dest=host02" in output.summary


def test_graph_actions_and_final_placement_with_guests_left_stopped() -> None:
    output = parse_simulate_output((DATA / "fail-host03.output.xml").read_bytes())
    actions = parse_graph((DATA / "fail-host03.graph.xml").read_bytes())
    assert GraphAction("vm0003", "start", "host02", False) in actions
    assert GraphAction("vm0007", "stop", "", True) in actions  # implied by fencing
    assert GraphAction("", "stonith", "host03", False) in actions
    placement = final_placement(output.active_before, ["host03"], actions)
    assert placement["vm0003"] == ("host02",)
    assert placement["vm0004"] == ("host02",)
    assert placement["vm0007"] == ()
    assert placement["vm0010"] == ()
    assert placement["vm0001"] == ("host01",)


def test_live_migrations_between_survivors() -> None:
    output = parse_simulate_output((DATA / "fail-host3.output.xml").read_bytes())
    actions = parse_graph((DATA / "fail-host3.graph.xml").read_bytes())
    assert GraphAction("vm1", "migrate_to", "host1", False) in actions
    assert GraphAction("vm1", "migrate_from", "host2", False) in actions
    placement = final_placement(output.active_before, ["host3"], actions)
    assert placement == {
        "fence": ("host1",),
        "xen-host": ("host1", "host2"),
        "vm1": ("host2",),
        "vm2": ("host1",),
        "vm3": ("host2",),
        "vm4": ("host1",),
        "vm5": ("host1",),
    }


def test_the_naive_loop_reads_the_same_answer_from_the_simulated_status() -> None:
    revised = parse_revised_status((DATA / "fail-host03.simulate.xml").read_bytes())
    guests = [f"vm{index:04d}" for index in range(1, 13)]
    assert stopped_guests(revised, guests, ["host03"]) == frozenset({"vm0007", "vm0010"})
    assert naive_argv("c.xml", ["host03"], None) == [
        "crm_simulate",
        "--xml-file",
        "c.xml",
        "--simulate",
        "--output-as=xml",
        "--node-fail",
        "host03",
    ]


def test_errors_reported_by_crm_simulate() -> None:
    text = (DATA / "invalid-cib.output.xml").read_text()
    with pytest.raises(SchedulerError, match="crm_simulate failed: Invalid configuration"):
        parse_simulate_output(text)
    request = SimulationRequest("bad.xml", ("host1",), None, "g.xml")
    result = CommandResult(("crm_simulate",), 78, text, "bad.xml:14: element primitive: Relax-NG validity error : ...")
    with pytest.raises(SchedulerError) as raised:
        interpret(request, result, b"", 0.1)
    assert str(raised.value) == (
        "crm_simulate failed: Invalid configuration "
        "(bad.xml:14: element primitive: Relax-NG validity error : ...); scenario: losing host1"
    )


@pytest.mark.parametrize("data", [b"not xml", b"<transition_graph><synapse>", b"<other/>"])
def test_bad_graphs(data: bytes) -> None:
    with pytest.raises(SchedulerError):
        parse_graph(data)


def test_a_timeout_is_an_error_naming_the_scenario() -> None:
    request = SimulationRequest("c.xml", (), None, "g.xml")
    with pytest.raises(SchedulerError, match="did not finish in time; scenario: no host failed"):
        interpret(request, CommandResult(("crm_simulate",), None, timed_out=True), b"", 900.0)
