"""The cluster harness's pure parts, on captured real outputs: no daemons, no root."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.support.cluster import config
from tests.support.cluster.crm_mon import CrmMonError, parse_crm_mon
from tests.support.cluster.invariants import (
    PAUSED,
    PAUSED_MIGRATION,
    PAUSED_STARTING_UP,
    RUNNING,
    SHUTOFF,
    counts_as_running,
)
from tests.support.cluster.layout import ClusterLayout, LayoutError
from tests.support.cluster.node_init import Mount, NodePlan, RunDir
from tests.support.cluster.pacemaker_log import Line, cannot_run_anywhere, executions, op_results, stamp, timeouts

DATA = Path(__file__).resolve().parent / "data"


def test_crm_mon_three_nodes_online() -> None:
    status = parse_crm_mon((DATA / "crm_mon-three-online.xml").read_text())
    assert status.dc == "node1" and status.with_quorum
    assert status.online_nodes() == {"node1", "node2", "node3"}
    assert status.node("node1").is_dc
    assert status.started_on("fence-xenha") == ("node1",)
    assert status.failures == ()


def test_crm_mon_unclean_node_failed_start_and_pending_fence() -> None:
    status = parse_crm_mon((DATA / "crm_mon-unclean-failed.xml").read_text())
    node2 = status.node("node2")
    assert not node2.online and node2.unclean
    assert status.online_nodes() == {"node1", "node3"}
    bad = status.resource("bad")
    assert bad is not None and bad.role == "Stopped" and status.started_on("bad") == ()
    assert {(f.node, f.exit_status) for f in status.failures} == {
        ("node1", "not installed"),
        ("node3", "not installed"),
    }
    assert "make the guest's configuration readable" in status.failures[0].exit_reason
    assert (status.fencing[0].target, status.fencing[0].status) == ("node2", "pending")


def test_crm_mon_without_cluster_connection() -> None:
    text = """<pacemaker-result api-version="2.25" request="crm_mon --output-as=xml">
      <status code="102" message="Not connected"/></pacemaker-result>"""
    with pytest.raises(CrmMonError, match="Not connected"):
        parse_crm_mon(text)
    with pytest.raises(CrmMonError, match="not XML"):
        parse_crm_mon("crm_mon: command not found")


def test_layout_names() -> None:
    layout = ClusterLayout("xhc", 3)
    assert layout.node_names == ("node1", "node2", "node3")
    assert layout.address("node3") == "10.254.0.3"
    assert layout.netns("node2") == "xhc-node2" and layout.switch_netns == "xhc-sw"
    assert [layout.is_own_netns(n) for n in ("xhc-sw", "xhc-node12", "xhc0-node1", "xhc-nodeX")] == [
        True, True, False, False,
    ]  # fmt: skip
    assert len({layout.host_uuid(node) for node in layout.node_names}) == 3
    with pytest.raises(LayoutError, match="node4"):
        layout.address("node4")
    with pytest.raises(LayoutError, match="prefix"):
        ClusterLayout("Bad-Prefix")


def test_corosync_conf_and_hosts() -> None:
    layout = ClusterLayout("xhc", 2)
    text = config.corosync_conf(layout)
    assert "transport: knet" in text and "crypto_cipher: none" in text and "token: 1000" in text
    assert "name: node2\n        nodeid: 2\n        ring0_addr: 10.254.0.2" in text
    assert config.etc_hosts(layout).splitlines()[1:] == ["10.254.0.1 node1", "10.254.0.2 node2"]


def test_seed_cib_has_fencing_and_short_dc_deadtime() -> None:
    cib = config.seed_cib(ClusterLayout("xhc", 3))
    assert 'name="dc-deadtime" value="2s"' in cib and 'name="stonith-enabled" value="true"' in cib
    assert 'type="fence_xenha_test"' in cib and 'value="node1 node2 node3"' in cib


def test_passwd_gains_libvirt_qemu_once() -> None:
    host = "root:x:0:0:root:/root:/bin/bash\n"
    once = config.etc_passwd(host)
    assert once.count("libvirt-qemu:") == 1 and config.etc_passwd(once) == once
    assert config.etc_group("root:x:0:\nkvm:x:104:\n").count("kvm:") == 1


def test_node_plan_round_trips_through_json() -> None:
    plan = NodePlan(
        name="node1",
        cgroup="/sys/fs/cgroup/unified/xhc/node1",
        events_log="/tmp/events",
        mounts=(Mount("tmpfs", "/run", "xhc-node1-run", "mode=755"),),
        run_dirs=(RunDir("/run/crm", 0o750, "hacluster:haclient"),),
        daemon_env={"PCMK_logfacility": "none"},
    )
    assert NodePlan.from_json(plan.to_json()) == plan


def test_what_counts_as_a_running_copy() -> None:
    assert counts_as_running(RUNNING, 1)
    assert counts_as_running(PAUSED, 1)  # paused by a user: it can resume at any time
    assert not counts_as_running(PAUSED, PAUSED_MIGRATION)  # incoming migration copy
    assert not counts_as_running(PAUSED, PAUSED_STARTING_UP)  # how that copy first shows up
    assert not counts_as_running(SHUTOFF, 0)


def test_pacemaker_log_results_executions_and_timeouts() -> None:
    """Real lines of Pacemaker 2.1.5 (a refused migration, a start, a timed-out Dummy probe)."""
    lines = [Line("node1", stamp(text), text) for text in (DATA / "pacemaker-excerpt.log").read_text().splitlines()]
    refused, started, probe = op_results(lines)
    assert (refused.resource, refused.op, refused.node, refused.result) == ("full1", "migrate_to", "node1", "error")
    assert refused.reason == (
        "cannot migrate full1 to node3: needs 70 MiB, node3 has 0 MiB free (capacity 7898, used 7898, reserved 0)"
    )
    assert (started.resource, started.op, started.result, started.reason) == ("cut2", "start", "ok", "")
    assert (probe.resource, probe.result) == ("slow", "Timed Out after 1000ms")
    (run,) = executions(lines)
    assert (run.resource, run.op, run.call, run.seconds) == ("full1", "migrate_to", 46, 0.307)
    assert run.started == datetime(2000, 11, 28, 1, 48, 31, 812000)
    assert [line.text[-40:] for line in timeouts(lines, ["slow"])] == [
        line.text[-40:] for line in lines if "slow" in line.text
    ]
    assert timeouts(lines, ["full1", "cut2", "slo"]) == []
    assert cannot_run_anywhere(lines, "bad1") and not cannot_run_anywhere(lines, "bad")
