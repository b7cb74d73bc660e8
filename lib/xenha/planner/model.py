"""The planner's model of a cluster: hosts, guests, options (frozen dataclasses), and how
Pacemaker reads the values they come from (utilization, scores). Built by
:mod:`xenha.planner.cibmodel`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from xenha.admission.ledger import Reservation
from xenha.admission.resources import Resources

GUEST_AGENT = ("ocf", "xenha", "xen-guest")
MEMORY = "hv_memory"
CPU = "cpu"
DIMENSIONS = (MEMORY, CPU)
_INTEGER = re.compile(r"^[+-]?[0-9]{1,15}$")


class CibError(Exception):
    """The CIB cannot be planned on; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Host:
    name: str
    capacity: Resources
    online: bool
    standby: bool = False
    maintenance: bool = False
    shutting_down: bool = False
    unclean: bool = False
    has_capacity: bool = True  # False when the node defines no hv_memory utilization

    @property
    def available(self) -> bool:
        """Up and allowed to run resources: where the scheduler may place a guest."""
        return self.online and not (self.standby or self.maintenance or self.shutting_down)

    @property
    def state(self) -> str:
        if not self.online:
            return "unclean" if self.unclean else "down"
        for flag, word in (
            (self.shutting_down, "shutting down"),
            (self.maintenance, "maintenance"),
            (self.standby, "standby"),
        ):
            if flag:
                return word
        return "up"


@dataclass(frozen=True)
class Guest:
    resource: str
    demand: Resources
    active_on: tuple[str, ...]
    should_run: bool = True
    has_utilization: bool = True
    blockers: tuple[str, ...] = ()
    stickiness: int = 0  # INFINITY as SCORE_INFINITY
    priority: int = 0


@dataclass(frozen=True)
class Consumer:
    """A resource other than a guest that has utilization (it takes capacity too)."""

    resource: str
    demand: Resources


@dataclass(frozen=True)
class ClusterOptions:
    placement_strategy: str = "default"
    stonith_enabled: bool = True
    no_quorum_policy: str = "stop"
    symmetric_cluster: bool = True
    maintenance_mode: bool = False
    stop_all_resources: bool = False
    node_health_strategy: str = "none"


@dataclass(frozen=True)
class CibModel:
    validate_with: str
    epoch: str
    have_quorum: bool
    options: ClusterOptions
    hosts: tuple[Host, ...]
    guests: tuple[Guest, ...]
    consumers: tuple[Consumer, ...] = ()
    fencing_devices: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    notes: tuple[str, ...] = ()

    def survivors(self, failed: Iterable[str] = ()) -> tuple[Host, ...]:
        """The hosts left to run guests once ``failed`` are lost (the available ones among the rest)."""
        lost = set(failed)
        return tuple(host for host in self.hosts if host.available and host.name not in lost)

    def host(self, name: str) -> Host | None:
        for host in self.hosts:
            if host.name == name:
                return host
        return None

    @property
    def running_guests(self) -> tuple[Guest, ...]:
        """Guests meant to run (``target-role`` not Stopped): the ones a plan must keep."""
        return tuple(guest for guest in self.guests if guest.should_run)


def parse_utilization_value(text: str | None) -> int | None:
    """A utilization value as the scheduler counts it, or None when it is not an integer.

    Pacemaker reads integers (a node missing an attribute offers 0). Anything else is
    reported, and keeps the proof away: what the scheduler makes of it is its business.

    >>> parse_utilization_value("4096"), parse_utilization_value("4G")
    (4096, None)
    """
    if text is None:
        return 0
    stripped = text.strip()
    if not _INTEGER.match(stripped):
        return None
    return int(stripped)


SCORE_INFINITY = 1000000  # Pacemaker's INFINITY


def score_value(text: str | None) -> int | None:
    """A score (stickiness, priority) as Pacemaker reads it; unset is 0; None when not a score.

    >>> [score_value(v) for v in (None, "100", "INFINITY", "-1", "-INFINITY", "x")]
    [0, 100, 1000000, -1, -1000000, None]
    """
    if text is None:
        return 0
    stripped = text.strip().upper()
    if stripped in ("INFINITY", "+INFINITY"):
        return SCORE_INFINITY
    if stripped == "-INFINITY":
        return -SCORE_INFINITY
    value = parse_utilization_value(stripped)
    if value is None:
        return None
    return max(-SCORE_INFINITY, min(SCORE_INFINITY, value))


def schema_path(validate_with: str, schema_dir: str) -> Optional[str]:
    """The RelaxNG file for a ``validate-with`` value, when it is a plain pacemaker-N.M name."""
    if not re.match(r"^pacemaker-[0-9]+\.[0-9]+$", validate_with):
        return None
    return f"{schema_dir.rstrip('/')}/{validate_with}.rng"
