"""The libvirt boundary: one connection, a deadline on every call, errors a person can act on.

Everything the suite asks a hypervisor goes through :class:`Hypervisor`:

* every libvirt call runs under the action's deadline (:func:`call_with_deadline`); once a
  call has hung, the connection is marked stuck and later calls fail at once instead of
  queueing behind it;
* libvirt errors are classified here, at the boundary, into :class:`ErrorKind` values,
  and carry the masked URI, the node and a hint;
* python-libvirt's default handler, which prints every error to stderr, is silenced;
* Xen's Domain-0 is never reported as a guest.

``libvirt`` is imported on first use, so that modules which only need the types (and
meta-data, which must never touch the hypervisor) do not pay for loading it.
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from xenha.deadline import Deadline, DeadlineExceeded, call_with_deadline
from xenha.libvirt_uri import mask

T = TypeVar("T")

# Where the suite records, inside each domain it starts, which cluster resource owns it.
# libvirt keeps this metadata with the domain, migrations included.
METADATA_URI = "urn:xenha:guest:1"
METADATA_PREFIX = "xenha"

_libvirt_module: Any = None


def libvirt_module() -> Any:
    """The ``libvirt`` module, imported once, with its stderr printing silenced."""
    global _libvirt_module
    if _libvirt_module is None:
        import libvirt

        libvirt.registerErrorHandler(lambda _context, _error: None, None)
        _libvirt_module = libvirt
    return _libvirt_module


class ErrorKind(enum.Enum):
    UNREACHABLE = "unreachable"  # no connection, connection lost, authentication failed
    TIMEOUT = "timeout"  # no answer before the deadline: libvirtd hung or overloaded
    HYPERVISOR_DOWN = "hypervisor down"  # libvirtd answers but its driver is inactive
    NO_DOMAIN = "no domain"
    NO_METADATA = "no metadata"
    INVALID_STATE = "invalid state"  # the operation does not apply to the domain's state
    FAILED = "failed"


class HypervisorError(Exception):
    """A hypervisor call that failed, with what is needed to explain it."""

    def __init__(
        self,
        kind: ErrorKind,
        operation: str,
        uri: str,
        node: str,
        detail: str,
        code: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.operation = operation
        self.uri = mask(uri)
        self.node = node
        self.detail = " ".join(detail.split())
        self.code = code

    def reason(self) -> str:
        """What failed, where and what to check; the URI comes last (Pacemaker keeps 128 characters)."""
        if self.kind is ErrorKind.TIMEOUT:
            return (
                f"{self.operation}: libvirtd on {self.node} did not answer in time; check that it is not hung "
                f"({self.detail}; {self.uri})"
            )
        if self.kind is ErrorKind.UNREACHABLE:
            return (
                f"{self.operation}: cannot reach libvirtd on {self.node}: {self.detail}; check that it runs "
                f"(virsh -c {self.uri} list)"
            )
        if self.kind is ErrorKind.HYPERVISOR_DOWN:
            return (
                f"{self.operation}: the hypervisor on {self.node} is not running: {self.detail}; check that "
                f"{self.node} booted into it ({self.uri})"
            )
        return f"{self.operation} failed on {self.node}: {self.detail} ({self.uri})"


def classify(error: Any, operation: str, uri: str, node: str, connecting: bool) -> HypervisorError:
    """Turn a ``libvirt.libvirtError`` into a :class:`HypervisorError` with a kind."""
    libvirt = libvirt_module()
    code = error.get_error_code()
    origin = error.get_error_domain()
    message = error.get_error_message() or str(error)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        kind = ErrorKind.NO_DOMAIN
    elif code == getattr(libvirt, "VIR_ERR_NO_DOMAIN_METADATA", 80):
        kind = ErrorKind.NO_METADATA
    elif code == libvirt.VIR_ERR_OPERATION_INVALID:
        kind = ErrorKind.INVALID_STATE
    elif code == libvirt.VIR_ERR_INTERNAL_ERROR and origin == libvirt.VIR_FROM_LIBXL:
        kind = ErrorKind.HYPERVISOR_DOWN  # "libxenlight state driver is not active"
    elif connecting or code in (
        libvirt.VIR_ERR_SYSTEM_ERROR,
        libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_AUTH_FAILED,
        getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", 94),
        getattr(libvirt, "VIR_ERR_AUTH_CANCELLED", 79),
    ):
        kind = ErrorKind.UNREACHABLE
    else:
        kind = ErrorKind.FAILED
    return HypervisorError(kind, operation, uri, node, message, code)


class DomainStatus(NamedTuple):
    state: int
    reason: int


class FoundDomain(NamedTuple):
    domain: Any  # libvirt.virDomain
    status: DomainStatus


class ActiveDomain(NamedTuple):
    """A domain occupying a host, as the host's libvirt reports it."""

    name: str
    domain_id: int
    max_memory_mib: int
    vcpus: int
    # libvirt's OS type; read only when the metadata lacks the recorded demand (it costs an RPC
    # per domain, and the demand of a guest the suite started is recorded), else None.
    os_type: str | None
    # The cluster resource that owns it (from the suite's metadata), None when unmanaged.
    resource: str | None
    # The memory demand recorded in the metadata when the suite started it, when recorded.
    recorded_demand_mib: int | None
    recorded_vcpus: int | None
    guest_type: str | None


