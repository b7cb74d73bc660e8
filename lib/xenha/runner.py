"""Running external commands: argument lists only, a timeout on every call, LC_ALL=C.

Every command the suite runs (Pacemaker's CLI tools, mostly) goes through
:class:`CommandRunner`. It never raises on a non-zero exit: callers get a
:class:`CommandResult` and decide. It never uses a shell, so no value can be
interpreted as shell syntax, whatever it contains.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import NamedTuple

# Where distributions install Pacemaker's and libvirt's tools. Looked up here first so that an
# agent started with a minimal PATH still finds them; PATH is the last resort.
TOOL_DIRECTORIES = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def find_tool(name: str) -> str | None:
    """Absolute path of an executable called ``name``, or None when it is not installed.

    The usual directories first, then PATH (not shutil.which: shutil costs 2 ms to import).
    """
    path = os.environ.get("PATH", "").split(os.pathsep)
    for directory in (*TOOL_DIRECTORIES, *path):
        candidate = os.path.join(directory, name)
        if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class CommandResult(NamedTuple):
    """What became of one command: exit status and output, or why it did not finish."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    not_started: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """One line saying what went wrong, for logs and exit reasons."""
        program = os.path.basename(self.argv[0]) if self.argv else "command"
        if self.not_started is not None:
            return f"{program} could not be run: {self.not_started}"
        if self.timed_out:
            return f"{program} did not finish in time"
        detail = first_line(self.stderr) or first_line(self.stdout) or "no output"
        return f"{program} exited with status {self.returncode}: {detail}"


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


class CommandRunner:
    """Runs commands with a fixed environment; ``CIB_file`` and friends pass through."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        base = dict(os.environ if environ is None else environ)
        # Parsed output must not depend on the operator's locale.
        base["LC_ALL"] = "C"
        self._environ = base

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment the commands see (``CIB_file`` among it, when set)."""
        return self._environ

    def run(
        self,
        argv: Sequence[str],
        timeout_s: float,
        input_text: str | None = None,
    ) -> CommandResult:
        args = tuple(argv)
        program = find_tool(args[0]) if not os.path.isabs(args[0]) else args[0]
        if program is None:
            return CommandResult(args, None, not_started=f"{args[0]} is not installed")
        if timeout_s <= 0:
            return CommandResult(args, None, timed_out=True)
        try:
            completed = subprocess.run(
                (program, *args[1:]),
                input=input_text,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout_s,
                env=self._environ,
                stdin=None if input_text is not None else subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return CommandResult(args, None, timed_out=True)
        except OSError as error:
            return CommandResult(args, None, not_started=error.strerror or str(error))
        return CommandResult(args, completed.returncode, completed.stdout, completed.stderr)
