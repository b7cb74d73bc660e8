"""Benchmarks on real Xen: moving one PV guest between two Xen 4.17 hosts of the lab.

The lab (tests/support/xenlab, docs/decisions/xen-lab.md) is booted once: two QEMU/TCG VMs
running Debian 12's Xen 4.17 and libvirt's libxl driver, xenha installed from dist/'s .deb.
Debian's Xen has no shadow paging, so a PV guest cannot live-migrate there: every move below
is the paused kind (the guest suspended for one copy of its memory). One 128 MiB PV guest,
moved back and forth; the methods alternate round by round so that a change of load on the
machine hits them alike.

1. xenha: migrate_to on the source then migrate_from on the target, as Pacemaker calls them
   (the OCF environment, a CIB file on the SAN playing the cluster), run in the dom0 by the
   installed agent.
2. The floor: a bare libvirt migration by the same method, ``virsh migrate --p2p`` without
   ``--live`` in the source dom0 (what migrate_to asks libvirt for).
3. resource-agents' ``Xen`` agent (in the dom0, from Debian's resource-agents): its
   migrate_to on the same guest defined by an xl configuration file (it runs ``xl migrate``),
   and a plain ``xl migrate``: what they do with a PV guest on Debian's Xen.
4. Host crash -> guest running elsewhere: measured by the Xen cluster's crash test on the
   two-host Pacemaker cluster; its last figures are printed here (build/bench/xen-crash-failover.json).

**Wall time** of a move: measured inside the source dom0 around the command (``date``
before and after: ssh from this machine is not counted), for xenha migrate_to plus
migrate_from (each action timed on its own too). **The guest's pause**, from outside: a
sampler in the source dom0 polls, one thread per side, at most every 100 ms, Xen's own view
of the source domain (``xl list``: paused or suspended, ``p`` or ``ss`` in its flags) and
libvirt's view of the target (over the lab network: running or not), on one clock; the pause
is from the first sample with the source stopped to the first with the guest running on the
target: the time the guest executes nowhere, what a user of the guest feels (its services do
not answer). Resolution: the sampler's real period (an ``xl list`` takes ~0.5 s under TCG),
reported. The agent's own figure (the pause it logs after a paused move) is shown beside it.

Prints markdown tables and writes them to build/bench/xen.md, the agents' own lines of each
move to build/bench/xen-moves.log (where the time goes). XENLAB_ATTACH=1 uses a lab left up
by ``make xen-lab KEEP=1``; XENHA_BENCH_ROUNDS (default 3) moves per method.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "lib"), str(REPO)]

from tests.support.cib import write_cib
from tests.support.xenlab.cluster import FAILOVER_RECORD, SBD_MSGWAIT_S, Failover
from tests.support.xenlab.guests import (
    Dom0Agent,
    DomainView,
    destroy_everywhere,
    domain_view,
    guest_agent,
    put_guest,
    pv_domain_xml,
)
from tests.support.xenlab.lab import Lab, XenHost, attach_lab, start_lab, stop_lab

ROUNDS = int(os.environ.get("XENHA_BENCH_ROUNDS", "3"))
OUT = REPO / "build" / "bench"
GUEST = "bench-pv"
MEMORY_MIB = 128
XEN_AGENT = "/usr/lib/ocf/resource.d/heartbeat/Xen"
SAMPLER_LOG = "/run/bench-pause.log"
CLUSTER_SLOT = (
    "| host crash (fenced) → guest running on another Xen host | *measured by tests/xen/test_xen_cluster.py, "
    "see docs/xen-lab-findings.md (the cluster of Xen hosts)* |"
)

# Runs in the source dom0 for one move: one clock for both sides, each side polled by its own
# thread every 100 ms at most (an `xl list` under TCG takes ~0.5 s). Prints "t side state" at
# each change, then "period <mean s of the slower side>" once the guest runs on the target.
PAUSE_SAMPLER = r"""
import subprocess, sys, threading, time, libvirt
libvirt.registerErrorHandler(lambda c, e: None, None)
name, target_uri, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
target = libvirt.open(target_uri)
begun = time.monotonic()
arrived = threading.Event()
periods = {}

def source_state():
    fields = subprocess.run(["xl", "list", name], capture_output=True, text=True).stdout.split("\n")[1:2]
    flags = fields[0].split()[4] if fields and len(fields[0].split()) >= 5 else "gone"
    return "stopped" if flags == "gone" or "p" in flags or flags[3:5] == "ss" else "running"

