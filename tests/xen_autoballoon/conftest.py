"""One Xen host booted without ``dom0_mem=`` (Domain-0 takes all memory; libvirt's libxl
driver decides on autoballooning), for its own pytest run.

Not in tests/xen: that directory's lab is session-scoped and both labs share build/xenlab/run,
so this one runs in a separate invocation (``make xen-test`` runs both, one after the
other): never two labs at once on the 2-core machine, and neither stops the other's QEMU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.cib import write_cib
from tests.support.xenlab.lab import REPO, HostConfig, Lab, attach_lab, start_lab, stop_lab

pytestmark = pytest.mark.xen


@pytest.fixture(scope="session")
def autoballoon_lab() -> Iterator[Lab]:
    debs = sorted((REPO / "dist").glob("xenha-agents_*.deb"))
    if not debs:
        pytest.fail("no xenha .deb in dist/: run the lab tests with `make xen-test` (it builds them)")
    if os.environ.get("XENLAB_ATTACH") == "1":
        attached = attach_lab()  # `make xen-lab KEEP=1 XENLAB_ARGS="--hosts 1 --autoballoon"`
        if attached is not None:
            yield attached
            return
    started = start_lab(debs[-1:], count=1, config=HostConfig(dom0_mem_mib=None))
    print("\n".join(f"xenlab: {line}" for line in started.timings.lines()))
    try:
        yield started
    finally:
        stop_lab(started, keep_logs=True)


@pytest.fixture
def cib(autoballoon_lab: Lab) -> None:
    write_cib(autoballoon_lab.san / "cib.xml", {"xenhost1": {}})
