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

import contextlib
import gc
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, cast

from xenha.admission.ledger import Reservation, node_of_ledger, read_ledger_set
from xenha.admission.resources import Resources
from xenha.booleans import is_true

GUEST_AGENT = ("ocf", "xenha", "xen-guest")
MEMORY = "hv_memory"
CPU = "cpu"
DIMENSIONS = (MEMORY, CPU)
_INTEGER = re.compile(r"^[+-]?[0-9]{1,15}$")


class CibError(Exception):
    """The CIB cannot be planned on; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Host:
    name: str
    capacity: Resources
    online: bool
    standby: bool = False
    maintenance: bool = False
    shutting_down: bool = False
    unclean: bool = False
    has_capacity: bool = True  # False when the node defines no hv_memory utilization

    @property
    def available(self) -> bool:
        """Up and allowed to run resources: where the scheduler may place a guest."""
        return self.online and not (self.standby or self.maintenance or self.shutting_down)

    @property
    def state(self) -> str:
        if not self.online:
            return "unclean" if self.unclean else "down"
        for flag, word in (
            (self.shutting_down, "shutting down"),
            (self.maintenance, "maintenance"),
            (self.standby, "standby"),
        ):
            if flag:
                return word
        return "up"


@dataclass(frozen=True)
class Guest:
    resource: str
    demand: Resources
    active_on: tuple[str, ...]
    should_run: bool = True
    has_utilization: bool = True
    blockers: tuple[str, ...] = ()
    stickiness: int = 0  # INFINITY as SCORE_INFINITY
    priority: int = 0


@dataclass(frozen=True)
class Consumer:
    """A resource other than a guest that has utilization (it takes capacity too)."""

    resource: str
    demand: Resources


@dataclass(frozen=True)
class ClusterOptions:
    placement_strategy: str = "default"
    stonith_enabled: bool = True
    no_quorum_policy: str = "stop"
    symmetric_cluster: bool = True
    maintenance_mode: bool = False
    stop_all_resources: bool = False
    node_health_strategy: str = "none"


@dataclass(frozen=True)
class CibModel:
    validate_with: str
    epoch: str
    have_quorum: bool
    options: ClusterOptions
    hosts: tuple[Host, ...]
    guests: tuple[Guest, ...]
    consumers: tuple[Consumer, ...] = ()
    fencing_devices: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    notes: tuple[str, ...] = ()

    def survivors(self, failed: Iterable[str] = ()) -> tuple[Host, ...]:
        """The hosts left to run guests once ``failed`` are lost (the available ones among the rest)."""
        lost = set(failed)
        return tuple(host for host in self.hosts if host.available and host.name not in lost)

    def host(self, name: str) -> Host | None:
        for host in self.hosts:
            if host.name == name:
                return host
        return None

    @property
    def running_guests(self) -> tuple[Guest, ...]:
        """Guests meant to run (``target-role`` not Stopped): the ones a plan must keep."""
        return tuple(guest for guest in self.guests if guest.should_run)


# --- reading the document ------------------------------------------------------------------


class OperationRecord(NamedTuple):
    """One ``lrm_rsc_op`` of the status section, reduced to what the model reads."""

    node: str
    resource: str
    op_id: str
    operation: str
    interval_ms: str
    rc: str
    op_status: str
    call_id: str


@dataclass
class StatusRecords:
    node_states: dict[str, dict[str, str]] = field(default_factory=dict)
    # (node, attribute name) -> value, from transient_attributes/instance_attributes
    transient: dict[tuple[str, str], str] = field(default_factory=dict)
    operations: list[OperationRecord] = field(default_factory=list)


@dataclass(frozen=True)
class CibDocument:
    """The configuration as an lxml tree (status emptied) and the status as records."""

    root: Any  # lxml.etree._Element
    status: StatusRecords


class _CibTarget:
    """lxml parser target: the tree outside ``<status>``, compact records inside it.

    No ``data`` method: the CIB carries no text the model reads, and leaving it out spares
    a Python call per whitespace run.
    """

    def __init__(self) -> None:
        from lxml import etree

        self._builder = etree.TreeBuilder()
        self._open = 0  # elements open outside <status>
        self._builder_empty = True
        self._depth = 0  # elements open inside <status>, itself included
        self._transient = 0  # depth inside transient_attributes
        self._node = ""
        self._resource = ""
        self.status = StatusRecords()
        self._operations = self.status.operations

    def start(self, tag: str, attrib: Mapping[str, str], nsmap: object = None) -> None:
        if self._depth:
            self._depth += 1
            if tag == "lrm_rsc_op":
                get = attrib.get
                self._operations.append(
                    OperationRecord(
                        self._node,
                        self._resource,
                        get("id", ""),
                        get("operation", ""),
                        get("interval", "0"),
                        get("rc-code", ""),
                        get("op-status", ""),
                        get("call-id", ""),
                    )
                )
            elif tag == "lrm_resource":
                self._resource = attrib.get("id", "")
            elif tag == "node_state":
                self._node = attrib.get("uname") or attrib.get("id", "")
                self.status.node_states[self._node] = dict(attrib)
            elif tag == "transient_attributes":
                self._transient = self._depth
            elif tag == "nvpair" and self._transient:
                self.status.transient[(self._node, attrib.get("name", ""))] = attrib.get("value", "")
            return
        if tag == "status":
            self._depth = 1
        self._open += 1
        self._builder_empty = False
        self._builder.start(tag, dict(attrib))  # type: ignore[arg-type]

    def end(self, tag: str) -> None:
        if self._depth:
            if self._depth == self._transient:
                self._transient = 0
            self._depth -= 1
            if self._depth:
                return
        self._open -= 1
        self._builder.end(tag)

    def comment(self, text: str) -> None:
        return None

    def close(self) -> Any:
        if self._open or self._builder_empty:
            return None  # empty or truncated: lxml raises its syntax error next
        return self._builder.close()


def read_cib_document(data: bytes) -> CibDocument:
    """Parse CIB XML; raises CibError when it is not well-formed XML with a ``cib`` root."""
    from lxml import etree

    target = _CibTarget()
    # No data() method (see _CibTarget), hence the cast for the stubs' protocol.
    parser = etree.XMLParser(
        target=cast(Any, target), huge_tree=True, resolve_entities=False, no_network=True, load_dtd=False
    )
    try:
        with _collector_paused():
            root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise CibError(f"the CIB is not well-formed XML ({error.msg}): give the output of 'cibadmin --query'") from None
    if root is None or root.tag != "cib":
        tag = "nothing" if root is None else f"<{root.tag}>"
        raise CibError(f"the document is {tag}, not a CIB (<cib>): give the output of 'cibadmin --query'")
    return CibDocument(root, target.status)


def parse_cib(data: bytes) -> CibModel:
    return build_model(read_cib_document(data))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large CIB is turned into objects.

    Tens of thousands of short-lived records would trigger full collections that find
    nothing (the records hold no cycles); pausing saves a third of the parse time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- small helpers -------------------------------------------------------------------------


def parse_utilization_value(text: str | None) -> int | None:
    """A utilization value as the scheduler counts it, or None when it is not an integer.

    Pacemaker reads integers (a node missing an attribute offers 0). Anything else is
    reported, and keeps the proof away: what the scheduler makes of it is its business.

    >>> parse_utilization_value("4096"), parse_utilization_value("4G")
    (4096, None)
    """
    if text is None:
        return 0
    stripped = text.strip()
    if not _INTEGER.match(stripped):
        return None
    return int(stripped)


SCORE_INFINITY = 1000000  # Pacemaker's INFINITY


def score_value(text: str | None) -> int | None:
    """A score (stickiness, priority) as Pacemaker reads it; unset is 0; None when not a score.

    >>> [score_value(v) for v in (None, "100", "INFINITY", "-1", "-INFINITY", "x")]
    [0, 100, 1000000, -1, -1000000, None]
    """
    if text is None:
        return 0
    stripped = text.strip().upper()
    if stripped in ("INFINITY", "+INFINITY"):
        return SCORE_INFINITY
    if stripped == "-INFINITY":
        return -SCORE_INFINITY
    value = parse_utilization_value(stripped)
    if value is None:
        return None
    return max(-SCORE_INFINITY, min(SCORE_INFINITY, value))


def parse_ledger(crm_config: Any, host_names: Sequence[str]) -> tuple[Reservation, ...]:
    """Every reservation in the ledgers under ``crm_config`` (expired ones included).

    The ledger's format is :mod:`xenha.admission.ledger`'s, the one the agents book in.
    Callers drop reservations that have expired (:meth:`Reservation.expired`).
    """
    if crm_config is None:
        return ()
    found: list[Reservation] = []
    for property_set in crm_config.iterfind("cluster_property_set"):
        node = node_of_ledger(property_set.get("id", ""), host_names)
        if node is None:
            continue
        nvpairs = [(nvpair.get("id", ""), nvpair.get("value") or "") for nvpair in property_set.iterfind("nvpair")]
        found.extend(read_ledger_set(node, nvpairs)[1])
    return tuple(found)


@dataclass(frozen=True)
class _NvSets:
    values: dict[str, str]
    conditional: bool  # some set has a rule, a score or an id-ref: values may depend on them


def _nvsets(parent: Any, tag: str) -> _NvSets:
    """The ``tag`` sets of ``parent`` merged: first value wins, in document order."""
    return _merged(() if parent is None else parent.iterfind(tag))


def _merged(nvsets: Iterable[Any]) -> _NvSets:
    """Name-value sets merged in the order given, first value wins (sets without rules are merged that way)."""
    values: dict[str, str] = {}
    conditional = False
    for nvset in nvsets:
        if nvset.get("id-ref") is not None or nvset.find("rule") is not None or nvset.get("score"):
            conditional = True
        for nvpair in nvset.iterfind("nvpair"):
            if nvpair.get("id-ref") is not None:
                conditional = True
                continue
            name = nvpair.get("name")
            if name is not None and name not in values:
                values[name] = nvpair.get("value", "")
    return _NvSets(values, conditional)


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
    merged = _merged(sets)
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
    utilization: _NvSets, owner: str, problems: list[str], resource: bool = True
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


def _agent_of(primitive: Any, templates: Mapping[str, Any]) -> tuple[str, str, str]:
    source = primitive
    template = primitive.get("template")
    if template is not None and template in templates:
        source = templates[template]
    return (source.get("class", ""), source.get("provider", ""), source.get("type", ""))


@dataclass(frozen=True)
class _History:
    active_on: tuple[str, ...]
    problems: tuple[str, ...]


def _histories(status: StatusRecords, wanted: set[str]) -> dict[str, _History]:
    """Where each wanted resource is active, and what in its history keeps the proof away.

    Reads the last non-recurring operation (highest call id) on each node: a successful
    start, migrate_from, promote or demote, or a probe that found it running, means
    active. Failed or pending operations, half-done migrations and failed recurring
    monitors are reported as problems (the scheduler decides what they mean).
    """
    per_node: dict[tuple[str, str], list[OperationRecord]] = {}
    for record in status.operations:
        if record.resource in wanted:
            per_node.setdefault((record.resource, record.node), []).append(record)
    active: dict[str, list[str]] = {name: [] for name in wanted}
    problems: dict[str, list[str]] = {name: [] for name in wanted}
    for (resource, node), records in per_node.items():
        last: OperationRecord | None = None
        last_call = -(10**9)
        for record in records:
            rc, op_status = record.rc, record.op_status
            if record.op_id.endswith("_last_failure_0"):
                problems[resource].append(f"{resource} has a recorded failure on {node}")
                continue
            if op_status not in ("0", "") or rc not in ("0", "7", "8"):
                problems[resource].append(
                    f"{resource}: {record.operation} on {node} returned rc={rc} status={op_status}"
                )
                continue
            if record.interval_ms not in ("0", ""):
                if rc == "7":
                    problems[resource].append(f"{resource}: its monitor on {node} found it stopped")
                continue
            try:
                call = int(record.call_id)
            except ValueError:
                call = -1
            if call >= last_call:
                last, last_call = record, call
        if last is None:
            continue
        operation, rc = last.operation, last.rc
        if operation == "migrate_to":
            problems[resource].append(f"{resource} is in the middle of a migration from {node}")
            active[resource].append(node)
        elif (operation in ("start", "migrate_from", "promote", "demote") and rc == "0") or (
            operation == "monitor" and rc in ("0", "8")
        ):
            active[resource].append(node)
    return {name: _History(tuple(sorted(active[name])), tuple(problems[name])) for name in sorted(wanted)}


def build_model(document: CibDocument) -> CibModel:
    with _collector_paused():
        return _build_model(document)


def _build_model(document: CibDocument) -> CibModel:
    root = document.root
    status = document.status
    configuration = root.find("configuration")
    if configuration is None:
        raise CibError("the CIB has no <configuration> section: give the output of 'cibadmin --query'")
    crm_config = configuration.find("crm_config")
    options, conditional_options = _cluster_options(crm_config)
    blockers: list[str] = []
    notes: list[str] = []
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

    # Hosts.
    hosts: list[Host] = []
    nodes = configuration.find("nodes")
    for node in nodes.iterfind("node") if nodes is not None else ():
        if node.get("type", "member") not in ("member", "normal", ""):
            continue  # remote and ping nodes: never counted as survivors (that is sound)
        name = node.get("uname") or node.get("id", "")
        problems: list[str] = []
        node_utilization = _nvsets(node, "utilization")
        capacity, _ = _resource_demand(node_utilization, f"node {name}", problems, resource=False)
        has_capacity = MEMORY in node_utilization.values
        blockers.extend(problems)
        attributes = _nvsets(node, "instance_attributes")
        if attributes.conditional:
            blockers.append(f"the attributes of node {name} have rules or references")
        state = status.node_states.get(name)
        online, unclean = _node_online(state)
        if unclean:
            blockers.append(f"node {name} is unclean (the scheduler wants to fence it)")

        def attribute(key: str, host: str = name, node_attributes: _NvSets = attributes) -> str:
            return status.transient.get((host, key)) or node_attributes.values.get(key, "")

        shutdown = attribute("shutdown").strip()
        hosts.append(
            Host(
                name=name,
                capacity=capacity,
                online=online,
                standby=is_true(attribute("standby")),
                maintenance=is_true(attribute("maintenance")),
                shutting_down=bool(shutdown) and shutdown != "0",
                unclean=unclean,
                has_capacity=has_capacity,
            )
        )
    host_names = {host.name for host in hosts}

    # Resources.
    resources = configuration.find("resources")
    if resources is None:
        raise CibError("the CIB has no <resources> section: give the output of 'cibadmin --query'")
    templates = {element.get("id", ""): element for element in resources.iterfind("template")}
    defaults = _nvsets(configuration.find("rsc_defaults"), "meta_attributes")
    if defaults.conditional:
        blockers.append("rsc_defaults have rules or references")
    referenced, patterns = _constraint_references(root)
    if patterns:
        blockers.append(f"constraints with rsc-pattern ({', '.join(patterns)})")

    guest_elements: list[tuple[Any, list[str], dict[str, str]]] = []  # primitive, blockers, meta
    consumers: list[Consumer] = []
    fencing: list[str] = []
    for primitive in resources.iter("primitive"):
        resource = primitive.get("id", "")
        agent = _agent_of(primitive, templates)
        meta = _nvsets(primitive, "meta_attributes")
        merged_meta = {**defaults.values, **meta.values}
        if agent[0] == "stonith":
            if merged_meta.get("target-role", "Started").strip().lower() != "stopped":
                fencing.append(resource)
            continue
        if agent == GUEST_AGENT:
            guest_blockers: list[str] = []
            parent = primitive.getparent()
            if parent is not None and parent.tag != "resources":
                guest_blockers.append(f"{resource} is inside {parent.tag} {parent.get('id', '')}")
            if primitive.get("template") is not None:
                guest_blockers.append(f"{resource} is defined through template {primitive.get('template')}")
            if meta.conditional:
                guest_blockers.append(f"the meta-attributes of {resource} have rules or references")
            guest_elements.append((primitive, guest_blockers, merged_meta))
            continue
        utilization = _nvsets(primitive, "utilization")
        if utilization.values:
            demand, _ = _resource_demand(utilization, resource, [])
            consumers.append(Consumer(resource, demand))
    if consumers:
        blockers.append(
            "resources other than guests have utilization: " + ", ".join(consumer.resource for consumer in consumers)
        )
    # Templates and sets the parent loop above could not see.
    for template in templates.values():
        if template.find("utilization") is not None:
            blockers.append(f"template {template.get('id', '')} has utilization")

    guest_ids = {primitive.get("id", "") for primitive, _, _ in guest_elements}
    histories = _histories(status, guest_ids)
    fail_counts = {(node, name) for (node, name) in status.transient if name.startswith("fail-count-")}
    guests: list[Guest] = []
    for primitive, guest_blockers, guest_meta in guest_elements:
        resource = primitive.get("id", "")
        role = guest_meta.get("target-role", "Started").strip().lower()
        if not is_true(guest_meta.get("is-managed", "true")):
            guest_blockers.append(f"{resource} is not managed (is-managed=false)")
        if is_true(guest_meta.get("maintenance", "false")):
            guest_blockers.append(f"{resource} is in maintenance")
        for key in ("remote-node", "container", "container-attribute-target"):
            if key in guest_meta:
                guest_blockers.append(f"{resource} has meta-attribute {key}")
        stickiness_text = guest_meta.get("resource-stickiness", guest_meta.get("resource_stickiness"))
        stickiness = score_value(stickiness_text)
        if stickiness is None or stickiness < 0:
            guest_blockers.append(f"{resource} has resource-stickiness={stickiness_text!r}, not a score of at least 0")
        priority = score_value(guest_meta.get("priority"))
        if priority is None:
            guest_blockers.append(f"{resource} has priority={guest_meta.get('priority')!r}, not a number")
        if resource in referenced:
            guest_blockers.append(f"{resource} is named in a constraint")
        utilization_problems: list[str] = []
        demand, has_utilization = _resource_demand(_nvsets(primitive, "utilization"), resource, utilization_problems)
        guest_blockers.extend(utilization_problems)
        history = histories.get(resource, _History((), ()))
        guest_blockers.extend(history.problems)
        if any(name.startswith(f"fail-count-{resource}#") for _, name in fail_counts):
            guest_blockers.append(f"{resource} has a fail count")
        if len(history.active_on) > 1:
            guest_blockers.append(f"{resource} is active on several nodes: {', '.join(history.active_on)}")
        if not has_utilization:
            notes.append(f"{resource} has no utilization: the scheduler places it without a capacity check")
        guests.append(
            Guest(
                resource=resource,
                demand=demand,
                active_on=tuple(node for node in history.active_on if node in host_names) or history.active_on,
                should_run=role != "stopped",
                has_utilization=has_utilization,
                blockers=tuple(guest_blockers),
                stickiness=stickiness or 0,
                priority=priority or 0,
            )
        )

    epoch = ".".join(root.get(key, "0") for key in ("admin_epoch", "epoch", "num_updates"))
    return CibModel(
        validate_with=root.get("validate-with", ""),
        epoch=epoch,
        have_quorum=is_true(root.get("have-quorum")),
        options=options,
        hosts=tuple(hosts),
        guests=tuple(guests),
        consumers=tuple(consumers),
        fencing_devices=tuple(fencing),
        blockers=tuple(blockers),
        reservations=parse_ledger(crm_config, [host.name for host in hosts]),
        notes=tuple(notes),
    )


def schema_path(validate_with: str, schema_dir: str) -> Optional[str]:
    """The RelaxNG file for a ``validate-with`` value, when it is a plain pacemaker-N.M name."""
    if not re.match(r"^pacemaker-[0-9]+\.[0-9]+$", validate_with):
        return None
    return f"{schema_dir.rstrip('/')}/{validate_with}.rng"
