"""xenha verify on CIB files: every check triggered by a CIB and silent on the clean one, and
the fix commands it prints applied with the real pcs and crmsh to the CIB file, after which
the finding is gone.

The fixes are read from verify's own JSON output (what an operator would paste), their
placeholders filled in, and run as ``pcs -f FILE ...`` and ``CIB_file=FILE crm ...``
inside tests/support/with-agents (so that both tools find ocf:xenha:*).
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import verify_cibs
from tests.support.verify_cibs import CibEdit

ROOT = pathlib.Path(__file__).resolve().parents[2]
XENHA = str(ROOT / "bin" / "xenha")
WITH_AGENTS = str(ROOT / "tests" / "support" / "with-agents")
TOOL_TIMEOUT_S = 120


def verify(path: str, *options: str) -> tuple[int, dict[str, Any]]:
    completed = subprocess.run(
        [XENHA, "verify", "--cib", path, "--json", *options], capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.stdout.startswith("{"), completed.stdout + completed.stderr
    return completed.returncode, json.loads(completed.stdout)


def findings(document: dict[str, Any], check: str, subject: str | None = None) -> list[dict[str, Any]]:
    return [
        finding
        for finding in document["findings"]
        if finding["check"] == check and (subject is None or finding["object"] == subject)
    ]


@dataclass
class Case:
    """A CIB edit that breaks one check, and what the fix needs to be applied."""

    check: str
    subject: str
    severity: str
    edit: Callable[[CibEdit, pathlib.Path], object]
    fill: dict[str, str] = field(default_factory=dict)  # placeholder -> value
    options: tuple[str, ...] = ("--no-plan",)
    configs: bool = False  # write domain XML files and read them (--configs)
    also: tuple[str, ...] = ()  # other checks the edit triggers too


def _extra_guest(cib: CibEdit, name: str, config: str) -> CibEdit:
    return cib.add_resource(
        f'<primitive id="{name}" class="ocf" provider="xenha" type="xen-guest">'
        f'<instance_attributes id="{name}-ia"><nvpair id="{name}-ia-config" name="config" value="{config}"/>'
        f'</instance_attributes><meta_attributes id="{name}-meta_attributes">'
        f'<nvpair id="{name}-ma-am" name="allow-migrate" value="true"/></meta_attributes>'
        f'<utilization id="{name}-utilization"><nvpair id="{name}-u-m" name="hv_memory" value="1024"/>'
        f'<nvpair id="{name}-u-c" name="cpu" value="1"/></utilization>'
        f'<operations><op id="{name}-monitor" name="monitor" interval="10s" timeout="30s"/>'
        f'<op id="{name}-mt" name="migrate_to" interval="0s" timeout="300s"/></operations></primitive>'
    )


def _write_domain(directory: pathlib.Path, name: str, **kwargs: Any) -> str:
    path = directory / f"{name}.xml"
    path.write_text(verify_cibs.domain_xml(name, kwargs.pop("memory", 960), kwargs.pop("vcpus", 1), **kwargs))
    return str(path)


CASES = {
    "stonith-disabled": Case("fencing", "cluster", "CRITICAL", lambda c, d: c.property("stonith-enabled", "false")),
    "node-not-covered": Case(
        "fencing",
        "node host3",
        "CRITICAL",
        lambda c, d: c._set(c.primitive("fence"), "instance_attributes", "fence-ia", "pcmk_host_list", "host1 host2"),
        {"BMC-ADDRESS": "192.0.2.13", "USER": "admin", "PASSWORD": "secret"},
    ),
    "no-quorum-ignore": Case("quorum", "cluster", "CRITICAL", lambda c, d: c.property("no-quorum-policy", "ignore")),
    "placement-default": Case(
        "placement-strategy", "cluster", "CRITICAL", lambda c, d: c.property("placement-strategy", "default")
    ),
    "node-without-capacity": Case(
        "node-capacity",
        "node host3",
        "CRITICAL",
        lambda c, d: c.node_utilization("host3", "hv_memory", None),
        {"MIB": "16384"},
    ),
    "no-xen-host": Case("xen-host-clone", "cluster", "WARNING", lambda c, d: c.remove("xen-host-clone")),
    "xen-host-not-cloned": Case(
        "xen-host-clone", "resource xen-host", "WARNING", lambda c, d: c.unclone("xen-host-clone")
    ),
    "xen-host-clone-max": Case(
        "xen-host-clone", "resource xen-host-clone", "WARNING", lambda c, d: c.meta("xen-host-clone", "clone-max", "2")
    ),
    "xen-host-banned": Case(
        "xen-host-clone",
        "resource xen-host-clone",
        "WARNING",
        lambda c, d: c.add_constraint(
            '<rsc_location id="ban-xh" rsc="xen-host-clone" node="host2" score="-INFINITY"/>'
        ),
    ),
    "xen-host-unhealthy": Case(
        "xen-host-clone",
        "resource xen-host-clone",
        "WARNING",
        lambda c, d: c.meta("xen-host-clone", "allow-unhealthy-nodes", None),
    ),
    "health-ignored": Case("node-health", "cluster", "WARNING", lambda c, d: c.property("node-health-strategy", None)),
    "guest-too-large": Case(
        "guest-too-large", "resource db1", "CRITICAL", lambda c, d: c.utilization("db1", "cpu", "16")
    ),
    "same-config-file": Case(
        "duplicate-domain",
        "resource web1-copy",
        "CRITICAL",
        lambda c, d: _extra_guest(c, "web1-copy", "/etc/xen/guests/web1.xml"),
    ),
    "no-allow-migrate": Case(
        "allow-migrate", "resource web2", "WARNING", lambda c, d: c.meta("web2", "allow-migrate", None)
    ),
    "migrate-timeout-unset": Case(
        "migrate-timeout", "resource db1", "WARNING", lambda c, d: c.remove_ops("db1", "migrate_to")
    ),
    "migrate-timeout-short": Case(
        "migrate-timeout", "resource db1", "WARNING", lambda c, d: c.op("db1", "migrate_to", timeout="60s")
    ),
    "stop-timeout": Case(
        "stop-timeout",
        "resource app1",
        "WARNING",
        lambda c, d: (c.param("app1", "shutdown_timeout", "120"), c.op("app1", "stop", timeout="90s")),
    ),
    "no-monitor": Case("monitor", "resource app2", "CRITICAL", lambda c, d: c.remove_ops("app2", "monitor")),
    "stickiness-default": Case(
        "stickiness", "cluster", "WARNING", lambda c, d: c.rsc_default("resource-stickiness", "0")
    ),
    "stickiness-own": Case(
        "stickiness", "resource web1", "WARNING", lambda c, d: c.meta("web1", "resource-stickiness", "0")
    ),
    "migration-limit": Case(
        "migration-limit",
        "cluster",
        "INFO",
        lambda c, d: (
            c.property("migration-limit", None),
            c.op("web1", "migrate_to", timeout="90s"),
            c.op("web2", "migrate_to", timeout="90s"),
        ),
    ),
    "foreign-node-utilization": Case(
        "foreign-utilization", "node host2", "WARNING", lambda c, d: c.node_utilization("host2", "host_memory", "16384")
    ),
    "foreign-guest-utilization": Case(
        "foreign-utilization", "resource app1", "WARNING", lambda c, d: c.utilization("app1", "memory", "2048")
    ),
    "config-file-missing": Case(
        "config-file",
        "resource app2",
        "CRITICAL",
        lambda c, d: c.param("app2", "config", str(d / "gone.xml")),
        {"PATH-TO-DOMAIN-XML": "{configs}/app2.xml"},
        configs=True,
    ),
    "same-domain-name": Case(
        "duplicate-domain",
        "resource web1-copy",
        "CRITICAL",
        lambda c, d: _extra_guest(c, "web1-copy", _write_domain(d / "copy", "web1", disk="/srv/xen/other.img")),
        configs=True,
    ),
    "shared-disk": Case(
        "shared-disk",
        "resource extra",
        "CRITICAL",
        lambda c, d: _extra_guest(c, "extra", _write_domain(d, "extra", disk="/srv/xen/db1.img")),
        configs=True,
    ),
    "utilization-by-hand": Case(
        "utilization-mismatch",
        "resource db1",
        "WARNING",
        lambda c, d: (
            c.param("db1", "autoset_utilization_hv_memory", "false"),
            c.utilization("db1", "hv_memory", "7000"),
        ),
        configs=True,
    ),
    "hvm-live": Case(
        "hvm-live-migration",
        "resource extra",
        "INFO",
        lambda c, d: (
            _extra_guest(c, "extra", _write_domain(d, "extra", os_type="hvm")),
            c.param("extra", "hvm_migration", "live"),
        ),
        {"SHARED-DIR": "/srv/xen/save"},
        configs=True,
    ),
}


def _prepare(case: Case, tmp_path: pathlib.Path) -> tuple[str, tuple[str, ...]]:
    configs = tmp_path / "configs"
    (configs / "copy").mkdir(parents=True)
    cib = verify_cibs.clean(configs if case.configs else None)
    case.edit(cib, configs)
    options = (*case.options, "--configs") if case.configs else case.options
    return cib.write(tmp_path / "cib.xml"), options


def _apply(commands: list[str], tool: str, path: str, fill: dict[str, str], configs: pathlib.Path) -> None:
    env = {**os.environ, "CIB_file": path}
    for shown in commands:
        command = shown
        for placeholder, value in fill.items():
            command = command.replace(placeholder, value.format(configs=configs))
        argv = shlex.split(command)
        assert argv[0] == tool, command
        if tool == "pcs":
            argv = [argv[0], "-f", path, *argv[1:]]
        completed = subprocess.run(
            [WITH_AGENTS, *argv], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, env=env, check=False
        )
        assert completed.returncode == 0, f"{command}: {completed.stdout}{completed.stderr}"


def test_the_clean_cluster_passes_every_check(tmp_path: pathlib.Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    path = verify_cibs.clean(configs).write(tmp_path / "cib.xml")
    code, document = verify(path, "--configs")
    assert document["findings"] == [] and code == 0, document["findings"]
    assert document["status"] == "OK" and document["domain_xml_read"] is True
    assert document["guests"] == 5 and document["hosts"] == 3


@pytest.mark.parametrize("tool", ["pcs", "crmsh"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_check_triggers_and_its_fix_removes_it(name: str, tool: str, tmp_path: pathlib.Path) -> None:
    case = CASES[name]
    path, options = _prepare(case, tmp_path)
    code, document = verify(path, *options)
    found = findings(document, case.check, case.subject)
    assert len(found) == 1, document["findings"]
    finding = found[0]
    assert finding["severity"] == case.severity
    assert finding["why"] and finding["problem"]
    assert {item["check"] for item in document["findings"]} == {case.check, *case.also}, document["findings"]
    assert code == {"CRITICAL": 2, "WARNING": 1, "INFO": 0}[document["findings"][0]["severity"]]
    assert sorted(finding["fix"]["placeholders"]) == sorted(case.fill)
    _apply(finding["fix"][tool], "pcs" if tool == "pcs" else "crm", path, case.fill, tmp_path / "configs")
    _, after = verify(path, *options)
    assert findings(after, case.check, case.subject) == [], after["findings"]


# --- the N+1 check: the planner's answer, the scheduler where the proof does not reach ------


def test_a_cluster_that_is_not_n_plus_one_is_a_warning(tmp_path: pathlib.Path) -> None:
    from tests.acceptance import planner_cibs

    path = planner_cibs.write(tmp_path, "tight", planner_cibs.not_n_plus_one())
    code, document = verify(path)
    (finding,) = findings(document, "n-plus-one")
    assert finding["severity"] == "WARNING" and code >= 1
    assert finding["problem"].startswith("tolerates no host failure; losing host")
    assert "MiB short" in finding["problem"]
    assert finding["fix"]["pcs"] == ["xenha plan"]


def test_an_n_plus_one_cluster_has_no_n_plus_one_finding(tmp_path: pathlib.Path) -> None:
    from tests.acceptance import planner_cibs

    path = planner_cibs.write(tmp_path, "n1", planner_cibs.n_plus_one())
    _, document = verify(path)
    assert findings(document, "n-plus-one") == []


def test_n_plus_one_is_not_checked_without_quorum_and_says_so(tmp_path: pathlib.Path) -> None:
    cib = verify_cibs.clean()
    cib.root.set("have-quorum", "0")
    code, document = verify(cib.write(tmp_path / "cib.xml"))
    (finding,) = findings(document, "n-plus-one")
    assert finding["severity"] == "INFO" and "no quorum" in finding["problem"] and code == 0


# --- two_node, read from a corosync.conf ---------------------------------------------------


def _two_node_cib(tmp_path: pathlib.Path) -> str:
    cib = verify_cibs.clean()
    for resource in ("app1", "app2"):
        cib.remove(resource)
    state = cib.root.find("status/node_state[@uname='host3']")
    state.getparent().remove(state)
    node = cib.root.find("configuration/nodes/node[@uname='host3']")
    node.getparent().remove(node)
    return cib.write(tmp_path / "cib.xml")


COROSYNC_CONF = """totem {{
    version: 2
    cluster_name: xenha
}}
quorum {{
    provider: corosync_votequorum
{extra}}}
"""


@pytest.mark.parametrize(("two_node", "severity"), [("", "WARNING"), ("    two_node: 1\n", None)])
def test_a_two_node_cluster_needs_corosync_two_node(
    tmp_path: pathlib.Path, two_node: str, severity: str | None
) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text(COROSYNC_CONF.format(extra=two_node))
    _, document = verify(_two_node_cib(tmp_path), "--no-plan", "--corosync-conf", str(conf))
    found = findings(document, "quorum")
    assert [finding["severity"] for finding in found] == ([severity] if severity else [])
    if severity:
        assert str(conf) in found[0]["problem"]
        assert "crm corosync set quorum.two_node 1" in found[0]["fix"]["crmsh"]


def test_a_two_node_cib_file_without_corosync_conf_says_two_node_was_not_checked(tmp_path: pathlib.Path) -> None:
    _, document = verify(_two_node_cib(tmp_path), "--no-plan")
    (finding,) = findings(document, "quorum")
    assert finding["severity"] == "INFO" and "--corosync-conf" in finding["problem"]


# --- bad input: UNKNOWN (3) with a reason ---------------------------------------------------


def _no_guests(tmp_path: pathlib.Path) -> str:
    cib = verify_cibs.clean()
    for guest in verify_cibs.GUESTS:
        cib.remove(guest.name)
    return cib.write(tmp_path / "cib.xml")


def _invalid(tmp_path: pathlib.Path) -> str:
    cib = verify_cibs.clean()
    cib.primitive("web1").set("class", "no-such-class")
    return cib.write(tmp_path / "cib.xml")


def _written(text: str) -> Callable[[pathlib.Path], str]:
    def write(tmp_path: pathlib.Path) -> str:
        path = tmp_path / "cib.xml"
        path.write_text(text)
        return str(path)

    return write


BAD_INPUT: dict[str, tuple[Callable[[pathlib.Path], str], str]] = {
    "missing file": (lambda tmp_path: str(tmp_path / "nothing.xml"), "does not exist"),
    "empty file": (_written(""), "is empty"),
    "not XML": (_written("this is not XML"), "not well-formed XML"),
    "not a CIB": (_written("<domain/>"), "not a CIB"),
    "does not validate": (_invalid, "does not validate against pacemaker-3.9"),
    "no guests": (_no_guests, "no xen-guest resources"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
@pytest.mark.parametrize("as_json", [False, True])
def test_bad_input_is_unknown_with_a_reason(case: str, as_json: bool, tmp_path: pathlib.Path) -> None:
    make, reason = BAD_INPUT[case]
    argv = [XENHA, "verify", "--cib", make(tmp_path), *(["--json"] if as_json else [])]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 3, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    if as_json:
        document = json.loads(completed.stdout)
        assert document["schema"] == "xenha-verify/1" and document["status"] == "UNKNOWN"
        assert reason in document["error"]
    else:
        assert completed.stdout.startswith("XENHA VERIFY UNKNOWN - ") and reason in completed.stdout


def test_a_usage_error_is_unknown(tmp_path: pathlib.Path) -> None:
    completed = subprocess.run([XENHA, "verify", "--bandwidth", "0"], capture_output=True, text=True, check=False)
    assert completed.returncode == 3 and "--bandwidth" in completed.stderr


def test_the_text_report_is_a_headline_a_table_and_the_details(tmp_path: pathlib.Path) -> None:
    cib = verify_cibs.clean().property("stonith-enabled", "false").meta("web2", "allow-migrate", None)
    completed = subprocess.run(
        [XENHA, "verify", "--cib", cib.write(tmp_path / "cib.xml"), "--no-plan"],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = completed.stdout.splitlines()
    assert completed.returncode == 2
    assert lines[0] == (
        "XENHA VERIFY CRITICAL - 1 critical, 1 warning, 0 info; first: fencing: stonith-enabled=false: "
        "no host is ever fenced"
    )
    assert lines[3].split() == ["severity", "check", "object", "what", "is", "wrong"]
    assert lines[4].split()[:3] == ["CRITICAL", "fencing", "cluster"]
    assert lines[5].split()[:4] == ["WARNING", "allow-migrate", "resource", "web2"]
    assert "    pcs:   pcs property set stonith-enabled=true" in lines
    assert "    crmsh: crm resource meta web2 set allow-migrate true" in lines


# --- live mode: cibadmin (through CIB_file, which it honours), this node's files, corosync ---


def _live(cib_path: str, *options: str) -> tuple[int, dict[str, Any]]:
    completed = subprocess.run(
        [XENHA, "verify", "--json", *options],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CIB_file": cib_path},
        check=False,
    )
    assert completed.stdout.startswith("{"), completed.stdout + completed.stderr
    return completed.returncode, json.loads(completed.stdout)


def test_live_mode_reads_the_cib_with_cibadmin_and_the_domain_xml_on_this_node(tmp_path: pathlib.Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    path = verify_cibs.clean(configs).write(tmp_path / "cib.xml")
    code, document = _live(path)
    assert (code, document["findings"]) == (0, [])
    assert document["source"] == "live CIB" and document["domain_xml_read"] is True
    (configs / "db1.xml").unlink()
    code, document = _live(path)
    (finding,) = findings(document, "config-file", "resource db1")
    assert code == 2 and str(configs / "db1.xml") in finding["problem"]
    _, document = _live(path, "--no-configs")
    assert document["findings"] == [] and document["domain_xml_read"] is False


def test_live_mode_asks_corosync_about_two_node_and_says_when_it_cannot(tmp_path: pathlib.Path) -> None:
    # No corosync runs in this test: corosync-cmapctl cannot connect, and verify says so.
    code, document = _live(_two_node_cib(tmp_path), "--no-plan", "--no-configs")
    (finding,) = findings(document, "quorum")
    assert finding["severity"] == "INFO" and "corosync" in finding["problem"] and code == 0


def test_live_mode_without_a_cluster_is_unknown(tmp_path: pathlib.Path) -> None:
    _, document = _live(str(tmp_path / "no-such-cib.xml"))
    assert document["status"] == "UNKNOWN" and "cannot read the live CIB" in document["error"]


# --- the demo's step, run against a CIB file instead of the 3-node cluster ------------------


@dataclass
class _Ran:
    stdout: str
    stderr: str
    returncode: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class _FileCluster:
    """Stands in for the demo's Cluster at its one seam, run(): pcs gets -f FILE, the rest CIB_file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, node: str, argv: list[str], timeout_s: float = 60.0) -> _Ran:
        if argv[0] == "pcs":
            argv = ["pcs", "-f", self.path, *argv[1:]]
        completed = subprocess.run(
            [WITH_AGENTS, *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "CIB_file": self.path},
            check=False,
        )
        return _Ran(completed.stdout, completed.stderr, completed.returncode)


def test_the_demo_step_finds_the_setting_and_fixes_it_with_the_printed_command(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from demo.cluster_demo import Narrator
    from demo.verify_step import verify_step

    configs = tmp_path / "configs"
    configs.mkdir()
    path = verify_cibs.clean(configs).write(tmp_path / "cib.xml")
    verify_step(_FileCluster(path), Narrator(), "node1", XENHA)  # type: ignore[arg-type]
    shown = capsys.readouterr().out
    assert "node1$ pcs resource meta web1 allow-migrate=false" in shown
    assert "XENHA VERIFY WARNING - 0 critical, 1 warning, 0 info; first: allow-migrate" in shown
    assert "node1$ pcs resource meta web1 allow-migrate=true" in shown
    assert "verify again: XENHA VERIFY OK - no problem found by 20 checks (0 info)" in shown
    _, document = verify(path, "--configs")
    assert document["findings"] == []