def target_state():
    try:
        return "running" if target.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING else "not"
    except libvirt.libvirtError:
        return "not"

def watch(side, read):
    last, samples = None, 0
    while time.monotonic() - begun < limit and not arrived.is_set():
        tick = time.monotonic()
        state = read()
        samples += 1
        if state != last:
            print("%.3f %s %s" % (tick - begun, side, state), flush=True)
            last = state
        if side == "target" and state == "running":
            arrived.set()
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    periods[side] = (time.monotonic() - begun) / max(samples, 1)

threads = [threading.Thread(target=watch, args=side) for side in (("source", source_state), ("target", target_state))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("period %.3f" % max(periods.values()), flush=True)
"""


@dataclass(frozen=True)
class Move:
    wall_s: float
    pause_s: float | None  # from outside (the sampler); None when it saw no pause
    period_s: float  # the sampler's mean period: the pause's resolution
    agent_pause_s: float | None = None  # what xenha logged
    migrate_to_s: float | None = None  # xenha's two actions, apart
    migrate_from_s: float | None = None


def timed(
    host: XenHost, command: str, env: Mapping[str, str] | None = None, timeout: float = 400
) -> tuple[int, float, str]:
    """Run ``command`` in the dom0, timed there: (exit code, seconds, its stderr+stdout)."""
    script = (
        "s=$(date +%s.%N); " + command + " >/run/bench-out 2>&1; rc=$?; e=$(date +%s.%N); "
        'cat /run/bench-out; echo "BENCH $rc $s $e"'
    )
    done = host.run(["sh", "-c", script], env=env, timeout=timeout)
    found = re.search(r"BENCH (\d+) ([0-9.]+) ([0-9.]+)", done.stdout)
    if found is None:
        raise RuntimeError(f"{host.name}: `{command}` gave no timing: {done.stdout[-500:]} {done.stderr[-500:]}")
    return int(found.group(1)), float(found.group(3)) - float(found.group(2)), done.stdout[: found.start()]


def start_sampler(source: XenHost, target: XenHost) -> None:
    argv = ["python3", "-c", PAUSE_SAMPLER, GUEST, f"xen+tcp://{target.name}/system", "300"]
    source.sh(f"rm -f {SAMPLER_LOG}; nohup {shlex.join(argv)} >{SAMPLER_LOG} 2>&1 &", timeout=30)


def sampled_pause(source: XenHost) -> tuple[float | None, float]:
    """The pause the sampler saw (first 'stopped' to first target 'running'), and its period."""
    for _ in range(60):
        text = source.sh(f"cat {SAMPLER_LOG}").stdout
        if "period" in text:
            break
        time.sleep(1)
    stopped_at = running_at = None
    period = float("nan")
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "period":
            period = float(fields[1])
        elif len(fields) == 3 and fields[2] in ("stopped", "running"):
            if fields[1] == "source" and fields[2] == "stopped" and stopped_at is None:
                stopped_at = float(fields[0])
            if fields[1] == "target" and fields[2] == "running" and running_at is None:
                running_at = float(fields[0])
    if stopped_at is None or running_at is None:
        return None, period
    return running_at - stopped_at, period


def xenha_move(agent: Dom0Agent, source: XenHost, target: XenHost) -> Move:
    """migrate_to on the source, then migrate_from on the target, as Pacemaker calls them."""
    meta = {"migrate_source": source.name, "migrate_target": target.name}
    start_sampler(source, target)
    code_to, wall_to, out_to = timed(source, "/usr/lib/ocf/resource.d/xenha/xen-guest migrate_to",
                                     agent.environment(source, 240000, meta, {}))  # fmt: skip
    code_from, wall_from, out_from = timed(target, "/usr/lib/ocf/resource.d/xenha/xen-guest migrate_from",
                                           agent.environment(target, 120000, meta, {}))  # fmt: skip
    if code_to or code_from:
        raise RuntimeError(f"xenha's move {source.name} -> {target.name} failed: {out_to[-800:]} {out_from[-800:]}")
    # Pacemaker's stop on the source after migrate_from (not timed: the guest already runs there)
    timed(source, "/usr/lib/ocf/resource.d/xenha/xen-guest stop", agent.environment(source, 60000, {}, {}))
    with (OUT / "xen-moves.log").open("a") as log:  # the agents' own lines, for where the time goes
        log.write(f"== xenha {source.name} -> {target.name}\n{out_to}{out_from}")
    logged = re.search(r"was paused for ([0-9.]+) s to move", out_to)
    pause, period = sampled_pause(source)
    return Move(wall_to + wall_from, pause, period, float(logged.group(1)) if logged else None, wall_to, wall_from)


def bare_move(source: XenHost, target: XenHost) -> Move:
    """The floor: libvirt's peer-to-peer migration without --live, as migrate_to asks for it."""
    start_sampler(source, target)
    code, wall, out = timed(source, f"virsh -c xen:///system migrate --p2p {GUEST} xen+tcp://{target.name}/system")
    if code:
        raise RuntimeError(f"bare migration {source.name} -> {target.name} failed: {out[-800:]}")
    pause, period = sampled_pause(source)
    return Move(wall, pause, period)


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def moves_benchmark(lab: Lab) -> str:
    hosts = [lab.host("xenhost1"), lab.host("xenhost2")]
    config = put_guest(lab, GUEST, pv_domain_xml(GUEST, memory_mib=MEMORY_MIB))
    write_cib(lab.san / "cib.xml", {"xenhost1": {}, "xenhost2": {}})
    agent = guest_agent(config, GUEST, force_stop="true")
    destroy_everywhere(lab, GUEST)
    for host in hosts:  # what an earlier run's agent remembered (rates, a move in flight)
        host.sh(f"rm -rf /run/xenlab-rsctmp/{GUEST}")
    started = agent.run(hosts[0], "start")
    if started.code != 0:
        raise RuntimeError(f"cannot start {GUEST}: {started.stderr[-800:]}")
    results: dict[str, list[Move]] = {"xenha": [], "bare": []}
    where = 0
    for round_number in range(ROUNDS):
        # the order flips every round, so that each method moves in both directions
        for method in ("xenha", "bare") if round_number % 2 == 0 else ("bare", "xenha"):
            source, target = hosts[where], hosts[1 - where]
            move = xenha_move(agent, source, target) if method == "xenha" else bare_move(source, target)
            results[method].append(move)
            print(f"  {method} {source.name} -> {target.name}: {move}", file=sys.stderr, flush=True)
            where = 1 - where
    agent.run(hosts[where], "stop")
    xenha, bare = results["xenha"], results["bare"]
    rows = [
        "| measure (s) | xenha migrate_to + migrate_from | bare `virsh migrate --p2p` | xenha - bare |",
        "|---|---:|---:|---:|",
        f"| wall time of the move | {spread([m.wall_s for m in xenha])} | {spread([m.wall_s for m in bare])} | "
        f"{statistics.median(m.wall_s for m in xenha) - statistics.median(m.wall_s for m in bare):+.1f} |",
    ]
    for label, attribute in (("of which migrate_to", "migrate_to_s"), ("of which migrate_from", "migrate_from_s")):
        rows.append(f"| {label} | {spread([getattr(m, attribute) for m in xenha])} | — | — |")
    seen = [[m.pause_s for m in moves if m.pause_s is not None] for moves in (xenha, bare)]
    if all(seen):
        rows.append(
            f"| guest's pause, sampled from outside | {spread(seen[0])} | {spread(seen[1])} | "
            f"{statistics.median(seen[0]) - statistics.median(seen[1]):+.1f} |"
        )
    logged = [m.agent_pause_s for m in xenha if m.agent_pause_s is not None]
    if logged:
        rows.append(f"| guest's pause, as xenha logs it | {spread(logged)} | — | — |")
    periods = [m.period_s for m in [*xenha, *bare]]
    return "\n".join([
        f"### Moving a {MEMORY_MIB} MiB PV guest between two Xen hosts (paused: no shadow paging), "
        f"median (min-max) of {ROUNDS} moves each",
        "",
        *rows,
        "",
        f"The sampler's period (the pause's resolution): {statistics.median(periods):.2f} s median.",
        "",
    ])  # fmt: skip


XL_CONFIG = """name = "{name}"
type = "pv"
memory = {memory}
vcpus = 1
kernel = "/srv/san/vmlinuz"
ramdisk = "/srv/san/guest-initrd.gz"
extra = "console=hvc0 quiet"
"""


def xen_agent_benchmark(lab: Lab) -> str:
    """resource-agents' Xen agent: its migrate_to (``xl migrate``) of the same PV guest."""
    source, target = lab.host("xenhost1"), lab.host("xenhost2")
    destroy_everywhere(lab, GUEST)
    (lab.san / "guests" / f"{GUEST}.cfg").write_text(XL_CONFIG.format(name=GUEST, memory=MEMORY_MIB))
    xmfile = f"/srv/san/guests/{GUEST}.cfg"
    # xl migrate reaches the target over ssh as root: the lab's key, for this run only
    for host in (source, target):
        host.run(["sh", "-c", "umask 077; mkdir -p /root/.ssh; cat >/root/.ssh/id_ed25519; printf "
                  "'StrictHostKeyChecking no\\nUserKnownHostsFile /dev/null\\nLogLevel ERROR\\n' >/root/.ssh/config"],
                 input_text=(lab.run_dir / "id_lab").read_text())  # fmt: skip
    env = {
        "OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": GUEST, "OCF_RESKEY_xmfile": xmfile,
        "OCF_RESKEY_name": GUEST, "OCF_RESKEY_CRM_meta_timeout": "240000", "OCF_RESKEY_shutdown_timeout": "5",
        "OCF_RESKEY_CRM_meta_migrate_source": source.name, "OCF_RESKEY_CRM_meta_migrate_target": target.name,
        "HA_RSCTMP": "/run/resource-agents", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }  # fmt: skip
    code, _, out = timed(source, f"{XEN_AGENT} start", env)
    if code:
        raise RuntimeError(f"the Xen agent cannot start {GUEST}: {out[-800:]}")
    first_id = domain_view(source, GUEST).xl_id
    code, wall, out = timed(source, f"{XEN_AGENT} migrate_to", env)
    after, there = domain_view(source, GUEST), domain_view(target, GUEST)
    monitor, _, _ = timed(source, f"{XEN_AGENT} monitor", env)
    plain, plain_wall, plain_out = timed(source, f"xl migrate {GUEST} {target.name}")
    after_plain, there_plain = domain_view(source, GUEST), domain_view(target, GUEST)
    timed(source, f"{XEN_AGENT} stop", env)
    destroy_everywhere(lab, GUEST)

    def key_lines(output: str) -> str:
        wanted = ("logdirty", "failed", "ERROR")
        return " / ".join(line.strip() for line in output.splitlines() if any(word in line for word in wanted))

    def afterwards(view_source: DomainView, view_target: DomainView) -> str:
        on_source = (
            f"runs on the source (domain id {view_source.xl_id}, {'same' if view_source.xl_id == first_id else 'new'}"
            f" id, xl flags `{view_source.xl_flags}`)" if view_source.xl_id is not None else "gone from the source"
        )
        return on_source + ("; nothing on the target" if view_target.xl_id is None else "; **also on the target**")

    return "\n".join([
        f"### resource-agents' `Xen` agent and `xl migrate`, the same {MEMORY_MIB} MiB PV guest (one attempt each)",
        "",
        "| what | exit code | time to the answer (s) | the guest afterwards |",
        "|---|---:|---:|---|",
        f"| `Xen` agent migrate_to (runs `xl migrate`) | {code} | {wall:.1f} | {afterwards(after, there)}; "
        f"the agent's monitor there: {monitor} |",
        f"| plain `xl migrate {GUEST} xenhost2` | {plain} | {plain_wall:.1f} | "
        f"{afterwards(after_plain, there_plain)} |",
        "",
        f"The `Xen` agent's migrate_to said: `{key_lines(out)}`",
        "",
        f"`xl migrate` said: `{key_lines(plain_out)}`",
        "",
    ])  # fmt: skip


DOMAIN0_READ = r"""
import statistics, time, libvirt
connection = libvirt.open("xen:///system")
times = []
for _ in range(20):
    begun = time.perf_counter()
    connection.lookupByID(0).info()
    times.append(time.perf_counter() - begun)
print("%.1f %.1f %.1f" % (statistics.median(times) * 1000, min(times) * 1000, max(times) * 1000))
"""


def host_monitor_benchmark(lab: Lab) -> str:
    """What xen-host's monitor costs with its Domain-0 read (default reserve) and without it
    (host_memory_reserve set to the same figure, so both publish the same and write nothing)."""
    host = lab.host("xenhost1")
    write_cib(lab.san / "cib.xml", {"xenhost1": {}, "xenhost2": {}})
    agent = Dom0Agent("xen-host", "xen-host", {"hypervisor": "xen:///system"})
    if agent.run(host, "start").code != 0:
        raise RuntimeError("xen-host does not start on xenhost1")
    reserve = re.search(r'xenha-memory-reserve" value="(\d+)"', (lab.san / "cib.xml").read_text())
    if reserve is None:
        raise RuntimeError("xen-host published no xenha-memory-reserve")
    variants = {"default reserve (reads Domain-0)": {}, f"host_memory_reserve={reserve.group(1)}": {
        "host_memory_reserve": reserve.group(1)}}  # fmt: skip
    walls: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(ROUNDS * 3):
        for label, overrides in variants.items():
            code, wall, out = timed(host, "/usr/lib/ocf/resource.d/xenha/xen-host monitor",
                                    agent.environment(host, 30000, {"interval": "30000"}, overrides))  # fmt: skip
            if code != 0:
                raise RuntimeError(f"xen-host monitor failed: {out[-500:]}")
            walls[label].append(wall)
    agent.run(host, "stop")
    read = host.check(f"python3 -c {shlex.quote(DOMAIN0_READ)}").split()
    rows = [f"| {label} | {spread([wall * 1000 for wall in values])} |" for label, values in walls.items()]
    return "\n".join([
        f"### xen-host monitor on xenhost1, median (min-max) of {ROUNDS * 3} each, interleaved",
        "",
        "| xen-host monitor | wall ms (in the dom0) |",
        "|---|---:|",
        *rows,
        f"| Domain-0's read alone (lookupByID(0).info(), 20 calls) | {read[0]} ({read[1]}-{read[2]}) |",
        "",
    ])  # fmt: skip


def cluster_slot() -> str:
    """The crash test's last figures (tests/xen/test_xen_cluster.py writes FAILOVER_RECORD when it passes):
    a crash needs the two-host Pacemaker cluster, which this benchmark's lab is not."""
    rows = [CLUSTER_SLOT]
    source = "not measured yet: run `make xen-test` or `make xen-cluster-test`"
    if FAILOVER_RECORD.exists():
        seen = json.loads(FAILOVER_RECORD.read_text())
        crash = Failover.from_record(seen)
        rows = [f"| host crash ({crash.victim}'s QEMU killed) → fenced by {crash.fenced.delegate} "
                f"(SBD, msgwait {SBD_MSGWAIT_S} s) | {crash.fenced_after_s:.1f} |"]  # fmt: skip
        rows += [f"| host crash → {guest} {crash.whence(guest)} | {seconds:.1f} |"
                 for guest, seconds in crash.running_after_s.items()]  # fmt: skip
        source = (f"measured by the Xen cluster's crash test at {seen['measured']} (load {seen['load']}): "
                  f"{seen['context']}; read from {FAILOVER_RECORD.relative_to(REPO)}")  # fmt: skip
    return "\n".join([
        "### Host crash → guest running elsewhere, on real Xen",
        "",
        "| measure | seconds |",
        "|---|---:|",
        *rows,
        "",
        source,
        "",
    ])  # fmt: skip


def booted_lab() -> tuple[Lab, bool]:
    """The lab, and whether this run started it (and must stop it)."""
    if os.environ.get("XENLAB_ATTACH") == "1":
        attached = attach_lab()
        if attached is not None:
            return attached, False
    debs = sorted((REPO / "dist").glob("xenha-agents_*.deb"))
    if not debs:
        raise SystemExit("no xenha .deb in dist/: run `make bench-xen` (it builds them)")
    lab = start_lab(debs[-1:])
    print("\n".join(f"xenlab: {line}" for line in lab.timings.lines()), file=sys.stderr)
    return lab, True


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}"
    load = os.getloadavg()[0]
    (OUT / "xen-moves.log").unlink(missing_ok=True)
    lab, ours = booted_lab()
    sections = [
        f"## xenha on real Xen ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine}, "
        f"load average {load:.1f} at the start; the lab: 2 Xen 4.17 hosts under QEMU/TCG, 1.5 GiB, dom0_mem=768M)",
        "",
    ]
    steps: list[Callable[[Lab], str]] = [
        moves_benchmark, xen_agent_benchmark, host_monitor_benchmark, lambda _: cluster_slot()]  # fmt: skip
    try:
        for step in steps:
            section = step(lab)
            print(section, flush=True)
            sections.append(section)
    finally:
        destroy_everywhere(lab, GUEST)
        if ours:
            stop_lab(lab, keep_logs=True)
    (OUT / "xen.md").write_text("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
