"""Benchmarks of the agents against their peer, resource-agents' VirtualDomain.

Every figure is a ratio measured in one run, on one machine, against the same libvirtd and
the same guest, with medians over repeated runs. Each action is a separate process with
the OCF environment, as Pacemaker's executor runs it. Wall time from the parent; CPU time
from getrusage(RUSAGE_CHILDREN), which includes everything the agent spawned (virsh,
crm_resource) once it has been waited for.

1. monitor, start and stop of one tiny QEMU guest: xen-guest vs VirtualDomain, both with
   their default parameters and a CIB (``CIB_file``) holding both resources, so that
   VirtualDomain's utilization autoset really calls crm_resource; plus the floor: the bare
   interpreter, and the interpreter loading libvirt.
2. migrate_to between two nodes of a real 3-node cluster (so the reservation talks to a
   live CIB manager): xen-guest's migrate_to, reservation included, vs a bare process that
   opens libvirt and calls migrateToURI3 with the same flags.

Prints a markdown table and writes it to build/bench/agents.md.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "lib"), str(REPO)]

from tests.support.cib import write_cib
from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import HostSet
from tests.support.ocf import AGENTS, ocf_environment

VIRTUAL_DOMAIN = "/usr/lib/ocf/resource.d/heartbeat/VirtualDomain"
REPEAT = int(os.environ.get("XENHA_BENCH_REPEAT", "21"))
OUT = REPO / "build" / "bench"


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float
    code: int


def measure(argv: Sequence[str], env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> Sample:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run([*prefix, *argv], env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(wall, cpu, completed.returncode)


def median(samples: Sequence[Sample], attribute: str) -> float:
    return statistics.median(getattr(sample, attribute) for sample in samples)


class Table:
    def __init__(self) -> None:
        self.rows: list[str] = []

    def add(self, what: str, ours: Sequence[Sample], theirs: Sequence[Sample], goal: str = "") -> None:
        ours_wall, ours_cpu = median(ours, "wall_s") * 1000, median(ours, "cpu_s") * 1000
        their_wall, their_cpu = median(theirs, "wall_s") * 1000, median(theirs, "cpu_s") * 1000
        self.rows.append(
            f"| {what} | {ours_wall:.1f} | {their_wall:.1f} | **{ours_wall / their_wall:.2f}** | "
            f"{ours_cpu:.1f} | {their_cpu:.1f} | **{ours_cpu / their_cpu:.2f}** | {goal} |"
        )

    def render(self, title: str, ours: str, theirs: str) -> str:
        head = [
            f"### {title}",
            "",
            f"| measure | {ours} wall ms | {theirs} wall ms | ratio | {ours} CPU ms | {theirs} CPU ms | ratio | goal |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        return "\n".join([*head, *self.rows, ""])


def lifecycle_benchmark(workdir: Path) -> str:
    """monitor/start/stop on one libvirtd: xen-guest vs VirtualDomain, runs interleaved.

    Each agent has its own guest (identical but for the name: both cannot manage one domain
    at once); their actions alternate, so that a change of load on the machine affects both.
    """
    hosts = HostSet("xbench", workdir / "hosts", networked=False)
    table = Table()
    try:
        hosts.start(["benchhost"], qemu_caps_seed=REPO / "build" / "qemu-caps")
        uri = hosts.hosts["benchhost"].qemu_uri
        agents = {"ours": str(AGENTS / "xen-guest"), "theirs": VIRTUAL_DOMAIN}
        configs = {}
        for label in agents:
            configs[label] = workdir / f"bench-{label}.xml"
            configs[label].write_text(domain_xml(f"bench-{label}", driver="qemu", memory_mib=64))
        cib = write_cib(workdir / "cib.xml", {"benchhost": {"hv_memory": 4096, "cpu": 8}},
                        guests={f"bench-{label}": {"config": str(configs[label])} for label in agents})  # fmt: skip

        def environment(label: str, interval_ms: str = "0") -> dict[str, str]:
            params = {"config": str(configs[label]), "hypervisor": uri, "force_stop": "true"}
            env = ocf_environment(f"bench-{label}", params, {"timeout": "90000", "interval": interval_ms,
                                                             "on_node": "benchhost"}, str(workdir / label))  # fmt: skip
            env["CIB_file"] = str(cib)
            return env

        results: dict[str, dict[str, list[Sample]]] = {label: {} for label in agents}

        def run(label: str, action: str, interval_ms: str = "0") -> None:
            sample = measure([agents[label], action], environment(label, interval_ms))
            assert sample.code == 0, f"{label} {action} failed"
            results[label].setdefault(action, []).append(sample)

        for _ in range(max(5, REPEAT // 3)):
            for label in agents:
                run(label, "start")
            for _ in range(3):
                for label in agents:
                    run(label, "monitor", "10000")
            for label in agents:
                run(label, "stop")
        floor = [measure(["/usr/bin/python3", "-I", "-c", "pass"]) for _ in range(REPEAT)]
        floor_libvirt = [measure(["/usr/bin/python3", "-I", "-c", "import libvirt"]) for _ in range(REPEAT)]
        ours, theirs = results["ours"], results["theirs"]
        table.add("monitor (running guest)", ours["monitor"], theirs["monitor"], "≤ 0.25")
        table.add("start", ours["start"], theirs["start"])
        table.add("stop (force)", ours["stop"], theirs["stop"])
        table.add("floor: python3 -I -c pass", floor, theirs["monitor"])
        table.add("floor: python3 -I -c 'import libvirt'", floor_libvirt, theirs["monitor"])
    finally:
        hosts.teardown()
    return table.render(
        "xen-guest vs VirtualDomain, one tiny QEMU guest each, same libvirtd", "xen-guest", "VirtualDomain"
    )


BARE_MIGRATION = """
import sys, libvirt
libvirt.registerErrorHandler(lambda c, e: None, None)
connection = libvirt.open("qemu:///system")
domain = connection.lookupByName(sys.argv[1])
domain.migrateToURI3(sys.argv[2], {}, libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER)
"""


def migration_benchmark() -> str:
    """xen-guest migrate_to (reservation in a live CIB) vs a bare migrateToURI3 process."""
    from tests.support.cluster.claim import claim_free_prefix
    from tests.support.cluster.cluster import Cluster
    from tests.support.cluster.layout import ClusterLayout

    claim = claim_free_prefix("xhb")
    cluster = Cluster(ClusterLayout(claim.prefix))
    table = Table()
    try:
        cluster.up()
        config = cluster.layout.san_dir / "mig.xml"
        config.write_text(domain_xml("mig"))
        for node in ("node1", "node2"):
            cluster.check("node1", ["crm_attribute", "--type", "nodes", "--node", node, "--utilization",
                                    "--name", "hv_memory", "--update", "4096"])  # fmt: skip

        def agent(action: str, source: str, target: str) -> list[str]:
            env = {
                "OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "mig", "OCF_RESKEY_config": str(config),
                "OCF_RESKEY_hypervisor": "qemu:///system", "OCF_RESKEY_remoteuri": "qemu+tcp://%n/system",
                "OCF_RESKEY_hvm_migration": "live", "OCF_RESKEY_force_stop": "true",
                "OCF_RESKEY_CRM_meta_timeout": "120000", "OCF_RESKEY_CRM_meta_migrate_source": source,
                "OCF_RESKEY_CRM_meta_migrate_target": target,
                "OCF_RESKEY_CRM_meta_on_node": target if action == "migrate_from" else source,
                "OCF_RESKEY_crm_feature_set": "3.16.2",  # as the executor passes it: the ledger is the CIB's
                "HA_RSCTMP": "/run/resource-agents/bench", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            }  # fmt: skip
            return ["env", "-i", *(f"{key}={value}" for key, value in env.items()), str(AGENTS / "xen-guest"), action]

        assert cluster.run("node1", agent("start", "node1", "node1"), 60).ok
        ours: list[Sample] = []
        bare: list[Sample] = []
        where = "node1"
        for index in range(REPEAT * 2):
            there = "node2" if where == "node1" else "node1"
            if index % 2 == 0:
                argv = agent("migrate_to", where, there)
                sample = measure(argv, prefix=cluster.nsenter_argv(where))
                ours.append(sample)
                # as Pacemaker does next (not timed): migrate_from on the target
                assert cluster.run(there, agent("migrate_from", where, there), 60).ok
            else:
                argv = ["/usr/bin/python3", "-I", "-c", BARE_MIGRATION, "mig", f"qemu+tcp://{there}/system"]
                sample = measure(argv, prefix=cluster.nsenter_argv(where))
                bare.append(sample)
            assert sample.code == 0, f"migration {index} from {where} to {there} failed"
            where = there
        table.add("migrate_to, 64 MiB guest, reservation in a live CIB", ours, bare, "≤ 1.15")
        cluster.run(where, ["virsh", "-c", "qemu:///system", "destroy", "mig"], 30)
    finally:
        cluster.teardown()
        claim.release()
    return table.render("migrate_to vs a bare migrateToURI3 between two cluster nodes", "xen-guest", "bare libvirt")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}"
    sections = [f"## xenha benchmarks ({time.strftime('%Y-%m-%d')}, {machine}, medians of {REPEAT} runs)", ""]
    steps: list[Callable[[], str]] = [lambda: lifecycle_benchmark(OUT / "work"), migration_benchmark]
    for step in steps:
        section = step()
        print(section, flush=True)
        sections.append(section)
    (OUT / "agents.md").write_text("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
