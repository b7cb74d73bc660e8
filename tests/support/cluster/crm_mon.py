"""``crm_mon --output-as=xml`` parsed into frozen dataclasses. Pure: text in, values out.

Only what the harness and the tests ask about is kept: the DC and quorum, each node's
membership flags, each primitive resource (clones and groups are flattened) with the
nodes it is active on, failed operations, and fencing actions when crm_mon lists them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import unescape


class CrmMonError(ValueError):
    pass


@dataclass(frozen=True)
class NodeState:
    name: str
    online: bool
    standby: bool
    unclean: bool
    pending: bool
    shutdown: bool
    is_dc: bool
    resources_running: int


@dataclass(frozen=True)
class ResourceState:
    id: str
    agent: str  # e.g. "ocf:heartbeat:Dummy", "stonith:fence_xenha_test"
    role: str  # "Started", "Stopped", "Starting", "Migrating", ...
    active: bool
    failed: bool
    managed: bool
    blocked: bool
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Failure:
    op_key: str
    node: str
    exit_status: str
    exit_reason: str


@dataclass(frozen=True)
class FenceAction:
    target: str
    action: str
    status: str
    delegate: str
    completed: str


@dataclass(frozen=True)
class ClusterStatus:
    dc: str | None
    with_quorum: bool
    nodes: tuple[NodeState, ...]
    resources: tuple[ResourceState, ...]
    failures: tuple[Failure, ...]
    fencing: tuple[FenceAction, ...]

    def online_nodes(self) -> set[str]:
        return {node.name for node in self.nodes if node.online}

    def node(self, name: str) -> NodeState:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"crm_mon lists no node {name!r} (nodes: {[n.name for n in self.nodes]})")

    def resource(self, resource_id: str) -> ResourceState | None:
        for resource in self.resources:
            if resource.id == resource_id:
                return resource
        return None

    def started_on(self, resource_id: str) -> tuple[str, ...]:
        """Nodes where the resource is Started (empty when stopped, unknown or in transition)."""
        resource = self.resource(resource_id)
        if resource is None or resource.role != "Started":
            return ()
        return resource.nodes


def parse_crm_mon(text: str) -> ClusterStatus:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise CrmMonError(f"crm_mon output is not XML ({error}): {text[:200]!r}") from None
    if root.tag != "pacemaker-result":
        raise CrmMonError(f"crm_mon output starts with <{root.tag}>, not <pacemaker-result>")
    status = root.find("status")
    summary = root.find("summary")
    if summary is None:
        message = status.get("message", "") if status is not None else ""
        raise CrmMonError(f"crm_mon gave no cluster summary: {message or text[:200]!r}")
    dc_element = summary.find("current_dc")
    dc = None
    with_quorum = False
    if dc_element is not None and _flag(dc_element, "present"):
        dc = dc_element.get("name")
        with_quorum = _flag(dc_element, "with_quorum")
    nodes = tuple(
        NodeState(
            name=element.get("name", ""),
            online=_flag(element, "online"),
            standby=_flag(element, "standby"),
            unclean=_flag(element, "unclean"),
            pending=_flag(element, "pending"),
            shutdown=_flag(element, "shutdown"),
            is_dc=_flag(element, "is_dc"),
            resources_running=int(element.get("resources_running", "0")),
        )
        for element in root.findall("./nodes/node")
    )
    resources = tuple(
        ResourceState(
            id=element.get("id", ""),
            agent=element.get("resource_agent", ""),
            role=element.get("role", ""),
            active=_flag(element, "active"),
            failed=_flag(element, "failed"),
            managed=_flag(element, "managed"),
            blocked=_flag(element, "blocked"),
            nodes=tuple(node.get("name", "") for node in element.findall("node")),
        )
        for element in root.iter("resource")
    )
    failures = tuple(
        Failure(
            op_key=element.get("op_key", ""),
            node=element.get("node", ""),
            exit_status=element.get("exitstatus", ""),
            # Pacemaker 2.1.5's crm_mon escapes exit reasons twice ("guest&amp;apos;s").
            exit_reason=unescape(element.get("exitreason", ""), {"&apos;": "'", "&quot;": '"'}),
        )
        for element in root.findall("./failures/failure")
    )
    fencing = tuple(
        FenceAction(
            target=element.get("target", ""),
            action=element.get("action", ""),
            status=element.get("status", ""),
            delegate=element.get("delegate", ""),
            completed=element.get("completed", ""),
        )
        for element in root.findall("./fence_history/fence_event")
    )
    return ClusterStatus(dc, with_quorum, nodes, resources, failures, fencing)


def _flag(element: ET.Element, name: str) -> bool:
    return element.get(name, "false") == "true"
