"""A stale full-CIB replace must not let an old decision commit (issue 12, finding 8).

Before issue 12's fix the booking's compare-and-swap compared a version nvpair of the ledger,
which the stale replace brings back; it is now conditioned on the CIB's (admin_epoch, epoch),
which no replace brings back (docs/decisions/reservation-protocol.md).

The interleaving is forced, not hoped for. On node1, whose CIB capacity has room for one
guest:

1. a stale copy of the configuration is taken (as pcs reads the CIB before an edit);
2. admission A (xen-guest start of ``stale-a``) reads the ledger and libvirt, decides "fits"
   and calls ``cibadmin`` to book - where a replacement ``cibadmin`` (bind-mounted in A's
   private mount namespace, tests/support/faults.py) holds the call until the test says go;
3. admission B (``stale-b``) books, starts its guest and releases: the node is full;
4. the stale copy is pushed back (``cibadmin --replace --scope configuration``, what pcs
   does): the ledger is back to what A read (a version nvpair would be too), the epoch is not;
5. go: with a version nvpair as the condition A's compare-and-swap matched the resurrected
   version, A started its guest, and the node held two guests in room for one. With the
   epoch in the condition, A's booking matches nothing, A reads again, sees B's guest in
   libvirt, and is refused.
"""

from __future__ import annotations

import shlex
import threading
import time
from pathlib import Path

import pytest

from tests.support.cluster.cluster import Cluster
from tests.support.commands import Result
from tests.support.faults import CIB_BOOKING_WRITES, shimmed
from tests.support.guests import domain_xml
from tests.support.ocf import AGENTS

pytestmark = [pytest.mark.cluster, pytest.mark.qemu, pytest.mark.slow]

NODE = "node1"
GUEST_DEMAND_MIB = 70  # a 64 MiB HVM guest with 1 vCPU (xenha.capacity.memory_demand_mib)
VIRSH = ["virsh", "-q", "-c", "qemu:///system"]


def hold_first_booking_until(go: Path) -> str:
    """A cibadmin script: the first booking write waits until ``go`` exists, then is done."""
    cases = "|".join(CIB_BOOKING_WRITES)
    return (
        f'writes=no; for a in "$@"; do case "$a" in {cases}) writes=yes;; esac; done\n'
        'if [ "$writes" = yes ] && [ ! -e "$MARKS/held" ]; then\n'
        '  touch "$MARKS/held"\n'
        f"  while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done\n"
        "fi\n"
        'exec "$REAL" "$@"'
    )


def agent_argv(name: str, config: Path, prefix: list[str] | None = None) -> list[str]:
    env = {
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": name,
        "OCF_RESKEY_config": str(config),
        "OCF_RESKEY_hypervisor": "qemu:///system",
        "OCF_RESKEY_CRM_meta_timeout": "90000",
        "OCF_RESKEY_CRM_meta_on_node": NODE,
        "OCF_RESKEY_crm_feature_set": "3.16.2",  # the executor passes it to every action: "in a cluster"
        "HA_RSCTMP": f"/run/resource-agents/stale-{name}",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    return [*(prefix or []), "env", "-i", *(f"{key}={value}" for key, value in env.items()),
            str(AGENTS / "xen-guest"), "start"]  # fmt: skip


def running(cluster: Cluster) -> set[str]:
    listed = cluster.check(NODE, [*VIRSH, "list", "--name"]).stdout
    return {name for name in listed.split() if name.startswith("stale-")}


def test_a_decision_older_than_a_stale_replace_never_commits(cluster: Cluster) -> None:
    san = cluster.layout.san_dir
    work = san / "stale-replace"
    work.mkdir(exist_ok=True)
    go = work / "go"
    go.unlink(missing_ok=True)
    configs = {}
    for name in ("stale-warmup", "stale-a", "stale-b"):
        configs[name] = san / f"{name}.xml"
        configs[name].write_text(domain_xml(name))
    capacity = GUEST_DEMAND_MIB + GUEST_DEMAND_MIB // 2  # room for one
    cluster.check(NODE, ["crm_attribute", "--type", "nodes", "--node", NODE, "--utilization",
                         "--name", "hv_memory", "--update", str(capacity)])  # fmt: skip
    try:
        # The ledger of node1 exists (a booking came and went), as it would in a cluster
        # that has run for a while.
        warmup = cluster.run(NODE, agent_argv("stale-warmup", configs["stale-warmup"]), 120.0)
        assert warmup.returncode == 0, warmup.stderr
        cluster.check(NODE, [*VIRSH, "destroy", "stale-warmup"])
        # 1. the stale copy
        stale = "/run/stale-configuration.xml"
        cluster.check(NODE, ["sh", "-c", f"cibadmin --query --scope configuration > {stale}"])
        # 2. admission A, held at its booking
        marks = work / "marks-a"
        prefix = shimmed("cibadmin", hold_first_booking_until(go), marks)
        outcome: list[Result] = []
        a = threading.Thread(
            target=lambda: outcome.append(cluster.run(NODE, agent_argv("stale-a", configs["stale-a"], prefix), 180.0))
        )
        a.start()
        deadline = time.monotonic() + 60
        while not (marks / "held").exists():
            assert a.is_alive() and time.monotonic() < deadline, f"admission A never reached its booking: {outcome}"
            time.sleep(0.05)
        # 3. admission B books, starts, releases: the node is full
        b = cluster.run(NODE, agent_argv("stale-b", configs["stale-b"]), 120.0)
        assert b.returncode == 0, b.stderr
        # 4. the stale copy goes back, as pcs pushes it
        cluster.check(NODE, ["cibadmin", "--replace", "--scope", "configuration", "--xml-file", stale])
        # 5. go
        go.touch()
        a.join(180)
        result_a = outcome[0]
        both = running(cluster)
        assert both == {"stale-b"}, (
            f"two guests in room for one on {NODE}: {sorted(both)}; A's start said:\n{result_a.stderr}"
        )
        assert result_a.returncode != 0 and f"needs {GUEST_DEMAND_MIB} MiB" in result_a.stderr, result_a.stderr
    finally:
        go.touch()
        for name in running(cluster):
            cluster.run(NODE, [*VIRSH, "destroy", name], 30.0)
        cluster.run(NODE, ["crm_attribute", "--type", "nodes", "--node", NODE, "--utilization",
                           "--name", "hv_memory", "--delete"], 30.0)  # fmt: skip
