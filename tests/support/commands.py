"""Running external commands for the harness: argument lists, LC_ALL=C, a deadline, a result.

:func:`run` never raises because a command failed or timed out; the caller decides, and
:meth:`Result.explain` says what ran, where, and how it ended.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int | None  # None: killed at the deadline
    stdout: str
    stderr: str
    duration_s: float
    where: str = "host"

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def explain(self) -> str:
        ending = (
            f"timed out after {self.duration_s:.1f} s" if self.timed_out else f"exited with status {self.returncode}"
        )
        detail = (self.stderr.strip() or self.stdout.strip())[-800:]
        return f"`{' '.join(self.argv)}` on {self.where} {ending}" + (f": {detail}" if detail else "")


class CommandFailed(RuntimeError):
    def __init__(self, result: Result, hint: str = "") -> None:
        super().__init__(result.explain() + (f". {hint}" if hint else ""))
        self.result = result


def command_env(extra: Mapping[str, str] | None = None, inherit: bool = True) -> dict[str, str]:
    """The environment of a command: the harness's own (or nothing) plus ``extra``, in the C locale."""
    env = dict(os.environ) if inherit else {}
    env.pop("LANG", None)
    env["LC_ALL"] = "C"
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str],
    timeout_s: float,
    *,
    where: str = "host",
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
) -> Result:
    started = time.monotonic()
    try:
        completed = subprocess.run(
            list(argv),
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=command_env(env, inherit_env),
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        return Result(
            tuple(argv), None, output_text(expired.stdout), output_text(expired.stderr), time.monotonic() - started, where
        )
    return Result(
        tuple(argv),
        completed.returncode,
        completed.stdout,
        completed.stderr,
        time.monotonic() - started,
        where,
    )


def check(argv: Sequence[str], timeout_s: float, *, where: str = "host", hint: str = "") -> Result:
    result = run(argv, timeout_s, where=where)
    if not result.ok:
        raise CommandFailed(result, hint)
    return result


def output_text(data: bytes | str | None) -> str:
    """What a subprocess printed, as text (``TimeoutExpired`` keeps bytes, or nothing)."""
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
