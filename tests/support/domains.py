"""A test host's domains, looked at and changed directly, as an administrator would with virsh.

The tests use these around the agents they run: to see what the agent left on a host, to
start a domain behind the cluster's back, and to clean up. Each call opens its own
connection (the agent under test holds its own) and closes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import libvirt


@contextmanager
def connected(uri: str) -> Iterator[Any]:
    """A libvirt connection to ``uri``, closed on leaving."""
    connection = libvirt.open(uri)
    try:
        yield connection
    finally:
        connection.close()


def domain_state_and_reason(uri: str, name: str) -> tuple[int, int] | None:
    """The state of the domain ``name`` on ``uri`` and its reason; None when there is none."""
    with connected(uri) as connection:
        try:
            state, reason = connection.lookupByName(name).state()
        except libvirt.libvirtError:
            return None
        return int(state), int(reason)


def domain_state(uri: str, name: str) -> int | None:
    """The state of the domain ``name`` on ``uri`` (libvirt.VIR_DOMAIN_*); None when there is none."""
    found = domain_state_and_reason(uri, name)
    return None if found is None else found[0]


def active(uri: str, name: str) -> bool:
    """Whether the domain ``name`` on ``uri`` exists and is active."""
    with connected(uri) as connection:
        try:
            return bool(connection.lookupByName(name).isActive())
        except libvirt.libvirtError:
            return False


def create_by_hand(uri: str, xml: str) -> None:
    """Start a transient domain outside the cluster (``virsh create``): it has no owner metadata."""
    with connected(uri) as connection:
        connection.createXML(xml, 0)


def destroy(uri: str, *names: str) -> None:
    """Destroy the domains ``names`` on ``uri``; one that is not there (or not running) is skipped."""
    with connected(uri) as connection:
        for name in names:
            try:
                connection.lookupByName(name).destroy()
            except libvirt.libvirtError:
                pass