class NodeFacts(NamedTuple):
    memory_mib: int
    cpus: int


class Hypervisor:
    """One libvirt connection, opened on first use, every call bounded by ``deadline``."""

    def __init__(self, uri: str, deadline: Deadline, node: str | None = None) -> None:
        self.uri = uri
        self.deadline = deadline
        self.node = node or os.uname().nodename
        self._connection: Any = None
        self._stuck: str | None = None
        self._opening = threading.Lock()

    # ---- plumbing ---------------------------------------------------------------------------
    def call(self, operation: str, function: Callable[[], T], connecting: bool = False) -> T:
        """Run one libvirt call under the deadline and classify what goes wrong."""
        if self._stuck is not None:
            raise HypervisorError(
                ErrorKind.TIMEOUT,
                operation,
                self.uri,
                self.node,
                f"libvirtd stopped answering earlier in this action ({self._stuck})",
            )
        remaining = self.deadline.remaining()
        libvirt = libvirt_module()
        try:
            return call_with_deadline(function, remaining, operation)
        except DeadlineExceeded:
            self._stuck = operation
            raise HypervisorError(
                ErrorKind.TIMEOUT, operation, self.uri, self.node, f"no answer within {remaining:.1f} s"
            ) from None
        except libvirt.libvirtError as error:
            raise classify(error, operation, self.uri, self.node, connecting) from None

    def connection(self) -> Any:
        if self._connection is not None:
            return self._connection
        if not self._opening.acquire(timeout=max(0.0, self.deadline.remaining())):
            raise HypervisorError(ErrorKind.TIMEOUT, "connect", self.uri, self.node, "still connecting")
        try:
            if self._connection is None:
                libvirt = libvirt_module()
                self._connection = self.call("connect", lambda: libvirt.open(self.uri), connecting=True)
            return self._connection
        finally:
            self._opening.release()

    def connect_in_background(self) -> None:
        """Start opening the connection now; the first call that needs it waits for it.

        A failure here is not reported: the caller's own first call meets it again.
        """

        def open_quietly() -> None:
            try:
                self.connection()
            except HypervisorError:
                pass

        threading.Thread(target=open_quietly, name=f"connect {self.node}", daemon=True).start()

    # ---- domains ----------------------------------------------------------------------------
    def lookup(self, name: str) -> Any | None:
        """The domain called ``name``, or None when this host has no such domain."""
        connection = self.connection()
        try:
            return self.call(f"look up domain {name}", lambda: connection.lookupByName(name))
        except HypervisorError as error:
            if error.kind is ErrorKind.NO_DOMAIN:
                return None
            raise

    def find(self, name: str) -> FoundDomain | None:
        """The domain called ``name`` and its state; None when this host has no such domain."""
        domain = self.lookup(name)
        status = self.status(domain) if domain is not None else None
        return None if status is None else FoundDomain(domain, status)

    def status(self, domain: Any) -> DomainStatus | None:
        """State and reason of ``domain``; None once it has disappeared (transient, stopped)."""
        try:
            state, reason = self.call(f"read the state of {domain.name()}", domain.state)
        except HypervisorError as error:
            if error.kind is ErrorKind.NO_DOMAIN:
                return None
            raise
        return DomainStatus(int(state), int(reason))

    def create(self, xml: str, name: str) -> Any:
        connection = self.connection()
        return self.call(f"start domain {name}", lambda: connection.createXML(xml, 0))

    def shutdown(self, domain: Any) -> None:
        self.call(f"shut down {domain.name()}", domain.shutdown)

    def destroy(self, domain: Any) -> None:
        self.call(f"destroy {domain.name()}", domain.destroy)

    def owner(self, domain: Any) -> str | None:
        """The cluster resource recorded in the domain's metadata, or None."""
        element = self._metadata(domain)
        if element is None:
            return None
        return _attribute(element, "resource")

    def _metadata(self, domain: Any) -> str | None:
        libvirt = libvirt_module()
        try:
            text: str = self.call(
                f"read the metadata of {domain.name()}",
                lambda: domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_URI, 0),
            )
        except HypervisorError as error:
            if error.kind in (ErrorKind.NO_METADATA, ErrorKind.NO_DOMAIN):
                return None
            raise
        return text

    def active_domains(self) -> list[ActiveDomain]:
        """Every guest running (or paused, or arriving) on this host; Domain-0 excluded."""
        libvirt = libvirt_module()
        connection = self.connection()
        domains = self.call(
            "list active domains",
            lambda: connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE),
        )
        found = []
        for domain in domains:
            try:
                domain_id = int(domain.ID())
                if domain_id == 0:
                    continue  # Xen's Domain-0 is the host itself, not a guest
                info = self.call(f"read {domain.name()}", domain.info)
                metadata = self._metadata(domain)
                recorded_demand_mib = _int_attribute(metadata, "demand-mib")
                recorded_vcpus = _int_attribute(metadata, "vcpus")
                os_type = None
                if recorded_demand_mib is None or recorded_vcpus is None:
                    os_type = str(self.call(f"read the OS type of {domain.name()}", domain.OSType))
            except HypervisorError as error:
                if error.kind is ErrorKind.NO_DOMAIN:
                    continue  # it left while we were looking
                raise
            found.append(
                ActiveDomain(
                    name=str(domain.name()),
                    domain_id=domain_id,
                    max_memory_mib=_kib_to_mib(int(info[1])),
                    vcpus=int(info[3]),
                    os_type=os_type,
                    resource=_attribute(metadata, "resource"),
                    recorded_demand_mib=recorded_demand_mib,
                    recorded_vcpus=recorded_vcpus,
                    guest_type=_attribute(metadata, "guest-type"),
                )
            )
        return found

    def find_owned_by(self, resource: str) -> Any | None:
        """The active domain whose metadata names ``resource``, if any (slow path: lists all)."""
        libvirt = libvirt_module()
        connection = self.connection()
        domains = self.call(
            "list domains",
            lambda: connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE),
        )
        for domain in domains:
            if self.owner(domain) == resource:
                return domain
        return None

    def node_facts(self) -> NodeFacts:
        connection = self.connection()
        info = self.call("read the host's memory and CPUs", connection.getInfo)
        return NodeFacts(memory_mib=int(info[1]), cpus=int(info[2]))

    def free_memory_mib(self) -> int:
        """Memory no domain holds now (only xen-host's health needs it: admission does not)."""
        connection = self.connection()
        free_bytes = self.call("read the host's free memory", connection.getFreeMemory)
        return int(free_bytes) // (1024 * 1024)

    def domain0_memory_mib(self) -> int | None:
        """Xen's Domain-0 current memory, when this libvirt reports a Domain-0 (libxl does)."""
        connection = self.connection()
        try:
            domain0 = self.call("look up Domain-0", lambda: connection.lookupByID(0))
        except HypervisorError as error:
            if error.kind in (ErrorKind.NO_DOMAIN, ErrorKind.FAILED):
                return None
            raise
        info = self.call("read Domain-0", domain0.info)
        return _kib_to_mib(int(info[2]))


def _kib_to_mib(kib: int) -> int:
    return -(-kib // 1024)


def _attribute(element_text: str | None, name: str) -> str | None:
    """An attribute of the suite's one-element metadata (as libvirt returns it), or None."""
    if not element_text:
        return None
    from xenha.xmlscan import XmlScanError, scan

    try:
        elements = scan(element_text)
    except XmlScanError:
        return None
    return elements[0].attributes.get(name) if elements else None


def _int_attribute(element_text: str | None, name: str) -> int | None:
    value = _attribute(element_text, name)
    if value is None or not value.isdigit():
        return None
    return int(value)
