"""One connection to a host's libvirtd, a deadline on every call, errors a person can act on.

Everything the suite asks a hypervisor goes through :class:`Hypervisor` (the host) and
:class:`xenha.libvirt.domain.Domain` (one guest on it):

* every libvirt call runs under the action's deadline (:func:`call_with_deadline`); once a
  call has hung, the connection is marked stuck and later calls fail at once instead of
  queueing behind it;
* libvirt errors are classified at the boundary (:mod:`xenha.libvirt.errors`) and carry the
  masked URI, the node and a hint;
* Xen's Domain-0 is never reported as a guest;
* a connection is never closed: see :data:`_NEVER_CLOSED`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from xenha.deadline import Deadline, DeadlineExceeded, call_with_deadline
from xenha.libvirt.domain import Domain, FoundDomain
from xenha.libvirt.drivers import DriverTraits, traits
from xenha.libvirt.errors import ErrorKind, HypervisorError, classify, libvirt_module
from xenha.libvirt.owner import Owner

T = TypeVar("T")

# Every connection this process opened, kept until it exits. The binding closes a connection
# it drops (``virConnect.__del__`` → ``virConnectClose``) with an RPC that has no deadline: a
# frozen libvirtd holds it for ever, in whatever thread drops the last reference — the
# agent's main thread, after it has logged its result (a migrate_to that failed at 24 s
# returned after 120 s, when the frozen target was thawed). Agents leave with ``os._exit``
# (xenha.ocf.entry), which runs no finalizer: the kernel closes the sockets.
_NEVER_CLOSED: list[Any] = []


def _kept(connection: T) -> T:
    """``connection``, never to be closed by the garbage collector (see :data:`_NEVER_CLOSED`)."""
    _NEVER_CLOSED.append(connection)
    return connection


class ActiveDomain(NamedTuple):
    """A domain occupying a host, as the host's libvirt reports it."""

    name: str
    domain_id: int
    max_memory_mib: int
    vcpus: int
    # libvirt's OS type; read only when the metadata lacks the whole recorded size
    # (Owner.recorded_size: it costs an RPC per domain), else None.
    os_type: str | None
    # What the suite's metadata records (owner resource, size at start); None when unmanaged.
    owner: Owner | None

    @property
    def resource(self) -> str | None:
        """The cluster resource that owns it, None when the cluster does not manage it."""
        return self.owner.resource if self.owner is not None else None


class NodeFacts(NamedTuple):
    memory_mib: int
    cpus: int


class Domain0Memory(NamedTuple):
    """Xen's Domain-0: the memory it holds now and the most Xen lets it grow to."""

    current_mib: int
    max_mib: int  # >= the host's total when Xen was booted without dom0_mem=...,max:...


