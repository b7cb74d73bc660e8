"""OCF meta-data, generated with lxml (so every text is escaped) from the declarations.

Two renderings of the same declarations, chosen by the OCF version the caller announces in
``OCF_RA_VERSION_MAJOR``/``OCF_RA_VERSION_MINOR`` (see docs/decisions/ocf-version-negotiation.md):

* OCF 1.1 (Pacemaker 2.1 announces 1.1): ``select`` parameters with their options,
  ``reloadable`` parameters and the ``reload-agent`` action.
* OCF 1.0 (callers that announce nothing, such as ocf-tester): valid against
  resource-agents' ``ra-api-1.dtd`` and ``metadata.rng``. 1.0 has no select type, no
  reloadable parameters and no reload-agent action: selects become strings whose allowed
  values are listed in the description, and reload-agent is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from xenha.ocf.parameters import Parameter, ParamType

OCF_1_0 = (1, 0)
OCF_1_1 = (1, 1)

# Action names ra-api-1.dtd accepts; anything else is OCF 1.1 only.
OCF_1_0_ACTIONS = frozenset(
    {
        "start",
        "stop",
        "recover",
        "monitor",
        "restart",
        "migrate_to",
        "migrate_from",
        "promote",
        "demote",
        "notify",
        "status",
        "reload",
        "meta-data",
        "usage",
        "methods",
        "validate-all",
    }
)


class Action(NamedTuple):
    """An action as advertised in meta-data, with Pacemaker's default timeout for it."""

    name: str
    timeout_s: int
    interval_s: int | None = None
    depth: int | None = None


# Actions every agent of the suite has, with their default timeouts.
COMMON_ACTIONS = (Action("validate-all", 10), Action("meta-data", 5), Action("reload-agent", 20))


def choose_version(announced: tuple[int, int] | None) -> tuple[int, int]:
    """The meta-data version for a caller: 1.1 only for callers that announce 1.1 or later."""
    if announced is not None and announced >= OCF_1_1:
        return OCF_1_1
    return OCF_1_0


def render(  # noqa: PLR0913 - the parts of the document; AgentSpec (xenha.ocf.agent) is built on this module
    agent_name: str,
    agent_version: str,
    shortdesc: str,
    longdesc: str,
    parameters: Sequence[Parameter],
    actions: Sequence[Action],
    ocf_version: tuple[int, int],
) -> str:
    from lxml import etree  # noqa: PLC0415 - only meta-data needs lxml; monitors never import it

    modern = ocf_version >= OCF_1_1
    root = etree.Element("resource-agent", name=agent_name, version=agent_version)
    etree.SubElement(root, "version").text = "1.1" if modern else "1.0"
    _description(root, "longdesc", longdesc)
    _description(root, "shortdesc", shortdesc)

    parameters_element = etree.SubElement(root, "parameters")
    for parameter in parameters:
        attributes = {
            "name": parameter.name,
            "unique": "1" if parameter.unique else "0",
            "required": "1" if parameter.required else "0",
        }
        if modern and parameter.reloadable:
            attributes["reloadable"] = "1"
        element = etree.SubElement(parameters_element, "parameter", attributes)
        _description(element, "longdesc", _long_description(parameter, modern))
        _description(element, "shortdesc", parameter.shortdesc)
        content_type = parameter.type.ocf_type
        if parameter.type is ParamType.SELECT and not modern:
            content_type = "string"
        content = etree.SubElement(element, "content", type=content_type)
        if parameter.default is not None:
            content.set("default", parameter.default)
        if parameter.type is ParamType.SELECT and modern:
            for choice in parameter.choices:
                etree.SubElement(content, "option", value=choice)

    actions_element = etree.SubElement(root, "actions")
    for action in actions:
        if not modern and action.name not in OCF_1_0_ACTIONS:
            continue
        attributes = {"name": action.name, "timeout": f"{action.timeout_s}s"}
        if action.interval_s is not None:
            attributes["interval"] = f"{action.interval_s}s"
        if action.depth is not None:
            attributes["depth"] = str(action.depth)
        etree.SubElement(actions_element, "action", attributes)

    body = etree.tostring(root, pretty_print=True, encoding="unicode")
    # No encoding in the declaration: crmsh parses meta-data as a str with lxml, which
    # refuses a str that declares an encoding. The text is ASCII-safe UTF-8 either way.
    doctype = "" if modern else '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">\n'
    return f'<?xml version="1.0"?>\n{doctype}{body}'


def _description(parent: object, tag: str, text: str) -> None:
    from lxml import etree  # noqa: PLC0415 - only meta-data needs lxml (performance.md)

    element = etree.SubElement(parent, tag, lang="en")  # type: ignore[arg-type]
    element.text = text


def _long_description(parameter: Parameter, modern: bool) -> str:
    text = parameter.longdesc.strip()
    if parameter.type is ParamType.SELECT and not modern:
        text += f"\nAllowed values: {', '.join(parameter.choices)}."
    return text
