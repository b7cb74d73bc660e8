"""A Pacemaker cluster of the lab's Xen hosts (issue 11 item 6).

corosync, pacemakerd and sbd run in each dom0; the cluster is written by pcs as an operator
writes it (``pcs cluster setup`` in local mode: there is no pcsd in the lab), and fenced by
SBD on the lab's shared disk, each host's watchdog behind it. Two hosts with corosync's
``two_node``; the timings are stretched for hosts emulated by TCG on a shared machine. Why
all of this: ``docs/decisions/xen-cluster.md``.

The lab must be started with ``start_lab(..., cluster=True)`` (the shared SBD disk and the
watchdogs). :func:`form_cluster` forms the cluster and configures fencing and the xen-host
clone; :class:`XenCluster` runs pcs and Pacemaker's tools in a dom0, crashes and fences
hosts, and brings a crashed host back into the cluster.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import zip_longest
from pathlib import Path

from tests.support.cluster.crm_mon import ClusterStatus, CrmMonError, parse_crm_mon
from tests.support.commands import Result, output_text
from tests.support.xenlab.guests import put_guest, pv_domain_xml
from tests.support.xenlab.lab import REPO, SBD_DISK_SERIAL, Lab, LabError, XenHost, restart_host

CLUSTER_NAME = "xenlab"
# corosync's token: 10 s (default 3 s with knet). A TCG dom0 on a loaded 2-core machine
# stalls for seconds; a short token makes the membership flap and the hosts fence each other.
TOKEN_MS = 10_000
# SBD: the watchdog fires when sbd has not tickled it for SBD_WATCHDOG_S; a fencing message
# counts as delivered after SBD_MSGWAIT_S (twice the watchdog: the victim has either read it
# or been reset by its watchdog). sbd warns when its loop is late by SBD_WARN_S: those
# warnings are the measurement the timings rest on (xen-cluster.md).
SBD_WATCHDOG_S = 20
SBD_MSGWAIT_S = 40
SBD_WARN_S = 2
STONITH_TIMEOUT_S = 120  # above msgwait, with room for fence_sbd's own start under TCG
# fence_sbd is Python (the fencing library): its start and monitor took over 20 s, the
# default timeout, in a loaded dom0; the device was then stopped: a cluster without fencing
FENCE_OPS = ("start", "timeout=120s", "monitor", "interval=300s", "timeout=120s")
FENCE_DEVICE = "sbd-fence"
HOST_RESOURCE = "xen-host"
WATCHDOG_MODULE = "i6300esb"  # QEMU's emulated watchdog (lab.py attaches it in cluster mode)
# xen-host's: its start writes to the CIB, which answers slowly when the dom0s are busy (a
# 30 s default failed once while pcs ran beside it). Monitors of xen-host and xen-guest every
# 60 s with 120 s to finish: each is a Python process in a dom0 that TCG and two labs on two
# cores leave ~half a core; at 30 s / 60 s, four guests and xen-host starved the dom0 until its
# CIB stopped answering and monitors and probes timed out (docs/xen-lab-findings.md)
HOST_OPS = ("start", "timeout=120s", "stop", "timeout=60s", "monitor", "interval=60s", "timeout=120s")
BOOT_MEMORY_MIB = 128  # what create_guests' guests boot with (Debian's PV kernel needs 128)
# xen-guest's operations. migrate_to: the paused copy of a 128 MiB PV guest was measured at
# 6.6, 2.8 and 1.5 MiB/s under TCG (19-89 s), and slower with two labs on the machine: at 180 s
# xen-guest's own deadline for the copy came 94 s into it (46 s had gone to the agent's start
# and the booking) and a copy still running was not settled as a move (docs/xen-lab-findings.md).
# 300 s leaves the copy ~210 s: 128 MiB at 0.6 MiB/s. start: a lone 256 MiB guest's start took
# 225 s with another lab on the machine (240 s before).
GUEST_OPS = (
    "start", "timeout=360s", "stop", "timeout=120s", "monitor", "interval=60s", "timeout=120s",
    "migrate_to", "timeout=300s", "migrate_from", "timeout=120s",
)  # fmt: skip
# Pacemaker's throttle: the controller runs fewer actions at once when the host's load per
# core passes load-threshold (80 % by default; one action at a time at "high load"). A dom0 of
# 2 vCPUs under TCG always shows a load of 4-14 (emulation stalls count as load), so every
# transition ran one action at a time: four guests' starts planned together took 11 minutes.
# 1000 % keeps the throttle out of the lab's way (the scheduler's plan runs as planned, up to
# node-action-limit, 2 x cores); on real hardware the default is right.
LOAD_THRESHOLD = "1000%"
# A migration's stream to a host that died hangs until TCP gives up on it: net.ipv4.tcp_retries2
# = 15, about 15 minutes. libxl cannot abort it, so its job holds the guest on the source all
# that time: libvirt's destroy fails on the job's lock, and the crash test's survivor fenced
# itself for that failed stop (docs/decisions/xen-cluster.md). 8 is RFC 1122's minimum, ~100 s.
TCP_RETRIES2 = 8
# The crash test's figures (Failover.record), printed by `make bench` (bench/xen_bench.py)
FAILOVER_RECORD = REPO / "build" / "bench" / "xen-crash-failover.json"


@dataclass(frozen=True)
class FenceEvent:
    """One entry of the fencer's history (``stonith_admin --history``)."""

    target: str
    action: str
    status: str
    delegate: str
    completed: float | None  # epoch seconds, by the clock of the dom0 that was asked