class Hypervisor:
    """One libvirt connection, opened on first use, every call bounded by ``deadline``."""

    def __init__(self, uri: str, deadline: Deadline, node: str | None = None) -> None:
        self.uri = uri
        self.deadline = deadline
        self.node = node or os.uname().nodename
        self._connection: Any = None
        self._stuck: str | None = None
        self._opening = threading.Lock()

    @property
    def driver(self) -> DriverTraits:
        """What this host's libvirt driver can and cannot do."""
        return traits(self.uri.partition(":")[0].partition("+")[0])

    def reopened(self, deadline: Deadline | None = None) -> Hypervisor:
        """A fresh connection to the same host (the old one may be stuck), under ``deadline``
        (by default this one's)."""
        return Hypervisor(self.uri, deadline or self.deadline, self.node)

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

    def _open(self) -> Any:
        if self._connection is not None:
            return self._connection
        if not self._opening.acquire(timeout=max(0.0, self.deadline.remaining())):
            raise HypervisorError(ErrorKind.TIMEOUT, "connect", self.uri, self.node, "still connecting")
        try:
            if self._connection is None:
                libvirt = libvirt_module()
                self._connection = self.call("connect", lambda: _kept(libvirt.open(self.uri)), connecting=True)
            return self._connection
        finally:
            self._opening.release()

    def connect(self) -> None:
        """Open the connection now (the first call that needs it would)."""
        self._open()

    def connect_in_background(self) -> None:
        """Start opening the connection now; the first call that needs it waits for it.

        A failure here is not reported: the caller's own first call meets it again.
        """

        def open_quietly() -> None:
            try:
                self._open()
            except HypervisorError:
                pass

        threading.Thread(target=open_quietly, name=f"connect {self.node}", daemon=True).start()

    # ---- domains ----------------------------------------------------------------------------
    def lookup(self, name: str) -> Domain | None:
        """The domain called ``name``, or None when this host has no such domain."""
        return self._lookup(f"look up domain {name}", lambda connection: connection.lookupByName(name))

    def lookup_uuid(self, uuid: str) -> Domain | None:
        """The domain whose UUID is ``uuid``, or None when this host has none (or it is no UUID)."""
        digits = uuid.replace("-", "")
        if len(digits) != 32 or any(char not in "0123456789abcdefABCDEF" for char in digits):
            return None  # libvirt would refuse it: no domain can have it
        return self._lookup(
            f"look up the domain with UUID {uuid}", lambda connection: connection.lookupByUUIDString(uuid)
        )

    def _lookup(self, operation: str, look_up: Callable[[Any], Any]) -> Domain | None:
        """The domain ``look_up`` finds on the open connection; None when libvirt has no such domain."""
        connection = self._open()
        try:
            handle = self.call(operation, lambda: look_up(connection))
        except HypervisorError as error:
            if error.kind is ErrorKind.NO_DOMAIN:
                return None
            raise
        return Domain(self, handle)

    def find(self, name: str) -> FoundDomain | None:
        """The domain called ``name`` and its state; None when this host has no such domain."""
        domain = self.lookup(name)
        status = domain.status() if domain is not None else None
        return None if domain is None or status is None else FoundDomain(domain, status)

    def create(self, xml: str, name: str) -> Domain:
        """Start a transient domain from ``xml``."""
        connection = self._open()
        return Domain(self, self.call(f"start domain {name}", lambda: connection.createXML(xml, 0)))

    def domain_xml_from_native(self, native_format: str, config: str, source: str) -> str:
        """libvirt's own conversion of a native configuration (``xen-xl``) into domain XML."""
        connection = self._open()
        return self.call(
            f"convert {source} from {native_format} to domain XML",
            lambda: str(connection.domainXMLFromNative(native_format, config, 0)),
        )

    def restore(self, path: str, name: str) -> None:
        """Start the domain saved in ``path`` (by :meth:`Domain.save`) on this host."""
        connection = self._open()
        self.call(f"restore {name} on {self.node} from {path}", lambda: connection.restore(path))

    def _active_handles(self, operation: str) -> list[Any]:
        libvirt = libvirt_module()
        connection = self._open()
        handles: list[Any] = self.call(
            operation, lambda: connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        )
        return handles

    def active_domains(self) -> list[ActiveDomain]:
        """Every guest running (or paused, or arriving) on this host; Domain-0 excluded."""
        found = []
        for handle in self._active_handles("list active domains"):
            domain = Domain(self, handle)
            try:
                domain_id = domain.id()
                if domain_id == 0:
                    continue  # Xen's Domain-0 is the host itself, not a guest
                owner = domain.owner()
                recorded = owner.recorded_size if owner is not None else None
                if recorded is not None:
                    # Its size as recorded at start, libvirt's own definition: no call reaches the
                    # hypervisor (one less per guest), so a record libvirt keeps of a domain Xen
                    # has destroyed (stop-through-xl.md), whose every hypervisor read fails,
                    # still counts at its size instead of failing the whole host's load.
                    max_memory_mib, vcpus, os_type = recorded.memory_mib, recorded.vcpus, None
                else:
                    max_memory_kib, vcpus = domain.info()
                    max_memory_mib, os_type = _kib_to_mib(max_memory_kib), domain.os_type()
            except HypervisorError as error:
                if error.kind is ErrorKind.NO_DOMAIN:
                    continue  # it left while we were looking
                raise
            found.append(ActiveDomain(domain.name, domain_id, max_memory_mib, vcpus, os_type, owner))
        return found

    def find_owned_by(self, resource: str) -> Domain | None:
        """The active domain whose metadata names ``resource``, if any (slow path: lists all)."""
        for handle in self._active_handles("list domains"):
            domain = Domain(self, handle)
            owner = domain.owner()
            if owner is not None and owner.resource == resource:
                return domain
        return None

    # ---- the host ---------------------------------------------------------------------------
    def node_facts(self) -> NodeFacts:
        connection = self._open()
        info = self.call("read the host's memory and CPUs", connection.getInfo)
        return NodeFacts(memory_mib=int(info[1]), cpus=int(info[2]))

    def free_memory_mib(self) -> int:
        """Memory no domain holds now (only xen-host's health needs it: admission does not)."""
        connection = self._open()
        free_bytes = self.call("read the host's free memory", connection.getFreeMemory)
        return int(free_bytes) // (1024 * 1024)

    def domain0_memory_mib(self) -> int | None:
        """Xen's Domain-0 current memory, when this libvirt reports a Domain-0 (libxl does).

        None only when the hypervisor answers that there is no domain 0 (the test and qemu
        drivers). Any other error is raised: a transient one ("cannot acquire state change
        lock") must not be taken for "no Domain-0", which would shrink the host reserve to
        the default and inflate the published capacity.
        """
        domain0 = self.domain0_memory()
        return None if domain0 is None else domain0.current_mib

    def domain0_memory(self) -> Domain0Memory | None:
        """Domain-0's current and maximum memory, in one call (see :meth:`domain0_memory_mib`)."""
        domain0 = self._lookup("look up Domain-0", lambda connection: connection.lookupByID(0))
        if domain0 is None:
            return None
        current_kib, max_kib = domain0.memory_kib()
        return Domain0Memory(_kib_to_mib(current_kib), _kib_to_mib(max_kib))


def _kib_to_mib(kib: int) -> int:
    return -(-kib // 1024)
