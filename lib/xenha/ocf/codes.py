"""OCF exit codes and the one exception that carries a code and a reason out of an action."""

from __future__ import annotations

import enum


class OcfExit(enum.IntEnum):
    """Exit codes of the OCF resource agent API (1.1), with Pacemaker's meaning in the comment."""

    SUCCESS = 0
    ERR_GENERIC = 1  # soft error: Pacemaker recovers (restart here or elsewhere)
    ERR_ARGS = 2  # hard error on this node: wrong arguments for this node
    ERR_UNIMPLEMENTED = 3  # action not implemented by the agent
    ERR_PERM = 4  # insufficient privilege
    ERR_INSTALLED = 5  # something the agent needs is missing on this node: try elsewhere
    ERR_CONFIGURED = 6  # fatal: the configuration is wrong everywhere
    NOT_RUNNING = 7  # stopped, known for certain
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9
    DEGRADED = 190  # OCF 1.1: running, but not fully healthy; Pacemaker does not recover
    DEGRADED_PROMOTED = 191


class OcfError(Exception):
    """Ends an action with ``code``; ``reason`` becomes the ``ocf-exit-reason`` line.

    The reason is read by operators in ``pcs status``: it says what failed, where, and
    what to do about it.
    """

    def __init__(self, code: OcfExit, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"OcfError({self.code.name}, {self.reason!r})"
