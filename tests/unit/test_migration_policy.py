"""Migration by what the hypervisor can do (issue 11 item 3): the pure decision, every guest
type x what the sending host can live-migrate x policy; and migrate_to acting on it through the
service seam (the paused move, its pause logged and kept, the refusals before any booking)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.unit.test_guest_migration_settle import PAUSED_BY_LIBXL, TwoNodes, XenDomain, fails_after_final_suspend
from xenha.agents.guest.migration_plan import Method, choose_method, paused_estimate, timeout_needed_s
from xenha.deadline import Deadline
from xenha.libvirt.domxml import GuestType
from xenha.libvirt.drivers import traits
from xenha.libvirt.live_migration import ALL_TYPES, LiveMigration, host_live_migration, live_types, virt_caps
from xenha.ocf import OcfExit
from xenha.runner import CommandResult
from xenha.statefile import StateFile

POLICIES = ("auto", "live", "paused", "save-restore", "refuse")
# What a sending host can live-migrate, as Xen's virt_caps make it (None: xl info did not answer).
HOSTS: dict[str, frozenset[GuestType] | None] = {
    "unknown": None,
    "debian (pv, no shadow, no hap)": frozenset(),
    "hap only": frozenset({GuestType.HVM, GuestType.PVH}),
    "shadow": frozenset(GuestType),
}


def expected(guest: GuestType, policy: str, live_ok: bool) -> Method:
    """The policy as docs/decisions/migration-by-capability.md writes it, row by row."""
    if policy == "auto":
        return Method.LIVE if live_ok else Method.PAUSED
    if policy == "live":
        return Method.LIVE if live_ok else Method.REFUSE  # never a doomed live attempt
    return Method(policy)  # paused, save-restore, refuse: whatever the host can do


@pytest.mark.parametrize(
    ("guest", "host", "policy"), list(itertools.product(GuestType, HOSTS, POLICIES)), ids=str
)
def test_every_guest_type_host_and_policy(guest: GuestType, host: str, policy: str) -> None:
    types = HOSTS[host]
    found = None if types is None else LiveMigration(types, host)
    plan = choose_method(guest, policy, found, "xenhost1")
    assert plan.method is expected(guest, policy, types is not None and guest in types)
    parameter = "hvm_migration" if guest is GuestType.HVM else "pv_migration"
    assert f"{parameter}={policy}" in plan.why
    if plan.method is Method.REFUSE and policy == "live":
        assert "cannot live-migrate" in plan.why or "unknown" in plan.why
        assert f"(set {parameter}=auto or paused to move it paused)" in plan.why


def test_virt_caps_of_debians_xen_allow_no_live_migration() -> None:
    caps = virt_caps("release : 6.1.0\nvirt_caps              : pv gnttab-v1 gnttab-v2\nfree_memory : 748\n")
    assert caps == ["pv", "gnttab-v1", "gnttab-v2"]
    assert live_types(caps) == frozenset()
    assert live_types(["pv", "hvm", "hap", "shadow", "hvm_directio"]) == frozenset(GuestType)
    assert LiveMigration(live_types(["hvm", "hap"]), "").attribute == "pvh,hvm"


class FakeRunner:
    def __init__(self, stdout: str, returncode: int = 0) -> None:
        self.result = CommandResult(("xl", "info"), returncode, stdout)
        self.calls = 0

    def run(self, argv: list[str], timeout_s: float) -> CommandResult:
        self.calls += 1
        assert argv == ["xl", "info"] and 0 < timeout_s <= 10
        return self.result


def test_xl_info_is_read_once_per_boot_and_not_for_qemu(tmp_path: Path) -> None:
    cache = StateFile(str(tmp_path), "host", "live-migration")
    runner = FakeRunner("virt_caps : pv hvm hap\n")
    deadline = Deadline.after(30)
    first = host_live_migration(traits("xen"), deadline, cache, runner)  # type: ignore[arg-type]
    again = host_live_migration(traits("xen"), deadline, cache, runner)  # type: ignore[arg-type]
    assert first == again and first is not None and first.types == {GuestType.HVM, GuestType.PVH}
    assert runner.calls == 1
    assert "pv hvm hap" in first.evidence
    qemu = host_live_migration(traits("qemu"), deadline, cache, FakeRunner(""))  # type: ignore[arg-type]
    assert qemu is not None and qemu.types == ALL_TYPES


def test_xl_info_failing_is_unknown(tmp_path: Path) -> None:
    cache = StateFile(str(tmp_path), "host", "live-migration")
    failed = FakeRunner("", returncode=1)
    assert host_live_migration(traits("xen"), Deadline.after(30), cache, failed) is None  # type: ignore[arg-type]
    assert cache.load() == {}  # nothing kept: asked again next time


def test_paused_estimate_and_the_timeout_it_needs() -> None:
    assumed = paused_estimate(4096, None)
    assert (assumed.seconds, assumed.measured) == (40.96, False)
    assert "assumed" in assumed.describe()
    assert paused_estimate(128, 6.4).seconds == 20.0
    # 200 s of copy after 1 s: 0.8 T >= 201 -> T >= 251.25 -> 260
    assert timeout_needed_s(200, 1) == 260


# ---- migrate_to through the service seam -----------------------------------------------------
@pytest.fixture
def nodes(tmp_path: Path) -> TwoNodes:
    return TwoNodes(tmp_path)


def no_live(nodes: TwoNodes) -> None:
    real = nodes.make_services

    def services(ctx):  # type: ignore[no-untyped-def]
        made = real(ctx)
        made.live = LiveMigration(frozenset(), "Xen's virt_caps: pv gnttab-v1 gnttab-v2")
        return made

    nodes.make_services = services  # type: ignore[method-assign]


def migrate(nodes: TwoNodes, timeout_ms: int = 30000, **params: str) -> int:
    code = nodes.run(
        "migrate_to", CRM_meta_migrate_source="node1", CRM_meta_migrate_target="node2",
        CRM_meta_timeout=str(timeout_ms), **params,
    )  # fmt: skip
    assert "Traceback" not in nodes.log
    return code


def moves(domain: XenDomain) -> None:
    nodes_target = domain.xen.moves_to
    nodes_target.domains[domain.name] = XenDomain(nodes_target, domain.name)
    domain.xen.domains.pop(domain.name)


def test_a_pv_guest_moves_paused_where_the_host_cannot_live_migrate(nodes: TwoNodes) -> None:
    no_live(nodes)
    nodes.source.moves_to = nodes.target  # type: ignore[attr-defined]
    nodes.guest.on_migrate = moves
    assert migrate(nodes) == OcfExit.SUCCESS
    assert nodes.source.migrations == ["paused"]
    assert "moving web1 to node2 paused: pv_migration=auto: node1 cannot live-migrate PV guests" in nodes.log
    assert "the guest stops for about 11 s (1024 MiB at 100.0 MiB/s, an assumed rate)" in nodes.log
    assert "web1 was paused for " in nodes.log
    rates = json.loads(Path(nodes.rsctmp, "xenha-xen-guest-paused-migration-rates.json").read_text())
    assert rates["node2"] > 100  # measured: the fake moves at once
    assert nodes.released


def test_a_paused_move_that_cannot_end_in_time_is_refused_before_booking(nodes: TwoNodes) -> None:
    no_live(nodes)
    Path(nodes.rsctmp).mkdir(exist_ok=True)
    # measured on the last move there: 1024 MiB at 20 MiB/s = 52 s; the timeout is 30 s
    Path(nodes.rsctmp, "xenha-xen-guest-paused-migration-rates.json").write_text('{"node2": 20.0}')
    assert migrate(nodes) == OcfExit.ERR_GENERIC
    assert nodes.source.migrations == []
    assert nodes.ledger.booked == []
    assert "would be paused for about 52 s (1024 MiB at 20.0 MiB/s, as measured on the last paused move there)" in (
        nodes.log
    )
    assert "raise migrate_to's timeout to at least 70 s" in nodes.log


def test_live_where_the_host_cannot_is_refused_before_booking(nodes: TwoNodes) -> None:
    no_live(nodes)
    assert migrate(nodes, pv_migration="live") == OcfExit.ERR_GENERIC
    assert nodes.source.migrations == [] and nodes.ledger.booked == []
    assert "web1 is not migrated to node2: it is a PV guest and pv_migration=live, but node1 cannot live-migrate PV" in nodes.log


def test_live_where_the_host_can(nodes: TwoNodes) -> None:
    nodes.source.moves_to = nodes.target  # type: ignore[attr-defined]
    nodes.guest.on_migrate = moves
    assert migrate(nodes) == OcfExit.SUCCESS
    assert nodes.source.migrations == ["live"]


def test_a_failed_paused_move_is_settled_as_a_live_one(nodes: TwoNodes) -> None:
    """The paused method keeps the invariants: the booking released, the target's incomplete
    copy destroyed before the source (suspended by libxl for the copy) is resumed."""
    no_live(nodes)
    nodes.guest.on_migrate = fails_after_final_suspend(nodes, PAUSED_BY_LIBXL)
    assert migrate(nodes) == OcfExit.ERR_GENERIC
    assert nodes.source.migrations == ["paused"]
    assert nodes.events == ["destroy on node2", "resume on node1"]
    assert "failed, it runs on node1 only" in nodes.log
    assert "was paused for" not in nodes.log  # no pause is reported for a move that failed
    assert nodes.released
    rates = Path(nodes.rsctmp, "xenha-xen-guest-paused-migration-rates.json")
    assert not rates.exists()  # a failed copy measures no rate
