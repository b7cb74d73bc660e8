"""Reading a CIB document: the configuration as an lxml tree, the status as compact records.

The readers of the configuration's name-value sets and of a primitive's agent are here too:
the planner's model and ``xenha verify`` read the same values through them.

The status section of a running cluster is large (a probe result for every guest on every
host: 32,000 operation records for 32 hosts and 1000 guests). It is read with an lxml
parser *target* that keeps only the fields used here, which is three times faster than
building the whole tree.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from lxml import etree

from xenha.planner.model import CibError


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

    target = _CibTarget()
    # No data() method (see _CibTarget), hence the cast for the stubs' protocol.
    parser = etree.XMLParser(
        target=cast(Any, target), huge_tree=True, resolve_entities=False, no_network=True, load_dtd=False
    )
    try:
        with collector_paused():
            root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise CibError(f"the CIB is not well-formed XML ({error.msg}): give the output of 'cibadmin --query'") from None
    if root is None or root.tag != "cib":
        tag = "nothing" if root is None else f"<{root.tag}>"
        raise CibError(f"the document is {tag}, not a CIB (<cib>): give the output of 'cibadmin --query'")
    return CibDocument(root, target.status)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
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


@dataclass(frozen=True)
class History:
    active_on: tuple[str, ...]
    problems: tuple[str, ...]


def _last_operation(
    resource: str, node: str, records: list[OperationRecord], problems: list[str]
) -> OperationRecord | None:
    """The last successful non-recurring operation of ``resource`` on ``node``; what went wrong into ``problems``."""
    last: OperationRecord | None = None
    last_call = -(10**9)
    for record in records:
        rc, op_status = record.rc, record.op_status
        if record.op_id.endswith("_last_failure_0"):
            problems.append(f"{resource} has a recorded failure on {node}")
            continue
        if op_status not in ("0", "") or rc not in ("0", "7", "8"):
            problems.append(f"{resource}: {record.operation} on {node} returned rc={rc} status={op_status}")
            continue
        if record.interval_ms not in ("0", ""):
            if rc == "7":
                problems.append(f"{resource}: its monitor on {node} found it stopped")
            continue
        try:
            call = int(record.call_id)
        except ValueError:
            call = -1
        if call >= last_call:
            last, last_call = record, call
    return last


def histories(status: StatusRecords, wanted: set[str]) -> dict[str, History]:
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
        last = _last_operation(resource, node, records, problems[resource])
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
    return {name: History(tuple(sorted(active[name])), tuple(problems[name])) for name in sorted(wanted)}


# --- reading the configuration ----------------------------------------------------------


@dataclass(frozen=True)
class NvSets:
    """Name-value sets (``instance_attributes``, ``meta_attributes``, ``utilization``...) merged."""

    values: dict[str, str]
    conditional: bool  # some set has a rule, a score or an id-ref: values may depend on them


def nvsets_of(parent: Any, tag: str) -> NvSets:
    """The ``tag`` sets of ``parent`` merged: first value wins, in document order."""
    return merge_nvsets(() if parent is None else parent.iterfind(tag))


def merge_nvsets(nvsets: Iterable[Any]) -> NvSets:
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
    return NvSets(values, conditional)


def agent_of(primitive: Any, templates: Mapping[str, Any]) -> tuple[str, str, str]:
    """(class, provider, type) of a primitive, read from its template when it names one."""
    source = primitive
    template = primitive.get("template")
    if template is not None and template in templates:
        source = templates[template]
    return (source.get("class", ""), source.get("provider", ""), source.get("type", ""))
