"""Hostile input for both agents: every case ends with a valid OCF code and no traceback.

The agents run in-process through the real dispatch (``run_agent``), against libvirt's real
test driver (``test:///default``, in-process). What is fuzzed: parameter values (declared
and unknown), Pacemaker's meta variables, logging variables, resource names with shell
metacharacters and Unicode, and the domain XML itself (random bytes, structured garbage,
huge documents, entity tricks).

Fields that could make the agent touch the world are kept safe on purpose: log files and
directories stay inside the test's temporary directory, and migration URIs never name a
network transport (libvirt would try to connect).

Profiles: ``ci`` (default, a few hundred cases in ``make test``), ``fuzz`` (``make fuzz``,
more than 10,000 cases): set ``XENHA_FUZZ_PROFILE``.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenha.agents.guest.agent import GuestAgent
from xenha.agents.guest.spec import PARAMETERS as GUEST_PARAMETERS
from xenha.agents.host import PARAMETERS as HOST_PARAMETERS
from xenha.agents.host import HostAgent
from xenha.ocf import Agent, run_agent

settings.register_profile(
    "ci", max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "fuzz", max_examples=3400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("XENHA_FUZZ_PROFILE", "ci"))

VALID_CODES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 190, 191}
ACTIONS = ["start", "stop", "monitor", "status", "validate-all", "migrate_to", "migrate_from", "reload-agent",
           "meta-data", "usage", "promote", "", "--x", "monitor\n"]  # fmt: skip

# Text as an environment variable can carry it: anything but NUL and lone surrogates.
env_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80)
nasty = st.sampled_from(
    ["", " ", "-1", "0", "1", "true", "yes", "NaN", "inf", "1e309", "9" * 40, "$(reboot)", "`id`", "; rm -rf /",
     "a'b\"c", "<x>&amp;", "ünïcødé", "\u202e", "..", "%n", "%n%n", "test:///default", "xen:///system", "\n", "\t"]
)  # fmt: skip
value = st.one_of(nasty, env_text)


def safe_uri_or_garbage() -> st.SearchStrategy[str]:
    """Values for URI parameters that never name a network transport."""
    return st.one_of(
        st.sampled_from(["test:///default", "", "foo:///x", "qemu+pigeon://h/s", "xen:/", "://", "test:///%n"]),
        env_text.filter(lambda text: "://" not in text),
    )


def domain_documents() -> st.SearchStrategy[bytes]:
    name = st.one_of(nasty, env_text)
    number = st.one_of(st.integers(-5, 1 << 40).map(str), nasty)
    unit = st.sampled_from(["KiB", "MiB", "G", "b", "bogus", ""])
    os_type = st.sampled_from(["hvm", "linux", "xen", "xenpvh", "exe", ""])

    def escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")

    structured = st.builds(
        lambda n, m, u, v, o: (
            f"<domain type='test'><name>{escape(n)}</name><memory unit='{u}'>{escape(m)}</memory>"
            f"<vcpu>{escape(v)}</vcpu><os><type>{o}</type></os></domain>"
        ).encode("utf-8", "surrogatepass"),
        name, number, unit, number, os_type,
    )  # fmt: skip
    tricks = st.sampled_from(
        [
            b'<!DOCTYPE d [<!ENTITY a "x"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><domain type="test"><name>&b;</name></domain>',
            b'<!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:1/">]><domain type="test"><name>&x;</name></domain>',
            b"<?xml version='1.0' encoding='utf-16'?><domain/>",
            b"<domain type='test'>" + b"<x>" * 5000 + b"</x>" * 5000 + b"</domain>",
            b"\xef\xbb\xbf<domain type='test'><name>bom</name><memory>1024</memory><os><type>hvm</type></os></domain>",
            b"<domain type='test'><name>ok</name><memory>1024</memory><os><type>hvm</type></os></domain>",
        ]
    )
    return st.one_of(structured, tricks, st.binary(max_size=3000))


def run_in_process(agent: Agent, action: str, environ: dict[str, str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_agent(agent, ["agent", action], environ, out, err)
    return code, err.getvalue()


def check_outcome(action: str, code: int, stderr: str) -> None:
    assert code in VALID_CODES, (action, code, stderr)
    assert "Traceback" not in stderr, stderr
    assert "internal error in xen-" not in stderr, stderr  # the framework's last line of defence
    reasons = [line for line in stderr.splitlines() if line.startswith("ocf-exit-reason:")]
    assert len(reasons) <= 1, stderr
    if code not in (0, 7) and action not in ("meta-data", "usage"):
        assert reasons, (action, code, stderr)


def base_environment(instance: str, case_dir: Path) -> dict[str, str]:
    return {
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": instance,
        "HA_RSCTMP": str(case_dir / "rsctmp"),
        "HA_LOGFILE": str(case_dir / "agent.log"),
        "HA_LOGFACILITY": "none",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the cases' files go: under pytest's temporary root, which keeps the last few runs
    for a look at a failure and removes the older ones (a fuzz run writes thousands of cases)."""
    return tmp_path_factory.mktemp("fuzz")


