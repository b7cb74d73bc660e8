"""Bad input gets the right OCF code and an exit reason that names the fix; never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.libvirt_hosts import LibvirtHost
from tests.support.ocf import AgentCase

ERR_GENERIC, ERR_UNIMPLEMENTED, ERR_INSTALLED, ERR_CONFIGURED, NOT_RUNNING = 1, 3, 5, 6, 7


def assert_clean_failure(result: object, code: int, *fragments: str) -> None:
    from tests.support.ocf import AgentRun

    assert isinstance(result, AgentRun)
    assert result.code == code, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.exit_reason is not None, result
    assert len(result.exit_reason) <= 128, result.exit_reason  # what Pacemaker keeps
    for fragment in fragments:  # the full reason is in the log
        assert fragment in result.stderr, (fragment, result.stderr)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("action", ["validate-all", "start"])
def test_missing_config_file(test_guest: AgentCase, tmp_path: Path, action: str) -> None:
    missing = str(tmp_path / "nowhere.xml")
    result = test_guest.run(action, config=missing)
    assert_clean_failure(result, ERR_INSTALLED, missing, "No such file", "make the guest's configuration readable")


def test_config_behind_a_dangling_symlink(test_guest: AgentCase, tmp_path: Path) -> None:
    link = tmp_path / "link.xml"
    os.symlink(tmp_path / "gone.xml", link)
    assert_clean_failure(test_guest.run("start", config=str(link)), ERR_INSTALLED, str(link))


def test_config_is_a_fifo_does_not_block(test_guest: AgentCase, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)
    result = test_guest.run("start", config=str(fifo), timeout=20)
    assert_clean_failure(result, ERR_CONFIGURED, "is not a regular file")
    assert result.seconds < 2


def test_hypervisor_pointing_at_a_closed_port(test_guest: AgentCase) -> None:
    result = test_guest.run("monitor", interval_ms=0, hypervisor="qemu+tcp://127.0.0.1:1/system")
    assert_clean_failure(
        result, ERR_GENERIC, "cannot reach libvirtd on", "qemu+tcp://127.0.0.1:1/system", "Connection refused"
    )


def test_config_is_a_directory(test_guest: AgentCase, tmp_path: Path) -> None:
    result = test_guest.run("validate-all", config=str(tmp_path))
    assert result.code in (ERR_INSTALLED, ERR_CONFIGURED), result
    assert result.exit_reason is not None and str(tmp_path) in result.reason


def test_config_parameter_missing(test_guest: AgentCase) -> None:
    params = dict(test_guest.params)
    del params["config"]
    case = AgentCase(test_guest.agent, test_guest.instance, params, test_guest.rsctmp)
    assert_clean_failure(case.run("validate-all"), ERR_CONFIGURED, "parameter config is required")
    assert_clean_failure(case.run("start"), ERR_CONFIGURED, "parameter config is required")


@pytest.mark.parametrize(
    ("document", "fragments"),
    [
        ("<domain type='test'><name>x</name>", ("not well-formed",)),
        ("not xml at all", ("not well-formed",)),
        ("", ("not well-formed",)),
        ("<domain type='test'><memory>1024</memory><os><type>hvm</type></os></domain>", ("has no <name>",)),
        ("<domain type='test'><name>  </name><memory>1</memory></domain>", ("has no <name>",)),
        ("<guest><name>x</name></guest>", ("not a libvirt domain",)),
        ("<domain type='test'><name>x</name><os><type>hvm</type></os></domain>", ("has no <memory>",)),
        (
            "<domain type='test'><name>x</name><memory>lots</memory><os><type>hvm</type></os></domain>",
            ("<memory> must be a whole number",),
        ),
        (
            "<domain type='test'><name>x</name><memory unit='parsecs'>1</memory><os><type>hvm</type></os></domain>",
            ("unknown unit",),
        ),
        (
            "<domain type='test'><name>x</name><memory>1024</memory><vcpu>many</vcpu><os><type>hvm</type></os>"
            "</domain>",
            ("<vcpu>",),
        ),
        (
            "<domain type='test'><name>x</name><memory>1024</memory><os><type>exe</type></os></domain>",
            ("exe",),
        ),
        ("<domain type='test'><name>x</name><memory>1024</memory></domain>", ("no <os><type>",)),
        (
            '<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            "<domain type='test'><name>&b;</name><memory>1</memory></domain>",
            ("DOCTYPE or entities",),
        ),
        (
            "<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/shadow\">]><domain type='test'><name>&x;</name></domain>",
            ("DOCTYPE or entities",),
        ),
    ],
)
def test_unusable_domain_xml(test_guest: AgentCase, tmp_path: Path, document: str, fragments: tuple[str, ...]) -> None:
    config = write(tmp_path / "bad.xml", document)
    for action in ("validate-all", "start"):
        assert_clean_failure(test_guest.run(action, config=config), ERR_CONFIGURED, config, *fragments)


def test_huge_config_is_refused(test_guest: AgentCase, tmp_path: Path) -> None:
    config = tmp_path / "huge.xml"
    config.write_text("<domain type='test'>" + "<!-- padding -->" * 100000 + "</domain>")
    assert_clean_failure(test_guest.run("validate-all", config=str(config)), ERR_CONFIGURED, "more than the")


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("foo:///system", "driver 'foo'"),
        ("lxc:///system", "driver 'lxc'"),
        ("qemu+carrierpigeon://x/system", "transport 'carrierpigeon'"),
        ("system", "is not a libvirt URI"),
        ("", "hypervisor is empty"),
    ],
)
def test_unsupported_hypervisor_uri(test_guest: AgentCase, uri: str, fragment: str) -> None:
    for action in ("validate-all", "start", "monitor", "stop"):
        result = test_guest.run(action, hypervisor=uri, interval_ms=0 if action == "monitor" else None)
        assert_clean_failure(result, ERR_CONFIGURED, fragment)


def test_password_in_uri_is_never_shown(test_guest: AgentCase) -> None:
    result = test_guest.run("validate-all", hypervisor="foo+ssh://root:hunter2@node2/system")
    assert result.code == ERR_CONFIGURED
    assert "hunter2" not in result.stderr and "***" in result.stderr


@pytest.mark.parametrize(
    ("parameter", "value", "fragment"),
    [
        ("shutdown_timeout", "abc", "shutdown_timeout='abc' is not a whole number"),
        ("shutdown_timeout", "1.5", "is not a whole number"),
        ("shutdown_timeout", "-3", "below the minimum of 0"),
        ("shutdown_timeout", "9" * 40, "is not a whole number"),
        ("force_stop", "perhaps", "force_stop='perhaps' is not a boolean"),
    ],
)
def test_bad_parameter_values(test_guest: AgentCase, parameter: str, value: str, fragment: str) -> None:
    assert_clean_failure(test_guest.run("validate-all", **{parameter: value}), ERR_CONFIGURED, fragment)
    assert_clean_failure(test_guest.run("start", **{parameter: value}), ERR_CONFIGURED, fragment)


def test_all_problems_are_logged_not_just_the_first(test_guest: AgentCase, tmp_path: Path) -> None:
    result = test_guest.run("validate-all", shutdown_timeout="x", force_stop="maybe")
    assert result.code == ERR_CONFIGURED
    assert "shutdown_timeout" in result.stderr and "force_stop" in result.stderr


def test_probe_and_stop_answer_despite_bad_parameters(test_guest: AgentCase) -> None:
    """Leniency: a broken value does not keep a probe or a stop from telling the truth."""
    assert test_guest.probe(shutdown_timeout="abc").code == NOT_RUNNING
    assert test_guest.run("start").code == 0
    assert test_guest.probe(shutdown_timeout="abc").code == 0
    stop = test_guest.run("stop", shutdown_timeout="abc")
    assert stop.code == 0, stop
    assert test_guest.probe(shutdown_timeout="abc").code == NOT_RUNNING


def test_unknown_action(test_guest: AgentCase) -> None:
    assert_clean_failure(test_guest.run("promote"), ERR_UNIMPLEMENTED, "does not implement the action 'promote'")


@pytest.mark.parametrize("action", ["start", "stop", "monitor"])
def test_hypervisor_unreachable(test_guest: AgentCase, tmp_path: Path, action: str) -> None:
    uri = f"test+unix:///default?socket={tmp_path}/no-such-socket"
    result = test_guest.run(action, hypervisor=uri, interval_ms=0 if action == "monitor" else None)
    # stop and probe must not claim success they could not verify
    assert_clean_failure(result, ERR_GENERIC, "cannot reach libvirtd on", "check that it runs")


def test_meta_data_and_validate_all_never_contact_the_hypervisor(
    test_guest: AgentCase, local_host: LibvirtHost
) -> None:
    """With libvirtd frozen, meta-data and validate-all still answer at once."""
    pid = local_host.libvirtd_pid()
    assert pid is not None
    os.kill(pid, 19)  # SIGSTOP
    try:
        for action in ("meta-data", "validate-all"):
            result = test_guest.run(action, timeout=10)
            assert result.code == 0, result
            assert result.seconds < 5
    finally:
        os.kill(pid, 18)  # SIGCONT
