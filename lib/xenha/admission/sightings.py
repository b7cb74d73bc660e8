"""When this node first saw each reservation of a ledger: the record that ages reservations.

A reservation carries a duration, not a timestamp (:mod:`.ledger`): this node measures its
age on its own clock, ``CLOCK_BOOTTIME`` (which neither NTP steps nor suspend bend), from
the first time it read it. The record is a small JSON file per ledger under ``HA_RSCTMP``
(a per-boot directory, like the clock), updated under ``flock`` by every agent of this node
that reads that ledger. Losing it (a reboot) only makes reservations live longer here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from xenha.admission.ledger import Reservation, expired_keys, sightings
from xenha.deadline import Deadline
from xenha.filelock import LockBusy, lock_file
from xenha.statefile import StateFile


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Sightings:
    def __init__(self, directory: str, node: str, clock: Callable[[], float] = boottime) -> None:
        self._file = StateFile(directory, "ledger-seen", node)
        self._clock = clock

    def expired(self, reservations: Iterable[Reservation], deadline: Deadline) -> frozenset[str]:
        """Record the reservations now in the ledger; the keys of those whose hold has run out here.

        When the record cannot be read or written in time (no HA_RSCTMP, a stuck agent), nothing
        is expired: waiting longer is safe.
        """
        reservations = list(reservations)
        try:
            os.makedirs(self._file.directory, exist_ok=True)
            descriptor = lock_file(self._file.path + ".lock", deadline)
        except (OSError, LockBusy):
            return frozenset()
        try:
            seen = {key: float(value) for key, value in self._file.load().items() if isinstance(value, (int, float))}
            now = self._clock()
            current = sightings(reservations, seen, now)
            if current != seen and not self._file.save(current):
                return frozenset()
            return expired_keys(reservations, current, now)
        finally:
            os.close(descriptor)  # closing gives the flock back
