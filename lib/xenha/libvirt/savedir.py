"""Where a save-restore migration writes the guest's memory: the filesystem under save_dir.

Some drivers cannot save onto some filesystems (``DriverTraits.save_fails_on``): on Xen,
libxc writes the guest's pages straight from its foreign mappings, which virtio-9p's
zero-copy path cannot pin (EFAULT, ``docs/decisions/save-dir-filesystems.md``), and the
failed save leaves the guest suspended while libvirt calls it running. Validation refuses
such a save_dir before any move is tried.
"""

from __future__ import annotations

import os
import re

from xenha.libvirt.drivers import DriverTraits

MOUNT_TABLE = "/proc/self/mounts"  # the kernel's own table: a local read that cannot hang


def _unescape(field: str) -> str:
    r"""A mount table field with the kernel's octal escapes decoded (``\040`` is a space)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def filesystem_type(path: str, mounts: str) -> str | None:
    """The type of the filesystem holding ``path`` (absolute), by the longest mount point in
    ``mounts`` (the text of /proc/self/mounts) that contains it; None when none does.

    >>> table = "/dev/vda / ext4 rw 0 0\\nsan /srv/san 9p rw 0 0\\nnfs:/x /srv/san2 nfs4 rw 0 0\\n"
    >>> filesystem_type("/srv/san/saves", table), filesystem_type("/srv/san2", table)
    ('9p', 'nfs4')
    >>> filesystem_type("/srv/sanity", table)
    'ext4'
    """
    path = os.path.normpath(path)
    found: tuple[int, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (found is None or len(point) >= found[0]):
            found = (len(point), fields[2])
    return found[1] if found else None


def save_dir_refusal(driver: DriverTraits, save_dir: str, mounts: str) -> str | None:
    """Why ``driver`` cannot save a guest into ``save_dir``, as the fix to make; None if it can (pure).

    >>> from xenha.libvirt.drivers import traits
    >>> print(save_dir_refusal(traits("xen"), "/srv/san/saves", "san /srv/san 9p rw 0 0"))
    save_dir /srv/san/saves is on a 9p filesystem, where libvirt's xen driver cannot save a guest (the save fails \
and leaves the guest suspended): put save_dir on NFS or a cluster filesystem, or use the paused method
    >>> save_dir_refusal(traits("qemu"), "/srv/san/saves", "san /srv/san 9p rw 0 0") is None
    True
    """
    kind = filesystem_type(save_dir, mounts)
    if kind is None or kind not in driver.save_fails_on:
        return None
    return (
        f"save_dir {save_dir} is on a {kind} filesystem, where libvirt's {driver.name} driver cannot save a guest "
        "(the save fails and leaves the guest suspended): put save_dir on NFS or a cluster filesystem, or use the "
        "paused method"
    )


def read_mount_table() -> str:
    """This node's mount table ("" when it cannot be read: then nothing is refused by it)."""
    try:
        with open(MOUNT_TABLE, encoding="utf-8", errors="replace") as table:
            return table.read()
    except OSError:
        return ""
