"""What-if edits of a CIB, as pure functions of its text: a new guest for ``check-add``.

A new guest is added the way the cluster would hold it: a primitive
``ocf:xenha:xen-guest`` with its utilization and, when it is said to run on a host, the
status a running cluster records for it (a successful start there, a probe that found it
stopped everywhere else), with Pacemaker's operation digests, so that the scheduler sees
a settled guest and plans nothing for it but recovery.
"""

from __future__ import annotations

import hashlib
from typing import Any

from lxml import etree

from xenha.admission.resources import Resources
from xenha.planner.model import CPU, MEMORY, CibError

NEW_GUEST = "xenha-check-add"


def operation_digest(parameters: dict[str, str]) -> str:
    """Pacemaker's operation digest: MD5 of ``" <parameters a="1" b="2"/>\\n"``.

    The element holds the resource's parameters (plus ``CRM_meta_timeout`` for recurring
    operations), attributes sorted by name, serialized as libxml2 does, with a leading
    space and a trailing newline (Pacemaker's "v1" digest format). Values here are plain
    words: no escaping is needed.

    >>> operation_digest({})
    'f2317cad3d54cec5d7d7aa7d0bf35cf8'
    >>> operation_digest({"config": "/etc/xen/vm1.xml"})
    'd17c80526dd260e17c154de10bf00e0f'
    """
    attributes = "".join(f' {name}="{parameters[name]}"' for name in sorted(parameters))
    return hashlib.md5(f" <parameters{attributes}/>\n".encode(), usedforsecurity=False).hexdigest()


def _parse(data: bytes) -> Any:

    parser = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise CibError(f"the CIB is not well-formed XML ({error.msg})") from None


def unused_id(root: Any, wanted: str) -> str:
    taken = {element.get("id") for element in root.iter() if element.get("id") is not None}
    candidate, number = wanted, 1
    while candidate in taken:
        number += 1
        candidate = f"{wanted}-{number}"
    return candidate


def _nvpair(parent: Any, owner: str, name: str, value: str) -> None:

    etree.SubElement(parent, "nvpair", {"id": f"{owner}-{name}", "name": name, "value": value})


def add_guest(data: bytes, demand: Resources, running_on: str | None, name: str = NEW_GUEST) -> tuple[bytes, str]:
    """The CIB with one more guest (and its id, made unique); running on a host, or not yet.

    Raises CibError when the CIB has no resources section or the host has no status.
    """

    root = _parse(data)
    resources = root.find("configuration/resources")
    if resources is None:
        raise CibError("the CIB has no <resources> section")
    resource = unused_id(root, name)
    primitive = etree.SubElement(
        resources, "primitive", {"id": resource, "class": "ocf", "provider": "xenha", "type": "xen-guest"}
    )
    utilization = etree.SubElement(primitive, "utilization", {"id": f"{resource}-utilization"})
    _nvpair(utilization, f"{resource}-utilization", MEMORY, str(demand.memory_mib))
    _nvpair(utilization, f"{resource}-utilization", CPU, str(demand.vcpus))
    if running_on is not None:
        _record_running(root, resource, running_on)
    return etree.tostring(root, xml_declaration=False, encoding="utf-8"), resource


def _record_running(root: Any, resource: str, host: str) -> None:

    feature_set = root.get("crm_feature_set", "3.16.1")
    digest = operation_digest({})
    found = False
    for call_id, node_state in enumerate(root.iterfind("status/node_state"), start=900000):
        lrm_resources = node_state.find("lrm/lrm_resources")
        if lrm_resources is None:
            continue
        node = node_state.get("uname", "")
        running = node == host
        found = found or running
        operation, rc = ("start", "0") if running else ("monitor", "7")
        element = etree.SubElement(
            lrm_resources,
            "lrm_resource",
            {"id": resource, "class": "ocf", "provider": "xenha", "type": "xen-guest"},
        )
        uuid = "00000000-0000-0000-0000-000000000000"
        etree.SubElement(
            element,
            "lrm_rsc_op",
            {
                "id": f"{resource}_last_0",
                "operation_key": f"{resource}_{operation}_0",
                "operation": operation,
                "crm-debug-origin": "xenha-check-add",
                "crm_feature_set": feature_set,
                "transition-key": f"1:1:{rc}:{uuid}",
                "transition-magic": f"0:{rc};1:1:{rc}:{uuid}",
                "exit-reason": "",
                "on_node": node,
                "call-id": str(call_id),
                "rc-code": rc,
                "op-status": "0",
                "interval": "0",
                "last-rc-change": "1700000000",
                "exec-time": "0",
                "queue-time": "0",
                "op-digest": digest,
            },
        )
    if not found:
        raise CibError(f"host {host} has no resource history in the CIB's status section")
