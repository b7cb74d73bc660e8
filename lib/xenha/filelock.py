"""An exclusive ``flock`` on a lock file, taken within a deadline (never a blocking wait).

Used wherever this host's agents take turns: the local ledger, the record of reservations
seen, a CIB held in a file (docs/decisions/cib-file-serialisation.md). The lock goes with
the descriptor: closing it (or the process dying) gives it back, so a crash leaves nothing.
"""

from __future__ import annotations

import fcntl
import os
import time

from xenha.deadline import Deadline

POLL_S = 0.02


class LockBusy(Exception):
    """The lock stayed taken until the deadline."""


def lock_file(path: str, deadline: Deadline) -> int:
    """The open descriptor of ``path`` (created 0600) holding an exclusive flock; close it to unlock.

    Raises LockBusy at the deadline, OSError when the file cannot be opened.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return descriptor
        except BlockingIOError:
            if deadline.expired():
                os.close(descriptor)
                raise LockBusy(f"{path} stayed locked") from None
            time.sleep(min(POLL_S, deadline.remaining()))
