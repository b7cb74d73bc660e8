"""The cgroup-v2 groups of a test cluster: one per node, under one group per prefix.

A node's group holds every process of the node (its init, the daemons, QEMU), so that
``cgroup.kill`` is a power cut (guests included) and ``cgroup.freeze`` a hung machine.
Only the core interface files are used: no controller has to be enabled.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class CgroupError(RuntimeError):
    pass


def create(group: Path) -> None:
    group.mkdir(parents=True, exist_ok=True)
    thaw(group)


def procs(group: Path) -> list[int]:
    """Processes in the group; empty when it is gone. (cgroup files report size 0: read them.)"""
    try:
        text = (group / "cgroup.procs").read_text()
    except FileNotFoundError:
        return []
    return [int(line) for line in text.split()]


def populated(group: Path) -> bool:
    """True while any process, zombies included, still belongs to the group."""
    return _events(group).get("populated", "0") == "1"


def frozen(group: Path) -> bool:
    return _events(group).get("frozen", "0") == "1"


def freeze(group: Path) -> None:
    (group / "cgroup.freeze").write_text("1\n")


def thaw(group: Path) -> None:
    (group / "cgroup.freeze").write_text("0\n")


def kill(group: Path) -> None:
    """SIGKILL every process of the group (frozen ones too); returns at once."""
    if (group / "cgroup.kill").exists():
        (group / "cgroup.kill").write_text("1\n")


def wait_empty(group: Path, timeout_s: float) -> bool:
    """Wait until no live process is left (zombies may still wait for their parent)."""
    deadline = time.monotonic() + timeout_s
    while procs(group):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def remove(group: Path, timeout_s: float = 10.0) -> None:
    """Kill what is left in ``group`` and its children, then remove them (deepest first)."""
    if not group.exists():
        return
    for child in sorted((p for p in group.iterdir() if p.is_dir()), reverse=True):
        remove(child, timeout_s)
    if procs(group):
        thaw(group)
        kill(group)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as error:
            # EBUSY until every zombie of the group has been reaped by its parent.
            if time.monotonic() >= deadline:
                raise CgroupError(
                    f"cannot remove cgroup {group}: {error.strerror}; processes left: {procs(group)}; "
                    f"events: {_events(group)}. Kill them (echo 1 > {group}/cgroup.kill) and retry."
                ) from None
            time.sleep(0.05)


def cgroup_of(pid: int) -> str | None:
    """The cgroup-v2 path of a process (``/xhc/node1``), None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def pids_under(path_prefix: str) -> list[int]:
    """Every live process whose cgroup-v2 path is ``path_prefix`` or below it."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        path = cgroup_of(int(entry))
        if path is not None and (path == path_prefix or path.startswith(path_prefix + "/")):
            found.append(int(entry))
    return found


def _events(group: Path) -> dict[str, str]:
    try:
        text = (group / "cgroup.events").read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
