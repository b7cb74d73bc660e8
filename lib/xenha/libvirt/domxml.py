"""The guest's libvirt domain XML: read safely, understood with lxml, never with regexes.

The configuration file is operator input on shared storage, so the parser is locked down:
no DTD, no entities (a document that declares a DOCTYPE or refers to an entity is refused,
and none is ever expanded, which rules out entity expansion bombs and external entities), no
network, and a size limit.
"""

from __future__ import annotations

import enum
import math
import os
import stat
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from xenha.deadline import Deadline, DeadlineExceeded, call_with_deadline

T = TypeVar("T")

MAX_CONFIG_BYTES = 1024 * 1024

# libvirt's memory units (docs: formatdomain.html#memory-allocation), in bytes.
_UNIT_BYTES = {
    "b": 1,
    "bytes": 1,
    "kb": 1000,
    "k": 1024,
    "kib": 1024,
    "mb": 1000**2,
    "m": 1024**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "g": 1024**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "t": 1024**4,
    "tib": 1024**4,
    "pb": 1000**5,
    "p": 1024**5,
    "pib": 1024**5,
    "eb": 1000**6,
    "e": 1024**6,
    "eib": 1024**6,
}


class GuestType(enum.Enum):
    PV = "pv"
    PVH = "pvh"
    HVM = "hvm"

    @property
    def label(self) -> str:
        return self.value.upper()


class DomainXmlError(Exception):
    """The domain XML cannot be used; the message names the file and the fix."""


class ConfigUnreadable(Exception):
    """The configuration file cannot be read (missing, permissions, storage away)."""


class DomainSpec(NamedTuple):
    """What the suite needs to know about a guest, from its domain XML."""

    name: str
    uuid: str | None
    hypervisor_type: str
    guest_type: GuestType
    memory_mib: int
    vcpus: int
    video_mib: int
    has_max_memory: bool = False  # <maxMemory> (memory hotplug) is set: not every driver takes it


class ConfigFile(NamedTuple):
    path: str
    data: bytes
    fingerprint: str


def file_fingerprint(status: os.stat_result) -> str:
    """Identity of a file version: changes when the file is replaced or modified."""
    return f"{status.st_dev}:{status.st_ino}:{status.st_size}:{status.st_mtime_ns}"


class StorageHung(ConfigUnreadable):
    """The file's storage did not answer in time (a dead NFS server): reading it again would hang too."""


# Shared storage can hang (a dead NFS server): every read of a file there is bounded by the
# budget its caller carves from the action's time (time-budget-and-settling.md).
def stat_config(path: str, budget: Deadline) -> os.stat_result:
    return _bounded(lambda: os.stat(path), path, budget, f"stat {path}")


def load_config(path: str, budget: Deadline) -> ConfigFile:
    """The configuration file's bytes, refusing what cannot be a domain XML file.

    Opened non-blocking, so that a FIFO (or a device) is refused instead of waiting for a
    writer; read within ``budget``, so that hung storage cannot hang the agent.
    """
    return _bounded(lambda: _read_config(path), path, budget, f"read {path}")


def _bounded(function: Callable[[], T], path: str, budget: Deadline, what: str) -> T:
    """``function()`` on the file ``path`` before ``budget`` passes, or ConfigUnreadable."""
    seconds = budget.remaining()
    try:
        return call_with_deadline(function, seconds, what)
    except DeadlineExceeded:
        raise StorageHung(f"{path} did not answer in {seconds:.1f} s (hung storage?)") from None
    except OSError as error:
        raise ConfigUnreadable(f"cannot read {path}: {error.strerror or error}") from error


def _read_config(path: str) -> ConfigFile:
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise DomainXmlError(f"{path} is not a regular file: point config at the domain XML file")
        if status.st_size > MAX_CONFIG_BYTES:
            raise DomainXmlError(
                f"{path} is {status.st_size} bytes, more than the {MAX_CONFIG_BYTES} a domain XML "
                "may have here: check that config points at the right file"
            )
        data = handle.read(MAX_CONFIG_BYTES + 1)
    return ConfigFile(path, data, file_fingerprint(status))


def is_xl_config(data: bytes) -> bool:
    """True when ``data`` is an xl configuration (``/etc/xen/*.cfg``), told by its content.

    Not by the file's name: xl configurations are often named without ``.cfg`` (resource-agents'
    ``Xen`` agent takes any path). A domain XML starts with ``<`` (after a BOM, blanks and
    nothing else); an xl configuration's first line that is neither blank nor a ``#`` comment
    sets a key (``name = "web1"``). Anything else is read as XML, whose parser says what is
    wrong. Which keys and values are valid is libvirt's converter's to say, not this test's.

    >>> is_xl_config(b'# web1\\nname = "web1"\\nmemory = 512\\n')
    True
    >>> is_xl_config(b"<domain type='xen'><name>web1</name></domain>")
    False
    >>> is_xl_config(b"not a configuration")
    False
    """
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, equals, _value = stripped.partition("=")
        key = key.strip()
        return bool(equals) and key.isascii() and key.replace("_", "a").isalnum() and not key[0].isdigit()
    return False


