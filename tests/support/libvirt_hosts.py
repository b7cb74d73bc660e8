"""Real libvirtd "hosts" for tests: one libvirtd per host, each in private namespaces.

Each host gets its own mount and UTS namespace (private /etc/libvirt, /run/libvirt,
/var/lib/libvirt, ... bind-mounted from a per-host directory) and, when the hosts are
networked, its own network namespace on a private bridge. From the test process a host is
reached through its unix socket (``qemu+unix:///system?socket=...``); inside its namespaces
with ``qemu:///system``, and from the other hosts with ``qemu+tcp://<name>/system``.

Everything is named after a prefix so that concurrent runs do not collide, and
:func:`teardown` removes what was created: guests, daemons, namespaces, mount points.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import commands, mountpoints

HARNESS_DIR = Path(__file__).resolve().parent
MOUNT_POINTS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt")
PASSWD_EXTRA = "libvirt-qemu:x:64055:64055:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n"
GROUP_EXTRA = ("libvirt-qemu:x:64055:\n", "kvm:x:64056:\n")
QEMU_CONF = """\
# libvirtd of a test host: no virtlogd, no cgroups, no relabelling (no systemd on this machine)
user = "root"
group = "root"
stdio_handler = "file"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
"""


@dataclass
class LibvirtHost:
    name: str
    directory: Path
    address: str | None
    netns: str | None
    host_uuid: str

    @property
    def socket(self) -> str:
        return str(self.directory / "run" / "libvirt-sock")

    @property
    def qemu_uri(self) -> str:
        """The host's qemu driver, reached from the test process."""
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def test_uri(self) -> str:
        """The host's test driver; its state lives as long as one connection stays open."""
        return f"test+unix:///default?socket={self.socket}"

    def init_pid(self) -> int | None:
        try:
            return int((self.directory / "init.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def libvirtd_pid(self) -> int | None:
        try:
            return int((self.directory / "run" / "libvirtd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def nsenter_argv(self) -> list[str]:
        """Prefix that runs a command inside this host (its mount, UTS and network namespaces)."""
        pid = self.init_pid()
        if pid is None:
            raise RuntimeError(f"host {self.name} is not running")
        return ["nsenter", "-t", str(pid), "-m", "-u", *(["-n"] if self.netns else []), "--"]

    def run(self, argv: Sequence[str], timeout: float = 60) -> commands.Result:
        """Run a command inside this host; never raises because the command failed."""
        return commands.run([*self.nsenter_argv(), *argv], timeout, where=self.name)


class HostSet:
    """A group of hosts created together under one prefix."""

    def __init__(self, prefix: str, base_dir: Path, networked: bool) -> None:
        self.prefix = prefix
        self.base_dir = base_dir
        self.networked = networked
        self.hosts: dict[str, LibvirtHost] = {}
        self._switch = f"{prefix}-sw" if networked else None

    # ---- setup -------------------------------------------------------------------------------
    def start(self, names: Sequence[str], qemu_caps_seed: Path | None = None) -> None:
        teardown_prefix(self.prefix)  # whatever an interrupted earlier run left behind
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_shared(names)
        mountpoints.acquire(MOUNT_POINTS, self.prefix)
        if self.networked:
            _ip("netns", "add", self._switch)
            _ip("-n", self._switch, "link", "set", "lo", "up")
            _ip("-n", self._switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self._switch, "link", "set", "br0", "up")
        for index, name in enumerate(names, start=1):
            self.hosts[name] = self._start_host(index, name, qemu_caps_seed)
        for host in self.hosts.values():
            _wait_for(lambda host=host: os.path.exists(host.socket), 30, f"libvirtd socket of {host.name}")
        # Warm each daemon up (the first call probes or loads the qemu capabilities) so that
        # tests do not pay for it inside an agent's timeout.
        for host in self.hosts.values():
            _virsh(host.qemu_uri, "capabilities", timeout=120)
        if qemu_caps_seed is not None and not qemu_caps_seed.exists() and self.hosts:
            first = next(iter(self.hosts.values()))
            probed = first.directory / "cache" / "qemu" / "capabilities"
            if probed.is_dir():
                shutil.copytree(probed, qemu_caps_seed)

    def _prepare_shared(self, names: Sequence[str]) -> None:
        shared = self.base_dir / "shared"
        shared.mkdir(exist_ok=True)
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        if "libvirt-qemu:" not in passwd:
            passwd += PASSWD_EXTRA
        for line in GROUP_EXTRA:
            if line.split(":")[0] + ":" not in group:
                group += line
        (shared / "passwd").write_text(passwd)
        (shared / "group").write_text(group)
        hosts = ["127.0.0.1 localhost"]
        for index, name in enumerate(names, start=1):
            hosts.append(f"{self.address(index)} {name}")
        (shared / "hosts").write_text("\n".join(hosts) + "\n")

    def address(self, index: int) -> str:
        return f"10.253.0.{index}"

    def _start_host(self, index: int, name: str, qemu_caps_seed: Path | None) -> LibvirtHost:
        directory = self.base_dir / name
        if directory.exists():
            shutil.rmtree(directory)
        for sub in ("etc", "run", "lib", "cache", "log"):
            (directory / sub).mkdir(parents=True)
        host_uuid = f"5e4a0000-0000-4000-8000-{index:012d}"
        address = self.address(index) if self.networked else None
        (directory / "etc" / "qemu.conf").write_text(QEMU_CONF)
        (directory / "etc" / "libvirtd.conf").write_text(
            "\n".join(
                [
                    *libvirtd_settings(address),
                    f'host_uuid = "{host_uuid}"',
                    'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
                    # Keep idle test connections: agents open and close many.
                    "max_clients = 200",
                    "max_workers = 40",
                    "",
                ]
            )
        )  # fmt: skip
        if qemu_caps_seed is not None and qemu_caps_seed.is_dir():
            shutil.copytree(qemu_caps_seed, directory / "cache" / "qemu" / "capabilities")
        netns = None
        if self.networked:
            netns = f"{self.prefix}-{name}"
            veth = f"{self.prefix[:6]}{index}"
            _ip("netns", "add", netns)
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip(
                "-n",
                netns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                veth,
                "netns",
                self._switch,
            )
            _ip("-n", self._switch, "link", "set", veth, "master", "br0", "up")
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
        argv = [
            *(["nsenter", f"--net=/run/netns/{netns}"] if netns else []),
            "unshare", "--mount", "--uts", "--propagation", "private",
            str(HARNESS_DIR / "host-init.sh"),
        ]  # fmt: skip
        environment = dict(
            os.environ, HOST_NAME=name, HOST_DIR=str(directory), SHARED_DIR=str(self.base_dir / "shared")
        )
        with open(directory / "init.log", "w") as log:
            subprocess.Popen(
                argv,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        host = LibvirtHost(name, directory, address, netns, host_uuid)
        _wait_for(lambda: host.init_pid() is not None, 10, f"init of host {name}")
        return host

    # ---- faults -----------------------------------------------------------------------------
    def freeze_libvirtd(self, name: str) -> None:
        _signal(self.hosts[name].libvirtd_pid(), signal.SIGSTOP)

    def thaw_libvirtd(self, name: str) -> None:
        _signal(self.hosts[name].libvirtd_pid(), signal.SIGCONT)

    def shape(self, name: str, rate: str | None) -> None:
        """Limit the host's outgoing traffic (e.g. "1mbit"), or lift the limit (None)."""
        host = self.hosts[name]
        assert host.netns is not None, "only networked hosts can be shaped"
        if rate is None:
            commands.run(["ip", "netns", "exec", host.netns, "tc", "qdisc", "del", "dev", "eth0", "root"], 30)
            return
        commands.check(
            ["ip", "netns", "exec", host.netns, "tc", "qdisc", "replace", "dev", "eth0", "root",
             "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"], 30,
        )  # fmt: skip

    def restart_libvirtd(self, name: str) -> None:
        """Stop libvirtd (its guests keep running) and start a new one in the same host."""
        host = self.hosts[name]
        old = host.libvirtd_pid()
        _signal(old, signal.SIGTERM)
        _wait_for(lambda: old is not None and not _alive(old), 30, f"libvirtd of {name} to exit")
        log = open(host.directory / "libvirtd-restarted.log", "a")  # noqa: SIM115 - lives with the daemon
        subprocess.Popen(
            [*host.nsenter_argv(), "/usr/sbin/libvirtd", "--listen", "-f", "/etc/libvirt/libvirtd.conf",
             "-p", "/run/libvirt/libvirtd.pid"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        _wait_for(lambda: host.libvirtd_pid() not in (None, old) and os.path.exists(host.socket), 30,
                  f"the new libvirtd of {name}")  # fmt: skip
        _virsh(host.qemu_uri, "uri", timeout=30)

    def kill_libvirtd(self, name: str) -> None:
        """SIGKILL libvirtd; its guests keep running, as on a real host."""
        _signal(self.hosts[name].libvirtd_pid(), signal.SIGKILL)

    # ---- teardown ---------------------------------------------------------------------------
    def teardown(self) -> None:
        for host in self.hosts.values():
            _stop_host(host)
        teardown_prefix(self.prefix)
        mountpoints.release(self.prefix)


def _stop_host(host: LibvirtHost) -> None:
    pid = host.libvirtd_pid()
    if pid is not None and not _is_libvirtd(pid):
        pid = None  # a stale pid file (libvirtd was killed): the number may be someone else's now
    if pid is not None and _alive(pid):
        os.kill(pid, signal.SIGCONT)  # a frozen daemon cannot answer
        try:
            names = _virsh(host.qemu_uri, "list", "--name", timeout=10).split()
        except commands.CommandFailed:
            names = []
        for domain in names:
            try:
                _virsh(host.qemu_uri, "destroy", domain, timeout=15)
            except commands.CommandFailed:
                pass
    # QEMU processes that outlived a killed libvirtd: found through libvirt's pid files.
    for pidfile in (host.directory / "run" / "qemu").glob("*.pid"):
        try:
            qemu = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(qemu) and b"qemu-system" in Path(f"/proc/{qemu}/cmdline").read_bytes():
            os.kill(qemu, signal.SIGKILL)
    # Both, each on its own: a libvirtd started by restart_libvirtd is not a child of init,
    # and init (a subreaper) may already have exited, leaving that daemon behind.
    init = host.init_pid()
    running = [process for process in (init, pid) if process is not None and _alive(process)]
    for process in running:
        os.kill(process, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(_alive(process) for process in running) and time.monotonic() < deadline:
        time.sleep(0.05)
    for process in running:
        if _alive(process):
            os.kill(process, signal.SIGKILL)
    if init is not None and init in running:
        try:
            os.killpg(os.getpgid(init), signal.SIGKILL)  # whatever else init's session started
        except ProcessLookupError:
            pass
    try:
        (host.directory / "init.pid").unlink()
    except OSError:
        pass


def libvirtd_settings(address: str | None) -> list[str]:
    """Unix sockets without authentication, and TCP (for migrations) when the host has an address."""
    return [
        'unix_sock_group = "root"',
        'unix_sock_ro_perms = "0777"',
        'unix_sock_rw_perms = "0770"',
        'auth_unix_ro = "none"',
        'auth_unix_rw = "none"',
        "listen_tls = 0",
        f"listen_tcp = {1 if address else 0}",
        *(tcp_settings(address) if address else []),
    ]


def tcp_settings(address: str) -> list[str]:
    return [f'listen_addr = "{address}"', 'tcp_port = "16509"', 'auth_tcp = "none"']


def teardown_prefix(prefix: str) -> None:
    """Remove the network namespaces named after ``prefix`` (leftovers of an earlier run)."""
    listing = commands.run(["ip", "netns", "list"], 30).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name == f"{prefix}-sw" or name.startswith(f"{prefix}-"):
            commands.run(["ip", "netns", "del", name], 30)


def _ip(*args: str) -> None:
    commands.check(["ip", *args], 30)


def _virsh(uri: str, *args: str, timeout: float = 30) -> str:
    return commands.check(["virsh", "-q", "-c", uri, *args], timeout, where=uri).stdout


def leftover_libvirtds(base_dir: Path) -> dict[int, str]:
    """libvirtd processes still running with a host directory under ``base_dir`` mounted:
    pid -> the host directory (mounted over /etc/libvirt)."""
    marker = f"{base_dir.resolve()}/"
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not _is_libvirtd(int(entry.name)):
            continue
        try:
            mounts = (entry / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        for line in mounts:
            fields = line.split()
            mounted_here = len(fields) > 4 and fields[3].startswith(marker) and fields[4] == "/etc/libvirt"
            if mounted_here and _alive(int(entry.name)):
                found[int(entry.name)] = fields[3].removesuffix("/etc")
    return found


def _is_libvirtd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "libvirtd"
    except OSError:
        return False


def _alive(pid: int) -> bool:
    return mountpoints.alive(pid)


def _signal(pid: int | None, signum: int) -> None:
    if pid is None:
        raise RuntimeError("no libvirtd pid recorded")
    os.kill(pid, signum)


def _wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def running_hosts(prefix: str, base_dir: Path, names: Sequence[str], networked: bool,
                  qemu_caps_seed: Path | None = None) -> Iterator[HostSet]:  # fmt: skip
    """Hosts started for the duration of a ``with`` block, torn down even when it fails."""
    hosts = HostSet(prefix, base_dir, networked=networked)
    try:
        hosts.start(names, qemu_caps_seed=qemu_caps_seed)
        yield hosts
    finally:
        hosts.teardown()


def all_hosts(sets: Iterable[HostSet]) -> list[LibvirtHost]:
    return [host for host_set in sets for host in host_set.hosts.values()]
