"""The CIB as the planner needs it, parsed into frozen dataclasses (pure: bytes in, model out).

What the model holds:

* hosts (cluster nodes) with their capacity (node utilization ``hv_memory``, ``cpu``) and
  whether they are up and available to run guests;
* guests (primitives ``ocf:xenha:xen-guest``) with their demand (resource utilization),
  where they are active, and whether they are meant to run (``target-role``);
* the cluster options that decide recovery (placement strategy, fencing, quorum policy);
* the xenha reservation ledger (:func:`parse_ledger`), for ``xenha status``;
* *blockers*: every reason, cluster-wide or per guest, why the fast path's proof must not
  be trusted for this CIB (constraints, groups, failures, rules, other consumers of
  capacity...). A blocker never changes a verdict: it sends the scenario to the scheduler.

The status section of a running cluster is large (a probe result for every guest on every
host: 32,000 operation records for 32 hosts and 1000 guests). It is read with an lxml
parser *target* that keeps only the fields used here, which is three times faster than
building the whole tree; the configuration section is built as an ordinary lxml tree.

Where the model interprets something the scheduler also interprets (is a guest active on
a node?), the interpretation only feeds reports and blockers, never a verdict: verdicts
come from the proof (which does not depend on where guests currently run) or from the
scheduler itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from xenha.admission.ledger import Reservation, node_of_ledger, read_ledger_set
from xenha.admission.resources import Resources
from xenha.booleans import is_true
from xenha.planner.cibdocument import (
    CibDocument,
    History,
    NvSets,
    StatusRecords,
    agent_of,
    collector_paused,
    histories,
    merge_nvsets,
    nvsets_of,
    read_cib_document,
)
from xenha.planner.model import (
    CPU,
    DIMENSIONS,
    GUEST_AGENT,
    MEMORY,
    CibError,
    CibModel,
    ClusterOptions,
    Consumer,
    Guest,
    Host,
    parse_utilization_value,
    score_value,
)


def parse_cib(data: bytes) -> CibModel:
    return build_model(read_cib_document(data))


def parse_ledger(crm_config: Any, host_names: Sequence[str]) -> tuple[Reservation, ...]:
    """Every reservation in the ledgers under ``crm_config``.

    The ledger's format is :mod:`xenha.admission.ledger`'s, the one the agents book in. A
    reservation carries no timestamp: whether it has lapsed is known only to a node that
    has watched it for its hold, so a reader of the CIB counts them all (xen-host and
    admissions delete lapsed ones on their nodes).
    """
    if crm_config is None:
        return ()
    found: list[Reservation] = []
    for property_set in crm_config.iterfind("cluster_property_set"):
        node = node_of_ledger(property_set.get("id", ""), host_names)
        if node is None:
            continue
        nvpairs = [(nvpair.get("id", ""), nvpair.get("value") or "") for nvpair in property_set.iterfind("nvpair")]
        found.extend(read_ledger_set(node, nvpairs)[0])
    return tuple(found)


# --- building the model --------------------------------------------------------------------


def _cluster_options(crm_config: Any) -> tuple[ClusterOptions, bool]:
    """The cluster options, and whether some of them depend on rules or references."""
    sets = [
        property_set
        for property_set in (() if crm_config is None else crm_config.iterfind("cluster_property_set"))
        if node_of_ledger(property_set.get("id", ""), ()) is None
    ]
    # Pacemaker reads cib-bootstrap-options first: its values win.
    sets.sort(key=lambda element: element.get("id") != "cib-bootstrap-options")
    merged = merge_nvsets(sets)
    values = merged.values
    options = ClusterOptions(
        placement_strategy=values.get("placement-strategy", "default").strip().lower() or "default",
        stonith_enabled=is_true(values.get("stonith-enabled", "true")),
        no_quorum_policy=values.get("no-quorum-policy", "stop").strip().lower() or "stop",
        symmetric_cluster=is_true(values.get("symmetric-cluster", "true")),
        maintenance_mode=is_true(values.get("maintenance-mode", "false")),
        stop_all_resources=is_true(values.get("stop-all-resources", "false")),
        node_health_strategy=values.get("node-health-strategy", "none").strip().lower() or "none",
    )
    return options, merged.conditional


def _node_online(state: Mapping[str, str] | None) -> tuple[bool, bool]:
    """(online, unclean) of a cluster node from its ``node_state`` (Pacemaker 2.1 format)."""
    if state is None:
        return False, True  # never seen: the scheduler wants it fenced (startup-fencing)

    def up(value: str | None, word: str) -> bool:
        text = (value or "").strip().lower()
        return text == word or is_true(text) or (text.isdigit() and int(text) > 0)

    in_cluster = up(state.get("in_ccm"), "true")
    controller = up(state.get("crmd"), "online")
    online = in_cluster and controller and state.get("join") == "member"
    unclean = not online and state.get("expected") == "member"
    return online, unclean


def _resource_demand(
    utilization: NvSets, owner: str, problems: list[str], resource: bool = True
) -> tuple[Resources, bool]:
    """The demand of a resource, or a node's capacity (``resource=False``): hv_memory and cpu.

    A resource's other attributes are checked by the scheduler too (and a node missing one
    offers 0), so they are reported; a node's other attributes concern nobody here.
    """
    if utilization.conditional:
        problems.append(f"the utilization of {owner} has rules or references")
    values = {}
    for name in DIMENSIONS:
        raw = utilization.values.get(name)
        value = parse_utilization_value(raw)
        if value is None or value < 0:
            problems.append(f"{owner} has {name}={raw!r}, not a whole number of at least 0")
            value = 0
        values[name] = value
    others = sorted(set(utilization.values) - set(DIMENSIONS))
    if others and resource:
        problems.append(f"{owner} has utilization {', '.join(others)} besides {MEMORY} and {CPU}")
    return Resources(values[MEMORY], values[CPU]), bool(utilization.values)


def _constraint_references(root: Any) -> tuple[set[str], list[str]]:
    """Resource ids named by constraints (tags expanded), and constraints that use patterns."""
    tags: dict[str, list[str]] = {}
    for tag in root.iterfind("configuration/tags/tag"):
        tags[tag.get("id", "")] = [ref.get("id", "") for ref in tag.iterfind("obj_ref")]
    referenced: set[str] = set()
    patterns: list[str] = []
    constraints = root.find("configuration/constraints")
    if constraints is None:
        return referenced, patterns
    for element in constraints.iter():
        if element.get("rsc-pattern") is not None:
            patterns.append(element.get("id", element.tag))
        names = [element.get(attribute) for attribute in ("rsc", "with-rsc", "first", "then")]
        if element.tag == "resource_ref":
            names.append(element.get("id"))
        for name in names:
            if name:
                referenced.add(name)
                referenced.update(tags.get(name, ()))
    return referenced, patterns


# --- building the model, section by section ----------------------------------------------


def build_model(document: CibDocument) -> CibModel:
    with collector_paused():
        return _build_model(document)


def _build_model(document: CibDocument) -> CibModel:
    root = document.root
    configuration = root.find("configuration")
    if configuration is None:
        raise CibError("the CIB has no <configuration> section: give the output of 'cibadmin --query'")
    crm_config = configuration.find("crm_config")
    options, conditional_options = _cluster_options(crm_config)
    blockers = _option_blockers(options, conditional_options)
    hosts = _hosts(configuration, document.status, blockers)
    scan = _scan_resources(root, configuration, blockers)
    notes: list[str] = []
    guests = _guests(scan, document.status, {host.name for host in hosts}, notes)
    epoch = ".".join(root.get(key, "0") for key in ("admin_epoch", "epoch", "num_updates"))
    return CibModel(
        validate_with=root.get("validate-with", ""),
        epoch=epoch,
        have_quorum=is_true(root.get("have-quorum")),
        options=options,
        hosts=tuple(hosts),
        guests=tuple(guests),
        consumers=tuple(scan.consumers),
        fencing_devices=tuple(scan.fencing),
        blockers=tuple(blockers),
        reservations=parse_ledger(crm_config, [host.name for host in hosts]),
        notes=tuple(notes),
    )


def _option_blockers(options: ClusterOptions, conditional_options: bool) -> list[str]:
    """The cluster options under which the proof does not hold."""
    blockers: list[str] = []
    if conditional_options:
        blockers.append("cluster options have rules or references")
    if not options.symmetric_cluster:
        blockers.append("symmetric-cluster=false: nodes are opt-in through constraints")
    if options.maintenance_mode:
        blockers.append("maintenance-mode=true: nothing is managed")
    if options.stop_all_resources:
        blockers.append("stop-all-resources=true")
    if options.node_health_strategy not in ("none", ""):
        blockers.append(f"node-health-strategy={options.node_health_strategy}")
    return blockers


# Hosts.
def _hosts(configuration: Any, status: StatusRecords, blockers: list[str]) -> list[Host]:
    hosts: list[Host] = []
    nodes = configuration.find("nodes")
    for node in nodes.iterfind("node") if nodes is not None else ():
        if node.get("type", "member") not in ("member", "normal", ""):
            continue  # remote and ping nodes: never counted as survivors (that is sound)
        hosts.append(_host(node, status, blockers))
    return hosts


def _host(node: Any, status: StatusRecords, blockers: list[str]) -> Host:
    name = node.get("uname") or node.get("id", "")
    problems: list[str] = []
    node_utilization = nvsets_of(node, "utilization")
    capacity, _ = _resource_demand(node_utilization, f"node {name}", problems, resource=False)
    blockers.extend(problems)
    attributes = nvsets_of(node, "instance_attributes")
    if attributes.conditional:
        blockers.append(f"the attributes of node {name} have rules or references")
    online, unclean = _node_online(status.node_states.get(name))
    if unclean:
        blockers.append(f"node {name} is unclean (the scheduler wants to fence it)")

    def attribute(key: str) -> str:
        return status.transient.get((name, key)) or attributes.values.get(key, "")

    shutdown = attribute("shutdown").strip()
    return Host(
        name=name,
        capacity=capacity,
        online=online,
        standby=is_true(attribute("standby")),
        maintenance=is_true(attribute("maintenance")),
        shutting_down=bool(shutdown) and shutdown != "0",
        unclean=unclean,
        has_capacity=MEMORY in node_utilization.values,
    )


# Resources.
class _GuestElement(NamedTuple):
    primitive: Any
    blockers: list[str]
    meta: dict[str, str]


class _ResourceScan(NamedTuple):
    guests: list[_GuestElement]
    consumers: list[Consumer]
    fencing: list[str]
    referenced: set[str]  # resources named in constraints


def _scan_resources(root: Any, configuration: Any, blockers: list[str]) -> _ResourceScan:
    """The guests' primitives, the other consumers of capacity and the fencing devices."""
    resources = configuration.find("resources")
    if resources is None:
        raise CibError("the CIB has no <resources> section: give the output of 'cibadmin --query'")
    templates = {element.get("id", ""): element for element in resources.iterfind("template")}
    defaults = nvsets_of(configuration.find("rsc_defaults"), "meta_attributes")
    if defaults.conditional:
        blockers.append("rsc_defaults have rules or references")
    referenced, patterns = _constraint_references(root)
    if patterns:
        blockers.append(f"constraints with rsc-pattern ({', '.join(patterns)})")
    scan = _ResourceScan([], [], [], referenced)
    for primitive in resources.iter("primitive"):
        _scan_primitive(primitive, templates, defaults.values, scan)
    if scan.consumers:
        blockers.append(
            "resources other than guests have utilization: " + ", ".join(item.resource for item in scan.consumers)
        )
    # Templates and sets the parent loop above could not see.
    for template in templates.values():
        if template.find("utilization") is not None:
            blockers.append(f"template {template.get('id', '')} has utilization")
    return scan


