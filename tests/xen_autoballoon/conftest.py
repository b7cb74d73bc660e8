"""One Xen host booted without ``dom0_mem=`` (Domain-0 takes all memory; libvirt's libxl
driver decides on autoballooning), for its own pytest run.

Not in tests/xen: that directory's lab is session-scoped and both labs share build/xenlab/run,
so this one runs in a separate invocation (``make xen-test`` runs both, one after the
other): never two labs at once on the 2-core machine, and neither stops the other's QEMU.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cib import write_cib
from tests.support.xenlab.lab import HostConfig, Lab, session_lab

pytestmark = pytest.mark.xen


@pytest.fixture(scope="session")
def autoballoon_lab() -> Iterator[Lab]:
    """XENLAB_ATTACH=1: a lab left up by `make xen-lab KEEP=1 XENLAB_ARGS="--hosts 1 --autoballoon"`."""
    with session_lab("xen-test", count=1, config=HostConfig(dom0_mem_mib=None)) as booted:
        yield booted


@pytest.fixture
def cib(autoballoon_lab: Lab) -> None:
    write_cib(autoballoon_lab.san / "cib.xml", {"xenhost1": {}})
