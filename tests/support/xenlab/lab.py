"""Xen hosts as QEMU VMs on this machine: boot them, reach their dom0s, tear them down.

Each host is a QEMU/TCG VM (KVM dies in Xen's early boot here) running Debian's Xen 4.17
with a Debian 12 dom0 from the cached image (``image.py``), on a qcow2 overlay thrown away
at teardown. The hosts share:

- the lab network: a QEMU socket netdev on 127.0.0.1 between the VMs (10.99.0.N,
  ``xenhostN``), nothing else on it;
- the SAN: one directory of this machine (``run/san``) mounted by every dom0 at
  ``/srv/san`` over virtio-9p, holding the guests' kernel, initramfs and domain XML, and
  the CIB file that plays the cluster;
- in cluster mode (``start_lab(..., cluster=True)``, ``cluster.py``): a raw file of this
  machine attached to every VM as a shared virtio disk (SBD's), and a watchdog per VM
  whose expiry powers the VM off (``docs/decisions/xen-cluster.md``).

The harness reaches each dom0 by ssh through QEMU's user-mode NIC (``restrict=on``: the VM
reaches nothing; only a forwarded port on 127.0.0.1 reaches it). Everything a run creates
lives in ``build/xenlab/run``; teardown stops the processes this module started, by pid,
and removes that directory. A test session gets its lab from :func:`session_lab` (booted
with dist/'s .deb, or the one ``XENLAB_ATTACH=1`` finds left up).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.xenlab.image import Image, ensure_image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
BUILD = REPO / "build" / "xenlab"
CPU_MODEL = "Haswell-noTSX-IBRS"  # boots Xen under TCG and satisfies libvirt's libxl driver
BOOT_TIMEOUT_S = 900.0  # TCG on a shared 2-core machine: generous, and proven by READY
SBD_DISK_SERIAL = "xenlab-sbd"  # how a dom0 finds the shared SBD disk (/sys/block/vd*/serial)
SBD_DISK_MIB = 8  # SBD's header and 255 slots need far less


class LabError(RuntimeError):
    """The lab could not be brought up (names the host and where its console log is)."""


@dataclass(frozen=True)
class HostConfig:
    memory_mib: int = 1536
    dom0_mem_mib: int | None = 768  # None: no dom0_mem on Xen's line (libvirt autoballoons)
    vcpus: int = 2


@dataclass
class Timings:
    image_build_s: float = 0.0
    boot_s: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0

    def lines(self) -> list[str]:
        image = f"built in {self.image_build_s:.0f} s" if self.image_build_s else "cached"
        out = [f"root filesystem image: {image}"]
        out += [f"{name}: ready {seconds:.0f} s after QEMU started" for name, seconds in self.boot_s.items()]
        out.append(f"lab up in {self.total_s:.0f} s")
        return out


@dataclass
class XenHost:
    """One Xen host: its QEMU process, its console log, and ssh into its dom0."""

    index: int
    config: HostConfig
    run_dir: Path
    ssh_port: int
    process: subprocess.Popen[bytes] | None = None
    ssh_master: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"xenhost{self.index}"

    @property
    def address(self) -> str:
        """The dom0's address on the lab network."""
        return f"10.99.0.{self.index}"

    @property
    def console_log(self) -> Path:
        return self.run_dir / f"{self.name}.console.log"

    @property
    def control_path(self) -> Path:
        return self.run_dir / f"{self.name}.ssh"

    @property
    def qemu_pid(self) -> int | None:
        """The pid of this host's QEMU: ours, or the one recorded by the run that left the lab up."""
        if self.process is not None:
            return self.process.pid
        record = self.run_dir / "pids.json"
        pids: dict[str, int] = json.loads(record.read_text()) if record.exists() else {}
        return pids.get(f"{self.name} qemu")

    def qemu_running(self) -> bool:
        """Whether this host's QEMU process still exists (it exits when the VM powers off or
        reboots: the lab runs ``-no-reboot``)."""
        if self.process is not None:
            return self.process.poll() is None
        pid = self.qemu_pid
        if pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        return str(self.run_dir).encode() in cmdline and "State:\tZ" not in status

    def ssh_argv(self, multiplexed: bool = True) -> list[str]:
        options = [
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "ServerAliveInterval=15",
            "-i", str(self.run_dir / "id_lab"), "-p", str(self.ssh_port),
        ]  # fmt: skip
        if multiplexed:
            options += ["-o", f"ControlPath={self.control_path}"]
        return ["ssh", *options, "root@127.0.0.1"]

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the dom0 (as root, with ``env`` added); never raises on its exit code."""
        assignments = [f"{key}={value}" for key, value in (env or {}).items()]
        remote = shlex.join(["env", *assignments, *argv]) if assignments else shlex.join(argv)
        return subprocess.run(
            [*self.ssh_argv(), "--", remote],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def sh(self, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], timeout=timeout)

    def check(self, script: str, timeout: float = 120) -> str:
        """stdout of ``sh -c script`` in the dom0; raises naming the host when it fails."""
        done = self.sh(script, timeout)
        if done.returncode != 0:
            raise LabError(f"{self.name}: `{script}` failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return done.stdout


@dataclass
class Lab:
    """Two (or more) Xen hosts on a private network, sharing the SAN directory."""

    hosts: list[XenHost]
    run_dir: Path
    image: Image
    timings: Timings
    lab_port: int = 0  # host 1's QEMU listens on it for the lab network; the others connect
    cluster: bool = False  # the shared SBD disk and a watchdog per host (cluster.py)
    attached: bool = False  # left up by another run (attach_lab): not this run's to stop

    @property
    def sbd_disk(self) -> Path:
        """The shared SBD disk as this machine sees it (cluster mode only)."""
        return self.run_dir / "sbd.img"

    @property
    def san(self) -> Path:
        """The shared storage as this machine sees it; the dom0s see it at ``/srv/san``."""
        return self.run_dir / "san"

    def host(self, name: str) -> XenHost:
        return next(host for host in self.hosts if host.name == name)

    def how_to_reach(self) -> list[str]:
        lines = [f"{host.name}: {shlex.join(host.ssh_argv(multiplexed=False))}" for host in self.hosts]
        lines.append(f"consoles: {self.run_dir}/xenhost*.console.log; shared storage: {self.san} (/srv/san)")
        lines.append("stop it: make xen-lab-down")
        return lines


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc (a probe connection
    would be taken by QEMU's socket netdev as its peer)."""
    wanted = f"0100007F:{port:04X}"
    for table in ("/proc/net/tcp",):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":
                return True
    return False