Show = Callable[[Sequence[str]], None]


class XenCluster:
    """The formed cluster: pcs and Pacemaker's tools in the dom0s, crashes, fencing, rejoins."""

    def __init__(self, lab: Lab, sbd_device: str) -> None:
        self.lab = lab
        self.sbd_device = sbd_device

    @classmethod
    def attach(cls, lab: Lab, show: Show | None = None) -> XenCluster:
        """The cluster of a lab left up (``xenlab up --cluster --keep``): formed now when it is not yet."""
        if lab.hosts[0].sh("pidof pacemakerd", 30).returncode != 0:
            return form_cluster(lab, show)
        return cls(lab, _sbd_device(lab.hosts[0]))

    @property
    def nodes(self) -> list[str]:
        return [host.name for host in self.lab.hosts]

    def host(self, name: str) -> XenHost:
        return self.lab.host(name)

    def up_hosts(self) -> list[XenHost]:
        return [host for host in self.lab.hosts if host.qemu_running()]

    def any_node(self) -> str:
        """A host whose QEMU runs (the first): where to ask the cluster."""
        up = self.up_hosts()
        if not up:
            raise LabError("no Xen host of the cluster is running")
        return up[0].name

    def run(self, node: str, argv: Sequence[str], timeout_s: float = 120.0) -> Result:
        """``argv`` in ``node``'s dom0, as :class:`tests.support.commands.Result` (never raises on
        the exit code; a command past ``timeout_s`` is a Result without one, as commands.py has
        it: a crm_mon that took over 60 s in a loaded dom0 otherwise ended a whole wait_for)."""
        started = time.monotonic()
        try:
            done = self.host(node).run(argv, timeout=timeout_s)
        except subprocess.TimeoutExpired as late:
            return Result(tuple(argv), None, output_text(late.stdout), output_text(late.stderr), time.monotonic() - started, node)
        return Result(tuple(argv), done.returncode, done.stdout, done.stderr, time.monotonic() - started, node)

    def check(self, node: str, argv: Sequence[str], timeout_s: float = 120.0) -> str:
        result = self.run(node, argv, timeout_s)
        if not result.ok:
            raise LabError(result.explain())
        return result.stdout

    def pcs(self, *argv: str, node: str | None = None, timeout_s: float = 180.0, show: Show | None = None) -> str:
        if show is not None:
            show(["pcs", *argv])
        return self.check(node or self.any_node(), ["pcs", *argv], timeout_s)

    def status(self, node: str | None = None) -> ClusterStatus:
        text = self.check(node or self.any_node(), ["crm_mon", "-1", "--output-as=xml"], 60)
        return parse_crm_mon(text)

    def wait_for(
        self, what: str, predicate: Callable[[ClusterStatus], bool], timeout_s: float, interval_s: float = 5.0
    ) -> ClusterStatus:
        """Poll crm_mon until ``predicate`` holds; fail naming what was awaited and the last status.
        Every 5 s: crm_mon costs a busy dom0 seconds of CPU, which its CIB and monitors need."""
        deadline = time.monotonic() + timeout_s
        last: ClusterStatus | str = "no answer from crm_mon"
        while time.monotonic() < deadline:
            try:
                status = self.status()
            except (LabError, CrmMonError) as error:
                last = str(error)
            else:
                if predicate(status):
                    return status
                last = status
            time.sleep(interval_s)
        raise AssertionError(f"{what}: not true after {timeout_s:.0f} s; last status: {last}")

    def wait_started(self, resource: str, node: str, timeout_s: float = 300.0) -> ClusterStatus:
        return self.wait_for(
            f"{resource} started on {node}", lambda status: status.started_on(resource) == (node,), timeout_s
        )

    def wait_online(self, nodes: Sequence[str], timeout_s: float = 300.0) -> ClusterStatus:
        return self.wait_for(
            f"{', '.join(nodes)} online with a DC",
            lambda status: status.dc is not None and all(status.node(node).online for node in nodes),
            timeout_s,
        )

    def placements(self, guests: Sequence[str]) -> dict[str, str | None]:
        """Where Pacemaker says each guest is started (None: not started anywhere)."""
        status = self.status()
        return {guest: (status.started_on(guest) or (None,))[0] for guest in guests}

    def node_utilization(self) -> dict[str, dict[str, int]]:
        text = self.check(self.any_node(), ["cibadmin", "--query", "--scope", "nodes"])
        found: dict[str, dict[str, int]] = {}
        for node in ET.fromstring(text).iter("node"):
            values = {pair.get("name", ""): int(pair.get("value", "0")) for u in node.iter("utilization") for pair in u}
            found[node.get("uname", "")] = values
        return found

    def dom0_clock(self, node: str) -> float:
        """Epoch seconds by ``node``'s dom0 clock (the clock its fencing history is written in)."""
        return float(self.check(node, ["date", "+%s.%N"], 30).strip())

    def crash(self, host: XenHost) -> None:
        """A power loss: SIGKILL to the host's QEMU. Raises unless the process is gone after it."""
        pid = host.qemu_pid
        if pid is None or not host.qemu_running():
            raise LabError(f"{host.name}: its QEMU is not running, nothing to crash")
        os.kill(pid, signal.SIGKILL)
        self.wait_powered_off(host, 30)

    def wait_powered_off(self, host: XenHost, timeout_s: float) -> float:
        """Until ``host``'s QEMU process has exited; returns the seconds waited."""
        started = time.monotonic()
        while host.qemu_running():
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{host.name}'s QEMU (pid {host.qemu_pid}) still runs after {timeout_s:.0f} s")
            time.sleep(0.5)
        return time.monotonic() - started

    def fence_history(self, target: str, node: str | None = None) -> list[FenceEvent]:
        text = self.check(node or self.any_node(), ["stonith_admin", "--history", target, "--output-as=xml"], 60)
        return parse_fence_history(text)

    def wait_fenced(self, target: str, since: float, timeout_s: float) -> FenceEvent:
        """The first successful fencing of ``target`` completed at or after ``since`` (the
        asked dom0's clock), as the fencer records it."""
        node = next(name for name in self.nodes if name != target)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.fence_history(target, node):
                if event.status == "success" and event.completed is not None and event.completed >= since:
                    return event
            time.sleep(3)
        raise AssertionError(
            f"no successful fencing of {target} recorded after {timeout_s:.0f} s: {self.fence_history(target, node)}"
        )

    def rejoin(self, host: XenHost) -> float:
        """Boot a crashed or fenced host again and bring it back into the cluster; returns the
        seconds from its boot to the cluster seeing it online with its capacity published."""
        started = time.monotonic()
        restart_host(self.lab, host)
        config = self.check(self.any_node(), ["cat", "/etc/corosync/corosync.conf"])
        keys = {path: self.check(self.any_node(), ["base64", "-w0", path]) for path in KEYS}
        _install(host, config, keys)
        # the fencing message the cluster left in its slot ("reset"): a fenced host clears it
        # before its sbd starts, as an operator does when the host comes back
        host.check(f"sbd -d {self.sbd_device} message {host.name} clear", 60)
        _start_daemons(host, self.sbd_device)
        self.wait_online(self.nodes)
        wait_capacity(self, self.nodes)
        return time.monotonic() - started

    def sbd_latency_warnings(self, host: XenHost) -> list[str]:
        """sbd's complaints that its loop ran late (syslog in the dom0): the measurement behind
        SBD_WATCHDOG_S."""
        return host.sh("grep -h 'Latency' /var/log/messages 2>/dev/null", 30).stdout.splitlines()


