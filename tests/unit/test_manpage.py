"""Man pages from meta-data and from argparse, read back through man(1) as an operator (and lintian) would."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from tools import manpage
from tools.manpage import MetadataError, PageFooter, parse_metadata, render_agent_page, render_command_page
from xenha.cli import build_parser as xenha_parser

REPO = Path(__file__).resolve().parents[2]
AGENTS = sorted((REPO / "agents").iterdir())
FOOTER = PageFooter("2026-01-02", "xenha 9.9.9", "OCF resource agents")


def read(page: str, tmp_path: Path, name: str) -> str:
    """The page as man(1) shows it at 80 columns; fails on any groff warning, as lintian does."""
    path = tmp_path / name
    path.write_text(page)
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANROFFSEQ="")
    checked = subprocess.run(
        ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(path)], env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    shown = subprocess.run(["man", "-P", "cat", "-l", str(path)], env=env, capture_output=True, text=True, check=True)
    return shown.stdout


def whatis(page: str, tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text(page)
    shown = subprocess.run(["lexgrog", str(path)], capture_output=True, text=True, check=True).stdout
    return shown.removeprefix(f"{path}: ").strip()


def agent_doc(agent: Path) -> manpage.AgentDoc:
    return parse_metadata(manpage.agent_metadata(str(agent)))


@pytest.mark.parametrize("agent", AGENTS, ids=lambda path: path.name)
def test_agent_page_documents_every_parameter_and_action(agent: Path, tmp_path: Path) -> None:
    doc = agent_doc(agent)
    assert doc.parameters and doc.actions
    name = f"ocf_xenha_{agent.name}.7"
    page = render_agent_page(doc, "xenha", FOOTER, ["xenha(1)"])
    text = read(page, tmp_path, name)
    assert whatis(page, tmp_path, name) == f'"ocf_xenha_{agent.name} - {doc.shortdesc}"'
    assert text.splitlines()[0].split()[0] == f"OCF_XENHA_{agent.name.upper()}(7)"
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SUPPORTED PARAMETERS", "SUPPORTED ACTIONS", "SEE ALSO"):
        assert f"\n{heading}\n" in text
    for parameter in doc.parameters:
        assert f"\n       {parameter.name}\n" in text
    for action in doc.actions:
        assert f"\n       {action.name}\n" in text
        if action.timeout:
            assert f"timeout: {action.timeout}." in " ".join(text.split())
    assert "xenha 9.9.9" in text.splitlines()[-1] and "2026-01-02" in text.splitlines()[-1]


def test_guest_page_facts_and_examples(tmp_path: Path) -> None:
    text = " ".join(
        read(render_agent_page(agent_doc(REPO / "agents" / "xen-guest"), "xenha", FOOTER), tmp_path, "g.7").split()
    )
    assert "(unique, required, string, no default)" in text  # config
    assert "(optional, string, default xen:///system)" in text  # hypervisor
    assert "(optional, reloadable, one of: auto, live, paused, save-restore, refuse, default refuse)" in text  # hvm_migration
    assert "(optional, reloadable, one of: auto, live, paused, save-restore, refuse, default auto)" in text  # pv_migration
    assert 'default "")' in text  # migration_network_suffix
    # the examples are commands an operator can paste: ASCII hyphens, the required parameter, migration on
    assert "primitive p_xen-guest ocf:xenha:xen-guest \\ params \\ config=string \\ meta allow-migrate=true \\" in text
    assert "pcs resource create p_xen-guest ocf:xenha:xen-guest \\ config=string \\ meta allow-migrate=true \\" in text
    assert "op monitor timeout=30s interval=10s" in text
    assert "\u2010" not in text  # no typographic hyphen anywhere


def test_host_page_has_no_migration_example(tmp_path: Path) -> None:
    text = read(render_agent_page(agent_doc(REPO / "agents" / "xen-host"), "xenha", FOOTER), tmp_path, "h.7")
    assert "allow-migrate" not in text and "params" not in text
    assert "op monitor timeout=30s interval=30s" in text


def test_text_that_looks_like_groff_stays_text(tmp_path: Path) -> None:
    document = b"""<resource-agent name="odd" version="1">
      <longdesc>.TH not a request
      'neither this
      back\\slash \\fB not bold</longdesc>
      <shortdesc>odd - agent</shortdesc>
      <parameters><parameter name="p"><longdesc>First.

      Second paragraph.</longdesc><content type="string"/></parameter></parameters>
      <actions><action name="custom" timeout="7s"/></actions></resource-agent>"""
    text = read(render_agent_page(parse_metadata(document), "x", FOOTER), tmp_path, "odd.7")
    assert ".TH not a request 'neither this back\\slash \\fB not bold" in " ".join(text.split())
    assert "First.\n\n           Second paragraph." in text
    assert "custom\n           Suggested minimum timeout: 7s." in text


@pytest.mark.parametrize(
    ("document", "message"),
    [(b"<resource-agent", "not well-formed"), (b"<other/>", "no <resource-agent name=...> root")],
)
def test_unusable_metadata_is_refused(document: bytes, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        parse_metadata(document)


def test_xenha_page_from_its_parser(tmp_path: Path) -> None:
    page = render_command_page(xenha_parser(), "1", PageFooter("2026-01-02", "xenha 9.9.9", "User Commands"))
    assert whatis(page, tmp_path, "xenha.1") == f'"xenha - {xenha_parser().description.removeprefix("xenha: ")}"'
    text = read(page, tmp_path, "xenha.1")
    assert text.splitlines()[0].split()[0] == "XENHA(1)"
    for command in ("plan", "check-add", "status", "verify"):
        assert f"xenha {command} [--help]" in text  # synopsis
        assert f"\n   xenha {command}\n" in text  # its subsection
    assert "--memory MiB --vcpus N" in text  # required options shown without brackets
    assert "the new guest's memory (required)" in text


def test_command_page_expands_help_references(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="tool", description="tool: does things", epilog="Exit status: 0 if fine.")
    parser.add_argument("--level", type=int, default=3, help="how much (default: %(default)s)")
    parser.add_argument("--mode", choices=["a", "b"], help="one of %(choices)s")
    parser.add_argument("target", help="what to act on")
    text = " ".join(read(render_command_page(parser, "8", FOOTER), tmp_path, "tool.8").split())
    assert "tool [--help] [--level LEVEL] [--mode {a,b}] target" in text
    assert "how much (default: 3)" in text and "one of a, b" in text
    assert "DESCRIPTION Does things Exit status: 0 if fine." in text


def test_main_reports_an_agent_that_cannot_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert manpage.main(["agent", str(tmp_path / "missing")]) == 1
    assert "cannot document" in capsys.readouterr().err


def test_main_writes_a_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert manpage.main(["agent", "--date", "2026-01-02", str(REPO / "agents" / "xen-host")]) == 0
    page = capsys.readouterr().out
    assert page.startswith('.\\" Generated by tools/manpage.py from the meta-data of ocf:xenha:xen-host')
    assert '.TH "OCF_XENHA_XEN\\-HOST" "7" "2026-01-02"' in page
