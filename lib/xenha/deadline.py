"""Deadlines: every wait and every hypervisor call is bounded by the action's timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """A bounded call did not return before its deadline; the call may still be running."""


class Deadline:
    """A point in monotonic time by which something must be done."""

    def __init__(self, expires_at: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.expires_at = expires_at
        self._clock = clock

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + max(0.0, seconds), clock)

    def remaining(self) -> float:
        """Seconds left; never negative."""
        return max(0.0, self.expires_at - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def within(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now, or this one if it comes first."""
        return Deadline(min(self.expires_at, self._clock() + max(0.0, seconds)), self._clock)

    def minus(self, seconds: float) -> Deadline:
        """This deadline moved ``seconds`` earlier: time kept back for what follows."""
        return Deadline(self.expires_at - seconds, self._clock)


def call_with_deadline(function: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``function`` in a worker thread and wait at most ``timeout_s`` seconds for it.

    libvirt's client calls block in C with no timeout of their own; a frozen libvirtd would
    hang them forever. The worker is a daemon thread: if it never returns, the agent still
    answers Pacemaker and exits (agents leave with ``os._exit``, so a stuck thread cannot
    delay the exit either).
    """
    outcome: list[tuple[bool, object]] = []
    finished = threading.Event()

    def worker() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append((False, error))
        finally:
            finished.set()

    thread = threading.Thread(target=worker, name=what, daemon=True)
    thread.start()
    if not finished.wait(max(0.0, timeout_s)):
        raise DeadlineExceeded(f"{what} did not answer within {timeout_s:.1f} s")
    succeeded, value = outcome[0]
    if succeeded:
        return value  # type: ignore[return-value]
    assert isinstance(value, BaseException)
    raise value