KEYS = ("/etc/corosync/authkey", "/etc/pacemaker/authkey")


def parse_fence_history(text: str) -> list[FenceEvent]:
    """``stonith_admin --history NODE --output-as=xml``, oldest first."""
    events = [
        FenceEvent(
            target=element.get("target", ""),
            action=element.get("action", ""),
            status=element.get("status", ""),
            delegate=element.get("delegate", ""),
            completed=_epoch(element.get("completed")),
        )
        for element in ET.fromstring(text).iter("fence_event")
    ]
    return sorted(events, key=lambda event: event.completed or 0.0)


def _epoch(text: str | None) -> float | None:
    """The fencer's completion time as epoch seconds: "2026-12-03 11:30:20Z" in Pacemaker
    2.1.5's XML (seen in the lab), with an offset or a fraction in other versions.

    >>> _epoch("2026-12-03 11:30:20Z")
    1796297420.0
    """
    if not text:
        return None
    text = text.strip().replace("Z", " +0000") if text.strip().endswith("Z") else text
    for layout in ("%Y-%m-%d %H:%M:%S.%f %z", "%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z"):
        try:
            return datetime.strptime(text.strip(), layout).timestamp()
        except ValueError:
            continue
    return None


def _sbd_device(host: XenHost) -> str:
    """The shared disk in a dom0, found by the serial lab.py gave it."""
    found = host.check(
        f"for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = {SBD_DISK_SERIAL} ] && echo /dev/${{d##*/}}; done",
        30,
    ).split()
    if len(found) != 1:
        raise LabError(f"{host.name}: no single virtio disk with serial {SBD_DISK_SERIAL}: {found} (a cluster=True lab?)")
    return found[0]


