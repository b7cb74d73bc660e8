"""CIBs for ``xenha verify``: one that passes every check, and edits that each break one.

:func:`clean` is a running three-host cluster (the planner's N+1 example: three hosts of
16384 MiB / 8 vCPUs, five guests) configured the way docs/verify.md recommends: fencing,
placement-strategy=balanced, node-health-strategy=migrate-on-red, the xen-host clone with
allow-unhealthy-nodes, migration-limit, stickiness, every guest with allow-migrate, a
recurring monitor and a migrate_to timeout long enough for its memory. With
``config_dir`` each guest's domain XML is written there (distinct names, UUIDs, disks)
and its ``config`` points at it. :class:`CibEdit` breaks it, one setting at a time.
"""

from __future__ import annotations

import pathlib
from typing import Any

from lxml import etree

from xenha.planner.synthetic import GuestSpec, HostSpec, render_cib

HOSTS = ("host1", "host2", "host3")
GUESTS = (
    GuestSpec("web1", 4096, 2, "host1"),
    GuestSpec("web2", 4096, 2, "host1"),
    GuestSpec("db1", 8192, 4, "host2"),
    GuestSpec("app1", 2048, 1, "host3"),
    GuestSpec("app2", 2048, 1, "host3"),
)


def domain_xml(name: str, memory_mib: int, vcpus: int, os_type: str = "linux", disk: str | None = None) -> str:
    """A Xen guest's domain XML (PV unless ``os_type`` is hvm), with one writable disk."""
    index = sum(ord(char) for char in name) % 10000
    return (
        f'<domain type="xen"><name>{name}</name><uuid>00000000-0000-4000-8000-{index:012d}</uuid>'
        f'<memory unit="MiB">{memory_mib}</memory><vcpu>{vcpus}</vcpu>'
        f"<os><type>{os_type}</type></os><devices>"
        f'<disk type="file" device="disk"><source file="{disk or f"/srv/xen/{name}.img"}"/>'
        '<target dev="xvda"/></disk></devices></domain>'
    )


class CibEdit:
    """A CIB as an lxml tree, with the edits the tests need."""

    def __init__(self, xml: str | bytes) -> None:
        self.root: Any = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)

    def _one(self, path: str) -> Any:
        found = self.root.find(path)
        assert found is not None, path
        return found

    def _set(self, parent: Any, tag: str, set_id: str, name: str, value: str | None) -> CibEdit:
        nvset = parent.find(tag)
        if nvset is None:
            nvset = etree.SubElement(parent, tag, id=set_id)
        for nvpair in nvset.findall("nvpair"):
            if nvpair.get("name") == name:
                nvset.remove(nvpair)
        if value is not None:
            etree.SubElement(nvset, "nvpair", id=f"{set_id}-{name}", name=name, value=value)
        return self

    def primitive(self, resource: str) -> Any:
        return self._one(f".//primitive[@id='{resource}']")

    def property(self, name: str, value: str | None) -> CibEdit:
        crm_config = self._one("configuration/crm_config")
        return self._set(crm_config, "cluster_property_set", "cib-bootstrap-options", name, value)

    def rsc_default(self, name: str, value: str | None) -> CibEdit:
        return self._set(self._one("configuration/rsc_defaults"), "meta_attributes", "rsc-options", name, value)

    def meta(self, resource: str, name: str, value: str | None) -> CibEdit:
        element = self._one(f".//*[@id='{resource}']")
        return self._set(element, "meta_attributes", f"{resource}-meta_attributes", name, value)

    def param(self, resource: str, name: str, value: str | None) -> CibEdit:
        return self._set(
            self.primitive(resource), "instance_attributes", f"{resource}-instance_attributes", name, value
        )

    def utilization(self, resource: str, name: str, value: str | None) -> CibEdit:
        return self._set(self.primitive(resource), "utilization", f"{resource}-utilization", name, value)

    def node_utilization(self, node: str, name: str, value: str | None) -> CibEdit:
        element = self._one(f"configuration/nodes/node[@uname='{node}']")
        return self._set(element, "utilization", f"{node}-utilization", name, value)

    def op(self, resource: str, name: str, **attributes: str) -> CibEdit:
        """Replace the operations ``name`` of ``resource`` by one with these attributes."""
        self.remove_ops(resource, name)
        operations = self.primitive(resource).find("operations")
        if operations is None:
            operations = etree.SubElement(self.primitive(resource), "operations")
        interval = attributes.pop("interval", "0s")
        etree.SubElement(
            operations, "op", {"id": f"{resource}-{name}-{interval}", "name": name, "interval": interval, **attributes}
        )
        return self

    def remove_ops(self, resource: str, name: str) -> CibEdit:
        operations = self.primitive(resource).find("operations")
        for op in [] if operations is None else operations.findall(f"op[@name='{name}']"):
            operations.remove(op)
        return self

    def remove(self, element_id: str) -> CibEdit:
        element = self._one(f"configuration//*[@id='{element_id}']")
        element.getparent().remove(element)
        return self

    def add_resource(self, xml: str) -> CibEdit:
        self._one("configuration/resources").append(etree.fromstring(xml))
        return self

    def add_constraint(self, xml: str) -> CibEdit:
        self._one("configuration/constraints").append(etree.fromstring(xml))
        return self

    def unclone(self, clone: str) -> CibEdit:
        """Move the primitive out of ``clone`` and drop the clone."""
        element = self._one(f"configuration/resources/clone[@id='{clone}']")
        primitive = element.find("primitive")
        resources = element.getparent()
        resources.replace(element, primitive)
        return self

    def text(self) -> str:
        return etree.tostring(self.root, encoding="unicode")

    def write(self, path: pathlib.Path) -> str:
        path.write_text(self.text())
        return str(path)


def clean(config_dir: pathlib.Path | None = None) -> CibEdit:
    hosts = [HostSpec(name, 16384, 8) for name in HOSTS]
    xml = render_cib(
        hosts,
        GUESTS,
        properties=(("node-health-strategy", "migrate-on-red"), ("migration-limit", "2")),
        stickiness=100,
    )
    cib = CibEdit(xml).meta("xen-host-clone", "allow-unhealthy-nodes", "true")
    for guest in GUESTS:
        cib.op(guest.name, "migrate_to", timeout="300s")
        if config_dir is not None:
            path = config_dir / f"{guest.name}.xml"
            path.write_text(domain_xml(guest.name, (guest.memory_mib or 0) - 64, guest.vcpus or 1))
            cib.param(guest.name, "config", str(path))
    return cib
