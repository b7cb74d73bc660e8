"""Fixtures that start real libvirtd hosts for the acceptance tests, and tear them down."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import HostSet, LibvirtHost, leftover_libvirtds, running_hosts
from tests.support.ocf import AgentCase

REPO = Path(__file__).resolve().parents[2]
QEMU_CAPS_SEED = REPO / "build" / "qemu-caps"


def unique_prefix(kind: str) -> str:
    return f"x{kind}{os.getpid() % 100000}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a libvirtd started by a test outlived its teardown.

    A hook, not a fixture: it runs after every session fixture has been torn down.
    """
    left = leftover_libvirtds(REPO / "build" / "hosts")
    for pid in left:
        os.kill(pid, 9)  # so that one leak does not pile up run after run
    if left:
        print(f"\nlibvirtd processes left behind by the tests (killed now): {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def local_host() -> Iterator[LibvirtHost]:
    """One libvirtd (test and qemu drivers), no network; reached through its unix socket."""
    import libvirt

    prefix = unique_prefix("l")
    with running_hosts(prefix, REPO / "build" / "hosts" / prefix, ["testhost"], False, QEMU_CAPS_SEED) as hosts:
        host = hosts.hosts["testhost"]
        # The test driver's state lives as long as one connection stays open.
        keeper = libvirt.open(host.test_uri)
        # Its built-in 8 GiB "test" domain would fill the driver's 3 GiB host.
        keeper.lookupByName("test").destroy()
        yield host
        keeper.close()


@pytest.fixture(scope="session")
def qemu_hosts() -> Iterator[HostSet]:
    """Two libvirtd hosts (qemu driver) in network namespaces on a private bridge."""
    yield from pair_of_hosts("m")


def pair_of_hosts(kind: str) -> Iterator[HostSet]:
    prefix = unique_prefix(kind)
    with running_hosts(prefix, REPO / "build" / "hosts" / prefix, ["hostA", "hostB"], True, QEMU_CAPS_SEED) as hosts:
        yield hosts


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[-40:]


@pytest.fixture
def test_guest(local_host: LibvirtHost, tmp_path: Path, request: pytest.FixtureRequest) -> AgentCase:
    """A xen-guest resource whose domain lives in the test driver of ``local_host``."""
    name = f"g-{safe_name(request.node.name)}"
    config = tmp_path / f"{name}.xml"
    config.write_text(domain_xml(name, driver="test", memory_mib=256, vcpus=2))
    (tmp_path / "rsctmp").mkdir()
    return AgentCase(
        "xen-guest",
        instance=f"r-{name}",
        params={"config": str(config), "hypervisor": local_host.test_uri},
        rsctmp=str(tmp_path / "rsctmp"),
    )
