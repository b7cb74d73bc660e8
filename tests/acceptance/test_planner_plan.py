"""xenha plan on small CIB files, against Pacemaker's real scheduler (crm_simulate).

Each cluster's answer is worked out by hand in planner_cibs.py; every verdict is also
compared with the naive loop (one ``crm_simulate --simulate --node-fail`` per scenario).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.acceptance import planner_cibs
from xenha.planner.naive import run_naive
from xenha.runner import CommandRunner

ROOT = pathlib.Path(__file__).resolve().parents[2]
XENHA = str(ROOT / "bin" / "xenha")


def xenha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([XENHA, *args], capture_output=True, text=True, timeout=300, check=False)


def plan_json(path: str, *args: str) -> tuple[int, dict[str, Any]]:
    completed = xenha("plan", "--cib", path, "--json", *args)
    return completed.returncode, json.loads(completed.stdout)


def stopped_by_scenario(document: dict[str, Any]) -> dict[tuple[str, ...], set[str]]:
    return {
        tuple(scenario["failed_hosts"]): {guest["resource"] for guest in scenario["stopped_guests"]}
        for scenario in document["scenarios"]
    }


def guests_in(path: str) -> list[str]:
    """Every xen-guest resource of the CIB file, read from the file itself (not from xenha's answer)."""
    root = ElementTree.parse(path).getroot()
    return [primitive.get("id", "") for primitive in root.iter("primitive") if primitive.get("type") == "xen-guest"]


def assert_agrees_with_naive(path: str, document: dict[str, Any]) -> None:
    # The naive loop judges every guest of the CIB: with only the guests xenha names, a plan
    # that wrongly claims "nothing stopped" would be compared on no guest at all.
    names = guests_in(path)
    assert names, path
    scenarios = [
        (tuple(scenario["failed_hosts"]), None if scenario["quorum"] else False) for scenario in document["scenarios"]
    ]
    naive = run_naive(path, scenarios, names, CommandRunner(), time.monotonic)
    ours = stopped_by_scenario(document)
    for reference in naive:
        assert ours[reference.failed] == set(reference.stopped), reference.failed


@pytest.fixture
def cibs(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path


def test_n_plus_one_cluster_is_ok_and_proved(cibs: pathlib.Path) -> None:
    path = planner_cibs.write(cibs, "n1", planner_cibs.n_plus_one())
    completed = xenha("plan", "--cib", path)
    assert completed.returncode == 0
    assert completed.stdout.splitlines()[0] == "XENHA PLAN OK - tolerates 1 host failure (checked up to 1)"
    code, document = plan_json(path)
    assert code == 0
    assert document["tolerated_failures"] == 1
    assert [scenario["method"] for scenario in document["scenarios"]] == ["proof"] * 4
    assert_agrees_with_naive(path, document)


def test_two_failures_lose_quorum_so_the_check_warns(cibs: pathlib.Path) -> None:
    path = planner_cibs.write(cibs, "n1", planner_cibs.n_plus_one())
    code, document = plan_json(path, "--failures", "2")
    assert code == 1
    assert document["status"] == "WARNING"
    assert document["tolerated_failures"] == 1
    pairs = [scenario for scenario in document["scenarios"] if len(scenario["failed_hosts"]) == 2]
    assert len(pairs) == 3
    for scenario in pairs:
        assert scenario["quorum"] is False
        assert scenario["method"] == "scheduler"
        survivors_guests = {"web1", "web2", "db1", "app1", "app2"}
        assert {guest["resource"] for guest in scenario["stopped_guests"]} == survivors_guests
    assert document["headline"] == (
        "tolerates 1 host failure; losing host1 and host2 together would leave web1, web2, db1, app1, app2 "
        "stopped: the survivors lose quorum (no-quorum-policy=stop)"
    )
    assert_agrees_with_naive(path, document)


def test_not_n_plus_one(cibs: pathlib.Path) -> None:
    path = planner_cibs.write(cibs, "bad", planner_cibs.not_n_plus_one())
    completed = xenha("plan", "--cib", path)
    assert completed.returncode == 2
    assert completed.stdout.splitlines()[0] == (
        "XENHA PLAN CRITICAL - tolerates no host failure; losing host1 would leave web1 stopped: 2048 MiB short"
    )
    code, document = plan_json(path)
    assert code == 2
    assert stopped_by_scenario(document) == {
        (): set(),
        ("host1",): {"web1"},
        ("host2",): {"db1"},
        ("host3",): {"app1"},
    }
    shortfalls = {tuple(s["failed_hosts"]): s["shortfall"]["memory_mib"] for s in document["scenarios"]}
    assert shortfalls == {(): 0, ("host1",): 2048, ("host2",): 2048, ("host3",): 2048}
    after = {
        host["name"]: host["free"]["memory_mib"]
        for host in next(s for s in document["scenarios"] if s["failed_hosts"] == ["host3"])["hosts_after"]
    }
    assert sorted(after.values()) == [0, 2048]  # app2 took the 2048 of one host exactly
    assert_agrees_with_naive(path, document)


def test_n_plus_one_only_with_balanced_placement(cibs: pathlib.Path) -> None:
    balanced = planner_cibs.write(cibs, "balanced", planner_cibs.exact_packing("balanced"))
    utilization = planner_cibs.write(cibs, "utilization", planner_cibs.exact_packing("utilization"))
    code, document = plan_json(balanced)
    assert (code, document["tolerated_failures"]) == (0, 1)
    assert_agrees_with_naive(balanced, document)
    code, document = plan_json(utilization)
    assert (code, document["tolerated_failures"]) == (2, 0)
    assert stopped_by_scenario(document) == {
        (): set(),
        ("host1",): {"vm5"},
        ("host2",): {"vm5"},
        ("host3",): {"vm5"},
    }
    assert_agrees_with_naive(utilization, document)


def test_a_host_already_down(cibs: pathlib.Path) -> None:
    path = planner_cibs.write(cibs, "down", planner_cibs.host_already_down())
    code, document = plan_json(path)
    assert code == 2
    assert [scenario["failed_hosts"] for scenario in document["scenarios"]] == [
        [],
        ["host1"],
        ["host2"],
        ["host3"],
        ["host4"],
    ]
    assert all(scenario["quorum"] for scenario in document["scenarios"])
    assert stopped_by_scenario(document) == {
        (): set(),
        ("host1",): {"a"},
        ("host2",): {"b"},
        ("host3",): {"c"},
        ("host4",): set(),
    }
    assert document["headline"] == (
        "tolerates no host failure; losing host1 would leave a stopped: 6144 MiB and 2 vCPUs needed: "
        "enough spare in total, but no single host has room"
    )
    assert_agrees_with_naive(path, document)


def test_a_pinned_guest(cibs: pathlib.Path) -> None:
    path = planner_cibs.write(cibs, "pinned", planner_cibs.pinned())
    code, document = plan_json(path)
    assert code == 2
    assert stopped_by_scenario(document) == {
        (): set(),
        ("host1",): {"web1"},
        ("host2",): set(),
        ("host3",): set(),
    }
    assert all(scenario["method"] == "scheduler" for scenario in document["scenarios"])
    lost_host1 = document["scenarios"][1]
    assert lost_host1["stopped_guests"][0]["room_on"] == ["host2", "host3"]
    assert "not for lack of room" in document["headline"]
    assert_agrees_with_naive(path, document)


@pytest.mark.parametrize(("vcpus", "code", "stopped"), [(2, 0, set()), (3, 2, {"g1", "g2"})])
def test_cpu_bound_tight_fits(cibs: pathlib.Path, vcpus: int, code: int, stopped: set[str]) -> None:
    path = planner_cibs.write(cibs, f"cpu{vcpus}", planner_cibs.cpu_bound(vcpus))
    actual, document = plan_json(path)
    assert actual == code
    lost_host1 = stopped_by_scenario(document)[("host1",)]
    assert lost_host1 <= stopped and len(lost_host1) == len(stopped) // 2
    assert_agrees_with_naive(path, document)


def test_the_fast_path_and_the_scheduler_agree(cibs: pathlib.Path) -> None:
    for name, text in [("n1", planner_cibs.n_plus_one()), ("bad", planner_cibs.not_n_plus_one())]:
        path = planner_cibs.write(cibs, name, text)
        _, fast = plan_json(path, "--failures", "2")
        _, exact = plan_json(path, "--failures", "2", "--no-fast-path")
        assert stopped_by_scenario(fast) == stopped_by_scenario(exact)
        assert all(scenario["method"] == "scheduler" for scenario in exact["scenarios"])


def test_json_schema(cibs: pathlib.Path) -> None:
    path = planner_cibs.write(cibs, "bad", planner_cibs.not_n_plus_one())
    _, document = plan_json(path)
    resources = {"memory_mib": int, "vcpus": int}
    shape: dict[str, Any] = {
        "schema": str,
        "command": str,
        "status": str,
        "exit_code": int,
        "headline": str,
        "source": str,
        "cib_epoch": str,
        "placement_strategy": str,
        "failures_checked": int,
        "tolerated_failures": (int, type(None)),
        "hosts": [{"name": str, "state": str, "capacity": resources}],
        "guests": int,
        "demand": resources,
        "scenarios": [
            {
                "failed_hosts": [str],
                "quorum": bool,
                "ok": bool,
                "method": str,
                "reason": str,
                "stopped_guests": [
                    {"resource": str, "was_on": [str], "room_on": [str], "memory_mib": int, "vcpus": int}
                ],
                "stopped_demand": resources,
                "shortfall": resources,
                "displaced_guests": [str],
                "survivors_capacity": resources,
                "hosts_after": [{"name": str, "capacity": resources, "load": resources, "free": resources}],
                "seconds": float,
            }
        ],
        "proved": int,
        "scheduler_runs": int,
        "schema_validated": bool,
        "seconds": float,
        "notes": [str],
    }
    check_shape(document, shape, "$")
    assert document["schema"] == "xenha-plan/1"
    assert document["status"] == "CRITICAL" and document["exit_code"] == 2


def check_shape(value: Any, shape: Any, where: str) -> None:
    if isinstance(shape, dict):
        assert isinstance(value, dict), where
        assert set(value) == set(shape), (where, set(value) ^ set(shape))
        for key, inner in shape.items():
            check_shape(value[key], inner, f"{where}.{key}")
    elif isinstance(shape, list):
        if value is None and where.endswith(".hosts_after"):
            return  # a proved scenario computes no placement after recovery
        assert isinstance(value, list), where
        for index, item in enumerate(value):
            check_shape(item, shape[0], f"{where}[{index}]")
    elif shape is float:
        assert isinstance(value, (int, float)), where
    else:
        assert isinstance(value, shape), (where, value)


def test_human_output_reads_in_five_seconds(cibs: pathlib.Path) -> None:
    path = planner_cibs.write(cibs, "bad", planner_cibs.not_n_plus_one())
    lines = xenha("plan", "--cib", path).stdout.splitlines()
    assert lines[0].startswith("XENHA PLAN CRITICAL - ")
    assert lines[4].split() == [
        "failed",
        "hosts",
        "guests",
        "left",
        "stopped",
        "MiB",
        "MiB",
        "short",
        "vCPUs",
        "short",
        "why",
    ]
    assert lines[5].split() == ["host1", "web1", "6144", "2048", "0", "the", "survivors", "lack", "room"]
    assert len(lines) < 20


def test_the_environment_is_honoured_for_a_live_cib(cibs: pathlib.Path) -> None:
    # Without --cib, the CIB comes from cibadmin --query, which reads CIB_file when set.
    path = planner_cibs.write(cibs, "n1", planner_cibs.n_plus_one())
    completed = subprocess.run(
        [XENHA, "plan"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "CIB_file": path},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "live CIB" in completed.stdout


def test_the_table_says_quorum_is_lost_instead_of_a_shortfall(cibs: pathlib.Path) -> None:
    # Two hosts of three lost: one node left, no majority; no-quorum-policy=stop stops everything.
    path = planner_cibs.write(cibs, "n1", planner_cibs.n_plus_one())
    lines = xenha("plan", "--cib", path, "--failures", "2").stdout.splitlines()
    rows = [line for line in lines if line.startswith("host1, host2")]
    assert len(rows) == 1, lines
    assert rows[0].split()[-5:] == ["-", "-", "quorum", "lost", "(no-quorum-policy=stop)"]