def _stop_process(process: subprocess.Popen[bytes] | None, grace_s: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def stop_recorded(run_dir: Path) -> list[str]:
    """Stop the processes a lab recorded in ``run_dir/pids.json`` (one left up by KEEP=1 or a
    killed session) and remove the directory. Only pids whose command line still names the
    run directory are signalled, so a recycled pid is never hit."""
    stopped: list[str] = []
    record = run_dir / "pids.json"
    if record.exists():
        for name, pid in json.loads(record.read_text()).items():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(run_dir).encode() not in cmdline:
                continue
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
            stopped.append(f"{name} (pid {pid})")
    shutil.rmtree(run_dir, ignore_errors=True)
    return stopped


def _record_pids(lab_dir: Path, hosts: Sequence[XenHost]) -> None:
    """Add the pids of ``hosts``' processes to the record (a host booted again by a session
    that attached to the lab replaces its own entries; the others' stay)."""
    record = lab_dir / "pids.json"
    pids: dict[str, int] = json.loads(record.read_text()) if record.exists() else {}
    for host in hosts:
        if host.process is not None:
            pids[f"{host.name} qemu"] = host.process.pid
        if host.ssh_master is not None:
            pids[f"{host.name} ssh"] = host.ssh_master.pid
    record.write_text(json.dumps(pids))


def attach_lab(build: Path = BUILD) -> Lab | None:
    """The lab left up by ``make xen-lab KEEP=1``, if its dom0s still answer (for working on
    the tests without booting for every run: XENLAB_ATTACH=1)."""
    record = build / "run" / "lab.json"
    if not record.exists():
        return None
    saved = json.loads(record.read_text())
    hosts = [XenHost(index, HostConfig(), build / "run", port) for index, port in saved["ssh_ports"]]
    lab = Lab(
        hosts, build / "run", Image(Path(saved["image"])), Timings(), saved.get("lab_port", 0), saved.get("cluster", False),
        attached=True,
    )  # fmt: skip
    if any(not host.control_path.exists() or host.sh("test -e /run/xenlab-ready", 30).returncode for host in hosts):
        return None
    return lab


def _qemu_argv(host: XenHost, lab: Lab) -> list[str]:
    image, lab_port, count, listen = lab.image, lab.lab_port, len(lab.hosts), host.index == 1
    xen_line = "console=com1 loglvl=info"
    if host.config.dom0_mem_mib is not None:
        xen_line += f" dom0_mem={host.config.dom0_mem_mib}M,max:{host.config.dom0_mem_mib}M"
    dom0_line = (
        f"console=hvc0 root=/dev/vda rw init=/sbin/xenlab-boot quiet xenlab.host={host.index} xenlab.hosts={count}"
    )
    lab_netdev = f"listen=127.0.0.1:{lab_port}" if listen else f"connect=127.0.0.1:{lab_port}"
    mac_suffix = f"{host.index:02x}"
    return [
        "qemu-system-x86_64", "-name", host.name, "-accel", "tcg", "-cpu", CPU_MODEL,
        "-smp", str(host.config.vcpus), "-m", str(host.config.memory_mib),
        "-nodefaults", "-display", "none", "-vga", "none", "-no-reboot",
        "-serial", f"file:{host.console_log}",
        "-kernel", str(image.xen), "-append", xen_line,
        "-initrd", f"{image.kernel} {dom0_line},{image.initrd}",
        "-drive", f"file={host.run_dir / (host.name + '.qcow2')},if=virtio,format=qcow2",
        "-virtfs", f"local,path={host.run_dir / 'share'},mount_tag=xenlab,security_model=none,readonly=on,id=xenlab",
        "-virtfs", f"local,path={host.run_dir / 'san'},mount_tag=san,security_model=none,id=san",
        "-netdev", f"user,id=ctl,restrict=on,hostfwd=tcp:127.0.0.1:{host.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=ctl,mac=52:54:00:98:00:{mac_suffix}",
        "-netdev", f"socket,id=lab,{lab_netdev}",
        "-device", f"virtio-net-pci,netdev=lab,mac=52:54:00:99:00:{mac_suffix}",
        *(_cluster_devices(lab) if lab.cluster else []),
    ]  # fmt: skip


def _cluster_devices(lab: Lab) -> list[str]:
    """The shared SBD disk and the watchdog of a cluster host.

    The disk is one raw file opened by every VM, on a PCI slot after the root disk's (QEMU
    places ``if=virtio`` drives after ``-device`` ones: the root disk must stay /dev/vda): no host cache (``directsync``: SBD's slots
    are read by the other host, so every write must reach the file at once), QEMU's image
    locking off and ``share-rw`` on (two VMs write it, as two hosts write a shared LUN).
    The watchdog is the i6300esb that QEMU emulates, driven by dom0's ``i6300esb`` module;
    at its expiry QEMU powers the VM off, and with ``-no-reboot`` an exited QEMU is how the
    harness sees a host fenced (why this watchdog: docs/decisions/xen-cluster.md).
    """
    return [
        "-drive", f"file={lab.sbd_disk},if=none,id=sbd,format=raw,cache=directsync,file.locking=off",
        "-device", f"virtio-blk-pci,drive=sbd,share-rw=on,serial={SBD_DISK_SERIAL},addr=0x10",
        "-device", "i6300esb,addr=0x11", "-action", "watchdog=poweroff",
    ]  # fmt: skip


def _prepare_run_dir(run_dir: Path, image: Image, debs: Sequence[Path]) -> None:
    share = run_dir / "share"
    (share / "debs").mkdir(parents=True)
    (share / "ssh").mkdir()
    for deb in debs:
        shutil.copyfile(deb, share / "debs" / deb.name)
    shutil.copyfile(HERE / "dom0-init.sh", share / "dom0-init.sh")
    (share / "dom0-init.sh").chmod(0o755)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xenlab", "-f", str(run_dir / "id_lab")],
        check=True,
        capture_output=True,
    )
    shutil.copyfile(run_dir / "id_lab.pub", share / "ssh" / "authorized_keys")
    san = run_dir / "san"
    (san / "guests").mkdir(parents=True)
    shutil.copyfile(image.kernel, san / "vmlinuz")
    shutil.copyfile(image.guest_initrd, san / "guest-initrd.gz")


