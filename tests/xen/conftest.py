"""The Xen lab for the whole session: two Xen 4.17 hosts booted once, with xenha's .deb.

The lab needs root, QEMU and mmdebstrap (network access to Debian's mirror the first time,
to build the cached dom0 image) and the packages in dist/ (`make xen-test` builds them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cib import write_cib
from tests.support.xenlab.guests import destroy_everywhere
from tests.support.xenlab.lab import Lab, session_lab

pytestmark = pytest.mark.xen


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    with session_lab("xen-test") as booted:
        yield booted


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
