"""The Xen lab for the whole session: two Xen 4.17 hosts booted once, with xenha's .deb.

The lab needs root, QEMU and mmdebstrap (network access to Debian's mirror the first time,
to build the cached dom0 image) and the packages in dist/ (`make xen-test` builds them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cib import write_cib
from tests.support.xenlab.guests import destroy_everywhere
from tests.support.xenlab.lab import REPO, Lab, attach_lab, start_lab, stop_lab

pytestmark = pytest.mark.xen


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    debs = sorted((REPO / "dist").glob("xenha-agents_*.deb"))
    if not debs:
        pytest.fail("no xenha .deb in dist/: run the lab tests with `make xen-test` (it builds them)")
    if os.environ.get("XENLAB_ATTACH") == "1":
        attached = attach_lab()
        if attached is not None:  # left up by `make xen-lab KEEP=1`: not ours to stop
            yield attached
            return
    started = start_lab(debs[-1:])
    print("\n".join(f"xenlab: {line}" for line in started.timings.lines()))
    try:
        yield started
    finally:
        stop_lab(started, keep_logs=True)


@pytest.fixture
def cib(lab: Lab) -> Path:
    """A fresh CIB on the SAN playing the two-node cluster (both dom0s use the same file)."""
    return write_cib(lab.san / "cib.xml", {"xenhost1": {}, "xenhost2": {}})


@pytest.fixture
def guest_name(lab: Lab, request: pytest.FixtureRequest) -> Iterator[str]:
    """A guest name for this test; the domain is destroyed on every host afterwards."""
    name = "pv-" + request.node.name.removeprefix("test_")[:24].replace("_", "-").rstrip("-")
    yield name
    destroy_everywhere(lab, name)