def _install(host: XenHost, corosync_conf: str, keys: dict[str, str]) -> None:
    """corosync.conf and the keys into ``host``'s dom0 (what pcsd would have copied)."""
    script = "mkdir -p /etc/corosync /etc/pacemaker && cat >/etc/corosync/corosync.conf"
    done = host.run(["sh", "-c", script], input_text=corosync_conf, timeout=60)
    if done.returncode != 0:
        raise LabError(f"{host.name}: cannot write corosync.conf: {done.stderr.strip()}")
    for path, encoded in keys.items():
        owner = "hacluster:haclient" if "pacemaker" in path else "root:root"
        done = host.run(
            ["sh", "-c", f"base64 -d >{path} && chown {owner} {path} && chmod 0400 {path}"],
            input_text=encoded,
            timeout=60,
        )
        if done.returncode != 0:
            raise LabError(f"{host.name}: cannot write {path}: {done.stderr.strip()}")


# Pacemaker 2.1.5's fencer reads a fence agent's metadata synchronously, with a fixed 10 s
# limit, and answers nobody meanwhile; fence_sbd (Python) took longer in a TCG dom0, the fencer
# retried, pacemakerd found it unresponsive five times and killed it, and sbd-fence's start
# failed ("Lost connection to fencer"): a cluster without fencing (docs/decisions/xen-cluster.md).
# The lab diverts fence_sbd to a wrapper that answers the metadata action from what the real
# agent printed for it once at boot, and runs the real agent for everything else (fencing,
# monitor). The real agent keeps its name (a directory of its own): its metadata names it.
FENCE_SBD_REAL_DIR = "/usr/lib/xenlab-fence"
FENCE_SBD_WRAPPER = f"""#!/bin/sh
# xenlab (tests/support/xenlab/cluster.py): fence_sbd's metadata from the real agent's own
# output, saved once; every other action runs the real agent
real={FENCE_SBD_REAL_DIR}/fence_sbd
metadata={FENCE_SBD_REAL_DIR}/fence_sbd.metadata
if [ $# -eq 0 ]; then
    input=$(cat)
    if printf '%s\\n' "$input" | grep -qxE '(action|option)=metadata'; then exec cat "$metadata"; fi
    printf '%s\\n' "$input" | "$real"
    exit $?
fi
case " $* " in *" -o metadata "*|*" --action=metadata "*|*" --action metadata "*) exec cat "$metadata" ;; esac
exec "$real" "$@"
"""
CACHED_FENCE_METADATA = (
    f"if [ ! -d {FENCE_SBD_REAL_DIR} ]; then\n"
    f"  mkdir -p {FENCE_SBD_REAL_DIR}\n"
    f"  dpkg-divert --local --rename --divert {FENCE_SBD_REAL_DIR}/fence_sbd --add /usr/sbin/fence_sbd >/dev/null\n"
    f"  {FENCE_SBD_REAL_DIR}/fence_sbd -o metadata >{FENCE_SBD_REAL_DIR}/fence_sbd.metadata\n"
    f"  grep -q '<resource-agent name=\"fence_sbd\"' {FENCE_SBD_REAL_DIR}/fence_sbd.metadata\n"
    f"  cat >/usr/sbin/fence_sbd <<'XENLAB_EOF'\n{FENCE_SBD_WRAPPER}XENLAB_EOF\n"
    "  chmod 0755 /usr/sbin/fence_sbd\n"
    "fi\n"
)


def _start_daemons(host: XenHost, sbd_device: str) -> None:
    """The watchdog's driver, syslog (sbd logs only there), TCP's retry limit (TCP_RETRIES2),
    fence_sbd's cached metadata (CACHED_FENCE_METADATA), sbd, corosync, pacemakerd: in the
    background, as dom0-init.sh starts libvirtd (the dom0 has no init system)."""
    host.check(
        "set -e\n"
        + CACHED_FENCE_METADATA
        + f"modprobe {WATCHDOG_MODULE}\n"
        "for _ in $(seq 20); do [ -c /dev/watchdog ] && break; sleep 0.5; done\n"
        "[ -c /dev/watchdog ]\n"
        "pidof syslogd >/dev/null || busybox syslogd -O /var/log/messages\n"
        f"echo {TCP_RETRIES2} >/proc/sys/net/ipv4/tcp_retries2\n"
        f"sbd -d {sbd_device} -w /dev/watchdog -P -5 {SBD_WARN_S} watch\n"
        "corosync\n"
        "mkdir -p /var/log/pacemaker && chown hacluster:haclient /var/log/pacemaker\n"
        "setsid -f pacemakerd </dev/null >/var/log/pacemakerd.out 2>&1\n",
        120,
    )


