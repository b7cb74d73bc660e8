"""xenha verify's pure parts: the checks on parsed CIBs with given facts, corosync's answers,
the commands as shown, the figures of the timing checks."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import pytest

from tests.support import verify_cibs
from xenha.libvirt.domxml import DomainSpec, GuestType
from xenha.planner.cibdocument import read_cib_document
from xenha.runner import CommandResult, CommandRunner
from xenha.verify import sources
from xenha.verify.checks import CHECKS, run_checks
from xenha.verify.facts import DomainFile, Facts, NPlusOne
from xenha.verify.findings import Finding, Fix
from xenha.verify.fixes import operation
from xenha.verify.model import ClusterConfig, build_config


def config_of(cib: verify_cibs.CibEdit) -> ClusterConfig:
    return build_config(read_cib_document(cib.text().encode()))


def checks_found(cib: verify_cibs.CibEdit, facts: Facts | None = None) -> list[Finding]:
    return list(run_checks(config_of(cib), facts or Facts()))


def test_every_check_has_a_unique_name() -> None:
    names = [name for name, _ in CHECKS]
    assert len(names) == len(set(names)) == 20


def test_the_clean_cluster_has_no_finding() -> None:
    assert checks_found(verify_cibs.clean()) == []


def test_op_defaults_timeout_counts_for_operations_without_their_own() -> None:
    cib = verify_cibs.clean().remove_ops("db1", "migrate_to")
    (finding,) = checks_found(cib)
    assert finding.check == "migrate-timeout"
    assert finding.problem.startswith("migrate_to timeout 20 s (Pacemaker's default: no timeout set) leaves 14 s")
    cib.root.find("configuration").append(
        cib.root.makeelement("op_defaults", {})
    )  # an empty op_defaults changes nothing
    assert [item.check for item in checks_found(cib)] == ["migrate-timeout"]
    op_defaults = cib.root.find("configuration/op_defaults")
    meta = op_defaults.makeelement("meta_attributes", {"id": "op-options"})
    meta.append(meta.makeelement("nvpair", {"id": "op-options-timeout", "name": "timeout", "value": "300s"}))
    op_defaults.append(meta)
    assert checks_found(cib) == []


def test_migrate_timeout_uses_migration_speed_when_set() -> None:
    # db1: 8192 MiB; at 500 MiB/s: 1.5 x 8192 / 500 + 10 = 34.6 s; a 60 s timeout leaves 51 s.
    cib = verify_cibs.clean().op("db1", "migrate_to", timeout="60s")
    (finding,) = checks_found(cib)
    assert "needs 133 s at 100 MiB/s (assumed; --bandwidth states it)" in finding.problem
    assert "a timeout of 170 s is enough" in finding.problem
    assert checks_found(cib.param("db1", "migration_speed", "500")) == []


def test_migrate_timeout_reads_the_memory_of_the_domain_xml_when_it_has_it() -> None:
    cib = verify_cibs.clean().op("app1", "migrate_to", timeout="60s")  # app1's hv_memory: 2048, fits
    assert checks_found(cib) == []
    spec = DomainSpec("app1", None, "xen", GuestType.PV, 16384, 1, 0)
    domains = {"app1": DomainFile("app1", "/x/app1.xml", spec)}
    (finding,) = [item for item in checks_found(cib, Facts(domains=domains)) if item.check == "migrate-timeout"]
    assert "to copy 16384 MiB of memory" in finding.problem


def test_an_hvm_guest_that_refuses_migration_needs_no_migrate_timeout() -> None:
    cib = verify_cibs.clean().op("app1", "migrate_to", timeout="20s")
    spec = DomainSpec("app1", None, "xen", GuestType.HVM, 1984, 1, 0)
    facts = Facts(domains={"app1": DomainFile("app1", "/x/app1.xml", spec)})
    assert [item.check for item in checks_found(cib, facts)] == []
    cib.param("app1", "hvm_migration", "live")
    assert [item.check for item in checks_found(cib, facts)] == ["migrate-timeout", "hvm-live-migration"]


def test_the_stop_timeout_keeps_a_third_for_destroying() -> None:
    cib = verify_cibs.clean().param("app1", "shutdown_timeout", "60").op("app1", "stop", timeout="90s")
    assert checks_found(cib) == []  # 90 s leaves 60 s: enough
    (finding,) = checks_found(cib.param("app1", "shutdown_timeout", "61"))
    assert finding.check == "stop-timeout" and "a stop timeout of 100 s allows it" in finding.problem
    assert checks_found(cib.param("app1", "force_stop", "true")) == []


def test_n_plus_one_severity_follows_the_planner() -> None:
    cib = verify_cibs.clean()
    assert checks_found(cib, Facts(nplus1=NPlusOne(True, 1, "tolerates 1 host failure"))) == []
    (warning,) = checks_found(cib, Facts(nplus1=NPlusOne(True, 0, "tolerates no host failure; ...")))
    (critical,) = checks_found(cib, Facts(nplus1=NPlusOne(True, None, "even with every host up, ...")))
    assert (warning.severity.word, critical.severity.word) == ("WARNING", "CRITICAL")


def test_a_device_without_a_host_list_covers_every_node() -> None:
    cib = verify_cibs.clean()
    assert checks_found(cib) == []  # render_cib's fence_dummy has no pcmk_host_list
    cib.remove("fence")
    assert [(item.check, item.subject) for item in checks_found(cib)] == [
        ("fencing", "node host1"),
        ("fencing", "node host2"),
        ("fencing", "node host3"),
    ]


def test_a_stopped_fence_device_covers_nothing() -> None:
    cib = verify_cibs.clean().meta("fence", "target-role", "Stopped")
    assert {item.subject for item in checks_found(cib)} == {"node host1", "node host2", "node host3"}


def test_placement_default_is_fine_when_nothing_carries_utilization() -> None:
    cib = verify_cibs.clean().property("placement-strategy", "default")
    assert [item.check for item in checks_found(cib)] == ["placement-strategy"]
    for guest in verify_cibs.GUESTS:
        cib.utilization(guest.name, "hv_memory", None).utilization(guest.name, "cpu", None)
        cib.param(guest.name, "autoset_utilization_hv_memory", "false").param(
            guest.name, "autoset_utilization_cpu", "false"
        )
    for host in verify_cibs.HOSTS:
        cib.node_utilization(host, "hv_memory", None).node_utilization(host, "cpu", None)
    assert [item.check for item in checks_found(cib)] == []


def test_shareable_and_readonly_disks_are_not_a_double_write(tmp_path: pathlib.Path) -> None:
    shared = tmp_path / "shared.xml"
    shared.write_text(verify_cibs.domain_xml("a", 960, 1).replace("</disk>", "<shareable/></disk>", 1))
    assert sources.read_domain("a", str(shared)).writable_disks == ()
    plain = tmp_path / "plain.xml"
    plain.write_text(verify_cibs.domain_xml("b", 960, 1, disk="/srv/xen/./b.img"))
    assert sources.read_domain("b", str(plain)).writable_disks == ("/srv/xen/b.img",)


def test_an_unreadable_domain_xml_names_the_file_and_this_node(tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<domain type='xen'><name>x</name></domain>")
    result = sources.read_domain("x", str(broken))
    assert result.spec is None and result.error is not None
    assert str(broken) in result.error and "<memory>" in result.error and result.error.endswith("(on this node)")


# --- corosync ----------------------------------------------------------------------------


class ScriptedRunner(CommandRunner):
    """Answers each expected argv with a canned result; fails on anything else."""

    def __init__(self, answers: dict[tuple[str, ...], CommandResult]) -> None:
        super().__init__({})
        self.answers = answers
        self.asked: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], timeout_s: float, input_text: str | None = None) -> CommandResult:
        key = tuple(argv)
        assert key in self.answers, key
        assert timeout_s <= 10
        self.asked.append(key)
        return self.answers[key]


RUNTIME = ("corosync-cmapctl", "-g", "runtime.votequorum.two_node")
CONFIGURED = ("corosync-cmapctl", "-g", "quorum.two_node")


def test_two_node_is_read_from_the_running_corosync() -> None:
    runner = ScriptedRunner({RUNTIME: CommandResult(RUNTIME, 0, "runtime.votequorum.two_node (u8) = 1\n")})
    assert sources.two_node_live(runner) == (True, "corosync-cmapctl runtime.votequorum.two_node")


def test_two_node_unset_in_corosync_is_off() -> None:
    missing = "Can't get key quorum.two_node. Error CS_ERR_NOT_EXIST\n"
    runner = ScriptedRunner(
        {
            RUNTIME: CommandResult(RUNTIME, 1, "", "Can't get key runtime.votequorum.two_node. Error CS_ERR_NOT_EXIST"),
            CONFIGURED: CommandResult(CONFIGURED, 1, missing),
        }
    )
    assert sources.two_node_live(runner) == (False, "corosync-cmapctl: quorum.two_node is not set")
    assert runner.asked == [RUNTIME, CONFIGURED]


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (CommandResult(RUNTIME, None, not_started="not installed"), "corosync-cmapctl is not installed"),
        (
            CommandResult(RUNTIME, 1, "", "Failed to initialize the cmap API. Error CS_ERR_LIBRARY"),
            "is corosync running",
        ),
    ],
)
def test_two_node_unknown_says_why(result: CommandResult, reason: str) -> None:
    runner = ScriptedRunner({RUNTIME: result, CONFIGURED: result._replace(argv=CONFIGURED)})
    known, source = sources.two_node_live(runner)
    assert known is None and reason in source


# --- commands as shown ---------------------------------------------------------------------


def test_a_new_operation_is_added_by_crmsh_filter_quoted_for_a_shell() -> None:
    fix = operation("db1", "migrate_to", {"timeout": "160s"}, exists=False)
    assert Fix.shown(fix.pcs) == ["pcs resource update db1 op migrate_to timeout=160s"]
    assert Fix.shown(fix.crmsh) == [
        """crm configure filter 'sed "$ s/$/ op migrate_to timeout=160s interval=0s/"' db1"""
    ]
    existing = operation("db1", "migrate_to", {"timeout": "160s"}, exists=True)
    assert Fix.shown(existing.crmsh) == ["crm configure set db1.migrate_to.timeout 160s"]


def test_the_bandwidth_stated_on_the_command_line_is_said_to_be_stated() -> None:
    # db1: 8192 MiB with a 120 s migrate_to (102 s to copy). At 1000 MiB/s: 22.3 s, fine;
    # at 50 MiB/s: 1.5 x 8192 / 50 + 10 = 255.8 s, and a timeout of 310 s would do.
    cib = verify_cibs.clean().op("db1", "migrate_to", timeout="120s")
    assert checks_found(cib, Facts(bandwidth_mib_s=1000, bandwidth_stated=True)) == []
    (finding,) = checks_found(cib, Facts(bandwidth_mib_s=50, bandwidth_stated=True))
    assert "needs 256 s at 50 MiB/s (stated with --bandwidth)" in finding.problem
    assert Fix.shown(finding.fix.pcs) == ["pcs resource update db1 op migrate_to timeout=320s"]
    assert Fix.shown(finding.fix.crmsh) == ["crm configure set db1.migrate_to.timeout 320s"]


def test_the_table_groups_one_check_over_several_objects() -> None:
    from xenha.verify.report import render_text
    from xenha.verify.run import Verdict

    cib = verify_cibs.clean().node_utilization("host2", "host_memory", "1").utilization("app1", "memory", "1")
    cib.utilization("app2", "memory", "1")
    config = config_of(cib)
    findings = run_checks(config, Facts())
    text = render_text(Verdict("test.xml", config, Facts(), findings, 20, 0.01))
    (row,) = [line for line in text.splitlines() if line.split()[:2] == ["WARNING", "foreign-utilization"]]
    assert "3 objects: node host2, resource app1 and 1 more" in row
    assert text.count("WARNING foreign-utilization, ") == 3  # the details, up to three per check
    config = config_of(verify_cibs.clean().utilization("app1", "memory", "1").utilization("app2", "memory", "1"))
    text = render_text(Verdict("test.xml", config, Facts(), run_checks(config, Facts()), 20, 0.01))
    assert "2 resources: app1, app2" in text


def test_domain_xml_reading_stops_when_its_time_is_spent(tmp_path: pathlib.Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    config = config_of(verify_cibs.clean(configs))
    ticks = iter(range(0, 1000, 10))  # every look at the clock: 10 s later; the start is 0
    found = sources.read_domains(config, budget_s=30.0, clock=lambda: float(next(ticks)))
    read = [name for name, domain in found.items() if domain.spec is not None]
    unread = [domain.error for domain in found.values() if domain.error is not None]
    assert read == ["web1", "web2", "db1"] and len(unread) == 2  # read at 10, 20 and 30 s
    assert unread[0] is not None and "took over 30 s (stopped after 3 of 5)" in unread[0]
