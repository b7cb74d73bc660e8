"""The demos' narration: numbered steps with the time since the start, and the real commands
shown with their output (``make demo`` on the namespace cluster, ``make demo-xen`` on Xen)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from typing import Protocol

from tests.support.commands import Result


class RunsCommands(Protocol):
    """A cluster whose nodes run commands (tests.support.cluster's and tests.support.xenlab's)."""

    def run(self, node: str, argv: Sequence[str], timeout_s: float = ...) -> Result: ...


class Narrator:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.step_started = self.started

    def step(self, title: str) -> None:
        now = time.monotonic()
        print(f"\n=== {title}   [+{now - self.started:.1f} s]", flush=True)
        self.step_started = now

    def say(self, text: str) -> None:
        print(f"    {text}", flush=True)

    def took(self, what: str) -> None:
        print(f"    ({what}: {time.monotonic() - self.step_started:.1f} s)", flush=True)

    def show(
        self,
        cluster: RunsCommands,
        node: str,
        argv: Sequence[str],
        keep: int = 40,
        check: bool = True,
        timeout_s: float = 120.0,
    ) -> str:
        print(f"    {node}$ {shlex.join(argv)}", flush=True)
        result = cluster.run(node, argv, timeout_s)
        output = (result.stdout + result.stderr).rstrip("\n").splitlines()
        for line in output[:keep]:
            print(f"      {line}", flush=True)
        if len(output) > keep:
            print(f"      ... ({len(output) - keep} more lines)", flush=True)
        if check and not result.ok and "xenha" not in argv[0]:
            raise SystemExit(f"demo: {' '.join(argv)} failed on {node} (exit {result.returncode})")
        return result.stdout
