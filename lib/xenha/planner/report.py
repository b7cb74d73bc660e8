"""Rendering plans and host usage: a compact table for people, JSON for scripts, exit codes.

Exit codes follow the monitoring-plugin convention, so ``xenha plan`` can run as a
periodic check (Nagios, Icinga, Zabbix...):

* 0 OK — every scenario of up to K failed hosts keeps every guest running;
* 1 WARNING — the cluster survives at least one host failure, but not K;
* 2 CRITICAL — losing some single host (or none) leaves a guest stopped;
* 3 UNKNOWN — no answer (bad input, scheduler missing or failing).

The first line of the text output is the monitoring headline (``XENHA PLAN OK - ...``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from xenha.admission.load import HostLoad
from xenha.admission.resources import Resources, total
from xenha.planner.scenarios import Plan, ScenarioResult

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS_WORDS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
JSON_SCHEMA = "xenha-plan/1"
STATUS_SCHEMA = "xenha-status/2"  # 2: a reservation has hold_s (a duration), no expires
ERROR_SCHEMAS = {"status": STATUS_SCHEMA, "verify": "xenha-verify/1"}
MAX_NAMES = 5
# Scenario reasons (xenha.planner.scenarios.scheduler_result) in which room is what decides.
CAPACITY_REASONS = ("the scheduler finds no host with room", "not for lack of room", "the scheduler places")
MAX_ROWS = 10


def plan_exit_code(plan: Plan) -> int:
    tolerated = plan.tolerated
    if tolerated is None:
        return CRITICAL
    if tolerated >= plan.failures:
        return OK
    return WARNING if tolerated >= 1 else CRITICAL


def check_add_exit_code(plan: Plan) -> int:
    """check-add: 0 when the new guest still leaves the cluster able to survive K failures, else 2."""
    return OK if plan.tolerated is not None and plan.tolerated >= plan.failures else CRITICAL


def exit_code(plan: Plan) -> int:
    """The exit code of the command that made ``plan``."""
    return plan_exit_code(plan) if plan.command == "plan" else check_add_exit_code(plan)


def hosts_phrase(count: int) -> str:
    return f"{count} host failure" + ("" if count == 1 else "s")


def names(items: Sequence[str], limit: int = MAX_NAMES) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def scenario_phrase(result: ScenarioResult) -> str:
    failed = result.scenario.failed
    if not failed:
        return "with every host up"
    if len(failed) == 1:
        return f"losing {failed[0]}"
    return "losing " + ", ".join(failed[:-1]) + f" and {failed[-1]} together"


def shortfall_phrase(result: ScenarioResult) -> str:
    if result.reason.startswith(("the survivors lose quorum", "no fencing device")):
        return result.reason
    short = result.shortfall
    parts = []
    if short.memory_mib > 0:
        parts.append(f"{short.memory_mib} MiB")
    if short.vcpus > 0:
        parts.append(count_phrase(short.vcpus, "vCPU"))
    if parts:
        return " and ".join(parts) + " short"
    if all(guest.room_on for guest in result.stopped):
        first = result.stopped[0]
        return (
            f"not for lack of room ({first.resource} would fit on {names(list(first.room_on), 3)}): "
            "a constraint, a failure or an ordering keeps it stopped"
        )
    needed = result.stopped_demand
    return (
        f"{needed.memory_mib} MiB and {count_phrase(needed.vcpus, 'vCPU')} needed: enough spare in total, "
        "but no single host has room"
    )


def reason_cell(result: ScenarioResult) -> str:
    """Why a scenario leaves guests stopped, in a few words, for the table's last column.

    The shortfall columns only speak of capacity; a scenario that stops everything because
    quorum is lost, or because nothing can be fenced, must say so instead of "0 MiB short".
    """
    if result.reason.startswith("the survivors lose quorum"):
        return "quorum lost" + result.reason[len("the survivors lose quorum") :]
    if result.reason.startswith("no fencing device"):
        return "no fencing device: nothing is recovered"
    if result.shortfall.memory_mib > 0 or result.shortfall.vcpus > 0:
        return "the survivors lack room"
    if all(guest.room_on for guest in result.stopped):
        return "not room: a constraint, failure or ordering"
    return "no single host has room"


def _capacity_cell(result: ScenarioResult, value: int) -> str:
    """A shortfall figure, or "-" when capacity is not why the guests stop."""
    return str(value) if result.reason.startswith(CAPACITY_REASONS) else "-"


def headline(plan: Plan) -> str:
    tolerated = plan.tolerated
    failing = plan.failing
    if tolerated is not None and tolerated >= plan.failures:
        if plan.failures == 0:
            return "every guest runs with every host up (no host failure checked)"
        return f"tolerates {hosts_phrase(plan.failures)} (checked up to {plan.failures})"
    worst = failing[0]
    stopped = names([guest.resource for guest in worst.stopped])
    if tolerated is None:
        return f"even {scenario_phrase(worst)}, {stopped} cannot run: {shortfall_phrase(worst)}"
    prefix = "tolerates no host failure" if tolerated == 0 else f"tolerates {hosts_phrase(tolerated)}"
    return f"{prefix}; {scenario_phrase(worst)} would leave {stopped} stopped: {shortfall_phrase(worst)}"


def count_phrase(number: int, word: str) -> str:
    return f"{number} {word}" + ("" if number == 1 else "s")


def table(header: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[bool]) -> list[str]:
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(title) for title in header]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(row: Sequence[str]) -> str:
        parts = [cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        return "  ".join(parts).rstrip()

    return [line(header)] + [line(row) for row in cells]


def _hosts_after(result: ScenarioResult) -> list[str]:
    """The survivors' table once the scheduler recovered from ``result``; nothing for a proof."""
    if result.hosts_after is None:
        return []
    return ["", f"Hosts after recovery, {scenario_phrase(result)}:", *_host_table(result.hosts_after)]


