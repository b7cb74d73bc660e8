"""Run an agent as Pacemaker's executor does: a separate process with the OCF environment;
:class:`AgentCase` binds one resource's parameters and state directory to those runs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import commands

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
    ran = commands.run([*(prefix or []), str(AGENTS / agent), action], timeout, env=env, inherit_env=False)
    assert not ran.timed_out, f"the agent did not answer in {timeout:.0f} s: {ran.explain()}"
    run = AgentRun(action, ran.returncode or 0, ran.stdout, ran.stderr, ran.duration_s)
    assert run.exit_reason is None or len(run.exit_reason) <= 128, f"exit reason too long for Pacemaker: {run}"
    return run


@dataclass
class AgentCase:
    """One resource of an agent: its parameters, its state directory, how to run actions."""

    agent: str
    instance: str
    params: dict[str, str]
    rsctmp: str
    prefix: list[str] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        action: str,
        interval_ms: int | None = None,
        timeout_ms: int = 30000,
        meta: Mapping[str, str] | None = None,
        timeout: float = 180,
        **overrides: str,
    ) -> AgentRun:
        return self._execute(action, interval_ms, timeout_ms, meta, timeout, overrides)

    def _execute(
        self,
        action: str,
        interval_ms: int | None,
        timeout_ms: int,
        meta: Mapping[str, str] | None,
        timeout: float,
        overrides: Mapping[str, str],
    ) -> AgentRun:
        os.makedirs(self.rsctmp, exist_ok=True)
        params = {**self.params, **overrides}
        all_meta = {"timeout": str(timeout_ms), **(meta or {})}
        if interval_ms is not None:
            all_meta["interval"] = str(interval_ms)
        env = ocf_environment(self.instance, params, all_meta, self.rsctmp)
        env.update(self.extra_env)
        return run_agent(self.agent, action, env, timeout=timeout, prefix=self.prefix)

    def on(self, prefix: list[str], node: str) -> AgentCase:
        """The same resource, with actions run inside another host (``prefix``) named ``node``."""
        return AgentCase(
            self.agent, self.instance, dict(self.params), self.rsctmp.rstrip("/") + f"-{node}", prefix,
            dict(self.extra_env, OCF_RESKEY_CRM_meta_on_node=node),
        )  # fmt: skip

    def probe(self, **overrides: str) -> AgentRun:
        return self._execute("monitor", 0, 30000, None, 180, overrides)

    def monitor(self, **overrides: str) -> AgentRun:
        return self._execute("monitor", 10000, 30000, None, 180, overrides)
