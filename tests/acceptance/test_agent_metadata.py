"""Meta-data judged by tools nobody here wrote: the OCF DTD and RNG, pcs, crmsh, ocf-tester."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.ocf import AGENTS, ocf_environment, run_agent

REPO = Path(__file__).resolve().parents[2]
WITH_AGENTS = REPO / "tests" / "support" / "with-agents"
RA_SHARE = Path("/usr/share/resource-agents")
PCS_OCF_1_1_RNG = Path("/usr/share/pcs/data/ocf-1.1.rng")
AGENT_NAMES = sorted(path.name for path in AGENTS.iterdir())
OCF_1_1 = {"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}


def metadata(agent: str, extra: dict[str, str] | None = None) -> str:
    env = ocf_environment("meta", {})
    env.update(extra or {})
    result = run_agent(agent, "meta-data", env)
    assert result.code == 0, result
    assert result.stderr == ""
    return result.stdout


def xmllint(arguments: list[str], document: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["xmllint", "--noout", *arguments, "-"], input=document, text=True, capture_output=True, cwd=cwd
    )


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_ocf_1_0_metadata_is_valid_against_the_dtd(agent: str) -> None:
    # exactly what ocf-tester runs: the document's own DOCTYPE, resolved in resource-agents' share
    checked = xmllint(["--valid"], metadata(agent), cwd=RA_SHARE)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("agent", AGENT_NAMES)
@pytest.mark.parametrize("announced", [{}, OCF_1_1])
def test_metadata_is_valid_against_resource_agents_rng(agent: str, announced: dict[str, str]) -> None:
    document = metadata(agent, announced)
    if announced:
        # metadata.rng predates OCF 1.1's reloadable attribute; everything else must conform
        document = document.replace(' reloadable="1"', "")
    checked = xmllint(["--relaxng", str(RA_SHARE / "metadata.rng")], document)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_ocf_1_1_metadata_is_valid_against_pcs_schema(agent: str) -> None:
    checked = xmllint(["--relaxng", str(PCS_OCF_1_1_RNG)], metadata(agent, OCF_1_1))
    assert checked.returncode == 0, checked.stderr


def test_version_negotiation() -> None:
    legacy = metadata("xen-guest")
    modern = metadata("xen-guest", OCF_1_1)
    assert "<version>1.0</version>" in legacy and "reload-agent" not in legacy and "reloadable" not in legacy
    assert "<version>1.1</version>" in modern and 'name="reload-agent"' in modern and 'reloadable="1"' in modern


def test_metadata_escapes_text() -> None:
    # the description mentions <name>: it must arrive escaped, not as markup
    assert "&lt;name&gt;" in metadata("xen-guest")


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_metadata_runs_as_an_unprivileged_user(agent: str) -> None:
    result = subprocess.run(
        ["su", "nobody", "-s", "/bin/sh", "-c", f"{AGENTS / agent} meta-data"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "<resource-agent" in result.stdout


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_pacemaker_reads_ocf_1_1_metadata(agent: str) -> None:
    shown = subprocess.run(
        [str(WITH_AGENTS), "crm_resource", "--show-metadata", f"ocf:xenha:{agent}"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert "<version>1.1</version>" in shown.stdout and 'name="reload-agent"' in shown.stdout


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_pcs_describes_the_agent(agent: str) -> None:
    described = subprocess.run(
        [str(WITH_AGENTS), "pcs", "resource", "describe", f"ocf:xenha:{agent}"],
        capture_output=True,
        text=True,
    )
    assert described.returncode == 0, described.stderr
    assert f"ocf:xenha:{agent}" in described.stdout
    assert "Resource options:" in described.stdout
    assert "Default operations:" in described.stdout


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_crmsh_describes_the_agent(agent: str) -> None:
    described = subprocess.run(
        [str(WITH_AGENTS), "crm", "ra", "info", f"ocf:xenha:{agent}"], capture_output=True, text=True
    )
    assert described.returncode == 0, described.stdout + described.stderr
    assert "ERROR" not in described.stdout + described.stderr
    assert f"(ocf:xenha:{agent})" in described.stdout
    assert "Operations' defaults" in described.stdout