def _host_table(hosts: Sequence[HostLoad]) -> list[str]:
    rows = [
        (
            host.node,
            host.capacity.memory_mib,
            host.used.memory_mib,
            host.free.memory_mib,
            host.capacity.vcpus,
            host.used.vcpus,
            host.free.vcpus,
        )
        for host in hosts
    ]
    return table(
        ("host", "MiB", "used", "free", "vCPUs", "used", "free"),
        rows,
        (False, True, True, True, True, True, True),
    )


def _cluster_line(plan: Plan) -> str:
    model = plan.model
    up = sum(1 for host in model.hosts if host.online)
    demand = total(guest.demand for guest in model.running_guests)
    capacity = total(host.capacity for host in model.hosts if host.available)
    return (
        f"{up} of {count_phrase(len(model.hosts), 'host')} up ({capacity.memory_mib} MiB, {capacity.vcpus} vCPUs); "
        f"{count_phrase(len(model.running_guests), 'guest')} ({demand.memory_mib} MiB, {demand.vcpus} vCPUs); "
        f"placement-strategy={model.options.placement_strategy}; {plan.source}"
    )


def render_plan_text(plan: Plan) -> str:
    code = exit_code(plan)
    word = STATUS_WORDS[code] if plan.command == "plan" else ("OK" if code == OK else "NO")
    lines = [f"XENHA {plan.command.upper()} {word} - {headline(plan)}"]
    if plan.extra is not None:
        lines.append(
            f"with a new guest of {plan.extra.memory_mib} MiB and {plan.extra.vcpus} vCPUs "
            f"({plan.extra_resource}) added"
        )
    lines.append(_cluster_line(plan))
    lines.append(
        f"{count_phrase(len(plan.results), 'scenario')} (0 to {plan.failures} failed hosts): "
        f"{plan.proved} proved safe without the scheduler, {plan.scheduler_runs} run through it; "
        f"{plan.seconds:.1f} s"
    )
    failing = plan.failing
    if failing:
        lines.append("")
        rows = [
            (
                result.scenario.label,
                names([guest.resource for guest in result.stopped], 4),
                result.stopped_demand.memory_mib,
                _capacity_cell(result, result.shortfall.memory_mib),
                _capacity_cell(result, result.shortfall.vcpus),
                reason_cell(result),
            )
            for result in failing[:MAX_ROWS]
        ]
        lines.extend(
            table(
                ("failed hosts", "guests left stopped", "MiB", "MiB short", "vCPUs short", "why"),
                rows,
                (False, False, True, True, True, False),
            )
        )
        if len(failing) > MAX_ROWS:
            lines.append(f"... and {len(failing) - MAX_ROWS} more scenarios leave guests stopped (--json lists all)")
        kept = len(plan.results) - len(failing)
        lines.append(f"{count_phrase(kept, 'scenario')} {'keeps' if kept == 1 else 'keep'} every guest running")
        lines.extend(_hosts_after(failing[0]))
    else:
        tight = plan.tightest
        if tight is not None:
            spare = tight.survivors_capacity - total(guest.demand for guest in plan.model.running_guests)
            lines.append(
                f"tightest: {scenario_phrase(tight)} leaves {spare.memory_mib} MiB and {spare.vcpus} vCPUs "
                f"spare across {count_phrase(len(plan.model.hosts) - len(tight.scenario.failed), 'host')}"
            )
            lines.extend(_hosts_after(tight))
    for note in plan.model.notes[:3]:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def resources_json(resources: Resources) -> dict[str, int]:
    return {"memory_mib": resources.memory_mib, "vcpus": resources.vcpus}


