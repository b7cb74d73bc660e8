"""Manual pages generated from what the programs say about themselves.

An agent's page is rendered from its OCF meta-data, in the style of the pages
resource-agents generates (``ocf_heartbeat_VirtualDomain(7)``): NAME, SYNOPSIS,
DESCRIPTION, SUPPORTED PARAMETERS (type, default, required), SUPPORTED ACTIONS (default
timeouts), EXAMPLE CRM SHELL and EXAMPLE PCS. The ``xenha`` page is rendered from the
argparse parser the command itself uses. Neither page can drift from its program.

The packages run it at build time::

    python3 tools/manpage.py agent --provider xenha agents/xen-guest > ocf_xenha_xen-guest.7
    python3 tools/manpage.py command xenha.cli:build_parser > xenha.1

Parsing (meta-data to :class:`AgentDoc`) and rendering are pure; only :func:`main` runs
the agent.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

import xenha
from tools.groff import PageFooter, bold, escape, example, header, paragraphs, see_also_section, synopsis
from tools.manpage_command import render_command_page
from xenha.runner import CommandRunner

if TYPE_CHECKING:
    from lxml.etree import _Element

# What each standard action does, in the words of an operator's manual. Actions not listed
# here are shown with their timeouts only.
ACTION_PURPOSES = {
    "start": "Starts the resource.",
    "stop": "Stops the resource.",
    "monitor": "Performs a detailed status check.",
    "status": "Performs a status check.",
    "migrate_to": "Migrates the resource to another node (runs on the node it leaves).",
    "migrate_from": "Completes a migration (runs on the node the resource arrives on).",
    "promote": "Promotes the resource to the promoted role.",
    "demote": "Demotes the resource to the unpromoted role.",
    "notify": "Tells the resource about actions on its clone instances.",
    "reload": "Applies changed parameters without a restart.",
    "reload-agent": "Applies changed reloadable parameters without restarting the resource.",
    "validate-all": "Validates the resource's configuration.",
    "meta-data": "Prints the agent's meta-data (used by the cluster tools).",
}

AGENT_METADATA_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ParameterDoc:
    name: str
    shortdesc: str
    longdesc: str
    type_name: str
    default: str | None
    required: bool
    unique: bool
    reloadable: bool
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActionDoc:
    name: str
    timeout: str | None
    interval: str | None
    depth: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class AgentDoc:
    name: str
    version: str
    shortdesc: str
    longdesc: str
    parameters: tuple[ParameterDoc, ...]
    actions: tuple[ActionDoc, ...]

    @property
    def migratable(self) -> bool:
        names = {action.name for action in self.actions}
        return {"migrate_to", "migrate_from"} <= names


class MetadataError(ValueError):
    """Meta-data that cannot be documented: not XML, or not an OCF resource-agent document."""


# -- parsing ----------------------------------------------------------------------------


def parse_metadata(document: bytes) -> AgentDoc:
    """An agent's OCF meta-data (1.0 or 1.1) as an :class:`AgentDoc`.

    >>> doc = parse_metadata(b'<resource-agent name="a"><shortdesc>S</shortdesc>'
    ...     b'<actions><action name="start" timeout="20s"/></actions></resource-agent>')
    >>> (doc.name, doc.shortdesc, doc.actions[0].timeout)
    ('a', 'S', '20s')
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError as error:
        raise MetadataError(f"meta-data is not well-formed XML: {error}") from None
    if root.tag != "resource-agent" or not root.get("name"):
        raise MetadataError(f"meta-data has no <resource-agent name=...> root (found <{root.tag}>)")
    parameters = tuple(_parameter(element) for element in root.iterfind("parameters/parameter"))
    actions = tuple(
        ActionDoc(
            name=element.get("name", ""),
            timeout=element.get("timeout"),
            interval=element.get("interval"),
            depth=element.get("depth"),
            role=element.get("role"),
        )
        for element in root.iterfind("actions/action")
    )
    return AgentDoc(
        name=root.get("name", ""),
        version=root.get("version", ""),
        shortdesc=_text(root.find("shortdesc")),
        longdesc=_text(root.find("longdesc")),
        parameters=parameters,
        actions=actions,
    )


def _text(element: _Element | None) -> str:
    text = None if element is None else element.text
    return text.strip() if isinstance(text, str) else ""


