"""The naive loop: one ``crm_simulate --simulate --node-fail`` per scenario, one after another.

This is what an operator can do by hand today, and the reference the planner's verdicts
are compared with (tests and benchmark). It shares nothing with the planner's path: it
simulates the execution of the transition and reads the *revised* cluster status that
crm_simulate prints afterwards, instead of reading the transition graph.

A guest counts as running after a scenario if the revised status shows it active on a
host that did not fail (a guest left "active" on an unclean failed host, because it could
not be fenced, is not running: the host is dead).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xenha.planner.scheduler import SchedulerError, parse_xml
from xenha.runner import CommandRunner

NAIVE_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class NaiveResult:
    failed: tuple[str, ...]
    quorum: bool | None
    stopped: frozenset[str]
    seconds: float


def naive_argv(cib_path: str, failed: Sequence[str], quorum: bool | None) -> list[str]:
    argv = ["crm_simulate", "--xml-file", cib_path, "--simulate", "--output-as=xml"]
    for node in failed:
        argv.extend(["--node-fail", node])
    if quorum is not None:
        argv.append(f"--quorum={'true' if quorum else 'false'}")
    return argv


def parse_revised_status(data: bytes | str) -> dict[str, tuple[str, ...]]:
    """Resource id -> nodes it is active on, from ``revised_cluster_status``."""
    root = parse_xml(data, "crm_simulate --simulate output")
    revised = root.find("revised_cluster_status")
    if revised is None:
        status = root.find("status")
        message = status.get("message", "") if status is not None else ""
        raise SchedulerError(f"crm_simulate --simulate printed no revised status: {message}")
    active: dict[str, set[str]] = {}
    resources = revised.find("resources")
    for resource in resources.iter("resource") if resources is not None else ():
        nodes = active.setdefault(resource.get("id", ""), set())
        if resource.get("active") == "true":
            nodes.update(node.get("name", "") for node in resource.iterfind("node"))
    return {name: tuple(sorted(nodes)) for name, nodes in active.items()}


def stopped_guests(revised: dict[str, tuple[str, ...]], guests: Sequence[str], failed: Sequence[str]) -> frozenset[str]:
    lost = set(failed)
    return frozenset(guest for guest in guests if not [n for n in revised.get(guest, ()) if n not in lost])


def run_naive(
    cib_path: str,
    scenarios: Sequence[tuple[tuple[str, ...], bool | None]],
    guests: Sequence[str],
    runner: CommandRunner,
    clock: Callable[[], float],
) -> list[NaiveResult]:
    """Every scenario (failed hosts, quorum flag), sequentially; raises SchedulerError on failure."""
    results = []
    for failed, quorum in scenarios:
        started = clock()
        result = runner.run(naive_argv(cib_path, failed, quorum), timeout_s=NAIVE_TIMEOUT_S)
        # A transition with blocked actions (no quorum, no fencing) "fails" in the simulation
        # (exit status 1) but the revised status is still printed: it is the answer.
        if result.returncode is None or not result.stdout.lstrip().startswith("<"):
            raise SchedulerError(f"naive crm_simulate run failed: {result.describe()}")
        revised = parse_revised_status(result.stdout)
        results.append(NaiveResult(failed, quorum, stopped_guests(revised, guests, failed), clock() - started))
    return results
