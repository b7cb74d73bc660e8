"""The CIB's XML as the suite writes and reads it: XPath and attribute quoting, node figures (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from xenha.xmlscan import Element, scan

# Node attribute in which xen-host publishes the host reserve it applies (MiB), so that the
# reservation check of every guest uses the same figure as the host's capacity.
RESERVE_ATTRIBUTE = "xenha-memory-reserve"


def xpath_literal(text: str) -> str:
    """``text`` as an XPath 1.0 string literal, whatever quotes it contains.

    >>> xpath_literal("node1")
    "'node1'"
    >>> xpath_literal("it's")
    '"it\\'s"'
    """
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in parts) + ")"


def xml_attribute(text: str) -> str:
    """``text`` escaped for a double-quoted XML attribute value."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
    )


def cib_version(text: str) -> tuple[int, int] | None:
    """(admin_epoch, epoch) from ``cibadmin --query --xpath /cib --no-children``; None when absent.

    >>> cib_version('<cib crm_feature_set="3.16.1" epoch="12" num_updates="3" admin_epoch="0"/>')
    (0, 12)
    """
    for element in scan(text):
        if element.tag == "cib":
            admin, epoch = element.attributes.get("admin_epoch", ""), element.attributes.get("epoch", "")
            return (int(admin), int(epoch)) if admin.isdigit() and epoch.isdigit() else None
    return None


def integer_value(nvpair: Element) -> int | None:
    """An nvpair's value as a non-negative integer, None when it is anything else."""
    value = nvpair.attributes.get("value", "").strip()
    return int(value) if value.isdigit() else None


class NodeFigures(NamedTuple):
    """What the CIB says of a node's size."""

    utilization: Mapping[str, int]
    memory_reserve_mib: int | None  # as xen-host publishes it


def node_figures_xpath(node: str) -> str:
    """The node's utilization and published reserve: one query answers both."""
    element = f"/cib/configuration/nodes/node[@uname={xpath_literal(node)}]"
    return f"{element}/utilization | {element}/instance_attributes/nvpair[@name='{RESERVE_ATTRIBUTE}']"


def parse_node_figures(found: Iterable[Element]) -> NodeFigures:
    """The node's figures among the elements of a query that included :func:`node_figures_xpath` (pure).

    >>> from xenha.xmlscan import scan
    >>> parse_node_figures(scan(
    ...     '<xpath-query><utilization id="u"><nvpair id="u-m" name="hv_memory" value="16384"/>'
    ...     '<nvpair id="u-c" name="cpu" value="32"/></utilization>'
    ...     '<nvpair id="r" name="xenha-memory-reserve" value="4096"/></xpath-query>'
    ... ))
    NodeFigures(utilization={'hv_memory': 16384, 'cpu': 32}, memory_reserve_mib=4096)
    """
    utilization: dict[str, int] = {}
    reserve: int | None = None
    for element in found:
        value = integer_value(element) if element.tag == "nvpair" else None
        if value is None:
            continue
        name = element.attributes.get("name", "")
        if element.path[-2:-1] == ("utilization",):
            utilization[name] = value
        elif name == RESERVE_ATTRIBUTE:
            reserve = value
    return NodeFigures(utilization, reserve)
