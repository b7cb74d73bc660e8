"""Rendering: exit codes, headlines, JSON, host usage — on plans built by hand."""

from __future__ import annotations

from xenha.admission.load import HostLoad
from xenha.admission.resources import Resources
from xenha.planner.cibmodel import parse_cib
from xenha.planner.report import (
    CRITICAL,
    OK,
    UNKNOWN,
    WARNING,
    error_json,
    headline,
    plan_exit_code,
    plan_json,
    render_plan_text,
)
from xenha.planner.scenarios import (
    Plan,
    Scenario,
    ScenarioResult,
    StoppedGuest,
    enumerate_scenarios,
    keeps_quorum,
)
from xenha.planner.status import host_usage
from xenha.planner.synthetic import GuestSpec, HostSpec, render_cib

MODEL = parse_cib(
    render_cib(
        [HostSpec("h1", 8192, 4), HostSpec("h2", 8192, 4), HostSpec("h3", 8192, 4)],
        [GuestSpec("web1", 4096, 2, "h1"), GuestSpec("db1", 6144, 2, "h2")],
    ).encode()
)


def result(failed: tuple[str, ...], stopped: tuple[StoppedGuest, ...] = (), **kwargs: object) -> ScenarioResult:
    defaults: dict[str, object] = {
        "scenario": Scenario(failed, keeps_quorum(3, 3 - len(failed))),
        "method": "scheduler",
        "stopped": stopped,
        "displaced": (),
        "survivors_capacity": Resources(8192 * (3 - len(failed)), 4 * (3 - len(failed))),
        "hosts_after": (HostLoad("h3", Resources(8192, 4), Resources(6144, 2)),),
        "shortfall": Resources(),
        "reason": "the scheduler finds no host with room",
    }
    defaults.update(kwargs)
    return ScenarioResult(**defaults)  # type: ignore[arg-type]


def plan(failures: int, *results: ScenarioResult) -> Plan:
    return Plan(source="test.xml", model=MODEL, failures=failures, results=results, seconds=0.5, validated=True)


WEB1 = StoppedGuest("web1", Resources(4096, 2), ("h1",))


def test_ok() -> None:
    done = plan(1, result(()), result(("h1",)), result(("h2",)), result(("h3",)))
    assert (done.tolerated, plan_exit_code(done)) == (1, OK)
    assert headline(done) == "tolerates 1 host failure (checked up to 1)"


def test_critical_with_shortfall() -> None:
    done = plan(1, result(()), result(("h1",), (WEB1,), shortfall=Resources(2048, 0)), result(("h2",)))
    assert (done.tolerated, plan_exit_code(done)) == (0, CRITICAL)
    assert headline(done) == "tolerates no host failure; losing h1 would leave web1 stopped: 2048 MiB short"


def test_warning_when_some_but_not_all_failures_are_tolerated() -> None:
    lost_quorum = result(
        ("h1", "h2"),
        (WEB1,),
        reason="the survivors lose quorum (no-quorum-policy=stop)",
    )
    done = plan(2, result(()), result(("h1",)), result(("h2",)), lost_quorum)
    assert (done.tolerated, plan_exit_code(done)) == (1, WARNING)
    assert headline(done) == (
        "tolerates 1 host failure; losing h1 and h2 together would leave web1 stopped: "
        "the survivors lose quorum (no-quorum-policy=stop)"
    )


def test_critical_when_even_the_baseline_fails() -> None:
    done = plan(1, result((), (WEB1,)), result(("h1",)))
    assert done.tolerated is None and plan_exit_code(done) == CRITICAL
    assert headline(done).startswith("even with every host up, web1 cannot run: ")


def test_fragmentation_and_constraints_explain_a_zero_shortfall() -> None:
    fragmented = plan(1, result(()), result(("h1",), (WEB1,)))
    assert headline(fragmented).endswith(
        "4096 MiB and 2 vCPUs needed: enough spare in total, but no single host has room"
    )
    pinned = StoppedGuest("web1", Resources(4096, 2), ("h1",), room_on=("h3",))
    constrained = plan(1, result(()), result(("h1",), (pinned,)))
    assert "not for lack of room (web1 would fit on h3)" in headline(constrained)


def test_worst_scenario_first() -> None:
    small = StoppedGuest("app", Resources(1024, 1), ("h2",))
    done = plan(
        2,
        result(()),
        result(("h2",), (small,)),
        result(("h1",), (WEB1,)),
        result(("h1", "h2"), (WEB1, small)),
    )
    assert [r.scenario.failed for r in done.failing] == [("h1",), ("h2",), ("h1", "h2")]


def test_text_output_lists_scenarios_and_hosts_after_recovery() -> None:
    done = plan(1, result(()), result(("h1",), (WEB1,), shortfall=Resources(2048, 0)))
    lines = render_plan_text(done).splitlines()
    assert (
        lines[0]
        == "XENHA PLAN CRITICAL - tolerates no host failure; losing h1 would leave web1 stopped: 2048 MiB short"
    )
    assert lines[4].split()[-1] == "why"
    assert lines[5].split() == ["h1", "web1", "4096", "2048", "0", "the", "survivors", "lack", "room"]
    assert lines[-1].split() == ["h3", "8192", "6144", "2048", "4", "2", "2"]


