"""xenha check-add and status, bad input, usage: exit codes and messages that name the fix."""

from __future__ import annotations

import io
import json
import pathlib
import subprocess
from typing import Any

from tests.acceptance import planner_cibs
from xenha.cli import Console, main
from xenha.planner.synthetic import GuestSpec, HostSpec, render_cib

ROOT = pathlib.Path(__file__).resolve().parents[2]
XENHA = str(ROOT / "bin" / "xenha")


def xenha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([XENHA, *args], capture_output=True, text=True, timeout=300, check=False)


def as_json(completed: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return dict(json.loads(completed.stdout))


# --- check-add ---------------------------------------------------------------------------


def test_a_guest_that_fits_keeps_the_cluster_n_plus_one(tmp_path: pathlib.Path) -> None:
    # n_plus_one with 4096/2 more: 24576 MiB; proof: 2 x 8193 = 16386 > 24576 - 8192.
    path = planner_cibs.write(tmp_path, "n1", planner_cibs.n_plus_one())
    completed = xenha("check-add", "--memory", "4096", "--vcpus", "2", "--cib", path)
    assert completed.returncode == 0, completed.stdout
    assert completed.stdout.startswith("XENHA CHECK-ADD OK - tolerates 1 host failure")
    document = as_json(xenha("check-add", "--memory", "4096", "--vcpus", "2", "--cib", path, "--json"))
    assert document["new_guest"] == {"resource": "xenha-check-add", "memory_mib": 4096, "vcpus": 2}
    assert document["scheduler_runs"] == 0


def test_a_guest_that_breaks_the_plan(tmp_path: pathlib.Path) -> None:
    # 12288 MiB starts on host3 (12288 free, the most). Losing host3: app1 and app2 (2048
    # each) find room, the new guest does not: 8192 free on host1, 8192 on host2 (12288 in
    # total once the apps are placed, so nothing is short in total: fragmentation).
    path = planner_cibs.write(tmp_path, "n1", planner_cibs.n_plus_one())
    completed = xenha("check-add", "--memory", "12288", "--vcpus", "2", "--cib", path, "--json")
    assert completed.returncode == 2, completed.stdout
    document = as_json(completed)
    breaking = [scenario for scenario in document["scenarios"] if not scenario["ok"]]
    assert [scenario["failed_hosts"] for scenario in breaking] == [["host3"]]
    assert [guest["resource"] for guest in breaking[0]["stopped_guests"]] == ["xenha-check-add"]
    assert breaking[0]["stopped_guests"][0]["was_on"] == ["host3"]
    text = xenha("check-add", "--memory", "12288", "--vcpus", "2", "--cib", path).stdout
    assert text.splitlines()[0] == (
        "XENHA CHECK-ADD NO - tolerates no host failure; losing host3 would leave xenha-check-add stopped: "
        "12288 MiB and 2 vCPUs needed: enough spare in total, but no single host has room"
    )


def test_a_guest_that_does_not_fit_at_all(tmp_path: pathlib.Path) -> None:
    path = planner_cibs.write(tmp_path, "n1", planner_cibs.n_plus_one())
    completed = xenha("check-add", "--memory", "20000", "--vcpus", "1", "--cib", path)
    assert completed.returncode == 2
    assert completed.stdout.splitlines()[0].startswith(
        "XENHA CHECK-ADD NO - even with every host up, xenha-check-add cannot run"
    )


# --- status ------------------------------------------------------------------------------


def test_status_counts_the_ledgers_reservations_only(tmp_path: pathlib.Path) -> None:
    """What the ledger holds in the agents' format counts; anything else in the set (another
    nvpair, a reservation in the format before issue 12) does not."""
    ledger = (
        '<cluster_property_set id="xenha-ledger-host2">'
        '<nvpair id="xenha-ledger-host2-lock" name="lock" value="free"/>'
        '<nvpair id="xenha-ledger-host2-r-1" name="xenha-ledger-host2-r-1" '
        'value="xenha-reservation/2 resource=web1 memory_mib=4160 vcpus=2 hold_s=240 holder=tok1"/>'
        '<nvpair id="xenha-ledger-host2-rsv-old" name="rsv-old" '
        'value="memory_mib=9999 vcpus=9 expires=1000 holder=tok0 resource=old"/>'
        "</cluster_property_set></crm_config>"
    )
    path = planner_cibs.write(tmp_path, "ledger", planner_cibs.n_plus_one().replace("</crm_config>", ledger, 1))
    document = as_json(xenha("status", "--cib", path, "--json"))
    hosts = {host["name"]: host for host in document["hosts"]}
    assert hosts["host2"]["capacity"] == {"memory_mib": 16384, "vcpus": 8}
    assert hosts["host2"]["used"] == {"memory_mib": 8192, "vcpus": 4}
    assert hosts["host2"]["reserved"] == {"memory_mib": 4160, "vcpus": 2}
    assert hosts["host2"]["free"] == {"memory_mib": 4032, "vcpus": 2}
    assert hosts["host1"]["reserved"] == {"memory_mib": 0, "vcpus": 0}
    assert [r["resource"] for r in document["reservations"]] == ["web1"]
    text = xenha("status", "--cib", path)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[1].split() == [
        "host",
        "state",
        "guests",
        "MiB",
        "used",
        "reserved",
        "free",
        "vCPUs",
        "used",
        "reserved",
        "free",
    ]
    assert lines[3].split() == ["host2", "up", "1", "16384", "8192", "4160", "4032", "8", "4", "2", "2"]
    assert "web1 -> host2: 4160 MiB, 2 vCPUs, held up to 240 s (holder tok1)" in text.stdout


# --- bad input ---------------------------------------------------------------------------

HOSTS = [HostSpec("host1", 8192, 4), HostSpec("host2", 8192, 4)]
GUESTS = [GuestSpec("web1", 2048, 1, "host1")]


def bad_input_cases(directory: pathlib.Path) -> list[tuple[str, str]]:
    def write(name: str, text: str) -> str:
        return planner_cibs.write(directory, name, text)

    cib = render_cib(HOSTS, GUESTS)
    return [
        (str(directory / "missing.xml"), "does not exist: give a CIB saved with 'cibadmin --query > FILE'"),
        (str(directory), "cannot read"),
        (write("empty", ""), "is empty"),
        (write("junk", "<cib><configuration>"), "not well-formed XML"),
        (write("other", "<html/>"), "not a CIB"),
        (write("invalid", cib.replace('<primitive id="web1" class="ocf"', '<primitive id="web1" klass="ocf"')), "does not validate against pacemaker-3.9"),
        (write("noguests", render_cib(HOSTS, [])), "no xen-guest resources"),
        (write("nodemand", render_cib(HOSTS, [GuestSpec("web1", None, None, "host1")])), "no xen-guest resource has utilization"),
        (write("nocapacity", render_cib([HostSpec("host1", None, None), HostSpec("host2", None, None)], GUESTS)), "no host has an hv_memory capacity"),
        (write("noquorum", render_cib(HOSTS, GUESTS, have_quorum=False)), "the cluster has no quorum"),
        (write("default", render_cib(HOSTS, GUESTS, placement_strategy="default")), "placement-strategy is 'default'"),
    ]  # fmt: skip


def test_bad_input_is_unknown_with_the_fix(tmp_path: pathlib.Path) -> None:
    for path, message in bad_input_cases(tmp_path):
        completed = xenha("plan", "--cib", path)
        assert completed.returncode == 3, (path, completed.stdout)
        assert completed.stdout.startswith("XENHA PLAN UNKNOWN - "), completed.stdout
        assert message in completed.stdout, (message, completed.stdout)
        document = as_json(xenha("plan", "--cib", path, "--json"))
        assert document["status"] == "UNKNOWN" and document["exit_code"] == 3
        assert message in document["error"]


def test_the_fixes_named_are_real_commands(tmp_path: pathlib.Path) -> None:
    messages = {message: xenha("plan", "--cib", path).stdout for path, message in bad_input_cases(tmp_path)}
    assert (
        "crm_attribute --type crm_config --name placement-strategy --update balanced"
        in messages["placement-strategy is 'default'"]
    )
    assert (
        "crm_attribute --type nodes --node HOST --utilization --name hv_memory --update MIB"
        in messages["no host has an hv_memory capacity"]
    )


def test_crm_simulate_missing() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err, find_tool=lambda name: None)
    code = main(["plan", "--cib", "/nonexistent.xml"], console)
    assert code == 3
    assert out.getvalue() == (
        "XENHA PLAN UNKNOWN - crm_simulate is not installed: install pacemaker-cli-utils "
        "(apt-get install pacemaker-cli-utils)\n"
    )


def test_usage_errors_are_unknown_not_critical() -> None:
    for args in (
        ["plan", "--failures", "x"],
        ["plan", "--failures", "-1"],
        ["check-add", "--memory", "1"],
        [],
    ):
        completed = xenha(*args)
        assert completed.returncode == 3, args


def test_version() -> None:
    import xenha as package

    completed = xenha("--version")
    assert (completed.returncode, completed.stdout) == (0, f"xenha {package.__version__}\n")


def test_a_scheduler_error_is_unknown(tmp_path: pathlib.Path) -> None:
    # An old-schema CIB is not validated here (the fast path steps aside) and crm_simulate
    # judges it: here it rejects it, and the plan says so.
    cib = render_cib(HOSTS, GUESTS).replace('validate-with="pacemaker-3.9"', 'validate-with="pacemaker-9.9"')
    path = planner_cibs.write(tmp_path, "future", cib)
    completed = xenha("plan", "--cib", path)
    assert completed.returncode == 3
    assert completed.stdout.startswith("XENHA PLAN UNKNOWN - crm_simulate")
