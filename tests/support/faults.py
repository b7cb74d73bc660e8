"""Faults of real external tools, injected from outside the agent under test.

The agents find Pacemaker's tools in /usr/sbin before PATH (xenha.runner.find_tool), so a
tool is replaced the only way that reaches them there: the agent runs in a private mount
namespace in which a shell script is bind-mounted over ``/usr/sbin/<tool>``. The real tool
stays reachable inside that namespace at ``<workdir>/real-<tool>`` (bind-mounted there
first), so a script can fail some calls and pass the others through. Every script leaves
marker files in ``workdir``: a test proves that its fault really happened.
"""

from __future__ import annotations

import shlex
from pathlib import Path

TOOL_DIRECTORY = Path("/usr/sbin")

# cibadmin's verbs that write the CIB (short and long forms).
CIB_WRITES = ("-C", "--create", "-M", "--modify", "-R", "--replace", "-P", "--patch", "-D", "--delete")
CIB_BOOKING_WRITES = ("-C", "--create", "-M", "--modify", "-R", "--replace", "-P", "--patch")


def shimmed(tool: str, script: str, workdir: Path, executable: bool = True) -> list[str]:
    """A command prefix (for :class:`tests.support.ocf.AgentCase`) that runs the agent with
    ``script`` in place of ``/usr/sbin/<tool>``; ``$REAL`` in the script is the real tool and
    ``$MARKS`` the directory for marker files. ``executable=False`` puts a file there that
    cannot be run at all: the tool cannot be started (as when fork or exec fails)."""
    workdir.mkdir(parents=True, exist_ok=True)
    real = workdir / f"real-{tool}"
    real.touch()
    shim = workdir / f"shim-{tool}"
    shim.write_text(f"#!/bin/sh\nREAL={shlex.quote(str(real))}\nMARKS={shlex.quote(str(workdir))}\n{script}\n")
    shim.chmod(0o755 if executable else 0o644)
    setup = (
        f"mount --bind {shlex.quote(str(TOOL_DIRECTORY / tool))} {shlex.quote(str(real))}"
        f" && mount --bind {shlex.quote(str(shim))} {shlex.quote(str(TOOL_DIRECTORY / tool))}"
        f' && touch {shlex.quote(str(workdir / "namespace-ready"))} && exec "$0" "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup]


def _any_of(verbs: tuple[str, ...]) -> str:
    """A shell test: true when one of the script's arguments is one of ``verbs``."""
    cases = "|".join(verbs)
    return f'writes=no; for a in "$@"; do case "$a" in {cases}) writes=yes;; esac; done'


def fail_first_call(exit_code: int, message: str) -> str:
    """The first call fails with ``exit_code`` (a transient error); later calls are real."""
    return (
        'if [ ! -e "$MARKS/failed" ]; then touch "$MARKS/failed"; '
        f"echo {shlex.quote(message)} >&2; exit {exit_code}; fi\n"
        'exec "$REAL" "$@"'
    )


def hang_first_read(seconds: int) -> str:
    """The first ``cibadmin --query`` hangs for ``seconds`` (a CIB busy for longer than one
    call: the caller's deadline kills it); later calls are real. Every call's arguments are
    appended to ``$MARKS/calls``, the held one also written to ``$MARKS/held``."""
    return (
        'echo "$*" >> "$MARKS/calls"\n'
        'case " $* " in *" --query "*|*" -Q "*)\n'
        f'  if [ ! -e "$MARKS/held" ]; then echo "$*" > "$MARKS/held"; exec sleep {seconds}; fi;;\n'
        "esac\n"
        'exec "$REAL" "$@"'
    )


def hang_after_first_booking(seconds: int) -> str:
    """The first write that books (create/modify/replace/patch) is really done, then the
    tool hangs for ``seconds`` before it answers: the CIB holds the booking, the caller does
    not know it. Later calls are real."""
    return (
        f"{_any_of(CIB_BOOKING_WRITES)}\n"
        'if [ "$writes" = yes ] && [ ! -e "$MARKS/booked" ]; then\n'
        '  "$REAL" "$@"; status=$?\n'
        '  echo "$status" > "$MARKS/booked"\n'
        f"  exec sleep {seconds}\n"
        "fi\n"
        'exec "$REAL" "$@"'
    )
