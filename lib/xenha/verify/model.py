"""The configuration as the checks read it (pure: a parsed CIB in, frozen dataclasses out).

The planner's model (:mod:`xenha.planner.model`, built by :mod:`xenha.planner.cibmodel`) already holds the hosts, their
capacity and state, the guests' demand and where they run, the cluster options and the
fence devices. The checks also need what the planner has no use for: each guest's
parameters, meta-attributes and operations, the operation defaults, every utilization name
(not only ``hv_memory`` and ``cpu``), which nodes each fence device covers, the xen-host
clone, and whether health is published. Those are read here from the same parsed
document, with the planner's own readers of name-value sets, so both see the same values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xenha.admission.ledger import LEDGER_PREFIX
from xenha.agents.host import AGENT_NAME as HOST_AGENT_NAME
from xenha.agents.host import HEALTH_ATTRIBUTE
from xenha.booleans import is_true
from xenha.planner.cibdocument import CibDocument, agent_of, merge_nvsets, nvsets_of
from xenha.planner.cibmodel import build_model
from xenha.planner.model import GUEST_AGENT, CibModel, Guest, Host

HOST_AGENT = ("ocf", "xenha", HOST_AGENT_NAME)
# Pacemaker's timeout of an operation that neither the operation nor op_defaults sets.
PACEMAKER_DEFAULT_TIMEOUT_MS = 20000
_DURATION = re.compile(r"^\s*([0-9]+)\s*(ms|msec|us|usec|s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
_UNIT_MS = {"ms": 1, "msec": 1, "s": 1000, "sec": 1000, "m": 60000, "min": 60000, "h": 3600000, "hr": 3600000}
_ISO = re.compile(r"^\s*PT(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?\s*$", re.IGNORECASE)


def duration_ms(text: str | None) -> int | None:
    """A Pacemaker time (``30s``, ``2min``, ``500ms``, ``90``, ``PT1M``) in ms; None when unreadable.

    A bare number is seconds, as Pacemaker reads it.

    >>> [duration_ms(v) for v in ("30s", "2min", "500ms", "90", "PT1M30S", "1h", "x", None)]
    [30000, 120000, 500, 90000, 90000, 3600000, None, None]
    """
    if text is None:
        return None
    match = _DURATION.match(text)
    if match:
        unit = (match.group(2) or "s").lower()
        if unit in ("us", "usec"):
            return int(match.group(1)) // 1000
        return int(match.group(1)) * _UNIT_MS[unit]
    iso = _ISO.match(text)
    if iso and any(iso.groups()):
        hours, minutes, seconds = (int(group or 0) for group in iso.groups())
        return ((hours * 60 + minutes) * 60 + seconds) * 1000
    return None


@dataclass(frozen=True)
class Operation:
    op_id: str
    name: str
    interval_ms: int
    timeout_ms: int  # the effective one: its own, else op_defaults, else Pacemaker's 20 s
    timeout_set: bool  # on the operation itself
    enabled: bool


@dataclass(frozen=True)
class GuestConfig:
    """One xen-guest primitive: the planner's view plus what only the checks read."""

    guest: Guest
    params: Mapping[str, str]
    meta: Mapping[str, str]  # its own meta-attributes over rsc_defaults
    own_meta: Mapping[str, str]
    utilization: Mapping[str, str]
    operations: tuple[Operation, ...]
    default_timeout_ms: int

    @property
    def resource(self) -> str:
        return self.guest.resource

    def operation(self, name: str) -> Operation | None:
        """The enabled, non-recurring operation ``name`` (migrate_to, stop...), if it is configured."""
        for operation in self.operations:
            if operation.name == name and operation.enabled and operation.interval_ms == 0:
                return operation
        return None

    def timeout_ms(self, name: str) -> int:
        operation = self.operation(name)
        return operation.timeout_ms if operation is not None else self.default_timeout_ms

    def recurring_monitors(self) -> tuple[Operation, ...]:
        return tuple(op for op in self.operations if op.name == "monitor" and op.enabled and op.interval_ms > 0)

    def flag(self, name: str, default: str) -> bool:
        """A boolean parameter of the agent."""
        return is_true(self.params.get(name, default))

    @property
    def allows_migration(self) -> bool:
        return is_true(self.meta.get("allow-migrate", "false"))


@dataclass(frozen=True)
class NodeConfig:
    host: Host
    utilization: Mapping[str, str]

    @property
    def name(self) -> str:
        return self.host.name


@dataclass(frozen=True)
class FenceDevice:
    resource: str
    agent: str
    targets: tuple[str, ...] | None  # None: no static list, the device is asked (dynamic-list)


@dataclass(frozen=True)
class HostAgentConfig:
    """A xen-host primitive, and the clone around it if there is one."""

    primitive: str
    clone: str | None
    clone_meta: Mapping[str, str]
    banned_from: tuple[tuple[str, str], ...]  # (node, constraint id): -INFINITY locations

    @property
    def resource(self) -> str:
        return self.clone or self.primitive


@dataclass(frozen=True)
class ClusterConfig:
    planner: CibModel
    properties: Mapping[str, str]
    rsc_defaults: Mapping[str, str]
    guests: tuple[GuestConfig, ...]
    nodes: tuple[NodeConfig, ...]
    fence_devices: tuple[FenceDevice, ...]
    host_agents: tuple[HostAgentConfig, ...]
    health_published_on: tuple[str, ...]  # nodes with #health-xenha in the status section or node attributes