def _scenario_json(result: ScenarioResult) -> dict[str, Any]:
    return {
        "failed_hosts": list(result.scenario.failed),
        "quorum": result.scenario.quorum,
        "ok": result.ok,
        "method": result.method,
        "reason": result.reason,
        "stopped_guests": [
            {
                "resource": guest.resource,
                "was_on": list(guest.was_on),
                "room_on": list(guest.room_on),
                **resources_json(guest.demand),
            }
            for guest in result.stopped
        ],
        "stopped_demand": resources_json(result.stopped_demand),
        "shortfall": resources_json(result.shortfall),
        "displaced_guests": list(result.displaced),
        "survivors_capacity": resources_json(result.survivors_capacity),
        "hosts_after": None
        if result.hosts_after is None
        else [
            {
                "name": host.node,
                "capacity": resources_json(host.capacity),
                "load": resources_json(host.used),
                "free": resources_json(host.free),
            }
            for host in result.hosts_after
        ],
        "seconds": round(result.seconds, 3),
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    code = exit_code(plan)
    model = plan.model
    document: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "command": plan.command,
        "status": STATUS_WORDS[code],
        "exit_code": code,
        "headline": headline(plan),
        "source": plan.source,
        "cib_epoch": model.epoch,
        "placement_strategy": model.options.placement_strategy,
        "failures_checked": plan.failures,
        "tolerated_failures": plan.tolerated,
        "hosts": [
            {
                "name": host.name,
                "state": host.state,
                "capacity": resources_json(host.capacity),
            }
            for host in model.hosts
        ],
        "guests": len(model.running_guests),
        "demand": resources_json(total(guest.demand for guest in model.running_guests)),
        "scenarios": [_scenario_json(result) for result in plan.results],
        "proved": plan.proved,
        "scheduler_runs": plan.scheduler_runs,
        "schema_validated": plan.validated,
        "seconds": round(plan.seconds, 3),
        "notes": list(model.notes),
    }
    if plan.extra is not None:
        document["new_guest"] = {"resource": plan.extra_resource, **resources_json(plan.extra)}
    return document


def render_json(document: dict[str, Any]) -> str:

    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def error_json(command: str, message: str) -> dict[str, Any]:
    return {
        "schema": ERROR_SCHEMAS.get(command, JSON_SCHEMA),
        "command": command,
        "status": "UNKNOWN",
        "exit_code": UNKNOWN,
        "error": message,
    }
