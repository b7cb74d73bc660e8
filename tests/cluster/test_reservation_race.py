"""The reservation protocol under contention, against a live CIB manager.

Ten xen-guest starts are fired at once at one node whose capacity (hv_memory in the CIB)
has room for three guests. However the ten processes interleave, at most three may be
admitted; the others must be refused with the reason, and the ledger must end empty.
Twenty rounds. A CIB held in a file would prove nothing here: nothing serializes
concurrent writers of a file, while the CIB manager applies updates one at a time.
"""

from __future__ import annotations

import concurrent.futures
import re
import time

import pytest

from tests.cluster.scenario import RESERVATIONS
from tests.support.cluster.cluster import Cluster
from tests.support.guests import domain_xml
from tests.support.ocf import AGENTS

pytestmark = [pytest.mark.cluster, pytest.mark.qemu, pytest.mark.slow]

NODE = "node1"
CONTENDERS = 10
ROOM_FOR = 3
ROUNDS = 20
GUEST_DEMAND_MIB = 70  # a 64 MiB HVM guest with 1 vCPU (xenha.capacity.memory_demand_mib)


def start_in_node(cluster: Cluster, name: str, config: str) -> tuple[int, str]:
    """Run xen-guest start inside the node, as Pacemaker's executor would run it there."""
    env = {
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": name,
        "OCF_RESKEY_config": config,
        "OCF_RESKEY_hypervisor": "qemu:///system",
        "OCF_RESKEY_CRM_meta_timeout": "90000",
        "OCF_RESKEY_CRM_meta_on_node": NODE,
        "OCF_RESKEY_crm_feature_set": "3.16.2",  # the executor passes it to every action: "in a cluster"
        "HA_RSCTMP": f"/run/resource-agents/race-{name}",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    argv = ["env", "-i", *(f"{key}={value}" for key, value in env.items()), str(AGENTS / "xen-guest"), "start"]
    result = cluster.run(NODE, argv, 120.0)
    return result.returncode, result.stderr


def running_guests(cluster: Cluster) -> set[str]:
    listed = cluster.check(NODE, ["virsh", "-q", "-c", "qemu:///system", "list", "--name"]).stdout
    return {name for name in listed.split() if name.startswith("race")}


def test_ten_concurrent_admissions_into_room_for_three(cluster: Cluster) -> None:
    capacity = ROOM_FOR * GUEST_DEMAND_MIB + GUEST_DEMAND_MIB // 2  # room for 3, not for 4
    cluster.check(NODE, ["crm_attribute", "--type", "nodes", "--node", NODE, "--utilization",
                         "--name", "hv_memory", "--update", str(capacity)])  # fmt: skip
    names = [f"race{index}" for index in range(CONTENDERS)]
    for name in names:
        (cluster.layout.san_dir / f"{name}.xml").write_text(domain_xml(name))
    admitted_per_round = []
    try:
        for round_number in range(ROUNDS):
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(CONTENDERS) as pool:
                outcomes = list(
                    pool.map(
                        lambda name: start_in_node(cluster, name, str(cluster.layout.san_dir / f"{name}.xml")), names
                    )
                )
            running = running_guests(cluster)
            admitted = [name for name, (code, _) in zip(names, outcomes) if code == 0]
            refused = [stderr for code, stderr in outcomes if code != 0]
            assert set(admitted) == running, (round_number, admitted, running)
            assert len(running) <= ROOM_FOR, f"round {round_number}: {len(running)} guests admitted: {sorted(running)}"
            assert len(running) >= 1, f"round {round_number}: nothing admitted: {refused[:2]}"
            for stderr in refused:
                assert re.search(rf"cannot start race\d on {NODE}: needs {GUEST_DEMAND_MIB} MiB", stderr), stderr
            ledger = cluster.run(NODE, ["cibadmin", "--query", "--xpath", RESERVATIONS], 30.0)
            assert ledger.returncode == 105, f"round {round_number}: reservations left behind: {ledger.stdout}"
            admitted_per_round.append(len(running))
            print(
                f"round {round_number:2d}: {len(running)} of {CONTENDERS} admitted in {time.monotonic() - started:.2f} s"
            )
            for name in running:
                cluster.run(NODE, ["virsh", "-q", "-c", "qemu:///system", "destroy", name], 30.0)
    finally:
        for name in running_guests(cluster):
            cluster.run(NODE, ["virsh", "-q", "-c", "qemu:///system", "destroy", name], 30.0)
        cluster.run(NODE, ["crm_attribute", "--type", "nodes", "--node", NODE, "--utilization",
                           "--name", "hv_memory", "--delete"], 30.0)  # fmt: skip
    print(f"admitted per round: {admitted_per_round}")
    assert max(admitted_per_round) <= ROOM_FOR
