"""The man page of a command, rendered from its argparse parser (for tools/manpage.py)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence

from tools.groff import PageFooter, bold, escape, header, italic, paragraphs, see_also_section, synopsis


def render_command_page(
    parser: argparse.ArgumentParser, section: str, footer: PageFooter, see_also: Sequence[str] = ()
) -> str:
    """A page for an argparse command: synopsis, description, options, one subsection per subcommand."""
    prog = parser.prog
    description = parser.description or ""
    summary = description[len(prog) + 1 :].strip() if description.startswith(f"{prog}:") else description
    lines = header(prog, section, footer, f"the argument parser of {prog}")
    lines += [".SH NAME", f"{escape(prog)} \\- {escape(summary or prog)}"]
    subcommands = _subcommands(parser)
    lines += [".SH SYNOPSIS", *synopsis(prog, _usage(_own_actions(parser), bool(subcommands)))]
    for name, subparser in subcommands:
        lines += synopsis(f"{prog} {name}", _usage(_own_actions(subparser), False))
    lines += [".SH DESCRIPTION"]
    for paragraph in paragraphs(_sentence(summary)) + paragraphs(parser.epilog or ""):
        lines += [".PP", paragraph]
    lines += [".SH OPTIONS", *_options(_own_actions(parser), prog)]
    if subcommands:
        lines += [".SH COMMANDS"]
        for name, subparser in subcommands:
            lines += [f'.SS "{escape(prog)} {escape(name)}"']
            for paragraph in paragraphs(_sentence(subparser.description or "")) + paragraphs(subparser.epilog or ""):
                lines += [".PP", paragraph]
            lines += _options(_own_actions(subparser), subparser.prog)
    lines += see_also_section(see_also)
    return "\n".join(lines) + "\n"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(name, sub) for name, sub in action.choices.items() if isinstance(sub, argparse.ArgumentParser)]
    return found


def _own_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and action.help != argparse.SUPPRESS
    ]


def _sentence(text: str) -> str:
    """Help-style text (``"print JSON"``) as a sentence in a description: capitalised.

    >>> _sentence("per-host capacity")
    'Per-host capacity'
    """
    return text[:1].upper() + text[1:]


def _usage(actions: Iterable[argparse.Action], has_subcommands: bool) -> str:
    words = []
    for action in actions:
        if action.option_strings:
            flag = bold(action.option_strings[-1])
            metavar = _metavar(action)
            word = f"{flag} {italic(metavar)}" if metavar else flag
            words.append(word if action.required else f"[{word}]")
        else:
            words.append(italic(_metavar(action) or action.dest))
    if has_subcommands:
        words += [italic("COMMAND"), "[\\fIOPTIONS\\fR]"]
    return " ".join(words)


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(str(choice) for choice in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _options(actions: Iterable[argparse.Action], prog: str) -> list[str]:
    lines = []
    for action in actions:
        metavar = _metavar(action)
        names = ", ".join(bold(option) for option in action.option_strings) or italic(metavar)
        if action.option_strings and metavar:
            names += f" {italic(metavar)}"
        text = _help_text(action, prog)
        if action.required and action.option_strings:
            text = f"{text} (required)" if text else "(required)"
        lines += [".TP", names, *paragraphs(text)[:1]]
    return lines


def _help_text(action: argparse.Action, prog: str) -> str:
    """The help string with argparse's ``%(default)s``-style references filled in, as --help shows it."""
    text = action.help or ""
    if "%" not in text:
        return text
    values = {key: value for key, value in vars(action).items() if value is not argparse.SUPPRESS}
    values["prog"] = prog
    if values.get("choices") is not None:
        values["choices"] = ", ".join(str(choice) for choice in values["choices"])
    return text % values