def test_json_of_a_plan_and_of_an_error() -> None:
    document = plan_json(plan(1, result(()), result(("h1",), (WEB1,))))
    assert document["schema"] == "xenha-plan/1"
    assert document["status"] == "CRITICAL" and document["exit_code"] == 2
    assert document["scenarios"][1]["stopped_guests"] == [
        {"resource": "web1", "was_on": ["h1"], "room_on": [], "memory_mib": 4096, "vcpus": 2}
    ]
    assert error_json("plan", "no CIB") == {
        "schema": "xenha-plan/1",
        "command": "plan",
        "status": "UNKNOWN",
        "exit_code": UNKNOWN,
        "error": "no CIB",
    }


def test_host_usage_counts_the_ledgers_reservations() -> None:
    """Every reservation of the ledger counts (only a node that watched one knows it lapsed);
    an nvpair in an older format is no reservation."""
    cib = render_cib([HostSpec("h1", 8192, 4)], [GuestSpec("web1", 4096, 2, "h1")]).replace(
        "</crm_config>",
        '<cluster_property_set id="xenha-ledger-h1">'
        '<nvpair id="xenha-ledger-h1-r-1" name="r" value="xenha-reservation/2 resource=db1 memory_mib=2048 vcpus=1 '
        'hold_s=240 holder=t"/>'
        '<nvpair id="xenha-ledger-h1-rsv-old" name="r" value="memory_mib=1024 vcpus=1 expires=1000 holder=t resource=old"/>'
        "</cluster_property_set></crm_config>",
    )
    (usage,), live = host_usage(parse_cib(cib.encode()))
    assert (usage.used, usage.reserved, usage.free) == (
        Resources(4096, 2),
        Resources(2048, 1),
        Resources(2048, 1),
    )
    assert [reservation.resource for reservation in live] == ["db1"]


def test_host_usage_counts_an_arrived_guest_once() -> None:
    """web1 has arrived on h1 and its reservation is not released yet: used, not reserved too."""
    cib = render_cib([HostSpec("h1", 8192, 4)], [GuestSpec("web1", 4096, 2, "h1")]).replace(
        "</crm_config>",
        '<cluster_property_set id="xenha-ledger-h1">'
        '<nvpair id="xenha-ledger-h1-r-1" name="r" value="xenha-reservation/2 resource=web1 memory_mib=4096 vcpus=2 '
        'hold_s=240 holder=t"/>'
        "</cluster_property_set></crm_config>",
    )
    (usage,), live = host_usage(parse_cib(cib.encode()))
    assert (usage.used, usage.reserved, usage.free) == (Resources(4096, 2), Resources(), Resources(4096, 2))
    assert [reservation.resource for reservation in live] == ["web1"]


def test_scenarios_and_their_quorum() -> None:
    hosts = [HostSpec(f"h{i}", 8192, 4, up=i != 5) for i in (1, 2, 3, 4, 5)]
    model = parse_cib(render_cib(hosts, [GuestSpec("web1", 4096, 2, "h1")]).encode())
    scenarios = enumerate_scenarios(model, 2)
    assert scenarios[0] == Scenario((), True)
    assert [s.failed for s in scenarios[1:5]] == [("h1",), ("h2",), ("h3",), ("h4",)]  # h5 is down already
    assert all(s.quorum for s in scenarios[1:5])  # 3 of 5 left
    assert len(scenarios) == 1 + 4 + 6 and not any(s.quorum for s in scenarios[5:])  # 2 of 5 left


def test_a_scenario_that_loses_quorum_says_so_instead_of_a_shortfall() -> None:
    lost = result(
        ("h1", "h2"),
        (WEB1,),
        reason="the survivors lose quorum (no-quorum-policy=stop)",
    )
    fragmented = result(("h1",), (WEB1,))
    lines = render_plan_text(plan(2, result(()), fragmented, lost)).splitlines()
    rows = [line.split() for line in lines if line.startswith("h1")]
    assert rows[0] == ["h1", "web1", "4096", "0", "0", "no", "single", "host", "has", "room"]
    assert rows[1] == ["h1,", "h2", "web1", "4096", "-", "-", "quorum", "lost", "(no-quorum-policy=stop)"]


def test_no_fencing_device_is_the_reason_not_capacity() -> None:
    unfenced = result(
        ("h1",), (WEB1,), reason="no fencing device: the failed hosts cannot be fenced, so nothing is recovered"
    )
    lines = render_plan_text(plan(1, result(()), unfenced)).splitlines()
    assert lines[5].split()[3:] == ["-", "-", "no", "fencing", "device:", "nothing", "is", "recovered"]
