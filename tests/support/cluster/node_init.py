#!/usr/bin/python3 -I
"""PID 1 of one test-cluster node: ``node_init.py PLAN.json``.

Started by the harness as ``nsenter --net=<node netns> unshare --mount --uts --ipc --pid
--fork --mount-proc --propagation private node_init.py PLAN``, so it already runs inside the
node's network namespace and its own private mount, UTS, IPC and PID namespaces. It:

1. moves itself into the node's cgroup (everything it starts, QEMU included, inherits it,
   so ``cgroup.kill`` is a power cut and ``cgroup.freeze`` a hang);
2. builds the node's file system view from the plan (tmpfs /dev/shm and /run, an overlay
   /var holding the node's state, bind mounts over /etc files, overlays that add the
   agents and the fence agent), sets the hostname;
3. starts libvirtd and corosync, waits until both answer, then starts pacemakerd;
4. stays PID 1, reaping every orphan at once (libvirt waits for a destroyed QEMU to be
   reaped) and restarting libvirtd when it dies, as Debian's ``libvirtd.service``
   (``Restart=on-failure``) does, until SIGTERM: then pacemakerd, corosync, the remaining
   guests and libvirtd are stopped in that order.

Standard library only: the plan format below is shared with the harness, which imports it.
Progress is appended to the plan's ``events_log`` as ``<unix time> <event>`` lines.
"""

from __future__ import annotations

import glob
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DAEMON_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LIBVIRTD_PID_FILE = "/run/libvirt/libvirtd.pid"  # inside the node
LIBVIRTD_RESTARTS = 5  # systemd's default StartLimitBurst


@dataclass(frozen=True)
class Mount:
    kind: str  # "tmpfs", "bind" or "overlay"
    target: str
    source: str = ""  # tmpfs: its name; bind: the source path; overlay: its name
    options: str = ""


@dataclass(frozen=True)
class RunDir:
    path: str
    mode: int
    owner: str = "root:root"


@dataclass(frozen=True)
class NodePlan:
    name: str
    cgroup: str
    events_log: str
    mounts: tuple[Mount, ...]
    run_dirs: tuple[RunDir, ...]
    daemon_env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 120.0
    pacemaker_stop_timeout_s: float = 120.0
    daemon_stop_timeout_s: float = 30.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> NodePlan:
        data: dict[str, Any] = json.loads(text)
        data["mounts"] = tuple(Mount(**item) for item in data["mounts"])
        data["run_dirs"] = tuple(RunDir(**item) for item in data["run_dirs"])
        return cls(**data)


