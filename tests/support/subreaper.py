#!/usr/bin/python3
"""subreaper.py COMMAND [ARGS...]: run COMMAND and reap every orphan at once.

libvirtd daemonizes QEMU, so QEMU is re-parented to the nearest subreaper. Without one,
the machine's PID 1 reaps it 1-2 s late and libvirt waits for that on every destroy and
migration. Signals TERM/INT/HUP are forwarded to COMMAND. Exits with COMMAND's status once
COMMAND and every adopted orphan are gone.
"""

import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}", file=sys.stderr)
        return 1
    child = os.fork()
    if child == 0:
        os.execvp(sys.argv[1], sys.argv[1:])

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    status = 0
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            return status
        if pid == child:
            status = os.waitstatus_to_exitcode(wait_status)
            status = status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
