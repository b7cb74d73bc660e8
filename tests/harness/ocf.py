"""Run an agent as Pacemaker's executor does: a separate process with the OCF environment."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AGENTS = REPO / "agents"


@dataclass(frozen=True)
class AgentRun:
    action: str
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def exit_reason(self) -> str | None:
        """The last ``ocf-exit-reason:`` line on stderr, as Pacemaker would show it."""
        reasons = [line.split(":", 1)[1] for line in self.stderr.splitlines() if line.startswith("ocf-exit-reason:")]
        return reasons[-1] if reasons else None

    @property
    def reason(self) -> str | None:
        """The full reason, as logged (Pacemaker shows only the first 128 characters)."""
        short = self.exit_reason
        if short is None:
            return None
        stem = short.removesuffix("...")[:50]
        for line in reversed(self.stderr.splitlines()):
            at = line.find(stem)
            if at >= 0 and not line.startswith("ocf-exit-reason:"):
                return line[at:]
        return short

    def __str__(self) -> str:
        return f"{self.action} -> {self.code} in {self.seconds:.2f}s; stderr:\n{self.stderr}"


def ocf_environment(
    instance: str,
    params: Mapping[str, str],
    meta: Mapping[str, str] | None = None,
    rsctmp: str | None = None,
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OCF_", "HA_", "CIB_")) and key not in ("PYTHONPATH",)
    }
    env.update({"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": instance})
    env.update({f"OCF_RESKEY_{key}": value for key, value in params.items()})
    for key, value in (meta or {}).items():
        env[f"OCF_RESKEY_CRM_meta_{key}"] = value
    if rsctmp is not None:
        env["HA_RSCTMP"] = rsctmp
    return env


def run_agent(
    agent: str,
    action: str,
    env: Mapping[str, str],
    timeout: float = 120,
    prefix: list[str] | None = None,
) -> AgentRun:
    """Run ``agents/<agent> <action>``; ``prefix`` (e.g. nsenter ...) runs it inside a host."""
    started = time.monotonic()
    completed = subprocess.run(
        [*(prefix or []), str(AGENTS / agent), action],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    run = AgentRun(action, completed.returncode, completed.stdout, completed.stderr, time.monotonic() - started)
    assert run.exit_reason is None or len(run.exit_reason) <= 128, f"exit reason too long for Pacemaker: {run}"
    return run