def case_directory(workdir: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=workdir))


@given(
    action=st.sampled_from(ACTIONS),
    instance=st.one_of(nasty, env_text.filter(bool)),
    document=domain_documents(),
    params=st.dictionaries(
        st.sampled_from(
            [
                p.name
                for p in GUEST_PARAMETERS
                if p.name not in ("config", "hypervisor", "remoteuri", "migrateuri", "save_dir")
            ]
            + ["bogus_param"]
        ),
        value,
    ),
    hypervisor=safe_uri_or_garbage(),
    remote=safe_uri_or_garbage(),
    meta=st.fixed_dictionaries(
        {},
        optional={
            "timeout": st.one_of(st.integers(0, 3000).map(str), nasty),
            "interval": st.one_of(st.sampled_from(["0", "10000"]), nasty),
            "migrate_source": value,
            "migrate_target": value,
            "on_node": value,
        },
    ),
    facility=st.one_of(st.sampled_from(["daemon", "local7", "none", "", "bogus"]), env_text),
)
def test_xen_guest_survives_hostile_input(
    action: str,
    instance: str,
    document: bytes,
    params: dict[str, str],
    hypervisor: str,
    remote: str,
    meta: dict[str, str],
    facility: str,
    workdir: Path,
) -> None:
    case = case_directory(workdir)
    config = case / "guest.xml"
    config.write_bytes(document)
    environ = base_environment(instance, case)
    environ["HA_LOGFACILITY"] = facility
    environ.update({f"OCF_RESKEY_{key}": text for key, text in params.items()})
    environ.update({
        "OCF_RESKEY_config": str(config), "OCF_RESKEY_hypervisor": hypervisor, "OCF_RESKEY_remoteuri": remote,
        "OCF_RESKEY_save_dir": str(case),
    })  # fmt: skip
    environ.update({f"OCF_RESKEY_CRM_meta_{key}": text for key, text in meta.items()})
    code, stderr = run_in_process(GuestAgent(), action, environ)
    check_outcome(action, code, stderr)


@given(
    action=st.sampled_from(ACTIONS),
    instance=st.one_of(nasty, env_text.filter(bool)),
    params=st.dictionaries(
        st.sampled_from([p.name for p in HOST_PARAMETERS if p.name != "hypervisor"] + ["zz"]), value
    ),
    hypervisor=safe_uri_or_garbage(),
    meta=st.fixed_dictionaries(
        {}, optional={"timeout": st.one_of(st.integers(0, 3000).map(str), nasty), "on_node": value}
    ),
)
def test_xen_host_survives_hostile_input(
    action: str, instance: str, params: dict[str, str], hypervisor: str, meta: dict[str, str], workdir: Path
) -> None:
    case = case_directory(workdir)
    environ = base_environment(instance, case)
    environ.update({f"OCF_RESKEY_{key}": text for key, text in params.items()})
    environ["OCF_RESKEY_hypervisor"] = hypervisor
    environ.update({f"OCF_RESKEY_CRM_meta_{key}": text for key, text in meta.items()})
    code, stderr = run_in_process(HostAgent(), action, environ)
    check_outcome(action, code, stderr)


@given(document=domain_documents(), instance=st.one_of(nasty, env_text.filter(bool)))
def test_guest_lifecycle_on_fuzzed_configurations(document: bytes, instance: str, workdir: Path) -> None:
    """start, probe, stop in sequence on one configuration: each answer is a valid one."""
    case = case_directory(workdir)
    config = case / "guest.xml"
    config.write_bytes(document)
    environ = base_environment(instance, case)
    environ.update({"OCF_RESKEY_config": str(config), "OCF_RESKEY_hypervisor": "test:///default",
                    "OCF_RESKEY_CRM_meta_timeout": "5000"})  # fmt: skip
    for action, interval in (("start", None), ("monitor", "0"), ("stop", None), ("monitor", "0")):
        if interval is not None:
            environ["OCF_RESKEY_CRM_meta_interval"] = interval
        code, stderr = run_in_process(GuestAgent(), action, environ)
        check_outcome(action, code, stderr)
