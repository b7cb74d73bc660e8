"""The command line's pure parts: the progress bar, argument checks, the command table."""

from __future__ import annotations

import io

import pytest

from xenha.cli import COMMANDS, ProgressBar, build_parser


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only() -> None:
    terminal = Terminal()
    bar = ProgressBar(terminal, "xenha")
    bar(0, 4)
    bar(2, 4)
    bar(4, 4)
    text = terminal.getvalue()
    assert "\rxenha [" + "#" * 15 + "." * 15 + "] 2/4 scheduler runs" in text
    assert text.endswith("\r")  # the line is cleared at the end
    pipe = io.StringIO()
    ProgressBar(pipe, "xenha")(1, 4)
    assert pipe.getvalue() == ""


def test_arguments() -> None:
    parser = build_parser()
    args = parser.parse_args(["plan", "--cib", "c.xml", "--failures", "2", "--json"])
    assert (args.command, args.cib, args.failures, args.json, args.no_fast_path) == (
        "plan",
        "c.xml",
        2,
        True,
        False,
    )
    args = parser.parse_args(["check-add", "--memory", "4096", "--vcpus", "2"])
    assert (args.memory, args.vcpus, args.failures, args.cib) == (4096, 2, 1, None)
    for bad in (
        ["plan", "--failures", "9"],
        ["check-add", "--memory", "0", "--vcpus", "1"],
        ["status", "--failures", "1"],
    ):
        with pytest.raises(SystemExit) as raised:
            parser.parse_args(bad)
        assert raised.value.code == 3  # UNKNOWN, not argparse's 2 (CRITICAL to a monitoring system)


def test_every_command_is_one_declaration_and_one_function() -> None:
    assert sorted(COMMANDS) == ["check-add", "plan", "status", "verify"]
    for summary, declare, run in COMMANDS.values():
        assert summary and callable(declare) and callable(run)