def _parser() -> Any:
    from lxml import etree  # noqa: PLC0415 - lxml only when a file is parsed (performance.md)

    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_tree(data: bytes, source: str) -> Any:
    """The XML document in ``data`` as an lxml element, or DomainXmlError."""
    from lxml import etree  # noqa: PLC0415 - lxml only when a file is parsed (performance.md)

    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as error:
        raise DomainXmlError(f"{source} is not well-formed XML ({error}): fix the file") from error
    except ValueError as error:
        raise DomainXmlError(f"{source} cannot be parsed: {error}") from error
    _refuse_entities(root, source, etree)
    if root is None or root.tag != "domain":
        tag = getattr(root, "tag", None)
        raise DomainXmlError(f"{source} is not a libvirt domain definition (root element {tag!r}, expected 'domain')")
    return root


def _refuse_entities(root: Any, source: str, etree: Any) -> None:
    """Refuse a DOCTYPE (with or without entities) and any entity reference.

    Checked on the parsed document, not on the bytes: in a UTF-16 or UTF-32 file a
    ``<!DOCTYPE`` is not ASCII, and the words in a comment are no declaration. The parser
    loads no DTD and resolves no entity (``_parser``), so a bomb or an external entity is
    never expanded before this refuses it. An unresolved entity stays a node that
    ``findtext`` skips: the agent would read ``<name>web&suffix;</name>`` as ``web`` while
    libvirt names it otherwise.
    """
    if root is None:
        return
    if root.getroottree().docinfo.internalDTD is not None or root.getroottree().docinfo.doctype:
        raise DomainXmlError(f"{source} declares a DOCTYPE or entities; domain XML needs neither: remove them")
    for entity in root.iter(etree.Entity):
        parent = entity.getparent()
        where = f"<{parent.tag}>" if parent is not None else "the document"
        raise DomainXmlError(
            f"{source}: {where} contains the entity reference {entity.text}, which this agent and libvirt "
            f"would read differently (the domain's name, too): write the text out"
        )


def parse_domain(data: bytes, source: str) -> DomainSpec:
    root = parse_tree(data, source)
    name = (root.findtext("name") or "").strip()
    if not name:
        raise DomainXmlError(f"{source} has no <name>: give the domain a name")
    if len(name) > 200 or any(ord(char) < 0x20 or char == "/" for char in name):
        raise DomainXmlError(f"{source}: the domain name {name[:40]!r} is not usable by libvirt")
    memory = _memory_mib(root.find("memory"), source, "memory")
    if memory is None:
        raise DomainXmlError(f"{source} has no <memory>: set the guest's memory")
    maximum = _memory_mib(root.find("maxMemory"), source, "maxMemory")
    hypervisor_type = (root.get("type") or "").strip()
    if not hypervisor_type:
        raise DomainXmlError(f"{source}: <domain> has no type attribute (xen for a Xen guest)")
    return DomainSpec(
        name=name,
        uuid=(root.findtext("uuid") or "").strip() or None,
        hypervisor_type=hypervisor_type,
        guest_type=_guest_type(root, source),
        memory_mib=max(memory, maximum or 0),
        vcpus=_vcpus(root, source),
        video_mib=_video_mib(root, source),
        has_max_memory=maximum is not None,
    )


def _memory_mib(element: Any, source: str, tag: str) -> int | None:
    if element is None:
        return None
    text = (element.text or "").strip()
    unit = (element.get("unit") or "KiB").strip().lower()
    if unit not in _UNIT_BYTES:
        raise DomainXmlError(f"{source}: <{tag}> has the unknown unit {unit!r}")
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise DomainXmlError(f"{source}: <{tag}> must be a whole number, not {text[:40]!r}")
    mib = math.ceil(int(text) * _UNIT_BYTES[unit] / 1024**2)
    if mib <= 0:
        raise DomainXmlError(f"{source}: <{tag}> is zero")
    return mib


def _vcpus(root: Any, source: str) -> int:
    element = root.find("vcpu")
    if element is None:
        return 1  # libvirt's default
    text = (element.text or "").strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= 4096:
        raise DomainXmlError(f"{source}: <vcpu> must be a number of vCPUs between 1 and 4096, not {text[:40]!r}")
    return int(text)


def _guest_type(root: Any, source: str) -> GuestType:
    element = root.find("os/type")
    if element is None:
        raise DomainXmlError(f"{source} has no <os><type>: say whether the guest is hvm, linux (PV) or xenpvh")
    os_type = (element.text or "").strip().lower()
    machine = (element.get("machine") or "").strip().lower()
    if os_type == "xenpvh" or machine == "xenpvh":
        return GuestType.PVH
    if os_type in ("linux", "xen"):
        return GuestType.PV
    if os_type == "hvm":
        return GuestType.HVM
    raise DomainXmlError(f"{source}: <os><type> {os_type!r} is not a Xen guest type (hvm, linux, xenpvh)")


def _video_mib(root: Any, source: str) -> int:
    model = root.find("devices/video/model")
    if model is None or model.get("vram") is None:
        return 0
    text = (model.get("vram") or "").strip()
    if not text.isascii() or not text.isdigit():
        raise DomainXmlError(f"{source}: <video><model vram> must be a number of KiB, not {text[:40]!r}")
    return math.ceil(int(text) / 1024)
