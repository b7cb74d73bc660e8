"""A real Pacemaker cluster on one machine: N nodes of corosync + pacemakerd + libvirtd.

A node is a set of private namespaces (network, mount, UTS, IPC, PID) whose PID 1 is
``node_init.py``, and a cgroup-v2 group holding every process of the node. The nodes talk
over a private bridge; their libvirtd daemons (qemu driver, tiny TCG guests) listen on TCP
for migrations. From the root namespaces a node is reached with ``nsenter`` (commands) and
through ``/proc/<init>/root/run/libvirt/libvirt-sock`` (libvirt).

Typical use::

    cluster = Cluster(ClusterLayout("xhc"))
    try:
        cluster.up()                       # fresh state, waits until all nodes are online
        cluster.check("node1", ["pcs", "resource", "create", "d1", "ocf:heartbeat:Dummy"])
        cluster.kill_node("node2")         # power cut; cluster.start_node("node2") reboots it
    finally:
        cluster.teardown()                 # nothing left: processes, guests, netns, cgroups

Design notes and measured timings: docs/decisions/cluster-harness.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.support import commands
from tests.support.cluster import cgroups, config, network
from tests.support.cluster.crm_mon import ClusterStatus, CrmMonError, parse_crm_mon
from tests.support.cluster.fencing import FenceRecord, parse_fence_log
from tests.support.cluster.layout import QEMU_CAPS_SEED, ClusterLayout, LayoutError
from tests.support.cluster.node_init import DAEMON_PATH, LIBVIRTD_PID_FILE, Mount, NodePlan, RunDir
from tests.support.cluster.pacemaker_log import LOG, throttle_known
from tests.support.commands import CommandFailed, Result

PYTHON = "/usr/bin/python3"
NODE_INIT = Path(__file__).resolve().parent / "node_init.py"
FENCE_AGENT = Path(__file__).resolve().parent / config.FENCE_AGENT
OCF_PROVIDER = "xenha"
# Per-node state below /var that must not show the host's own files (a stale CIB, logs):
# these directories are made opaque in the node's /var overlay.
PRIVATE_VAR_DIRS = (
    "lib/pacemaker",
    "lib/corosync",
    "lib/libvirt",
    "cache/libvirt",
    "log/pacemaker",
    "log/corosync",
    "log/crmsh",
    "log/libvirt",
)
# Subdirectories of the private ones that the daemons expect to exist.
PRIVATE_VAR_SUBDIRS = ("lib/pacemaker/cib", "lib/pacemaker/pengine", "lib/pacemaker/blackbox",
                       "lib/pacemaker/cores", "log/pacemaker/bundles")  # fmt: skip
NODE_ENV = {"PATH": DAEMON_PATH, "HOME": "/root", "LC_ALL": "C"}


class ClusterError(RuntimeError):
    """Something the harness could not do; the message names the node and what to do."""


class PacemakerNotAnswering(ClusterError):
    """crm_mon on a node gave no cluster status (starting, stopping, hung or killed)."""


class Cluster:
    def __init__(
        self,
        layout: ClusterLayout,
        *,
        qemu_caps_seed: Path | None = QEMU_CAPS_SEED,
        say: Callable[[str], None] | None = None,
        seed_fence_device: bool = True,
    ) -> None:
        if any(char in str(layout.repo) for char in ",:"):
            raise LayoutError(
                f"checkout path {layout.repo} contains ',' or ':', which overlay mount options cannot "
                "carry: use a checkout path without them"
            )
        self.layout = layout
        self.qemu_caps_seed = qemu_caps_seed
        self.seed_fence_device = seed_fence_device
        self._say = say or (lambda _text: None)
        self._launchers: dict[str, subprocess.Popen[bytes]] = {}
        # Measured by the last up(): seconds from the first node's start until all nodes were
        # online, and until the fence device was started too.
        self.online_after_s: float | None = None
        self.ready_after_s: float | None = None

    # ---- cluster lifecycle -------------------------------------------------------------------
    def up(self, *, wait: bool = True, timeout_s: float = 120.0) -> float:
        """Start a fresh cluster (leftovers of an earlier run with this prefix are removed).

        Returns the seconds from the first node's start until all nodes were online and the
        fence device started (0 when ``wait`` is false); see also ``online_after_s``.
        """
        remove_leftovers(self.layout)
        if self.layout.state_dir.exists():
            shutil.rmtree(self.layout.state_dir)
        self._prepare_shared()
        network.create(self.layout)
        cgroups.create(self.layout.cgroup_root)
        started = time.monotonic()
        for node in self.layout.node_names:
            self.start_node(node, wait=False)
        if not wait:
            return 0.0
        self.wait_online(timeout_s, expect=self.layout.node_names)
        self.online_after_s = time.monotonic() - started
        # Ready means fencing works: until the fence device is started, a crash would leave
        # the node unclean and its resources blocked.
        if not self.seed_fence_device:
            self.ready_after_s = self.online_after_s
            self._save_qemu_caps()
            return self.online_after_s
        self.wait_for(
            f"fence device {config.FENCE_DEVICE} to start",
            lambda status: bool(status.started_on(config.FENCE_DEVICE)),
            timeout_s=timeout_s,
        )
        elapsed = self.ready_after_s = time.monotonic() - started
        self._say(
            f"cluster {self.layout.prefix}: {self.layout.node_count} nodes online after "
            f"{self.online_after_s:.1f} s, fence device started after {elapsed:.1f} s"
        )
        self._save_qemu_caps()
        return elapsed

    def teardown(self, *, graceful: bool = False, purge: bool = False, timeout_s: float = 180.0) -> None:
        """Stop every node and remove every namespace and cgroup of this cluster.

        ``graceful`` first stops each node in order (pacemakerd, corosync, guests, libvirtd);
        otherwise nodes are killed (cgroup.kill takes their guests down too). Safe to call
        more than once, and on a cluster that never came up.
        """
        if graceful:
            for node in self.running_nodes(include_frozen=True):
                self._terminate(node)
            deadline = time.monotonic() + timeout_s
            while any(cgroups.procs(self.layout.cgroup(n)) for n in self.layout.node_names):
                if time.monotonic() > deadline:
                    self._say(f"cluster {self.layout.prefix}: graceful stop timed out; killing the nodes")
                    break
                time.sleep(0.1)
        remove_leftovers(self.layout)
        self._reap_launchers(timeout_s=10.0)
        if purge and self.layout.state_dir.exists():
            shutil.rmtree(self.layout.state_dir)

    # ---- nodes -------------------------------------------------------------------------------
    def start_node(self, node: str, *, wait: bool = True, timeout_s: float = 90.0) -> None:
        """Boot a node (first start, or restart after a kill or stop); its state is kept."""
        self.layout.index(node)
        if self.init_pid(node) is not None:
            raise ClusterError(f"node {node} of cluster {self.layout.prefix} is already running")
        if not network.exists(self.layout):
            raise ClusterError(
                f"the network of cluster {self.layout.prefix} does not exist: run up() (or `cluster up`) first"
            )
        group = self.layout.cgroup(node)
        cgroups.create(group)
        if cgroups.procs(group):
            raise ClusterError(f"cgroup {group} of node {node} still has processes {cgroups.procs(group)}")
        directory = self.layout.node_dir(node)
        if not (directory / "var").exists():
            self._prepare_node(node)
        plan_path = directory / "plan.json"
        plan_path.write_text(self._plan(node).to_json())
        argv = [
            "nsenter", f"--net=/run/netns/{self.layout.netns(node)}", "--",
            "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--mount-proc",
            "--propagation", "private", "--kill-child", "--",
            PYTHON, "-I", str(NODE_INIT), str(plan_path),
        ]  # fmt: skip
        self._reap_launchers(timeout_s=0.0)
        with open(directory / "init.out", "ab") as out:
            self._launchers[node] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=commands.command_env(),
            )
        deadline = time.monotonic() + 15.0
        while self.init_pid(node) is None:
            launcher = self._launchers[node]
            if launcher.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(
                    f"node {node} did not start (launcher status {launcher.returncode}); "
                    f"see {directory / 'init.out'}: {_tail(directory / 'init.out')}"
                )
            time.sleep(0.02)
        self._say(f"{node}: init running as host pid {self.init_pid(node)}")
        if wait:
            self.wait_online(timeout_s, expect=(node,))

    def _check_alive(self, node: str) -> None:
        """Raise with the node's own account when a node that was started is gone."""
        if self.init_pid(node) is not None:
            return
        directory = self.layout.node_dir(node)
        events = " | ".join(event for _, event in self.events(node)[-4:])
        raise ClusterError(
            f"node {node} of cluster {self.layout.prefix} died while starting; its last events: "
            f"{events or 'none'}; init output: {_tail(directory / 'init.out')} (see {directory})"
        )

    def stop_node(self, node: str, timeout_s: float = 180.0) -> float:
        """Graceful shutdown (SIGTERM to the node's init); returns the seconds it took."""
        started = time.monotonic()
        self._terminate(node)
        if not cgroups.wait_empty(self.layout.cgroup(node), timeout_s):
            raise ClusterError(
                f"node {node} did not stop within {timeout_s:.0f} s; see "
                f"{self.layout.node_dir(node) / 'init-events.log'}; kill it with kill_node('{node}')"
            )
        self._reap_launchers(timeout_s=5.0)
        return time.monotonic() - started

    def kill_node(self, node: str, timeout_s: float = 20.0) -> None:
        """Power cut: SIGKILL every process of the node, its QEMU guests included."""
        group = self.layout.cgroup(node)
        cgroups.kill(group)
        if not cgroups.wait_empty(group, timeout_s):
            raise ClusterError(f"node {node}: processes {cgroups.procs(group)} survived cgroup.kill of {group}")
        cgroups.thaw(group)
        self._reap_launchers(timeout_s=0.0)

    def freeze_node(self, node: str) -> None:
        """A hung machine: every process of the node stops, guests included."""
        cgroups.freeze(self.layout.cgroup(node))

    def thaw_node(self, node: str) -> None:
        cgroups.thaw(self.layout.cgroup(node))

    def cut_network(self, node: str) -> None:
        network.cut(self.layout, node)

    def restore_network(self, node: str) -> None:
        network.restore(self.layout, node)

    def kill_libvirtd(self, node: str) -> int:
        """SIGKILL the node's libvirtd (its guests keep running); returns its host PID. The
        node's init starts it again at once, as systemd would (``Restart=on-failure``)."""
        pid = self.libvirtd_pid(node)
        os.kill(pid, signal.SIGKILL)
        return pid

    def freeze_libvirtd(self, node: str) -> None:
        """A hung libvirtd (SIGSTOP): its socket still accepts, no call is answered."""
        os.kill(self.libvirtd_pid(node), signal.SIGSTOP)

    def thaw_libvirtd(self, node: str) -> None:
        os.kill(self.libvirtd_pid(node), signal.SIGCONT)

    def libvirtd_pid(self, node: str) -> int:
        """Host PID of the node's current libvirtd (from its pid file, a PID of the node)."""
        init = self.init_pid(node)
        if init is None:
            raise ClusterError(f"node {node} of cluster {self.layout.prefix} is not running")
        pid_file = Path(f"/proc/{init}/root{LIBVIRTD_PID_FILE}")
        try:
            inner = pid_file.read_text().strip()
        except OSError as error:
            raise ClusterError(f"node {node}: no libvirtd pid file ({error.strerror})") from None
        for pid in cgroups.procs(self.layout.cgroup(node)):
            if _namespace_pids(pid)[-1:] == [inner]:
                return pid
        raise ClusterError(f"node {node}: libvirtd (pid {inner} in the node) is not running")

    def restore_all(self, timeout_s: float = 90.0) -> float:
        """Undo every fault: thaw frozen nodes and libvirtds, plug cables back in, boot the
        nodes that are down (state kept); returns the seconds until all nodes were online."""
        for node in self.layout.node_names:
            if self.is_frozen(node):
                self.thaw_node(node)
            self.restore_network(node)
        for node in self.running_nodes():
            try:
                self.thaw_libvirtd(node)
            except (ClusterError, ProcessLookupError):
                pass  # restarting, or gone with its node: nothing to thaw
        for node in self.layout.node_names:
            if self.init_pid(node) is None:
                self.start_node(node, wait=False)
        return self.wait_online(timeout_s)

    def init_pid(self, node: str) -> int | None:
        """Host PID of the node's init (PID 1 of its namespace), None when the node is down."""
        for pid in cgroups.procs(self.layout.cgroup(node)):
            ids = _namespace_pids(pid)
            if len(ids) > 1 and ids[-1] == "1":
                return pid
        return None

    def is_frozen(self, node: str) -> bool:
        return cgroups.frozen(self.layout.cgroup(node))

    def running_nodes(self, *, include_frozen: bool = False) -> list[str]:
        return [
            node
            for node in self.layout.node_names
            if self.init_pid(node) is not None and (include_frozen or not self.is_frozen(node))
        ]

    def libvirt_uri(self, node: str) -> str | None:
        """The node's libvirtd from the root namespaces; None while the node is down."""
        pid = self.init_pid(node)
        return None if pid is None else self.layout.libvirt_uri(pid)

    # ---- commands inside nodes ---------------------------------------------------------------
    def nsenter_argv(self, node: str) -> list[str]:
        pid = self.init_pid(node)
        if pid is None:
            raise ClusterError(
                f"node {node} of cluster {self.layout.prefix} is not running: start it with "
                f"start_node('{node}') (or `cluster start {node}`)"
            )
        return ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--"]

    def run(self, node: str, argv: Sequence[str], timeout_s: float = 60.0, input_text: str | None = None) -> Result:
        """Run a command inside ``node``; never raises because the command failed."""
        return commands.run(
            [*self.nsenter_argv(node), *argv],
            timeout_s,
            where=node,
            input_text=input_text,
            env=NODE_ENV,
            inherit_env=False,
        )

    def check(self, node: str, argv: Sequence[str], timeout_s: float = 60.0, hint: str = "") -> Result:
        result = self.run(node, argv, timeout_s)
        if not result.ok:
            raise CommandFailed(result, hint)
        return result

    # ---- Pacemaker's view --------------------------------------------------------------------
    def status(self, node: str, timeout_s: float = 20.0) -> ClusterStatus:
        """``crm_mon`` on ``node``, parsed (XML output, never scraped text)."""
        result = self.run(node, ["crm_mon", "--output-as=xml", "--inactive"], timeout_s)
        try:
            return parse_crm_mon(result.stdout)
        except CrmMonError as error:
            raise PacemakerNotAnswering(f"Pacemaker on {node} does not answer: {error}; {result.explain()}") from None

    def wait_online(self, timeout_s: float = 90.0, expect: Sequence[str] = ()) -> float:
        """Wait until every running node sees exactly the running nodes online, and a DC.

        Nodes in ``expect`` must stay up meanwhile: if one dies, fail at once with its story.
        """
        started = time.monotonic()
        deadline = started + timeout_s
        last = "no answer yet"
        while True:
            for node in expect:
                self._check_alive(node)
            running = sorted(self.running_nodes())
            views = []
            for node in running:
                try:
                    status = self.status(node, timeout_s=10.0)
                except ClusterError as error:
                    last = str(error)
                    break
                views.append((node, status))
            if len(views) == len(running) and running:
                pending = [
                    f"{node} sees online {sorted(status.online_nodes())} with DC {status.dc}"
                    for node, status in views
                    if sorted(status.online_nodes()) != running or status.dc is None
                ]
                if not pending:
                    return time.monotonic() - started
                last = "; ".join(pending)
            if time.monotonic() > deadline:
                if not running:
                    raise ClusterError(f"cluster {self.layout.prefix}: no node is running; start one first")
                raise ClusterError(
                    f"cluster {self.layout.prefix}: running nodes {running} not all online after "
                    f"{timeout_s:.0f} s: {last}. Logs: {self.layout.state_dir}/<node>/var/log/pacemaker/"
                )
            time.sleep(0.25)

    def wait_for(
        self,
        what: str,
        condition: Callable[[ClusterStatus], bool],
        *,
        node: str | None = None,
        timeout_s: float = 60.0,
    ) -> float:
        """Poll ``crm_mon`` (on ``node``, else any running node) until ``condition`` holds."""
        started = time.monotonic()
        last = "no answer"
        while True:
            asked = node or next(iter(self.running_nodes()), None)
            if asked is not None:
                try:
                    if condition(self.status(asked, timeout_s=10.0)):
                        return time.monotonic() - started
                    last = f"not yet, as seen from {asked}"
                except ClusterError as error:
                    last = str(error)
            if time.monotonic() - started > timeout_s:
                raise ClusterError(f"timed out after {timeout_s:.0f} s waiting for {what}: {last}")
            time.sleep(0.1)

    def wait_throttle_known(self, timeout_s: float = 90.0) -> float:
        """Wait until every running node's controller has reported its load to the DC
        (pacemaker_log.throttle_known): before that, Pacemaker runs two actions at a time
        per node. About 30 s after a node's controller starts; returns the seconds waited."""
        started = time.monotonic()
        waiting = self.running_nodes()
        while waiting:
            waiting = [
                node
                for node in waiting
                if not throttle_known(self.node_log(node, LOG).read_text(errors="replace"))
            ]
            if time.monotonic() - started > timeout_s:
                raise ClusterError(f"the controllers of {waiting} did not report their load within {timeout_s:.0f} s")
            if waiting:
                time.sleep(0.5)
        return time.monotonic() - started

    # ---- files on the host side -----------------------------------------------------------
    def node_log(self, node: str, relative: str) -> Path:
        """A file under the node's /var, seen from the host (e.g. ``log/pacemaker/pacemaker.log``)."""
        return self.layout.node_dir(node) / "var" / relative

    def fence_records(self) -> list[FenceRecord]:
        """Every action of the test fence agent on any node, oldest first."""
        records: list[FenceRecord] = []
        for node in self.layout.node_names:
            try:
                records += parse_fence_log(self.node_log(node, "log/pacemaker/fence_xenha_test.log").read_text())
            except FileNotFoundError:
                continue
        return sorted(records, key=lambda record: record.wall_time)

    def events(self, node: str) -> list[tuple[float, str]]:
        """The node init's progress: (unix time, event) pairs."""
        try:
            text = (self.layout.node_dir(node) / "init-events.log").read_text()
        except FileNotFoundError:
            return []
        pairs = []
        for line in text.splitlines():
            stamp, _, event = line.partition(" ")
            pairs.append((float(stamp), event))
        return pairs

    # ---- preparation ---------------------------------------------------------------------------
    def _prepare_shared(self) -> None:
        layout = self.layout
        etc = layout.etc_dir
        (etc / "corosync").mkdir(parents=True)
        (etc / "corosync" / "corosync.conf").write_text(config.corosync_conf(layout))
        (etc / "hosts").write_text(config.etc_hosts(layout))
        (etc / "passwd").write_text(config.etc_passwd(Path("/etc/passwd").read_text()))
        (etc / "group").write_text(config.etc_group(Path("/etc/group").read_text()))
        for path in (etc / "hosts", etc / "passwd", etc / "group", etc / "corosync" / "corosync.conf"):
            path.chmod(0o644)
        layout.san_dir.mkdir(parents=True)
        ocf = layout.ocf_layer / OCF_PROVIDER
        ocf.mkdir(parents=True)
        for agent in sorted(layout.agents_dir.iterdir()):
            if agent.is_file() and os.access(agent, os.X_OK):
                (ocf / agent.name).symlink_to(agent)
        layout.sbin_layer.mkdir(parents=True)
        (layout.sbin_layer / config.FENCE_AGENT).symlink_to(FENCE_AGENT)

    def _prepare_node(self, node: str) -> None:
        directory = self.layout.node_dir(node)
        var = directory / "var"
        (directory / ".var-work").mkdir(parents=True)
        var.mkdir()
        for relative in PRIVATE_VAR_DIRS + PRIVATE_VAR_SUBDIRS:
            _mirror_dirs(Path("/var"), var, relative)
        for relative in PRIVATE_VAR_DIRS:
            os.setxattr(var / relative, "trusted.overlay.opaque", b"y")
        cib = var / "lib" / "pacemaker" / "cib" / "cib.xml"
        cib.write_text(config.seed_cib(self.layout, self.seed_fence_device))
        shutil.chown(cib, "hacluster", "haclient")
        cib.chmod(0o600)
        if self.qemu_caps_seed is not None and self.qemu_caps_seed.is_dir():
            shutil.copytree(self.qemu_caps_seed, var / "cache" / "libvirt" / "qemu" / "capabilities")
        etc_libvirt = directory / "etc-libvirt"
        shutil.copytree("/etc/libvirt", etc_libvirt)
        (etc_libvirt / "libvirtd.conf").write_text(config.libvirtd_conf(self.layout, node))
        (etc_libvirt / "qemu.conf").write_text(config.QEMU_CONF)
        (directory / "root").mkdir(mode=0o700)

    def _plan(self, node: str) -> NodePlan:
        layout, directory = self.layout, self.layout.node_dir(node)
        name = f"{layout.prefix}-{node}"
        etc = layout.etc_dir
        mounts = (
            Mount("tmpfs", "/dev/shm", f"{name}-shm", "mode=1777,size=256m"),  # libqb IPC
            Mount("tmpfs", "/run", f"{name}-run", "mode=755,size=64m"),
            Mount("overlay", "/var", f"{name}-var",
                  f"lowerdir=/var,upperdir={directory / 'var'},workdir={directory / '.var-work'}"),
            Mount("bind", "/etc/passwd", str(etc / "passwd")),
            Mount("bind", "/etc/group", str(etc / "group")),
            Mount("bind", "/etc/hosts", str(etc / "hosts")),
            Mount("bind", "/etc/corosync", str(etc / "corosync")),
            Mount("bind", "/etc/libvirt", str(directory / "etc-libvirt")),
            Mount("bind", "/root", str(directory / "root")),
            Mount("overlay", "/usr/sbin", f"{name}-sbin", f"lowerdir={layout.sbin_layer}:/usr/sbin"),
            Mount("overlay", "/usr/lib/ocf/resource.d", f"{name}-ocf",
                  f"lowerdir={layout.ocf_layer}:/usr/lib/ocf/resource.d"),
        )  # fmt: skip
        run_dirs = (
            RunDir("/run/lock", 0o1777),
            RunDir("/run/resource-agents", 0o755),
            RunDir("/run/crm", 0o750, "hacluster:haclient"),
            RunDir("/run/libvirt", 0o755),
        )
        return NodePlan(
            name=node,
            cgroup=str(layout.cgroup(node)),
            events_log=str(directory / "init-events.log"),
            mounts=mounts,
            run_dirs=run_dirs,
            daemon_env={"PCMK_logfile": "/var/log/pacemaker/pacemaker.log", "PCMK_logfacility": "none"},
        )

    def _save_qemu_caps(self) -> None:
        """Keep node1's capabilities cache for later runs (libvirtd answers in 0.5 s, not 2-8 s).

        Also replaces a seed that libvirt found outdated (it re-probed and wrote a new cache),
        e.g. one written by a libvirtd that ran on another CPU (see node_init.py).
        """
        seed = self.qemu_caps_seed
        if seed is None:
            return
        probed = self.node_log(self.layout.node_names[0], "cache/libvirt/qemu/capabilities")
        fresh = {path.name: path.read_bytes() for path in probed.glob("*.xml")}
        if not fresh:
            return
        if seed.is_dir() and {path.name: path.read_bytes() for path in seed.glob("*.xml")} == fresh:
            return
        staging = seed.with_name(f"{seed.name}.{os.getpid()}.new")
        retired = seed.with_name(f"{seed.name}.{os.getpid()}.old")
        shutil.copytree(probed, staging)
        try:
            if seed.exists():
                seed.rename(retired)
            staging.rename(seed)
            self._say(f"saved the qemu capabilities cache of {self.layout.node_names[0]} to {seed}")
        except OSError:
            pass  # another run replaced it at the same moment: theirs is as good
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(retired, ignore_errors=True)

    def _terminate(self, node: str) -> None:
        pid = self.init_pid(node)
        if pid is None:
            return
        cgroups.thaw(self.layout.cgroup(node))
        os.kill(pid, signal.SIGTERM)

    def _reap_launchers(self, timeout_s: float) -> None:
        """Collect the launchers (nsenter/unshare) of nodes that are down; ``timeout_s`` bounds
        the wait for those whose node has just stopped."""
        deadline = time.monotonic() + timeout_s
        for node, launcher in list(self._launchers.items()):
            if self.init_pid(node) is not None:
                continue
            while launcher.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if launcher.returncode is not None:
                del self._launchers[node]


def remove_leftovers(layout: ClusterLayout) -> None:
    """Kill and remove everything named after ``layout.prefix``: node cgroups (with every
    process in them, QEMU included) and network namespaces. Nothing else is touched."""
    cgroups.remove(layout.cgroup_root)
    network.remove(layout)


def _namespace_pids(pid: int) -> list[str]:
    """The PIDs of a process in each PID namespace, outermost first (empty when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return []
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return line.split()[1:]
    return []


def _mirror_dirs(lower: Path, upper: Path, relative: str) -> None:
    """Create ``upper/relative`` and its parents with the owner and mode of ``lower/relative``."""
    parts = Path(relative).parts
    for depth in range(1, len(parts) + 1):
        sub = Path(*parts[:depth])
        target = upper / sub
        if target.exists():
            continue
        target.mkdir()
        try:
            info = (lower / sub).stat()
        except FileNotFoundError:
            target.chmod(0o755)
            continue
        os.chown(target, info.st_uid, info.st_gid)
        target.chmod(info.st_mode & 0o7777)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"
