"""The suite's owner metadata inside each domain it starts: the one definition of its format.

libvirt keeps the element with the domain (across migrations too). It lets a probe find the
guest when the configuration file cannot be read, lets the host agent tell managed guests
from the others, and gives admission the demand recorded at start (one RPC less per guest):

    <xenha:guest xmlns:xenha="urn:xenha:guest:1" resource="web1" guest-type="pv"
                 vcpus="2" memory-mib="4096" demand-mib="4132"/>
"""

from __future__ import annotations

from typing import NamedTuple

from xenha.libvirt.domxml import DomainXmlError, parse_tree
from xenha.xmlscan import XmlScanError, scan

METADATA_URI = "urn:xenha:guest:1"
METADATA_PREFIX = "xenha"
ELEMENT = "guest"


class RecordedSize(NamedTuple):
    """A guest's size as xenha recorded it at start."""

    memory_mib: int  # its configured maximum memory
    vcpus: int
    demand_mib: int  # the host memory admission counts it at


class Owner(NamedTuple):
    """What the metadata records: the owning cluster resource and the guest's size at start."""

    resource: str | None
    guest_type: str | None = None
    vcpus: int | None = None
    memory_mib: int | None = None  # the guest's configured maximum memory
    demand_mib: int | None = None  # its host memory demand (xenha.admission.demand)

    @property
    def recorded_size(self) -> RecordedSize | None:
        """The size recorded at start, when whole; None when any part is missing (a domain not
        started by xenha, or by a version that recorded less): then its size is read from libvirt.
        The one rule both a host's load (xenha.libvirt.connection) and admission's occupants
        (xenha.admission.load) follow.

        >>> Owner("web1", "pv", 2, 4096, 4132).recorded_size
        RecordedSize(memory_mib=4096, vcpus=2, demand_mib=4132)
        >>> Owner("web1", "pv", 2, None, 4132).recorded_size is None
        True
        """
        if self.memory_mib is None or self.vcpus is None or self.demand_mib is None:
            return None
        return RecordedSize(self.memory_mib, self.vcpus, self.demand_mib)

    def attributes(self) -> dict[str, str]:
        """The element's attributes, in the order they are written."""
        values = {
            "resource": self.resource,
            "guest-type": self.guest_type,
            "vcpus": self.vcpus,
            "memory-mib": self.memory_mib,
            "demand-mib": self.demand_mib,
        }
        return {name: str(value) for name, value in values.items() if value is not None}


def decode(element_text: str | None) -> Owner | None:
    """The owner recorded in the metadata element as libvirt returns it; None when absent.

    >>> decode('<guest resource="web1" vcpus="2" demand-mib="4132" memory-mib="x"/>')
    Owner(resource='web1', guest_type=None, vcpus=2, memory_mib=None, demand_mib=4132)
    >>> decode(None) is None, decode("<broken") is None
    (True, True)
    """
    if not element_text:
        return None
    try:
        elements = scan(element_text)
    except XmlScanError:
        return None
    if not elements:
        return None
    attributes = elements[0].attributes
    return Owner(
        resource=attributes.get("resource"),
        guest_type=attributes.get("guest-type"),
        vcpus=_number(attributes.get("vcpus")),
        memory_mib=_number(attributes.get("memory-mib")),
        demand_mib=_number(attributes.get("demand-mib")),
    )


def from_domain_xml(text: str) -> Owner | None:
    """The owner recorded in a whole domain XML (as ``XMLDesc`` gives it); None when absent.

    >>> from_domain_xml('<domain><metadata><x:guest xmlns:x="urn:xenha:guest:1" resource="web1"/></metadata></domain>')
    Owner(resource='web1', guest_type=None, vcpus=None, memory_mib=None, demand_mib=None)
    """
    from lxml import etree  # noqa: PLC0415 - lxml only on this fallback path (performance.md)

    try:
        root = parse_tree(text.encode(), "the domain's XML")
    except DomainXmlError:
        return None
    found = root.find(f"metadata/{{{METADATA_URI}}}{ELEMENT}")
    return None if found is None else decode(etree.tostring(found, encoding="unicode"))


def _number(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def element(owner: Owner) -> str:
    """The metadata element recording ``owner``, as libvirt's setMetadata takes it.

    >>> element(Owner("web1", vcpus=2))
    '<guest resource="web1" vcpus="2"/>'
    """
    from xml.sax.saxutils import quoteattr  # noqa: PLC0415 - only when a domain is adopted

    attributes = "".join(f" {name}={quoteattr(value)}" for name, value in owner.attributes().items())
    return f"<{ELEMENT}{attributes}/>"


def with_owner(data: bytes, source: str, owner: Owner) -> str:
    """The domain XML ``data`` with the suite's metadata element recording ``owner``."""
    from lxml import etree  # noqa: PLC0415 - lxml only when a guest starts (performance.md)

    root = parse_tree(data, source)
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.SubElement(root, "metadata")
    for old in metadata.findall(f"{{{METADATA_URI}}}{ELEMENT}"):
        metadata.remove(old)
    element = etree.SubElement(metadata, f"{{{METADATA_URI}}}{ELEMENT}", nsmap={METADATA_PREFIX: METADATA_URI})
    for key, value in owner.attributes().items():
        element.set(key, value)
    text: str = etree.tostring(root, encoding="unicode")
    return text
