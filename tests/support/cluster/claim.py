"""Claiming a cluster prefix for as long as a process uses it.

Network namespaces and cgroups are machine-wide, so two runs with the same prefix would
destroy each other's nodes (each cleans "its" leftovers first). A run claims its prefix with
an advisory lock (``flock``) on ``/run/lock/xenha-cluster-<prefix>.lock``; the kernel drops
the lock when the process dies, so a held lock always means a live owner, and leftovers
under an unheld prefix are safe to remove.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tests.support.cluster.layout import PREFIX_PATTERN, LayoutError

LOCK_DIR = Path("/run/lock")


class PrefixBusy(RuntimeError):
    pass


class PrefixClaim:
    def __init__(self, prefix: str) -> None:
        if not PREFIX_PATTERN.match(prefix):
            raise LayoutError(f"cluster prefix {prefix!r} is not usable (1-8 lower-case letters or digits)")
        self.prefix = prefix
        self.path = LOCK_DIR / f"xenha-cluster-{prefix}.lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def acquire(self) -> PrefixClaim:
        if not self.try_acquire():
            raise PrefixBusy(
                f"cluster prefix {self.prefix} is in use by process {self.owner()} (lock {self.path}); "
                "wait for it, or choose another prefix (--prefix / XENHA_CLUSTER_PREFIX)"
            )
        return self

    def owner(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PrefixClaim:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def claim_free_prefix(base: str, slots: int = 10) -> PrefixClaim:
    """The first of ``<base>0`` .. ``<base><slots-1>`` that no live process holds."""
    for slot in range(slots):
        claim = PrefixClaim(f"{base}{slot}")
        if claim.try_acquire():
            return claim
    raise PrefixBusy(f"all {slots} cluster prefixes {base}0..{base}{slots - 1} are in use; try again later")
