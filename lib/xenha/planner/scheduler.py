"""Pacemaker's scheduler on a what-if scenario: ``crm_simulate`` runs and their pure parsers.

One scenario is one run of::

    crm_simulate --xml-file CIB --run --show-utilization --output-as=xml \\
                 --save-graph GRAPH [--node-fail NODE ...] [--quorum=false]

``--run`` computes the transition without simulating its execution (``--simulate``
executes every action against a copy of the status and unpacks the result again, which
costs 6 to 9 times as much on a large cluster). Three things are read, all produced by the
scheduler itself:

* the ``cluster_status`` of the XML output: where each resource is active *before* the
  injected failure (Pacemaker's own reading of the status section);
* the saved transition graph: the actions the cluster would run (a resource the scheduler
  cannot place gets no start, so "left stopped" is read from the graph, never from the
  text summary, where such a resource does not appear);
* the ``utilizations`` of the XML output: the scheduler's assignments and the capacity it
  left on each node, kept for reports and cross-checks.

The final placement is the status before, minus the failed hosts (their guests died with
them), minus every stop, plus every start and ``migrate_from`` of the graph
(:func:`final_placement`).

Every run honours the runner's environment (``CIB_file`` is irrelevant here: the CIB is a
file). The allocator setting ``GLIBC_TUNABLES=glibc.malloc.mxfast=0`` is added: the
scheduler allocates and frees millions of small blocks on a large cluster and spends up
to a quarter of its time consolidating glibc's fast bins; disabling them changes nothing
in what it computes and saves 20-35 % of its time (measured in docs/decisions/planner.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from lxml import etree

from xenha.admission.resources import Resources
from xenha.planner.model import CPU, MEMORY
from xenha.runner import CommandResult, CommandRunner, first_line

CRM_SIMULATE = "crm_simulate"
MALLOC_TUNING = "glibc.malloc.mxfast=0"
# A scenario on 32 hosts x 1000 guests takes 5-7 s on two cores; the limit is for a
# scheduler that hangs, not for a slow one.
SCENARIO_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class SimulationRequest:
    cib_path: str
    failed: tuple[str, ...]
    quorum: bool | None  # None: as the CIB says
    graph_path: str


def simulate_argv(request: SimulationRequest) -> list[str]:
    argv = [
        CRM_SIMULATE,
        "--xml-file",
        request.cib_path,
        "--run",
        "--show-utilization",
        "--output-as=xml",
        "--save-graph",
        request.graph_path,
    ]
    for node in request.failed:
        argv.extend(["--node-fail", node])
    if request.quorum is not None:
        argv.append(f"--quorum={'true' if request.quorum else 'false'}")
    return argv


def scheduler_environment(base: Mapping[str, str]) -> dict[str, str]:
    environ = dict(base)
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.mxfast" not in tunables:
        environ["GLIBC_TUNABLES"] = f"{tunables}:{MALLOC_TUNING}" if tunables else MALLOC_TUNING
    return environ


@dataclass(frozen=True)
class GraphAction:
    """One action of a transition graph."""

    resource: str  # primitive id ('' for fencing and cluster events)
    operation: str  # start, stop, migrate_to, migrate_from, monitor, stonith, ...
    node: str  # '' for pseudo-actions that run nowhere
    pseudo: bool


@dataclass(frozen=True)
class SimulationOutput:
    """What ``crm_simulate --run --show-utilization --output-as=xml`` reported."""

    active_before: Mapping[str, tuple[str, ...]]
    assignments: Mapping[str, str]
    remaining: Mapping[str, Resources]
    summary: tuple[str, ...]


class SchedulerError(Exception):
    """crm_simulate did not produce a usable answer; the message says what it said."""


def parse_xml(data: bytes | str, what: str) -> Any:

    parser = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)
    raw = data.encode() if isinstance(data, str) else data
    try:
        return etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as error:
        raise SchedulerError(f"{what} is not XML: {error.msg}") from None


def parse_graph(data: bytes | str) -> tuple[GraphAction, ...]:
    """The actions of a saved transition graph (``--save-graph``), in document order."""
    root = parse_xml(data, "the transition graph")
    if root.tag != "transition_graph":
        raise SchedulerError(f"the transition graph has root <{root.tag}>")
    actions = []
    for action_set in root.iterfind("synapse/action_set"):
        for element in action_set:
            operation = element.get("operation", "")
            primitive = element.find("primitive")
            resource = ""
            if primitive is not None:
                resource = primitive.get("long-id") or primitive.get("id", "")
            elif element.tag == "pseudo_event":
                key = element.get("internal_operation_key") or element.get("operation_key", "")
                resource = _resource_of_key(key, operation)
            actions.append(
                GraphAction(
                    resource=resource,
                    operation=operation,
                    node=element.get("on_node", ""),
                    pseudo=element.tag == "pseudo_event",
                )
            )
    return tuple(actions)


def _resource_of_key(key: str, operation: str) -> str:
    """``vm1_stop_0`` -> ``vm1`` (operation keys are RESOURCE_OPERATION_INTERVAL)."""
    suffix = f"_{operation}_"
    index = key.rfind(suffix)
    return key[:index] if index > 0 else ""


def _resources_numbers(element: Any) -> Resources:
    values = {child.tag: child.text or "0" for child in element}
    try:
        return Resources(int(values.get(MEMORY, "0")), int(values.get(CPU, "0")))
    except ValueError:
        return Resources()


def parse_simulate_output(data: bytes | str) -> SimulationOutput:
    """Parse the XML output; raises SchedulerError when crm_simulate reports an error."""
    root = parse_xml(data, "crm_simulate's output")
    if root.tag != "pacemaker-result":
        raise SchedulerError(f"crm_simulate's output has root <{root.tag}>")
    status = root.find("status")
    if status is not None and status.get("code", "0") != "0":
        errors = [error.text or "" for error in status.iter("error")]
        detail = "; ".join(text.strip() for text in errors if text.strip()) or status.get("message", "")
        raise SchedulerError(f"crm_simulate failed: {detail}")
    active: dict[str, list[str]] = {}
    cluster_status = root.find("cluster_status")
    if cluster_status is None:
        raise SchedulerError("crm_simulate's output has no cluster_status")
    resources = cluster_status.find("resources")
    for resource in resources.iter("resource") if resources is not None else ():
        nodes = active.setdefault(resource.get("id", ""), [])
        if resource.get("active") == "true":
            nodes.extend(node.get("name", "") for node in resource.iterfind("node"))
    assignments: dict[str, str] = {}
    remaining: dict[str, Resources] = {}
    utilizations = root.find("utilizations")
    for element in utilizations if utilizations is not None else ():
        if element.tag == "utilization":
            assignments[element.get("resource", "")] = element.get("node", "")
        elif element.tag == "capacity" and element.get("comment") == "Remaining":
            remaining[element.get("node", "")] = _resources_numbers(element)
    summary = []
    actions = root.find("actions")
    for element in actions if actions is not None else ():
        words = [element.get("action") or element.get("task") or element.tag]
        for key in ("resource", "node", "source", "dest", "reason"):
            if element.get(key):
                words.append(f"{key}={element.get(key)}")
        summary.append(" ".join(words))
    return SimulationOutput(
        active_before={name: tuple(sorted(set(nodes))) for name, nodes in active.items()},
        assignments=assignments,
        remaining=remaining,
        summary=tuple(summary),
    )


def final_placement(
    active_before: Mapping[str, Sequence[str]],
    failed: Iterable[str],
    actions: Iterable[GraphAction],
) -> dict[str, tuple[str, ...]]:
    """Where each resource runs once the transition is done.

    >>> final_placement({"vm1": ("n2",), "vm2": ("n1",)}, ["n2"],
    ...                 [GraphAction("vm1", "start", "n1", False)])
    {'vm1': ('n1',), 'vm2': ('n1',)}
    """
    lost = set(failed)
    placement = {name: {node for node in nodes if node not in lost} for name, nodes in active_before.items()}
    for action in actions:
        if action.pseudo or not action.resource or not action.node:
            continue
        nodes = placement.setdefault(action.resource, set())
        if action.operation in ("stop", "migrate_to"):
            nodes.discard(action.node)
        elif action.operation in ("start", "migrate_from"):
            nodes.add(action.node)
    return {name: tuple(sorted(nodes)) for name, nodes in placement.items()}


@dataclass(frozen=True)
class SimulationResult:
    output: SimulationOutput
    placement: Mapping[str, tuple[str, ...]]
    seconds: float


def interpret(request: SimulationRequest, result: CommandResult, graph: bytes, seconds: float) -> SimulationResult:
    """Turn one finished crm_simulate run into a result; raises SchedulerError otherwise."""
    if not result.ok:
        detail = result.describe()
        if result.stdout.strip().startswith("<"):
            try:
                parse_simulate_output(result.stdout)
            except SchedulerError as error:
                detail = str(error)
            stderr = first_line(result.stderr)
            if stderr:
                detail = f"{detail} ({stderr})"
        raise SchedulerError(f"{detail}; scenario: {describe_failed(request.failed)}")
    output = parse_simulate_output(result.stdout)
    return SimulationResult(
        output=output,
        placement=final_placement(output.active_before, request.failed, parse_graph(graph)),
        seconds=seconds,
    )


def describe_failed(failed: Sequence[str]) -> str:
    return "no host failed" if not failed else "losing " + " and ".join(failed)


ProgressCallback = Callable[[int, int], None]


def run_simulations(
    requests: Sequence[SimulationRequest],
    runner: CommandRunner,
    workers: int,
    clock: Callable[[], float],
    progress: ProgressCallback | None = None,
    timeout_s: float = SCENARIO_TIMEOUT_S,
) -> list[SimulationResult]:
    """Run every request, ``workers`` at a time; results in the order of ``requests``.

    Raises SchedulerError for the first run that failed (after all have finished).
    """

    def one(request: SimulationRequest) -> tuple[CommandResult, bytes, float]:
        started = clock()
        result = runner.run(simulate_argv(request), timeout_s=timeout_s)
        graph = b""
        if result.ok:
            try:
                with open(request.graph_path, "rb") as handle:
                    graph = handle.read()
                os.unlink(request.graph_path)
            except OSError as error:
                result = CommandResult(result.argv, 1, result.stdout, f"no graph: {error.strerror}")
        return result, graph, clock() - started

    if progress is not None:
        progress(0, len(requests))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(one, request) for request in requests]
        for done, _ in enumerate(as_completed(futures), start=1):
            if progress is not None:
                progress(done, len(requests))
        outcomes = [future.result() for future in futures]
    return [interpret(request, result, graph, seconds) for request, (result, graph, seconds) in zip(requests, outcomes)]
