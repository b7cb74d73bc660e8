"""What a check reports: a finding with its figures, its reason and the commands that fix it.

Severities add up to the monitoring-plugin exit code, so ``xenha verify`` can run as a
periodic check: 0 OK (nothing, or only INFO), 1 WARNING, 2 CRITICAL, 3 UNKNOWN (no
answer: the input could not be read).
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS_WORDS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}

Command = tuple[str, ...]  # an argument list, shown with shlex quoting


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def word(self) -> str:
        return self.name


@dataclass(frozen=True)
class Fix:
    """The commands that remove a finding, once with pcs and once with crmsh.

    Words in capitals that are listed in ``placeholders`` are the operator's to fill in
    (a BMC's address, a host's memory): nothing in the CIB says what they are.
    """

    pcs: tuple[Command, ...]
    crmsh: tuple[Command, ...]
    placeholders: tuple[str, ...] = ()

    @staticmethod
    def shown(commands: Sequence[Command]) -> list[str]:
        return [command[0] if len(command) == 1 else shlex.join(command) for command in commands]


@dataclass(frozen=True)
class Finding:
    """One thing wrong, on one object.

    ``check`` names the check (stable, for scripts); ``subject`` is the object: ``cluster``,
    ``node NAME`` or ``resource NAME``; ``problem`` says what is wrong with the figures,
    ``why`` what it leads to.
    """

    check: str
    severity: Severity
    subject: str
    problem: str
    why: str
    fix: Fix


def exit_code(findings: Iterable[Finding]) -> int:
    """CRITICAL if any finding is, else WARNING if any is, else OK (INFO counts as OK).

    >>> fix = Fix((), ())
    >>> exit_code([]), exit_code([Finding("a", Severity.INFO, "cluster", "", "", fix)])
    (0, 0)
    >>> exit_code([Finding("a", Severity.WARNING, "cluster", "", "", fix),
    ...            Finding("b", Severity.CRITICAL, "cluster", "", "", fix)])
    2
    """
    worst = max((finding.severity for finding in findings), default=Severity.INFO)
    return {Severity.INFO: OK, Severity.WARNING: WARNING, Severity.CRITICAL: CRITICAL}[worst]
