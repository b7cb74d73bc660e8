"""How long a live migration and a graceful stop need, and the timeouts that allow them (pure).

migrate_to. Pre-copy live migration sends the guest's memory once, then again the pages
the guest dirtied meanwhile, until what is left fits the allowed downtime. The agent keeps
the end of migrate_to's timeout for aborting and cleaning up
(:func:`xenha.agents.guest.migration_plan.abort_reserve_s`), so the copy only has the rest. The timeout
needed is the smallest one whose remainder after that reserve covers

    COPY_FACTOR x memory / bandwidth + SETUP_S

COPY_FACTOR = 1.5 allows the re-sent dirty pages of a guest that writes a third of its
memory during the first pass; SETUP_S covers the admission check and reservation, the
connection to the target's libvirt, the final pause and the verification.
(docs/decisions/verify.md says why these figures.)

stop. xen-guest waits ``shutdown_timeout`` seconds for a graceful shutdown, but never more
than what leaves a third of stop's timeout for destroying and verifying
(``xenha.agents.guest.lifecycle.DESTROY_SHARE``): a stop timeout below 1.5 x shutdown_timeout silently
shortens the graceful shutdown.
"""

from __future__ import annotations

import math

from xenha.agents.guest.lifecycle import DESTROY_SHARE
from xenha.agents.guest.migration_plan import abort_reserve_s

COPY_FACTOR = 1.5
SETUP_S = 10.0
ROUND_TO_S = 10  # suggested timeouts are rounded up to this


def copy_seconds(memory_mib: int, bandwidth_mib_s: int) -> float:
    """The time the copy is expected to take, margin included.

    >>> copy_seconds(4096, 100)
    71.44
    """
    return COPY_FACTOR * memory_mib / bandwidth_mib_s + SETUP_S


def copy_window_s(timeout_s: float) -> float:
    """What migrate_to's timeout leaves for the copy once the agent's abort reserve is kept.

    >>> copy_window_s(120), copy_window_s(20), copy_window_s(1000)
    (96.0, 14.0, 940.0)
    """
    return timeout_s - abort_reserve_s(timeout_s)


def rounded_up(seconds: float) -> int:
    """Seconds rounded up to a multiple of ROUND_TO_S, for timeouts people read.

    >>> rounded_up(81.2), rounded_up(90)
    (90, 90)
    """
    return int(math.ceil(seconds / ROUND_TO_S - 1e-9) * ROUND_TO_S)


def migrate_timeout_needed_s(memory_mib: int, bandwidth_mib_s: int) -> int:
    """The smallest migrate_to timeout (rounded up to 10 s) that leaves room for the copy.

    copy_window_s is increasing, so the answer is found by bisection on whole seconds.
    A 4 GiB guest at 100 MiB/s: 71.44 s of copy; 85 s leaves 72.25 s (85 - 12.75), 84 s
    leaves 71.4 s: 85, rounded up to 90.

    >>> migrate_timeout_needed_s(4096, 100)
    90
    >>> migrate_timeout_needed_s(65536, 100)
    1060
    """
    needed = copy_seconds(memory_mib, bandwidth_mib_s)
    low, high = 1, int(needed + 61) + 1  # the reserve is at most 60 s
    while low < high:
        middle = (low + high) // 2
        if copy_window_s(middle) >= needed:
            high = middle
        else:
            low = middle + 1
    return rounded_up(low)


def graceful_window_s(stop_timeout_s: float) -> float:
    """The longest graceful shutdown a stop timeout allows.

    >>> graceful_window_s(90)
    60.0
    """
    return round(stop_timeout_s * (1.0 - DESTROY_SHARE), 3)


def stop_timeout_needed_s(shutdown_timeout_s: int) -> int:
    """The stop timeout that lets a graceful shutdown of ``shutdown_timeout_s`` run in full.

    >>> stop_timeout_needed_s(120), stop_timeout_needed_s(60)
    (180, 90)
    """
    return rounded_up(shutdown_timeout_s / (1.0 - DESTROY_SHARE))