class Init:
    """The node's PID 1: owns the daemons, reaps everything, stops in order."""

    def __init__(self, plan: NodePlan) -> None:
        self.plan = plan
        self.daemons: dict[str, int] = {}
        self.helpers: set[int] = set()
        self.exited: dict[int, int] = {}
        self.stop_requested = False
        self.libvirtd_restarts = 0
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_w, False)
        os.set_blocking(self._wakeup_r, False)

    # ---- bookkeeping -------------------------------------------------------------------------
    def event(self, text: str) -> None:
        with open(self.plan.events_log, "a") as log:
            log.write(f"{time.time():.6f} {text}\n")

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop_requested = True

    def install_signals(self) -> None:
        signal.set_wakeup_fd(self._wakeup_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)

    def reap(self) -> None:
        """Collect every exited child: daemons, helpers and orphans re-parented to PID 1."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid in self.helpers:
                self.exited[pid] = code
            for name, daemon_pid in self.daemons.items():
                if daemon_pid == pid:
                    self.exited[pid] = code
                    if not self.stop_requested:
                        self.event(f"{name} exited unexpectedly with status {code}")

    def pause(self, seconds: float) -> None:
        """Sleep until a signal or ``seconds``, reaping on the way."""
        select.select([self._wakeup_r], [], [], seconds)
        try:
            while os.read(self._wakeup_r, 512):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def running(self, name: str) -> bool:
        pid = self.daemons.get(name)
        return pid is not None and pid not in self.exited

    # ---- set-up ------------------------------------------------------------------------------
    def join_cgroup(self) -> None:
        Path(self.plan.cgroup, "cgroup.procs").write_text("0\n")

    def build_filesystem(self) -> None:
        for mount in self.plan.mounts:
            if mount.kind == "tmpfs":
                argv = ["mount", "-t", "tmpfs", "-o", mount.options, mount.source, mount.target]
            elif mount.kind == "bind":
                argv = ["mount", "--bind", mount.source, mount.target]
            elif mount.kind == "overlay":
                argv = ["mount", "-t", "overlay", "-o", mount.options, mount.source, mount.target]
            else:
                raise SystemExit(f"node {self.plan.name}: unknown mount kind {mount.kind!r}")
            subprocess.run(argv, check=True)
            if mount.target == "/run":
                # /run is a fresh tmpfs: its directories exist only from now on.
                for run_dir in self.plan.run_dirs:
                    os.makedirs(run_dir.path, exist_ok=True)
                    os.chmod(run_dir.path, run_dir.mode)
                    if run_dir.owner != "root:root":
                        subprocess.run(["chown", run_dir.owner, run_dir.path], check=True)
        subprocess.run(["hostname", self.plan.name], check=True)
        self.freeze_host_memory()

    def freeze_host_memory(self) -> None:
        """Fix the host's memory as the node's libvirtd reads it (the NUMA nodes' meminfo,
        behind ``getInfo``) at its value at boot: this machine's total moves (virtio-mem
        plugs and unplugs memory; 128 MiB within 5 s was seen), and the drift scenarios size
        a guest so that the hypervisor view keeps exactly the room they test."""
        for index, meminfo in enumerate(sorted(glob.glob("/sys/devices/system/node/node*/meminfo"))):
            frozen = f"/run/xenha-host-meminfo-{index}"
            Path(frozen).write_text(Path(meminfo).read_text())
            subprocess.run(["mount", "--bind", frozen, meminfo], check=True)

    def spawn(self, name: str, argv: Sequence[str], log_path: str) -> None:
        env = {"PATH": DAEMON_PATH, "LC_ALL": "C", "HOME": "/root", **self.plan.daemon_env}
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        pid = os.posix_spawn(argv[0], list(argv), env, file_actions=actions, setsid=True)
        self.daemons[name] = pid
        self.event(f"{name} started pid {pid}")

    def helper(self, argv: Sequence[str], timeout_s: float, output: str = "/dev/null") -> int | None:
        """Run a short command to completion while still reaping (never subprocess.run here:
        libvirtd waits for its QEMU children to be reaped by PID 1 before it answers)."""
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
        ]
        env = {"PATH": DAEMON_PATH, "LC_ALL": "C", "HOME": "/root"}
        pid = os.posix_spawnp(argv[0], list(argv), env, file_actions=actions)
        self.helpers.add(pid)
        deadline = time.monotonic() + timeout_s
        killed = False
        while pid not in self.exited:
            if not killed and time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                killed = True
            self.pause(0.02)
        self.helpers.discard(pid)
        code = self.exited.pop(pid)
        return None if killed else code

    def succeeds(self, argv: Sequence[str], timeout_s: float = 10.0) -> bool:
        return self.helper(argv, timeout_s) == 0

    def wait_until(self, what: str, check: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.stop_requested:
            if check():
                self.event(f"{what}")
                return True
            self.pause(0.1)
        if not self.stop_requested:
            self.event(f"timed out after {timeout_s:.0f} s waiting: {what}")
        return False

    def start_libvirtd(self) -> None:
        libvirtd = ["/usr/sbin/libvirtd", "--listen", "-f", "/etc/libvirt/libvirtd.conf"]
        # libvirt throws its qemu capabilities cache away when the host's CPUID differs from
        # the cached one, and CPUID leaf 0x1f carries the x2APIC id of the CPU that asks: a
        # cache written on CPU 1 is stale on CPU 0 (1.5-2 s re-probe). Pin libvirtd to the
        # first CPU; libvirt gives each QEMU all host CPUs again.
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})
        try:
            self.spawn("libvirtd", [*libvirtd, "-p", LIBVIRTD_PID_FILE], "/var/log/libvirt/libvirtd.stdout")
        finally:
            os.sched_setaffinity(0, allowed)

    def supervise(self) -> None:
        """Restart libvirtd when it died (killed, crashed), as systemd's ``Restart=on-failure``
        would; it finds its running guests again. Not more than LIBVIRTD_RESTARTS times."""
        if self.stop_requested or "libvirtd" not in self.daemons or self.running("libvirtd"):
            return
        if self.libvirtd_restarts >= LIBVIRTD_RESTARTS:
            return
        self.libvirtd_restarts += 1
        self.event(f"restarting libvirtd (restart {self.libvirtd_restarts} of at most {LIBVIRTD_RESTARTS})")
        self.start_libvirtd()

    def start(self) -> None:
        self.start_libvirtd()
        self.spawn("corosync", ["/usr/sbin/corosync", "-f"], "/var/log/corosync/corosync.stdout")
        timeout = self.plan.ready_timeout_s
        if not self.wait_until("corosync answers", lambda: self.succeeds(["corosync-cfgtool", "-s"]), timeout):
            return
        # The first call loads the qemu capabilities (from the seeded cache: ~0.3 s). Pacemaker
        # probes every resource when the node joins, so libvirtd must answer before that.
        virsh = ["virsh", "-q", "-c", "qemu:///system", "capabilities"]
        if not self.wait_until("libvirtd answers", lambda: self.succeeds(virsh, 60.0), timeout):
            return
        self.spawn("pacemakerd", ["/usr/sbin/pacemakerd"], "/var/log/pacemaker/pacemakerd.stdout")

    # ---- stop --------------------------------------------------------------------------------
    def stop_daemon(self, name: str, timeout_s: float) -> None:
        pid = self.daemons.get(name)
        if pid is None or not self.running(name):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.running(name) and time.monotonic() < deadline:
            self.pause(0.1)
        if self.running(name):
            self.event(f"{name} did not stop within {timeout_s:.0f} s: killing it")
            os.kill(pid, signal.SIGKILL)
            while self.running(name):
                self.pause(0.1)
        self.event(f"{name} stopped")

    def destroy_guests(self) -> None:
        """libvirtd leaves guests running when it exits: destroy what is left."""
        if not self.running("libvirtd"):
            return
        listing = "/run/libvirt/node-init-guests"
        virsh = ["virsh", "-q", "-c", "qemu:///system"]
        if self.helper([*virsh, "list", "--name"], 30.0, output=listing) != 0:
            self.event("libvirtd did not list its guests; they die with the node")
            return
        for domain in Path(listing).read_text().split():
            code = self.helper([*virsh, "destroy", domain], 30.0)
            self.event(f"destroyed guest {domain}" if code == 0 else f"could not destroy guest {domain}")

    def stop(self) -> None:
        self.event("stop requested")
        self.stop_daemon("pacemakerd", self.plan.pacemaker_stop_timeout_s)
        self.stop_daemon("corosync", self.plan.daemon_stop_timeout_s)
        self.destroy_guests()
        self.stop_daemon("libvirtd", self.plan.daemon_stop_timeout_s)
        self.event("stopped")

    def run(self) -> int:
        self.install_signals()
        self.join_cgroup()
        self.event(f"init {self.plan.name} running")
        self.build_filesystem()
        self.event("file systems ready")
        self.start()
        while not self.stop_requested:
            self.pause(1.0)
            self.supervise()
        self.stop()
        return 0


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print("usage: node_init.py PLAN.json", file=sys.stderr)
        return 2
    plan = NodePlan.from_json(Path(argv[1]).read_text())
    if os.getpid() != 1:
        print(f"node_init for {plan.name} must be PID 1 of a new PID namespace", file=sys.stderr)
        return 2
    init = Init(plan)
    try:
        return init.run()
    except Exception as error:
        init.event(f"failed: {type(error).__name__}: {error}")
        raise


if __name__ == "__main__":
    sys.exit(main(sys.argv))