def form_cluster(lab: Lab, show: Show | None = None) -> XenCluster:
    """Form the cluster on a ``cluster=True`` lab: pcs writes corosync.conf, the harness
    copies it and the keys to every dom0, sbd initialises the shared disk, the daemons start;
    then pcs configures fencing, placement by utilization and the xen-host clone. Returns
    once every host is online with its capacity published."""
    if not lab.cluster:
        raise LabError("the lab has no shared SBD disk or watchdogs: start it with start_lab(..., cluster=True)")
    first = lab.hosts[0]
    device = _sbd_device(first)
    for host in lab.hosts[1:]:
        if _sbd_device(host) != device:
            raise LabError(f"{host.name} sees the SBD disk as {_sbd_device(host)}, {first.name} as {device}")
    cluster = XenCluster(lab, device)
    nodes = [part for host in lab.hosts for part in (host.name, f"addr={host.address}")]
    setup = ["pcs", "cluster", "setup", CLUSTER_NAME, *nodes, "totem", f"token={TOKEN_MS}",
             "--corosync_conf", "/root/corosync.conf"]  # fmt: skip
    if show is not None:
        show(setup)
    cluster.check(first.name, setup)
    corosync_conf = cluster.check(first.name, ["cat", "/root/corosync.conf"])
    if "two_node: 1" not in corosync_conf:
        raise LabError(f"pcs wrote no two_node into corosync.conf:\n{corosync_conf}")
    keys = {
        "/etc/corosync/authkey": base64.b64encode(os.urandom(256)).decode(),
        "/etc/pacemaker/authkey": base64.b64encode(os.urandom(4096)).decode(),
    }
    for host in lab.hosts:
        _install(host, corosync_conf, keys)
    create = ["sbd", "-d", device, "-1", str(SBD_WATCHDOG_S), "-4", str(SBD_MSGWAIT_S), "create"]
    if show is not None:
        show(create)
    cluster.check(first.name, create)
    with ThreadPoolExecutor(len(lab.hosts)) as starting:  # each a minute of ssh under TCG: side by side
        list(starting.map(lambda host: _start_daemons(host, device), lab.hosts))
    cluster.wait_online(cluster.nodes)
    configure(cluster, show)
    return cluster


CIB_DRAFT = "/root/cib-draft.xml"
# pcs's commands run in one Python process (pcs.app.main once per command): pcs takes 20-40 s
# to import in an emulated dom0, which four separate runs paid four times. Each command is
# exactly what an operator types; a failing one stops the batch with its own message.
PCS_BATCH = """
import json, sys, time
from pcs import app, utils
started = time.monotonic()
for argv in json.loads(sys.stdin.read()):
    print(f"[{time.monotonic() - started:.0f} s] $ pcs " + " ".join(argv), flush=True)
    # what a new pcs process starts with: -f sets these and no later command resets them
    app.usefile = utils.usefile = False
    app.filename = utils.filename = ""
    try:
        app.main(argv)
    except SystemExit as stop:
        if stop.code not in (None, 0):
            sys.exit(f"pcs {' '.join(argv)} failed ({stop.code}); the commands after it were not run")
print(f"[{time.monotonic() - started:.0f} s] done", flush=True)
"""


def configuration_commands(cluster: XenCluster) -> list[list[str]]:
    """Fencing, placement by utilization, the xen-host clone, as pcs commands on a draft of the
    CIB (``pcs -f``), then the draft pushed at once: an operator's way to change a cluster in
    one step (``pcs cluster cib``, ``pcs -f ...``, ``pcs cluster cib-push --config``)."""
    draft = ["-f", CIB_DRAFT]
    return [
        ["cluster", "cib", CIB_DRAFT],
        [*draft, "property", "set", "stonith-enabled=true", f"stonith-timeout={STONITH_TIMEOUT_S}s",
         "placement-strategy=balanced", f"load-threshold={LOAD_THRESHOLD}"],
        [*draft, "resource", "defaults", "update", "resource-stickiness=100"],
        [*draft, "stonith", "create", FENCE_DEVICE, "fence_sbd", f"devices={cluster.sbd_device}",
         f"pcmk_host_list={' '.join(cluster.nodes)}", "op", *FENCE_OPS],
        [*draft, "resource", "create", HOST_RESOURCE, "ocf:xenha:xen-host", "hypervisor=xen:///system",
         "cpu_overcommit=4", "op", *HOST_OPS, "clone"],
        ["cluster", "cib-push", CIB_DRAFT, "--config"],
    ]  # fmt: skip