def _scan_primitive(primitive: Any, templates: Mapping[str, Any], defaults: Mapping[str, str],
                    scan: _ResourceScan) -> None:  # fmt: skip
    resource = primitive.get("id", "")
    agent = agent_of(primitive, templates)
    meta = nvsets_of(primitive, "meta_attributes")
    merged_meta = {**defaults, **meta.values}
    if agent[0] == "stonith":
        if merged_meta.get("target-role", "Started").strip().lower() != "stopped":
            scan.fencing.append(resource)
        return
    if agent == GUEST_AGENT:
        guest_blockers: list[str] = []
        parent = primitive.getparent()
        if parent is not None and parent.tag != "resources":
            guest_blockers.append(f"{resource} is inside {parent.tag} {parent.get('id', '')}")
        if primitive.get("template") is not None:
            guest_blockers.append(f"{resource} is defined through template {primitive.get('template')}")
        if meta.conditional:
            guest_blockers.append(f"the meta-attributes of {resource} have rules or references")
        scan.guests.append(_GuestElement(primitive, guest_blockers, merged_meta))
        return
    utilization = nvsets_of(primitive, "utilization")
    if utilization.values:
        demand, _ = _resource_demand(utilization, resource, [])
        scan.consumers.append(Consumer(resource, demand))