def _wait_ready(host: XenHost, started: float, deadline: float) -> float:
    while time.monotonic() < deadline:
        text = host.console_log.read_text(errors="replace") if host.console_log.exists() else ""
        if "XENLAB READY" in text:
            return time.monotonic() - started
        if "XENLAB FAILED" in text or "Kernel panic" in text or "Panic on CPU" in text:
            failure = next(line for line in text.splitlines() if "FAILED" in line or "anic" in line)
            raise LabError(f"{host.name} did not come up: {failure.strip()} (console: {host.console_log})")
        if host.process is not None and host.process.poll() is not None:
            raise LabError(f"{host.name}: QEMU exited with {host.process.returncode} (console: {host.console_log})")
        time.sleep(1)
    raise LabError(f"{host.name} not ready after {BOOT_TIMEOUT_S:.0f} s (console: {host.console_log})")


def _open_ssh(host: XenHost) -> None:
    """A master connection that every command reuses: one handshake per host, not per command."""
    host.ssh_master = subprocess.Popen(
        [*host.ssh_argv(), "-M", "-N"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    for _ in range(120):
        if host.control_path.exists():
            return
        if host.ssh_master.poll() is not None:
            assert host.ssh_master.stderr is not None
            raise LabError(f"{host.name}: ssh to its dom0 failed: {host.ssh_master.stderr.read().decode()[-300:]}")
        time.sleep(0.5)
    raise LabError(f"{host.name}: no ssh master connection after 60 s")


def start_lab(
    debs: Sequence[Path],
    count: int = 2,
    config: HostConfig | None = None,
    build: Path = BUILD,
    cluster: bool = False,
) -> Lab:
    """Boot ``count`` Xen hosts in parallel and return when every dom0 is ready over ssh.

    ``debs``: the project's packages, installed in each dom0 at boot. ``cluster``: attach the
    shared SBD disk and a watchdog to every host (``cluster.py`` forms the cluster). A lab
    left behind by an earlier run is stopped first. On failure everything started is
    stopped again.
    """
    if count not in (1, 2):
        raise ValueError("the lab network (a QEMU socket netdev) joins one or two hosts")
    if not debs:
        raise LabError("no xenha .deb to install in the dom0s: run `make packages` (dist/) first")
    begun = time.monotonic()
    run_dir = build / "run"
    stop_recorded(run_dir)
    image, build_s = ensure_image(build / "cache", build / "image.log")
    run_dir.mkdir(parents=True)
    _prepare_run_dir(run_dir, image, debs)
    hosts = [XenHost(index, config or HostConfig(), run_dir, _free_port()) for index in range(1, count + 1)]
    lab = Lab(hosts, run_dir, image, Timings(image_build_s=build_s), _free_port(), cluster)
    if cluster:
        with lab.sbd_disk.open("wb") as disk:
            disk.truncate(SBD_DISK_MIB << 20)
    try:
        started: dict[str, float] = {}
        for host in hosts:
            started[host.name] = _launch(lab, host)
            if host.index == 1 and count > 1:
                for _ in range(100):
                    if _listening(lab.lab_port):
                        break
                    time.sleep(0.1)
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        for host in hosts:
            lab.timings.boot_s[host.name] = _wait_ready(host, started[host.name], deadline)
            _open_ssh(host)
            _record_pids(run_dir, hosts)
    except BaseException:
        stop_lab(lab, keep_logs=True)
        raise
    lab.timings.total_s = time.monotonic() - begun
    (run_dir / "lab.json").write_text(
        json.dumps({
            "image": str(image.directory),
            "ssh_ports": [[host.index, host.ssh_port] for host in hosts],
            "lab_port": lab.lab_port,
            "cluster": cluster,
        })
    )  # fmt: skip
    return lab


def _launch(lab: Lab, host: XenHost) -> float:
    """Start ``host``'s QEMU on a fresh overlay of the image; returns when it started (monotonic)."""
    overlay = lab.run_dir / f"{host.name}.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(lab.image.disk), "-F", "raw", str(overlay)],
        check=True, capture_output=True,
    )  # fmt: skip
    if host.console_log.exists():  # a host booted again: its earlier console stays for the post-mortem
        boots = len(list(lab.run_dir.glob(f"{host.name}.console.*.log")))
        host.console_log.rename(lab.run_dir / f"{host.name}.console.{boots + 1}.log")
    host.process = subprocess.Popen(_qemu_argv(host, lab), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=(lab.run_dir / f"{host.name}.qemu.err").open("wb"))  # fmt: skip
    _record_pids(lab.run_dir, lab.hosts)
    return time.monotonic()


def restart_host(lab: Lab, host: XenHost) -> float:
    """Boot ``host`` again after its QEMU exited (crashed, fenced, powered off by its
    watchdog), on a fresh overlay as a replaced machine would come back; returns the seconds
    until its dom0 was ready over ssh. Only a host that connects to the lab network (not
    host 1, which listens for it) can come back: QEMU's listening socket netdev takes a new
    peer after the old one vanished, a new listener would have none."""
    if host.qemu_running():
        raise LabError(f"{host.name}: its QEMU (pid {host.qemu_pid}) still runs; crash or stop it first")
    if host.index == 1 and len(lab.hosts) > 1:
        raise LabError("xenhost1 listens for the lab network: it cannot rejoin a running lab; restart the lab")
    _stop_process(host.ssh_master)
    host.control_path.unlink(missing_ok=True)
    if host.process is not None:
        host.process.wait(10)
    started = _launch(lab, host)
    ready = _wait_ready(host, started, time.monotonic() + BOOT_TIMEOUT_S)
    _open_ssh(host)
    _record_pids(lab.run_dir, lab.hosts)
    return ready


def stop_lab(lab: Lab, keep_logs: bool = False) -> None:
    """Stop every process the lab started and remove its run directory (the consoles are
    copied to build/xenlab/logs first when ``keep_logs``, for a failed run's post-mortem)."""
    for host in lab.hosts:
        _stop_process(host.ssh_master)
    for host in lab.hosts:
        _stop_process(host.process)
    if keep_logs:
        logs = lab.run_dir.parent / "logs"
        logs.mkdir(exist_ok=True)
        for log in lab.run_dir.glob("*.log"):
            shutil.copyfile(log, logs / log.name)
    stop_recorded(lab.run_dir)


@contextmanager
def session_lab(
    make_target: str, count: int = 2, config: HostConfig | None = None, cluster: bool = False
) -> Iterator[Lab]:
    """The lab for one test session: booted with the newest xenha .deb in dist/, its timings
    printed, stopped at the end with its consoles kept in build/xenlab/logs.

    ``make_target``: the make target that builds the .deb and runs these tests (named when
    dist/ has none). With ``XENLAB_ATTACH=1`` a lab left up by ``make xen-lab KEEP=1`` is
    used instead, if its dom0s answer (and, for ``cluster``, it was booted in cluster mode);
    it is never stopped here (``lab.attached``): whoever left it up stops it.
    """
    debs = sorted((REPO / "dist").glob("xenha-agents_*.deb"))
    if not debs:
        raise LabError(f"no xenha .deb in dist/: run these tests with `make {make_target}` (it builds them)")
    if os.environ.get("XENLAB_ATTACH") == "1":
        attached = attach_lab()
        if attached is not None and (attached.cluster or not cluster):
            yield attached
            return
    lab = start_lab(debs[-1:], count=count, config=config, cluster=cluster)
    print("\n".join(f"xenlab: {line}" for line in lab.timings.lines()))
    try:
        yield lab
    finally:
        stop_lab(lab, keep_logs=True)