def configure(cluster: XenCluster, show: Show | None = None) -> None:
    """Fencing, placement by utilization, the xen-host clone: with pcs, as an operator would
    (:func:`configuration_commands`, run by one pcs process)."""
    commands = configuration_commands(cluster)
    if show is not None:
        for argv in commands:
            show(["pcs", *argv])
    node = cluster.any_node()
    done = cluster.host(node).run(["python3", "-c", PCS_BATCH], input_text=json.dumps(commands), timeout=600)
    if done.returncode != 0:
        raise LabError(f"{node}: configuring the cluster with pcs failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    _check_settings_pushed(cluster, node)
    cluster.wait_for(f"{FENCE_DEVICE} started", lambda status: bool(status.started_on(FENCE_DEVICE)), 300)
    wait_capacity(cluster, cluster.nodes)


def _check_settings_pushed(cluster: XenCluster, node: str) -> None:
    """The cluster options and resource defaults the batch set are in the live CIB.

    PCS_BATCH runs pcs's commands in one process, which relies on pcs keeping no state from
    one command to the next beyond the two globals it resets; a command that wrote into the
    wrong CIB would otherwise go unnoticed (the fencing device and xen-host are checked by
    the waits that follow: they must start)."""
    wanted = {"stonith-enabled": "true", "stonith-timeout": f"{STONITH_TIMEOUT_S}s",
              "placement-strategy": "balanced", "load-threshold": LOAD_THRESHOLD, "resource-stickiness": "100"}  # fmt: skip
    configuration = ET.fromstring(cluster.check(node, ["cibadmin", "--query", "--scope", "configuration"]))
    found = {
        pair.get("name"): pair.get("value")
        for section in ("crm_config", "rsc_defaults")
        for pair in configuration.iterfind(f"{section}//nvpair")
    }
    missing = {name: value for name, value in wanted.items() if found.get(name) != value}
    if missing:
        raise LabError(f"{node}: the CIB lacks what pcs was told to set: {missing} (found {found})")


def wait_capacity(cluster: XenCluster, nodes: Sequence[str], timeout_s: float = 300.0) -> dict[str, int]:
    """Until xen-host has published hv_memory for every one of ``nodes``; returns it."""
    deadline = time.monotonic() + timeout_s
    published: dict[str, dict[str, int]] = {}
    while time.monotonic() < deadline:
        published = cluster.node_utilization()
        if all(published.get(node, {}).get("hv_memory") for node in nodes):
            return {node: published[node]["hv_memory"] for node in nodes}
        time.sleep(3)
    raise AssertionError(f"xen-host did not publish hv_memory for {nodes} in {timeout_s:.0f} s: {published}")


def guest_params(name: str, config: str) -> dict[str, str]:
    return {"config": config, "hypervisor": "xen:///system", "remoteuri": "xen+tcp://%n/system", "force_stop": "true"}


def _op_settings(ops: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """pcs's ``op NAME key=value... NAME ...`` list as (name, settings) pairs."""
    parsed: list[tuple[str, dict[str, str]]] = []
    for word in ops:
        if "=" in word:
            key, _, value = word.partition("=")
            parsed[-1][1][key] = value
        else:
            parsed.append((word, {}))
    return parsed


def guest_primitive(name: str, config: str, meta: dict[str, str]) -> str:
    """The CIB's ``<primitive>`` that ``pcs resource create`` writes for a guest (create_guest_with_pcs)."""
    attrs = "".join(f'<nvpair id="{name}-ia-{key}" name="{key}" value="{value}"/>'
                    for key, value in guest_params(name, config).items())  # fmt: skip
    metas = "".join(f'<nvpair id="{name}-meta-{key}" name="{key}" value="{value}"/>' for key, value in meta.items())
    ops = "".join(
        f'<op id="{name}-{op}-{settings.get("interval", "0s")}" name="{op}" interval="{settings.get("interval", "0s")}"'
        f' timeout="{settings["timeout"]}"/>'
        for op, settings in _op_settings(GUEST_OPS)
    )
    return (
        f'<primitive id="{name}" class="ocf" provider="xenha" type="xen-guest">'
        f'<instance_attributes id="{name}-ia">{attrs}</instance_attributes>'
        f'<meta_attributes id="{name}-meta">{metas}</meta_attributes>'
        f"<operations>{ops}</operations></primitive>"
    )


def create_guest_with_pcs(
    cluster: XenCluster, name: str, memory_mib: int, node: str, meta: Sequence[str] = (), show: Show | None = None
) -> None:
    """A PV guest (its XML on the SAN) as a xen-guest resource that moves between the hosts,
    created with pcs as an operator would, started on ``node``: created disabled, pinned
    there, enabled, then unpinned (stickiness keeps it). Four pcs runs: ~2 minutes under TCG
    (pcs alone takes 25-40 s to start in an emulated dom0), so the tests use create_guests."""
    config = put_guest(cluster.lab, name, pv_domain_xml(name, memory_mib=memory_mib))
    params = [f"{key}={value}" for key, value in guest_params(name, config).items()]
    cluster.pcs("resource", "create", name, "ocf:xenha:xen-guest", *params, "meta", "allow-migrate=true", *meta,
                "op", *GUEST_OPS, "--disabled", show=show)  # fmt: skip
    cluster.pcs("constraint", "location", "add", f"place-{name}", name, node, "INFINITY", show=show)
    cluster.pcs("resource", "enable", name, show=show)
    cluster.wait_started(name, node)
    cluster.pcs("constraint", "delete", f"place-{name}", show=show)


def create_guests(
    cluster: XenCluster,
    guests: Mapping[str, tuple[int, str]],
    priorities: Mapping[str, int] = {},
    pinned: Sequence[str] = (),
) -> None:
    """PV guests as xen-guest resources, ``name -> (memory MiB, node)``, the same resources
    create_guest_with_pcs makes but written with cibadmin (a second each, not pcs's minute):
    created stopped, pinned to their node, started one per host at a time, unpinned once running (but
    ``pinned`` ones: with placement-strategy=balanced the scheduler otherwise moves other
    guests away to make room for one moved by hand). Each
    boots with BOOT_MEMORY_MIB (the rest ballooned out): xenha and the scheduler count its
    full memory, and a 616 MiB guest took over 5 minutes to build under TCG at load 14."""
    script = ["set -e"]
    for name, (memory_mib, where) in guests.items():
        xml = pv_domain_xml(name, memory_mib=memory_mib, current_mib=min(memory_mib, BOOT_MEMORY_MIB))
        config = put_guest(cluster.lab, name, xml)
        meta = {"allow-migrate": "true", "target-role": "Stopped"}
        if name in priorities:
            meta["priority"] = str(priorities[name])
        script.append(shlex.join(["cibadmin", "--create", "--scope", "resources", "--xml-text",
                                  guest_primitive(name, config, meta)]))  # fmt: skip
        script.append(shlex.join(pin_command(name, where)))
    # one ssh session to write them all: each round trip costs seconds in a busy emulated dom0
    cluster.host(cluster.any_node()).check("\n".join(script), 300)
    # Started in waves, one guest per host at a time: three PV guests built at once in one TCG
    # dom0 starved it (libvirt did not answer a start within 190 s, cibadmin not within 15 s:
    # all three starts failed, docs/xen-lab-findings.md, fourth session)
    by_host: dict[str, list[str]] = {}
    for name, (_, where) in guests.items():
        by_host.setdefault(where, []).append(name)
    for wave in zip_longest(*by_host.values()):
        names = [name for name in wave if name is not None]
        # one CIB change for the wave: two crm_resource calls made two transitions, and the
        # second start waited for the first to finish (seen in the fourth session's run 3).
        # --force: cibadmin 2.1.5 refuses --delete-all without it ("considered dangerous")
        roles = " or ".join(f"@id='{name}-meta-target-role'" for name in names)
        cluster.check(cluster.any_node(), ["cibadmin", "--delete-all", "--force", "--xpath", f"//nvpair[{roles}]"])
        for name in names:
            cluster.wait_started(name, guests[name][1], 600)
    unpin(cluster, [name for name in guests if name not in pinned])


def pin_command(name: str, node: str) -> list[str]:
    return ["cibadmin", "--create", "--scope", "constraints", "--xml-text",
            f'<rsc_location id="place-{name}" rsc="{name}" node="{node}" score="INFINITY"/>']  # fmt: skip


def pin(cluster: XenCluster, names: Sequence[str], node: str) -> None:
    """Location constraints ``place-NAME`` (INFINITY on ``node``): the scheduler keeps the guests
    there while ``node`` is up (it may still run them elsewhere when ``node`` is gone)."""
    if names:
        cluster.host(cluster.any_node()).check("set -e\n" + "\n".join(shlex.join(pin_command(name, node)) for name in names), 120)


def unpin(cluster: XenCluster, names: Sequence[str]) -> None:
    """Remove the ``place-NAME`` constraints of :func:`pin` (absent ones are not an error)."""
    if names:
        deletions = [shlex.join(["cibadmin", "--delete", "--xml-text", f'<rsc_location id="place-{name}"/>'])
                     for name in names]  # fmt: skip
        cluster.host(cluster.any_node()).sh("\n".join(deletions), 120)


def arrange(cluster: XenCluster, placements: Mapping[str, str], timeout_s: float = 300.0) -> None:
    """Move the guests not yet where ``placements`` wants them (``crm_resource --move``, then its
    constraint cleared: stickiness keeps them); nothing is run for those already there."""
    current = cluster.placements(list(placements))
    moving = [name for name, node in placements.items() if current[name] != node]
    node = cluster.any_node()
    for name in moving:
        cluster.check(node, ["crm_resource", "--move", "--resource", name, "--node", placements[name]])
    for name in moving:
        cluster.wait_started(name, placements[name], timeout_s)
        cluster.check(node, ["crm_resource", "--clear", "--resource", name])


def delete_guests(cluster: XenCluster, names: Sequence[str], timeout_s: float = 300.0) -> None:
    """Stop guests together, remove them and their constraints from the cluster, and make sure no
    domain is left on a running host."""
    node = cluster.any_node()
    present = [name for name in names if cluster.status(node).resource(name) is not None]
    for name in present:
        cluster.run(node, ["crm_resource", "--resource", name, "--clear"], 60)
        cluster.run(node, ["crm_resource", "--resource", name, "--meta", "--set-parameter", "target-role",
                           "--parameter-value", "Stopped"], 60)  # fmt: skip
    def inactive(status: ClusterStatus) -> bool:
        return not any((resource := status.resource(name)) is not None and resource.active for name in present)

    cluster.wait_for(f"{present} stopped", inactive, timeout_s)
    unpin(cluster, present)
    for name in present:
        cluster.run(node, ["cibadmin", "--delete", "--xml-text", f'<primitive id="{name}"/>'], 60)
        cluster.run(node, ["crm_resource", "--cleanup", "--resource", name], 60)
    for host in cluster.up_hosts():
        host.sh("; ".join(f"xl destroy {name} >/dev/null 2>&1" for name in names) + "; true", 60)


def xl_copies(cluster: XenCluster, name: str) -> dict[str, str]:
    """Every running host holding a Xen domain called ``name``, with its ``xl list`` flags."""
    found = {}
    for host in cluster.up_hosts():
        fields = host.sh(f"xl list {shlex.quote(name)} 2>/dev/null | tail -n +2", 60).stdout.split()
        if len(fields) >= 5:
            found[host.name] = fields[4]
    return found


@dataclass(frozen=True)
class Failover:
    """A host crash as the cluster lived it; times in seconds from the crash."""

    victim: str
    survivor: str
    fenced: FenceEvent
    fenced_after_s: float  # by the survivor's clock; a lower bound (the crash is read after the kill)
    running_after_s: dict[str, float]  # guest -> when Pacemaker first reported it started on the survivor
    placements: dict[str, str | None]  # every guest asked about, once the cluster settled
    before: dict[str, str | None]  # where each ran before the crash (a migration's guest: its source)

    @classmethod
    def from_record(cls, figures: Mapping[str, object]) -> Failover:
        """The failover :meth:`record` wrote (its extra keys ignored; ``before`` is absent from
        records written before 2026-12-04, which then say nothing of where a guest came from).

        >>> fenced = FenceEvent("xenhost2", "reboot", "success", "xenhost1", 100.0)
        >>> crash = Failover("xenhost2", "xenhost1", fenced, 64.8, {"pv-a": 23.7, "pv-b": 85.4},
        ...                  {"pv-a": "xenhost1", "pv-b": "xenhost1"}, {"pv-a": "xenhost1", "pv-b": "xenhost2"})
        >>> again = Failover.from_record({"measured": "now", **json.loads(json.dumps(asdict(crash)))})
        >>> again == crash, again.whence("pv-a"), again.whence("pv-b")
        (True, 'kept on xenhost1 (it ran there), reported started', 'restarted on xenhost1 (it ran on xenhost2)')
        """
        fields = {name: figures[name] for name in cls.__dataclass_fields__ if name in figures}
        fields["fenced"] = FenceEvent(**fields["fenced"])  # type: ignore[arg-type]
        fields.setdefault("before", {})
        return cls(**fields)  # type: ignore[arg-type]

    def record(self, path: Path, context: str) -> None:
        """Write the figures as JSON to ``path`` (``make bench`` prints the crash test's last
        ones: FAILOVER_RECORD); ``context`` says what was moving, on what machine load."""
        figures = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "context": context,
                   "load": round(os.getloadavg()[0], 1), **asdict(self)}  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=1) + "\n")

    def lines(self) -> list[str]:
        out = [f"{self.victim} crashed (its QEMU killed); fenced by {self.fenced.delegate} via "
               f"{self.fenced.action} {self.fenced_after_s:.1f} s after the crash"]  # fmt: skip
        out += [f"{guest} {self.whence(guest)} {seconds:.1f} s after the crash"
                for guest, seconds in self.running_after_s.items()]  # fmt: skip
        out += [f"{guest} stays stopped" for guest, node in self.placements.items() if node is None]
        return out

    def whence(self, guest: str) -> str:
        """How a guest came to run on the survivor: restarted there after the crash, or kept
        (it ran there, or was migrating away from there, and Pacemaker reported it started again)."""
        if guest not in self.before:
            return f"running on {self.survivor}"
        if self.before[guest] == self.victim:
            return f"restarted on {self.survivor} (it ran on {self.victim})"
        return f"kept on {self.survivor} (it ran there), reported started"


