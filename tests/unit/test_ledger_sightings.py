"""Reservations age on the observer's clock only (issue 12, finding 12), through the record a
node keeps of when it first saw each one (xenha.admission.sightings), with a fake clock."""

from __future__ import annotations

from pathlib import Path

from xenha.admission.ledger import Reservation
from xenha.admission.sightings import Sightings
from xenha.deadline import Deadline


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def held(resource: str, hold_s: int, holder: str = "node1:7:ab") -> Reservation:
    return Reservation("node2", resource, 134, 1, hold_s, holder)


def test_a_reservation_lapses_hold_s_after_this_node_first_saw_it(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    record = Sightings(str(tmp_path), "node2", clock)
    web = held("web", 60)
    assert record.expired([web], Deadline.after(1)) == frozenset()
    clock.now = 1060.0
    assert record.expired([web], Deadline.after(1)) == frozenset()
    clock.now = 1061.0
    assert record.expired([web], Deadline.after(1)) == {web.key}


def test_a_node_that_sees_it_late_waits_longer_never_shorter(tmp_path: Path) -> None:
    """However far another node's clock is from ours, only our first sighting counts: a
    reservation booked long ago (by the holder's clock) is new to a node that sees it now."""
    web = held("web", 60)
    late = Sightings(str(tmp_path / "late"), "node2", Clock(5000.0))
    assert late.expired([web], Deadline.after(1)) == frozenset()


def test_booked_again_is_a_new_reservation_and_gone_ones_are_forgotten(tmp_path: Path) -> None:
    clock = Clock(0.0)
    record = Sightings(str(tmp_path), "node2", clock)
    first = held("web", 10)
    record.expired([first], Deadline.after(1))
    clock.now = 100.0
    again = held("web", 10, holder="node3:9:cd")  # the same resource, another admission
    assert record.expired([first, again], Deadline.after(1)) == {first.key}
    record.expired([again], Deadline.after(1))  # first was deleted from the ledger
    clock.now = 105.0
    assert record.expired([first, again], Deadline.after(1)) == frozenset()  # first counts as new again


def test_a_clock_that_went_back_counts_as_just_seen(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    record = Sightings(str(tmp_path), "node2", clock)
    web = held("web", 60)
    record.expired([web], Deadline.after(1))
    clock.now = 10.0
    assert record.expired([web], Deadline.after(1)) == frozenset()


def test_without_a_record_nothing_lapses(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the directory should be: the record cannot be kept
    record = Sightings(str(blocked / "rsctmp"), "node2", Clock(1e9))
    assert record.expired([held("web", 0)], Deadline.after(1)) == frozenset()
