"""Mount points the harnesses need on the host, created once and removed by the last user.

libvirtd's directories (/var/lib/libvirt, ...) do not exist on a machine without
libvirt-daemon-system, but each simulated host bind-mounts its own copy over them inside
its private mount namespace, so the directories must exist. Several harness runs may be
active at once (tests and a demo, or two worktrees), and removing a directory that is a
mount point in another namespace detaches that mount there. So every user registers
itself, and only the last one to leave removes what was created.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

REGISTRY = Path("/run/xenha-harness")


@contextmanager
def _locked() -> Iterator[None]:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    (REGISTRY / "users").mkdir(exist_ok=True)
    with open(REGISTRY / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def acquire(paths: Iterable[str], user: str) -> None:
    """Make sure ``paths`` exist; ``user`` (e.g. a prefix) is recorded until :func:`release`."""
    with _locked():
        created_file = REGISTRY / "created"
        created = created_file.read_text().split() if created_file.exists() else []
        for path in paths:
            if not os.path.exists(path):
                os.makedirs(path)
                created.append(path)
        created_file.write_text("\n".join(created))
        (REGISTRY / "users" / user).write_text(str(os.getpid()))


def release(user: str) -> None:
    """Forget ``user``; the last live user removes the directories that were created."""
    with _locked():
        (REGISTRY / "users" / user).unlink(missing_ok=True)
        for entry in (REGISTRY / "users").iterdir():
            try:
                pid = int(entry.read_text().strip())
            except (OSError, ValueError):
                pid = -1
            if pid > 0 and alive(pid):
                return
            entry.unlink(missing_ok=True)
        created_file = REGISTRY / "created"
        created = created_file.read_text().split() if created_file.exists() else []
        for path in reversed(created):
            try:
                os.rmdir(path)
            except OSError:
                pass
        created_file.unlink(missing_ok=True)
