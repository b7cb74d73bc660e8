"""Shared storage that hangs, as a dead NFS server does: every access blocks, nothing fails.

A FUSE mount whose server never answers: the test opens ``/dev/fuse`` and mounts it over a
directory, then never reads a request. Every lookup, stat or read below that directory
blocks in the kernel until the mount is torn down (closing the descriptor aborts the
connection, and the blocked calls fail with ENOTCONN). No FUSE library is needed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def hung_storage(directory: Path) -> Iterator[None]:
    """While inside, ``directory`` (which must exist) is storage that never answers."""
    descriptor = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "fuse.xenha-hung", "-o", f"fd={descriptor},rootmode=40000,user_id=0,group_id=0",
             "xenha-hung", str(directory)],
            pass_fds=[descriptor], capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert mounted.returncode == 0, f"cannot mount hung storage on {directory}: {mounted.stderr}"
        try:
            yield
        finally:
            os.close(descriptor)  # aborts the connection: whatever was blocked fails now
            descriptor = -1
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)
    finally:
        if descriptor >= 0:
            os.close(descriptor)
