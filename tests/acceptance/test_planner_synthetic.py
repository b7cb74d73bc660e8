"""The benchmark's synthetic CIBs are settled running clusters; hcheck reads their translation."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from xenha.planner.cibmodel import parse_cib
from xenha.planner.htools import to_htools_text
from xenha.planner.scheduler import parse_graph
from xenha.planner.synthetic import SyntheticSpec, generate_cib


def test_the_scheduler_plans_nothing_for_a_generated_cluster(tmp_path: pathlib.Path) -> None:
    cib = tmp_path / "cib.xml"
    cib.write_text(generate_cib(SyntheticSpec(4, 30, 32768, 32)))
    graph = tmp_path / "graph.xml"
    subprocess.run(
        ["crm_simulate", "--xml-file", str(cib), "--run", "--save-graph", str(graph)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    operations = {action.operation for action in parse_graph(graph.read_bytes())}
    # Correct digests and probe results: no restart, no probe, no move.
    assert operations.isdisjoint({"start", "stop", "monitor", "migrate_to", "migrate_from"}), operations
    model = parse_cib(cib.read_bytes())
    assert len(model.guests) == 30
    assert all(len(guest.active_on) == 1 for guest in model.guests)
    assert all(host.capacity.memory_mib >= 0 for host in model.hosts)


@pytest.mark.parametrize(("memory", "healthy"), [(65536, True), (30720, False)])
def test_hcheck_reads_the_translation(tmp_path: pathlib.Path, memory: int, healthy: bool) -> None:
    model = parse_cib(generate_cib(SyntheticSpec(4, 30, memory, 64)).encode())
    data = tmp_path / "cluster.data"
    data.write_text(to_htools_text(model))
    completed = subprocess.run(
        ["hcheck", "-t", str(data), "--machine-readable"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "HCHECK_INIT_CLUSTER_GN1_FAIL=" in completed.stdout, completed.stdout + completed.stderr
    failing = int(completed.stdout.split("HCHECK_INIT_CLUSTER_GN1_FAIL=")[1].split()[0])
    assert (failing == 0) == healthy