def crash_and_recover(
    cluster: XenCluster,
    victim: XenHost,
    before: Mapping[str, str | None],
    expect_running: Sequence[str],
    timeout_s: float = 600,
) -> Failover:
    """Kill ``victim``'s QEMU (a power loss), then wait for the survivor to fence it and for
    ``expect_running`` to be started on the survivor; the cluster is then left to settle and
    where every guest of ``before`` (guest -> where it ran before the crash) ended up is
    recorded. Used by the crash test and the demo."""
    guests = list(before)
    survivor = next(name for name in cluster.nodes if name != victim.name)
    killed = time.monotonic()
    cluster.crash(victim)
    crashed = cluster.dom0_clock(survivor)  # read after the kill: never before the crash
    running: dict[str, float] = {}
    deadline = killed + timeout_s
    while len(running) < len(expect_running):
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout_s:.0f} s only {sorted(running)} of {list(expect_running)} run "
                                 f"on {survivor}: {cluster.placements(guests)}")  # fmt: skip
        if not cluster.host(survivor).qemu_running():
            raise AssertionError(f"the survivor {survivor} went down after {victim.name}'s crash; its console "
                                 f"and its dom0's /var/log/messages say why")  # fmt: skip
        try:
            status = cluster.status(survivor)
        except (LabError, CrmMonError):
            time.sleep(2)
            continue
        for guest in expect_running:
            if guest not in running and status.started_on(guest) == (survivor,):
                running[guest] = time.monotonic() - killed
        time.sleep(2)
    fenced = cluster.wait_fenced(victim.name, crashed, 120)
    cluster.run(survivor, ["crm_resource", "--wait", "--timeout=180s"], 240)
    placed = cluster.placements(guests)
    return Failover(victim.name, survivor, fenced, (fenced.completed or 0.0) - crashed, running, placed, dict(before))