# Guests.
def _guests(scan: _ResourceScan, status: StatusRecords, host_names: set[str], notes: list[str]) -> list[Guest]:
    guest_ids = {element.primitive.get("id", "") for element in scan.guests}
    found_histories = histories(status, guest_ids)
    failed = {name for (_node, name) in status.transient if name.startswith("fail-count-")}
    guests = []
    for element in scan.guests:
        resource = element.primitive.get("id", "")
        history = found_histories.get(resource, History((), ()))
        guest = _guest(element, history, host_names, resource in scan.referenced)
        if any(name.startswith(f"fail-count-{resource}#") for name in failed):
            guest = replace(guest, blockers=(*guest.blockers, f"{resource} has a fail count"))
        if len(history.active_on) > 1:
            several = f"{resource} is active on several nodes: {', '.join(history.active_on)}"
            guest = replace(guest, blockers=(*guest.blockers, several))
        if not guest.has_utilization:
            notes.append(f"{resource} has no utilization: the scheduler places it without a capacity check")
        guests.append(guest)
    return guests


def _guest(element: _GuestElement, history: History, host_names: set[str], referenced: bool) -> Guest:
    primitive, guest_blockers, guest_meta = element
    resource = primitive.get("id", "")
    stickiness, priority = _meta_blockers(resource, guest_meta, guest_blockers)
    if referenced:
        guest_blockers.append(f"{resource} is named in a constraint")
    utilization_problems: list[str] = []
    demand, has_utilization = _resource_demand(nvsets_of(primitive, "utilization"), resource, utilization_problems)
    guest_blockers.extend(utilization_problems)
    guest_blockers.extend(history.problems)
    return Guest(
        resource=resource,
        demand=demand,
        active_on=tuple(node for node in history.active_on if node in host_names) or history.active_on,
        should_run=guest_meta.get("target-role", "Started").strip().lower() != "stopped",
        has_utilization=has_utilization,
        blockers=tuple(guest_blockers),
        stickiness=stickiness or 0,
        priority=priority or 0,
    )


def _meta_blockers(resource: str, meta: Mapping[str, str], blockers: list[str]) -> tuple[int | None, int | None]:
    """What in the guest's meta-attributes keeps the proof away; its stickiness and priority."""
    if not is_true(meta.get("is-managed", "true")):
        blockers.append(f"{resource} is not managed (is-managed=false)")
    if is_true(meta.get("maintenance", "false")):
        blockers.append(f"{resource} is in maintenance")
    for key in ("remote-node", "container", "container-attribute-target"):
        if key in meta:
            blockers.append(f"{resource} has meta-attribute {key}")
    stickiness_text = meta.get("resource-stickiness", meta.get("resource_stickiness"))
    stickiness = score_value(stickiness_text)
    if stickiness is None or stickiness < 0:
        blockers.append(f"{resource} has resource-stickiness={stickiness_text!r}, not a score of at least 0")
    priority = score_value(meta.get("priority"))
    if priority is None:
        blockers.append(f"{resource} has priority={meta.get('priority')!r}, not a number")
    return stickiness, priority
