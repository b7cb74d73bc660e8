"""A passing libvirt error on Domain-0 must not inflate the host reserve (issue 12, finding 10).

A UNIT TEST THROUGH A SEAM, because there is no real way to provoke it here: only libvirt's
libxl driver has a Domain-0, and "cannot acquire state change lock" needs a Domain-0 job
that holds its lock for 30 s; the test and qemu drivers answer ``lookupByID(0)`` with
VIR_ERR_NO_DOMAIN, which is the one answer that does mean "no Domain-0 here". The seam is the
connection object a ``Hypervisor`` holds: a fake whose ``lookupByID`` raises a real
``libvirt.libvirtError`` carrying libxl's error code and text.

Before the fix ``domain0_memory_mib`` mapped every FAILED error to None ("no Domain-0"), so
``host_reserve_mib`` fell back to the 1024 MiB default and xen-host published a capacity
inflated by Domain-0's real memory minus 1024. The contract pinned here: only VIR_ERR_NO_DOMAIN means "none";
any other error is raised, with the operation named, so that the caller keeps the last known
value or fails the action with the reason.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import libvirt
import pytest

from xenha.agents.host import _domain0, _domain0_reserve_mib
from xenha.deadline import Deadline
from xenha.libvirt.connection import Domain0Memory, Hypervisor
from xenha.libvirt.errors import ErrorKind, HypervisorError
from xenha.libvirt.owner import Owner, element
from xenha.ocf import OcfError, OcfExit


def libxl_error(code: int, message: str) -> libvirt.libvirtError:
    error = libvirt.libvirtError(message)
    # (code, domain, message, level, str1, str2, str3, int1, int2), as virGetLastError() fills it
    error.err = (code, libvirt.VIR_FROM_LIBXL, message, libvirt.VIR_ERR_ERROR, message, None, None, -1, -1)
    return error


class Domain0Fails:
    """A libxl connection whose Domain-0 lookup fails the way a busy libxl makes it fail."""

    def __init__(self, error: libvirt.libvirtError) -> None:
        self.error = error
        self.asked = 0

    def lookupByID(self, domain_id: int) -> Any:
        self.asked += 1
        raise self.error


def hypervisor_with(connection: object) -> Hypervisor:
    hypervisor = Hypervisor("xen:///system", Deadline.after(5), "node2")
    hypervisor._connection = connection  # the seam: the connection the boundary would have opened
    return hypervisor


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (libvirt.VIR_ERR_OPERATION_TIMEOUT, "Timed out during operation: cannot acquire state change lock"),
        (libvirt.VIR_ERR_OPERATION_FAILED, "operation failed: libxenlight failed to get domain info"),
    ],
    ids=["state-change-lock", "operation-failed"],
)
def test_a_transient_domain0_error_is_not_taken_for_no_domain0(code: int, message: str) -> None:
    connection = Domain0Fails(libxl_error(code, message))
    hypervisor = hypervisor_with(connection)
    with pytest.raises(HypervisorError) as raised:
        found = hypervisor.domain0_memory_mib()
        pytest.fail(f"a transient error was taken for 'no Domain-0' (got {found!r})")
    assert connection.asked == 1
    assert "Domain-0" in raised.value.reason(), raised.value.reason()


def test_no_domain0_still_means_the_default() -> None:
    """The guard beside it: the test and qemu drivers' answer keeps meaning "no Domain-0"."""
    connection = Domain0Fails(libxl_error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching id 0"))
    assert hypervisor_with(connection).domain0_memory_mib() is None


def test_libxl_down_is_raised_too() -> None:
    """Another guard: libxl's internal error ("state driver is not active") is raised today."""
    message = "internal error: libxenlight state driver is not active"
    connection = Domain0Fails(libxl_error(libvirt.VIR_ERR_INTERNAL_ERROR, message))
    with pytest.raises(HypervisorError):
        hypervisor_with(connection).domain0_memory_mib()


class Domain0Found:
    """A libxl connection with a Domain-0 holding ``current_kib`` of its ``maximum_kib``."""

    def __init__(self, current_kib: int, maximum_kib: int) -> None:
        self.info = [libvirt.VIR_DOMAIN_RUNNING, maximum_kib, current_kib, 2, 0]

    def lookupByID(self, domain_id: int) -> Any:
        assert domain_id == 0
        return SimpleNamespace(name=lambda: "Domain-0", info=lambda: self.info)


def test_domain0s_current_memory_rounded_up_to_whole_mib() -> None:
    """The answer the reserve is made of: Domain-0's current memory (not its maximum), in MiB."""
    assert hypervisor_with(Domain0Found(4096 * 1024 + 1, 16 * 1024 * 1024)).domain0_memory_mib() == 4097


def test_domain0s_maximum_comes_from_the_same_read() -> None:
    """What tells a Domain-0 without a fixed size apart (xen-autoballoon.md): the lab's figures
    without dom0_mem, 1455112 of 1572336 KiB."""
    found = hypervisor_with(Domain0Found(1455112, 1572336)).domain0_memory()
    assert found == Domain0Memory(1422, 1536)


class Domain0Answers:
    """A hypervisor whose Domain-0 lookups give these answers in turn (an int, or an error)."""

    def __init__(self, *answers: int | HypervisorError) -> None:
        self.answers = list(answers)

    def domain0_memory(self) -> Domain0Memory | None:
        answer = self.answers.pop(0)
        if isinstance(answer, HypervisorError):
            raise answer
        return Domain0Memory(answer, answer)


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def busy_libxl() -> HypervisorError:
    return HypervisorError(ErrorKind.FAILED, "look up Domain-0", "xen:///system", "node2", "cannot acquire lock")


def test_xen_host_keeps_domain0s_last_known_memory_on_a_passing_error(tmp_path: Path) -> None:
    """xen-host, the caller the contract above serves: a passing error keeps the last value
    measured (it does not shrink the reserve to the default); with none, the action fails."""
    ctx: Any = SimpleNamespace(env=SimpleNamespace(rsctmp=str(tmp_path), instance="xen-host"), log=Log())
    hypervisor: Any = Domain0Answers(8192, busy_libxl())
    assert _domain0(ctx, hypervisor) == Domain0Memory(8192, 8192)
    assert _domain0(ctx, hypervisor) == Domain0Memory(8192, 8192)
    assert "keeps Domain-0's last known 8192 MiB" in ctx.log.warnings[0]
    fresh: Any = SimpleNamespace(env=SimpleNamespace(rsctmp=str(tmp_path / "new"), instance="xen-host"), log=Log())
    with pytest.raises(OcfError) as failed:
        _domain0(fresh, Domain0Answers(busy_libxl()))
    assert failed.value.code == OcfExit.ERR_GENERIC
    assert "cannot size the host reserve: look up Domain-0 failed on node2" in failed.value.reason


class StaleRecordHost:
    """A libxl connection listing web1, started by xenha, whose domain Xen has destroyed while a
    libvirt job held it (libvirt keeps it "running"; every hypervisor read of it fails, as
    seen in the lab), beside a domain started by hand (no metadata)."""

    def __init__(self) -> None:
        self.hypervisor_reads: list[str] = []

    def _fails(self) -> Any:
        self.hypervisor_reads.append("web1")
        raise libxl_error(libvirt.VIR_ERR_INTERNAL_ERROR, "internal error: libxl_domain_info failed")

    def listAllDomains(self, flags: int) -> list[Any]:
        owner = element(Owner("web1", "pv", 1, 128, 132))
        stale = SimpleNamespace(name=lambda: "web1", ID=lambda: 7, info=self._fails, OSType=self._fails,
                                metadata=lambda kind, uri, flags: owner)  # fmt: skip
        no_metadata = libxl_error(libvirt.VIR_ERR_NO_DOMAIN_METADATA, "metadata not found")
        by_hand = SimpleNamespace(name=lambda: "byhand", ID=lambda: 8, info=lambda: [1, 262144, 262144, 2, 0],
                                  OSType=lambda: "linux", metadata=lambda *_: (_ for _ in ()).throw(no_metadata))  # fmt: skip
        return [stale, by_hand]


def test_a_guests_recorded_size_is_counted_without_asking_the_hypervisor() -> None:
    """A host's load counts a guest xenha started at the size its metadata records (libvirt's
    own definition): one call less per guest, and a stale record after a destroy through xl
    no longer makes every admission into that host, and xen-host's monitor, fail."""
    connection = StaleRecordHost()
    found = {domain.name: domain for domain in hypervisor_with(connection).active_domains()}
    assert (found["web1"].max_memory_mib, found["web1"].vcpus, found["web1"].os_type) == (128, 1, None)
    assert (found["byhand"].max_memory_mib, found["byhand"].vcpus, found["byhand"].os_type) == (256, 2, "linux")
    assert connection.hypervisor_reads == []


def test_a_domain_being_built_is_not_taken_for_xens_own_memory(tmp_path: Path) -> None:
    """The Xen cluster lab's host (1535 MiB, Domain-0 768): Xen's own 19 MiB measured idle;
    then a guest being started holds 128 MiB while libvirt lists no guest yet. That reading
    must not become Xen's share (before: reserve 915, capacity 620 until every guest stopped,
    and a later start was refused); a lower idle reading still replaces the remembered one."""
    ctx: Any = SimpleNamespace(env=SimpleNamespace(rsctmp=str(tmp_path), instance="xen-host"), log=Log())
    dom0 = Domain0Memory(768, 768)
    assert _domain0_reserve_mib(ctx, dom0, 1535, 748, 0) == 768 + 19  # idle
    assert _domain0_reserve_mib(ctx, dom0, 1535, 620, 0) == 768 + 19  # a domain under construction
    assert _domain0_reserve_mib(ctx, dom0, 1535, 488, 390) == 768 + 19  # guests running
    inflated: Any = SimpleNamespace(env=SimpleNamespace(rsctmp=str(tmp_path / "b"), instance="xen-host"), log=Log())
    assert _domain0_reserve_mib(inflated, dom0, 1535, 620, 0) == 768 + 147  # first seen mid-build
    assert _domain0_reserve_mib(inflated, dom0, 1535, 748, 0) == 768 + 19  # idle: the clean reading