def _parameter(element: _Element) -> ParameterDoc:
    content = element.find("content")
    type_name = "string" if content is None else content.get("type", "string")
    default = None if content is None else content.get("default")
    options: tuple[str, ...] = ()
    if content is not None:
        options = tuple(option.get("value", "") for option in content.iterfind("option"))
    return ParameterDoc(
        name=element.get("name", ""),
        shortdesc=_text(element.find("shortdesc")),
        longdesc=_text(element.find("longdesc")),
        type_name=type_name,
        default=default,
        required=element.get("required") in ("1", "true"),
        unique=element.get("unique") in ("1", "true"),
        reloadable=element.get("reloadable") in ("1", "true"),
        options=options,
    )


# -- agent pages ------------------------------------------------------------------------


def agent_page_name(provider: str, agent: str) -> str:
    """The page name resource-agents uses: ``ocf_<provider>_<agent>``."""
    return f"ocf_{provider}_{agent}"


def render_agent_page(doc: AgentDoc, provider: str, footer: PageFooter, see_also: Sequence[str] = ()) -> str:
    page = agent_page_name(provider, doc.name)
    lines = header(page, "7", footer, f"the meta-data of ocf:{provider}:{doc.name}")
    lines += [".SH NAME", f"{escape(page)} \\- {escape(doc.shortdesc or doc.name)}"]
    action_names = " | ".join(escape(action.name) for action in doc.actions)
    lines += [".SH SYNOPSIS", *synopsis(doc.name, f"[{action_names}]")]
    lines += [".SH DESCRIPTION"]
    for paragraph in paragraphs(doc.longdesc or doc.shortdesc):
        lines += [".PP", paragraph]
    if doc.parameters:
        lines += ['.SH "SUPPORTED PARAMETERS"']
        for parameter in doc.parameters:
            lines += [".PP", bold(parameter.name), ".RS 4"]
            body = paragraphs(parameter.shortdesc) + paragraphs(parameter.longdesc)
            body.append(escape(_parameter_facts(parameter)))
            lines += _joined(body)
            lines += [".RE"]
    if doc.actions:
        lines += [
            '.SH "SUPPORTED ACTIONS"',
            ".PP",
            "This resource agent supports the following actions (operations):",
        ]
        for action in doc.actions:
            lines += [".PP", bold(action.name), ".RS 4", escape(_action_text(action)), ".RE"]
    lines += _agent_examples(doc, provider)
    lines += see_also_section(see_also)
    return "\n".join(lines) + "\n"


def _joined(body: Sequence[str]) -> list[str]:
    lines: list[str] = []
    for index, text in enumerate(body):
        if index:
            lines.append(".sp")
        lines.append(text)
    return lines


def _parameter_facts(parameter: ParameterDoc) -> str:
    """The line resource-agents prints under a parameter, e.g. ``(unique, required, string, no default)``.

    >>> _parameter_facts(ParameterDoc("p", "", "", "select", "b", False, False, True, ("a", "b")))
    '(optional, reloadable, one of: a, b, default b)'
    """
    facts = []
    if parameter.unique:
        facts.append("unique")
    facts.append("required" if parameter.required else "optional")
    if parameter.reloadable:
        facts.append("reloadable")
    if parameter.options:
        facts.append("one of: " + ", ".join(parameter.options))
    else:
        facts.append(parameter.type_name)
    if parameter.default is None:
        facts.append("no default")
    elif parameter.default == "":
        facts.append('default ""')
    else:
        facts.append(f"default {parameter.default}")
    return "(" + ", ".join(facts) + ")"


def _action_text(action: ActionDoc) -> str:
    parts = [ACTION_PURPOSES.get(action.name, "")]
    if action.role:
        parts.append(f"In role {action.role}.")
    if action.depth not in (None, "0"):
        parts.append(f"Check level {action.depth}.")
    if action.timeout:
        parts.append(f"Suggested minimum timeout: {action.timeout}.")
    if action.interval and action.interval not in ("0", "0s"):
        parts.append(f"Suggested interval: {action.interval}.")
    return " ".join(part for part in parts if part)