def _split_hosts(text: str) -> tuple[str, ...]:
    return tuple(word for word in re.split(r"[\s,;]+", text.strip()) if word)


def fence_targets(params: Mapping[str, str]) -> tuple[str, ...] | None:
    """The nodes a fence device names in ``pcmk_host_list`` or ``pcmk_host_map``; None when it names none.

    >>> fence_targets({"pcmk_host_list": "node1 node2,node3"})
    ('node1', 'node2', 'node3')
    >>> fence_targets({"pcmk_host_map": "node1:1;node2:2"}), fence_targets({})
    (('node1', 'node2'), None)
    """
    targets: list[str] = []
    if params.get("pcmk_host_list", "").strip():
        targets.extend(_split_hosts(params["pcmk_host_list"]))
    if params.get("pcmk_host_map", "").strip():
        targets.extend(entry.split(":", 1)[0] for entry in _split_hosts(params["pcmk_host_map"]))
    return tuple(targets) if targets else None


def _operations(primitive: Any, default_timeout_ms: int) -> tuple[Operation, ...]:
    found = []
    for op in primitive.iterfind("operations/op"):
        own_timeout = duration_ms(op.get("timeout"))
        found.append(
            Operation(
                op_id=op.get("id", ""),
                name=op.get("name", ""),
                interval_ms=duration_ms(op.get("interval", "0")) or 0,
                timeout_ms=own_timeout if own_timeout is not None else default_timeout_ms,
                timeout_set=own_timeout is not None,
                enabled=is_true(op.get("enabled", "true")),
            )
        )
    return tuple(found)


def _bans(constraints: Any, ids: set[str]) -> tuple[tuple[str, str], ...]:
    bans = []
    for location in () if constraints is None else constraints.iterfind("rsc_location"):
        if location.get("rsc") in ids and location.get("node") and location.get("score", "").strip() == "-INFINITY":
            bans.append((location.get("node", ""), location.get("id", "")))
    return tuple(bans)


def build_config(document: CibDocument, planner: CibModel | None = None) -> ClusterConfig:
    """The checks' model of a parsed CIB; ``planner`` is the planner's model of the same document."""
    planner = planner or build_model(document)
    root = document.root
    configuration = root.find("configuration")
    crm_config = configuration.find("crm_config")
    property_sets = [
        element
        for element in (() if crm_config is None else crm_config.iterfind("cluster_property_set"))
        if not element.get("id", "").startswith(LEDGER_PREFIX)
    ]
    property_sets.sort(key=lambda element: element.get("id") != "cib-bootstrap-options")
    properties = merge_nvsets(property_sets).values
    rsc_defaults = nvsets_of(configuration.find("rsc_defaults"), "meta_attributes").values
    op_defaults = nvsets_of(configuration.find("op_defaults"), "meta_attributes").values
    default_timeout_ms = duration_ms(op_defaults.get("timeout")) or PACEMAKER_DEFAULT_TIMEOUT_MS

    resources = configuration.find("resources")
    templates = {element.get("id", ""): element for element in resources.iterfind("template")}
    guests_by_id = {guest.resource: guest for guest in planner.guests}
    guests: list[GuestConfig] = []
    fence_devices: list[FenceDevice] = []
    host_agents: list[HostAgentConfig] = []
    constraints = configuration.find("constraints")
    for primitive in resources.iter("primitive"):
        resource = primitive.get("id", "")
        agent = agent_of(primitive, templates)
        params = nvsets_of(primitive, "instance_attributes").values
        if agent[0] == "stonith" and resource in planner.fencing_devices:
            fence_devices.append(FenceDevice(resource, agent[2], fence_targets(params)))
        elif agent == GUEST_AGENT and resource in guests_by_id:
            own_meta = nvsets_of(primitive, "meta_attributes").values
            guests.append(
                GuestConfig(
                    guest=guests_by_id[resource],
                    params=params,
                    meta={**rsc_defaults, **own_meta},
                    own_meta=own_meta,
                    utilization=nvsets_of(primitive, "utilization").values,
                    operations=_operations(primitive, default_timeout_ms),
                    default_timeout_ms=default_timeout_ms,
                )
            )
        elif agent == HOST_AGENT:
            parent = primitive.getparent()
            clone = parent if parent is not None and parent.tag == "clone" else None
            clone_id = None if clone is None else clone.get("id", "")
            ids = {resource} | ({clone_id} if clone_id else set())
            host_agents.append(
                HostAgentConfig(
                    primitive=resource,
                    clone=clone_id,
                    clone_meta={} if clone is None else nvsets_of(clone, "meta_attributes").values,
                    banned_from=_bans(constraints, ids),
                )
            )

    node_elements = {
        (element.get("uname") or element.get("id", "")): element for element in configuration.iterfind("nodes/node")
    }
    nodes = tuple(
        NodeConfig(host, nvsets_of(node_elements.get(host.name), "utilization").values) for host in planner.hosts
    )
    health = tuple(
        sorted(
            {node for (node, name) in document.status.transient if name == HEALTH_ATTRIBUTE}
            | {
                name
                for name, element in node_elements.items()
                if HEALTH_ATTRIBUTE in nvsets_of(element, "instance_attributes").values
            }
        )
    )
    return ClusterConfig(
        planner=planner,
        properties=properties,
        rsc_defaults=rsc_defaults,
        guests=tuple(guests),
        nodes=nodes,
        fence_devices=tuple(fence_devices),
        host_agents=tuple(host_agents),
        health_published_on=health,
    )
