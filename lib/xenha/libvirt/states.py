"""What a libvirt domain state means for Pacemaker: the monitor's verdict, as a pure function.

The numbers are libvirt's ``virDomainState`` and ``virDomainPausedReason`` values (a stable
ABI), repeated here so that this module needs no libvirt import. The reasoning behind each
verdict is in docs/decisions/monitor-states.md.
"""

from __future__ import annotations

from typing import NamedTuple

from xenha.ocf.codes import OcfExit

NOSTATE, RUNNING, BLOCKED, PAUSED, SHUTDOWN, SHUTOFF, CRASHED, PMSUSPENDED = range(8)

STATE_NAMES = {
    NOSTATE: "no state",
    RUNNING: "running",
    BLOCKED: "blocked",
    PAUSED: "paused",
    SHUTDOWN: "shutting down",
    SHUTOFF: "shut off",
    CRASHED: "crashed",
    PMSUSPENDED: "suspended by guest power management",
}

(
    PAUSED_UNKNOWN,
    PAUSED_USER,
    PAUSED_MIGRATION,
    PAUSED_SAVE,
    PAUSED_DUMP,
    PAUSED_IOERROR,
    PAUSED_WATCHDOG,
    PAUSED_FROM_SNAPSHOT,
    PAUSED_SHUTTING_DOWN,
    PAUSED_SNAPSHOT,
    PAUSED_CRASHED,
    PAUSED_STARTING_UP,
    PAUSED_POSTCOPY,
    PAUSED_POSTCOPY_FAILED,
    PAUSED_API_ERROR,
) = range(15)

PAUSED_REASON_NAMES = {
    PAUSED_UNKNOWN: "for an unknown reason",
    PAUSED_USER: "by an administrator",
    PAUSED_MIGRATION: "for a migration",
    PAUSED_SAVE: "while being saved",
    PAUSED_DUMP: "while its memory is dumped",
    PAUSED_IOERROR: "after a disk I/O error",
    PAUSED_WATCHDOG: "by its watchdog",
    PAUSED_FROM_SNAPSHOT: "after reverting to a snapshot",
    PAUSED_SHUTTING_DOWN: "while shutting down",
    PAUSED_SNAPSHOT: "while a snapshot is taken",
    PAUSED_CRASHED: "after the guest crashed",
    PAUSED_STARTING_UP: "while starting up",
    PAUSED_POSTCOPY: "during a post-copy migration",
    PAUSED_POSTCOPY_FAILED: "after a failed post-copy migration",
    PAUSED_API_ERROR: "after a hypervisor API error",
}

# Pauses that belong to a job libvirt is running on the guest: they end by themselves.
_TRANSIENT_PAUSES = frozenset(
    {
        PAUSED_MIGRATION,
        PAUSED_SAVE,
        PAUSED_DUMP,
        PAUSED_SHUTTING_DOWN,
        PAUSED_SNAPSHOT,
        PAUSED_STARTING_UP,
        PAUSED_POSTCOPY,
    }
)
# Pauses after which the guest will not make progress without help: Pacemaker must recover.
_BROKEN_PAUSES = frozenset({PAUSED_IOERROR, PAUSED_WATCHDOG, PAUSED_CRASHED, PAUSED_POSTCOPY_FAILED, PAUSED_API_ERROR})


class Verdict(NamedTuple):
    code: OcfExit
    description: str


def describe(state: int, reason: int) -> str:
    name = STATE_NAMES.get(state, f"in unknown state {state}")
    if state == PAUSED:
        return f"{name} {PAUSED_REASON_NAMES.get(reason, f'(reason {reason})')}"
    return name


def running(state: int, reason: int) -> bool:
    """True when the guest actually runs: healthy by :func:`judge`, and not paused even for a job.

    >>> running(RUNNING, 1), running(PAUSED, PAUSED_MIGRATION)
    (True, False)
    """
    return state != PAUSED and judge(state, reason).code == OcfExit.SUCCESS


def _paused_code(reason: int) -> OcfExit:
    if reason in _TRANSIENT_PAUSES:
        return OcfExit.SUCCESS
    if reason in _BROKEN_PAUSES:
        return OcfExit.ERR_GENERIC
    # Paused by a person (or for a reason libvirt does not say): alive, holding its memory,
    # deliberately not running. Recovering it would destroy what the administrator paused;
    # report it instead.
    return OcfExit.DEGRADED


def judge(state: int, reason: int) -> Verdict:
    """The monitor result for a domain found in ``state``/``reason`` on this host.

    >>> judge(RUNNING, 1).code
    <OcfExit.SUCCESS: 0>
    >>> judge(PAUSED, PAUSED_USER).code
    <OcfExit.DEGRADED: 190>
    """
    text = describe(state, reason)
    if state in (RUNNING, BLOCKED, SHUTDOWN):
        return Verdict(OcfExit.SUCCESS, text)
    if state == SHUTOFF:
        return Verdict(OcfExit.NOT_RUNNING, text)
    if state == PAUSED:
        return Verdict(_paused_code(reason), text)
    if state == PMSUSPENDED:
        return Verdict(OcfExit.DEGRADED, text)
    # crashed, no state, or a state newer than this code
    return Verdict(OcfExit.ERR_GENERIC, text)