def _agent_examples(doc: AgentDoc, provider: str) -> list[str]:
    resource = f"p_{doc.name}"
    agent = f"ocf:{provider}:{doc.name}"
    values = [f"{escape(p.name)}=\\fI{escape(p.type_name)}\\fR" for p in doc.parameters if p.required]
    monitor = next((a for a in doc.actions if a.name == "monitor" and a.interval), None)
    operation = ""
    if monitor is not None:
        operation = f"op monitor timeout={escape(monitor.timeout or '20s')} interval={escape(monitor.interval or '')}"
    crm = [f"primitive {escape(resource)} {escape(agent)}"]
    if values:
        crm += ["  params", *(f"    {value}" for value in values)]
    pcs = [f"pcs resource create {escape(resource)} {escape(agent)}", *(f"  {value}" for value in values)]
    if doc.migratable:
        crm.append("  meta allow\\-migrate=true")
        pcs.append("  meta allow\\-migrate=true")
    if operation:
        crm.append(f"  {operation}")
        pcs.append(f"  {operation}")
    name = escape(doc.name)
    return [
        '.SH "EXAMPLE CRM SHELL"',
        ".PP",
        f"The following is an example configuration for a {name} resource using the \\fBcrm\\fR(8) shell:",
        *example(crm),
        '.SH "EXAMPLE PCS"',
        ".PP",
        f"The following is an example configuration for a {name} resource using \\fBpcs\\fR(8):",
        *example(pcs),
    ]


# -- command line -----------------------------------------------------------------------


def page_date(environ: Mapping[str, str]) -> str:
    """Today (UTC), or the day of ``SOURCE_DATE_EPOCH`` when set, for reproducible builds.

    >>> page_date({"SOURCE_DATE_EPOCH": "1700000000"})
    '2023-11-14'
    """
    epoch = environ.get("SOURCE_DATE_EPOCH")
    moment = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        if epoch
        else datetime.datetime.now(datetime.timezone.utc)
    )
    return moment.strftime("%Y-%m-%d")


def agent_metadata(executable: str) -> bytes:
    """What ``EXECUTABLE meta-data`` prints when Pacemaker (which announces OCF 1.1) asks."""
    environ = dict(os.environ, OCF_ROOT="/usr/lib/ocf", OCF_RA_VERSION_MAJOR="1", OCF_RA_VERSION_MINOR="1")
    result = CommandRunner(environ).run([os.path.abspath(executable), "meta-data"], AGENT_METADATA_TIMEOUT_S)
    if not result.ok:
        raise MetadataError(f"cannot document {executable}: {result.describe()}")
    return result.stdout.encode()


def load_parser(spec: str) -> argparse.ArgumentParser:
    """The parser returned by ``module:function``, e.g. ``xenha.cli:build_parser``."""
    module_name, _, function_name = spec.partition(":")
    if not function_name:
        raise ValueError(f"{spec!r}: give MODULE:FUNCTION, e.g. xenha.cli:build_parser")
    factory: Callable[[], object] = getattr(importlib.import_module(module_name), function_name)
    parser = factory()
    if not isinstance(parser, argparse.ArgumentParser):
        raise ValueError(f"{spec} returned {type(parser).__name__}, not an ArgumentParser")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 tools/manpage.py",
        description="Write a man page (groff) to standard output, generated from a program's own description.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--date", help="page date, YYYY-MM-DD (default: SOURCE_DATE_EPOCH's day, else today)")
    common.add_argument("--source", default=f"xenha {xenha.__version__}", help="footer source (default: %(default)s)")
    common.add_argument("--see-also", action="append", default=[], metavar="PAGE", help="e.g. 'xenha(1)'; repeatable")
    commands = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    agent = commands.add_parser("agent", parents=[common], help="an OCF agent's page, from its meta-data")
    agent.add_argument("--provider", default="xenha", help="OCF provider (default: %(default)s)")
    agent.add_argument("executable", help="the agent to run with meta-data")
    command = commands.add_parser("command", parents=[common], help="a command's page, from its argparse parser")
    command.add_argument("--section", default="1", help="manual section (default: %(default)s)")
    command.add_argument("parser", metavar="MODULE:FUNCTION", help="function returning the command's parser")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    date = args.date or page_date(os.environ)
    try:
        if args.kind == "agent":
            footer = PageFooter(date, args.source, "OCF resource agents")
            doc = parse_metadata(agent_metadata(args.executable))
            page = render_agent_page(doc, args.provider, footer, args.see_also)
        else:
            footer = PageFooter(date, args.source, "User Commands" if args.section == "1" else "xenha")
            page = render_command_page(load_parser(args.parser), args.section, footer, args.see_also)
    except (ValueError, ImportError, AttributeError) as error:  # MetadataError is a ValueError
        sys.stderr.write(f"manpage: {error}\n")
        return 1
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
