"""``xenha status``: each host's capacity, what its guests use, what reservations hold.

Counted with the admission check's own rule (:func:`xenha.admission.load.tally`), so the
status and the admission cannot disagree.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from xenha.admission.ledger import Reservation
from xenha.admission.load import HostLoad, Occupant, tally
from xenha.admission.resources import Resources, total
from xenha.planner.model import CibModel
from xenha.planner.report import STATUS_SCHEMA, count_phrase, names, resources_json, table


class HostUsage(NamedTuple):
    """One row of ``xenha status``: a host's load (:class:`xenha.admission.load.HostLoad`), its state
    and how many guests run on it."""

    load: HostLoad
    state: str
    guests: int

    @property
    def used(self) -> Resources:
        return self.load.used

    @property
    def reserved(self) -> Resources:
        return self.load.reserved

    @property
    def free(self) -> Resources:
        return self.load.free


def host_usage(model: CibModel) -> tuple[tuple[HostUsage, ...], tuple[Reservation, ...]]:
    """Per host: capacity, used by the guests active there, reserved by the ledger's reservations.

    Counted by the admission check's own rule (:func:`xenha.admission.load.tally`): a
    reservation whose guest is already active on its node (arrived, not yet released) is
    counted once, as used. Every reservation in the ledger counts: a reservation carries a
    hold, not a timestamp, and only a node that watched it knows when it lapsed (lapsed ones
    are deleted by the admissions and xen-host's monitor of their node).
    """
    live = model.reservations
    usage = []
    for host in model.hosts:
        active = [
            Occupant(guest.resource, None, guest.demand) for guest in model.guests if host.name in guest.active_on
        ]
        arriving = [Occupant(item.resource, None, item.demand) for item in live if item.node == host.name]
        counted = tally(active, arriving)
        load = HostLoad(host.name, host.capacity, counted.used, counted.reserved, "the node's utilization in the CIB")
        usage.append(HostUsage(load, host.state, len(active)))
    return tuple(usage), live


STATUS_HEADER = ("host", "state", "guests", "MiB", "used", "reserved", "free", "vCPUs", "used", "reserved", "free")


def _figures(name: str, state: str, guests: int, loads: tuple[Resources, ...]) -> tuple[object, ...]:
    """One row: a host (or the total) with its capacity, used, reserved and free figures."""
    return (name, state, guests, *(load.memory_mib for load in loads), *(load.vcpus for load in loads))


def _usage_table(usage: tuple[HostUsage, ...]) -> list[str]:
    rows = [
        _figures(item.load.node, item.state, item.guests, (item.load.capacity, item.used, item.reserved, item.free))
        for item in usage
    ]
    columns = (
        total(item.load.capacity for item in usage),
        total(item.used for item in usage),
        total(item.reserved for item in usage),
        total(item.free for item in usage),
    )
    rows.append(_figures("total", "", sum(item.guests for item in usage), columns))
    return table(STATUS_HEADER, rows, (False, False, *(True,) * 9))


def render_status_text(model: CibModel, source: str) -> str:
    usage, live = host_usage(model)
    lines = [
        f"{count_phrase(len(model.hosts), 'host')}, {count_phrase(len(model.guests), 'guest')}, "
        f"placement-strategy={model.options.placement_strategy}; {source}",
        *_usage_table(usage),
    ]
    if live:
        lines.append("")
        lines.append("reservations in flight:")
        for reservation in live:
            lines.append(
                f"  {reservation.resource} -> {reservation.node}: {reservation.memory_mib} MiB, "
                f"{reservation.vcpus} vCPUs, held up to {reservation.hold_s} s "
                f"(holder {reservation.holder})"
            )
    stopped = [guest.resource for guest in model.running_guests if not guest.active_on]
    if stopped:
        lines.append(f"guests not running anywhere: {names(stopped)}")
    return "\n".join(lines) + "\n"


def status_json(model: CibModel, source: str, now: float) -> dict[str, Any]:
    usage, live = host_usage(model)
    return {
        "schema": STATUS_SCHEMA,
        "source": source,
        "cib_epoch": model.epoch,
        "time": int(now),
        "hosts": [
            {
                "name": item.load.node,
                "state": item.state,
                "guests": item.guests,
                "capacity": resources_json(item.load.capacity),
                "used": resources_json(item.load.used),
                "reserved": resources_json(item.load.reserved),
                "free": resources_json(item.load.free),
            }
            for item in usage
        ],
        "reservations": [
            {
                "node": reservation.node,
                "resource": reservation.resource,
                "memory_mib": reservation.memory_mib,
                "vcpus": reservation.vcpus,
                "hold_s": reservation.hold_s,
                "holder": reservation.holder,
            }
            for reservation in live
        ],
        "stopped_guests": [guest.resource for guest in model.running_guests if not guest.active_on],
    }


def now_epoch() -> float:
    return time.time()
