"""Dispatch, environment, logging destinations and meta-data of the OCF framework."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from xenha.ocf import (
    Action,
    Agent,
    AgentSpec,
    Context,
    Handler,
    OcfError,
    OcfExit,
    Parameter,
    ParamType,
    run_agent,
)
from xenha.ocf.agent import action_margin_s
from xenha.ocf.environment import OcfEnvironment
from xenha.ocf.log import OcfLog
from xenha.ocf.metadata import choose_version

SPEC = AgentSpec(
    name="demo",
    shortdesc="Demo <agent> & co",
    longdesc="Long.",
    parameters=(
        Parameter("size", "Size.", "Size.", type=ParamType.INTEGER, default="3", reloadable=True),
        Parameter("mode", "Mode.", "Mode.", type=ParamType.SELECT, choices=("a", "b"), default="a"),
    ),
    actions=(
        Action("start", 20),
        Action("stop", 20),
        Action("monitor", 20, interval_s=10),
        Action("reload-agent", 5),
    ),
)


class DemoAgent(Agent):
    spec = SPEC

    def __init__(self) -> None:
        self.seen: list[Context] = []

    def handlers(self) -> Mapping[str, Handler]:
        return {"start": self.start, "stop": self.record, "monitor": self.record, "explode": self.explode}

    def start(self, ctx: Context) -> OcfExit:
        self.seen.append(ctx)
        raise OcfError(OcfExit.ERR_GENERIC, "no room\non node2")

    def record(self, ctx: Context) -> OcfExit:
        self.seen.append(ctx)
        return OcfExit.SUCCESS

    def explode(self, ctx: Context) -> OcfExit:
        raise RuntimeError("boom")


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str, DemoAgent]:
    agent = DemoAgent()
    out, err = io.StringIO(), io.StringIO()
    code = run_agent(agent, ["demo", *argv], {"OCF_RESOURCE_INSTANCE": "r1", **(env or {})}, out, err)
    return code, out.getvalue(), err.getvalue(), agent


def test_exit_reason_is_one_line() -> None:
    code, _, err, _ = run(["start"])
    assert code == 1
    assert err.splitlines()[-1] == "ocf-exit-reason:no room on node2"


def test_pacemaker_prefix_is_honoured() -> None:
    _, _, err, _ = run(["start"], {"OCF_EXIT_REASON_PREFIX": "reason>"})
    assert err.splitlines()[-1] == "reason>no room on node2"


def test_unknown_action_and_usage() -> None:
    assert run(["promote"])[0] == 3
    code, out, _, _ = run(["usage"])
    assert code == 0 and out.startswith("usage: demo {")
    assert run([])[0] == 2


def test_internal_errors_become_generic_errors_without_tracebacks_on_stderr() -> None:
    code, _, err, _ = run(["explode"])
    assert code == 1
    assert "ocf-exit-reason:internal error in demo explode: RuntimeError: boom" in err
    # the traceback goes through the log (here: stderr, nothing else being configured),
    # every line of it a log line; the only other line is the exit reason
    *logged, last = err.splitlines()
    assert last.startswith("ocf-exit-reason:internal error in demo explode")
    assert any(line.endswith("ERROR: Traceback (most recent call last):") for line in logged), err
    assert all("demo(r1)[" in line and "ERROR: " in line for line in logged), err


def test_invalid_configuration_stops_strict_actions_but_not_lenient_ones() -> None:
    code, _, _, agent = run(["start"], {"OCF_RESKEY_size": "big"})
    assert code == 6 and agent.seen == []
    code, _, _, agent = run(["stop"], {"OCF_RESKEY_size": "big"})
    assert code == 0
    assert [problem.code for problem in agent.seen[0].problems] == [OcfExit.ERR_CONFIGURED]


def test_deadline_counts_the_time_the_process_ran_before_the_action() -> None:
    """Pacemaker's timer starts at fork: the interpreter's start and the imports count too."""
    agent = DemoAgent()
    environ = {"OCF_RESOURCE_INSTANCE": "r1", "OCF_RESKEY_CRM_meta_timeout": "30000"}
    run_agent(agent, ["demo", "stop"], environ, io.StringIO(), io.StringIO(), spent_before_s=12.0)
    full = 30 - action_margin_s(30)
    assert full - 12 - 1 < agent.seen[0].deadline.remaining() <= full - 12


def test_deadline_follows_the_pacemaker_timeout() -> None:
    _, _, _, agent = run(["stop"], {"OCF_RESKEY_CRM_meta_timeout": "30000"})
    ctx = agent.seen[0]
    assert ctx.timeout_s == 30
    assert 30 - action_margin_s(30) - 1 < ctx.deadline.remaining() <= 30 - action_margin_s(30)
    _, _, _, agent = run(["stop"])
    assert agent.seen[0].timeout_s == 20  # the advertised default


def test_environment() -> None:
    env = OcfEnvironment.from_environ(
        "monitor",
        {
            "OCF_RESOURCE_INSTANCE": "web1",
            "OCF_RESKEY_config": "/x.xml",
            "OCF_RESKEY_CRM_meta_interval": "0",
            "OCF_RESKEY_CRM_meta_timeout": "junk",
            "OCF_RESKEY_CRM_meta_migrate_target": "node2",
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "1",
            "HA_debug": "1",
        },
    )
    assert env.is_probe and env.params == {"config": "/x.xml"} and env.timeout_ms is None
    assert env.migrate_target == "node2" and env.ocf_version == (1, 1) and env.debug
    assert not OcfEnvironment.from_environ("monitor", {"OCF_RESKEY_CRM_meta_interval": "10000"}).is_probe
    assert OcfEnvironment.from_environ("start", {}).instance == "default"


def test_version_choice() -> None:
    assert choose_version(None) == (1, 0)
    assert choose_version((1, 0)) == (1, 0)
    assert choose_version((1, 1)) == (1, 1)
    assert choose_version((2, 0)) == (1, 1)


def test_metadata_renderings() -> None:
    legacy = SPEC.metadata((1, 0))
    modern = SPEC.metadata((1, 1))
    assert '<content type="string" default="a"/>' in legacy and "Allowed values: a, b." in legacy
    assert '<content type="select" default="a">' in modern and '<option value="b"/>' in modern
    assert "reload-agent" not in legacy and 'name="reload-agent"' in modern
    assert "Demo &lt;agent&gt; &amp; co" in legacy
    assert '<action name="monitor" timeout="20s" interval="10s"/>' in modern


class TtyBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def environment(**values: str) -> OcfEnvironment:
    return OcfEnvironment.from_environ("start", {"OCF_RESOURCE_INSTANCE": "r1", **values})


def test_log_goes_to_stderr_when_nothing_else_is_configured() -> None:
    err = io.StringIO()
    OcfLog("demo", environment(), stderr=err).info("hello")
    assert "demo(r1)[" in err.getvalue() and "INFO: hello" in err.getvalue()


def test_log_goes_to_the_log_file_and_not_stderr(tmp_path: Path) -> None:
    err, log_file = io.StringIO(), tmp_path / "pacemaker.log"
    log = OcfLog("demo", environment(HA_LOGFILE=str(log_file), HA_LOGFACILITY="none"), stderr=err)
    log.warning("careful")
    log.debug("hidden")
    assert err.getvalue() == ""
    assert "WARNING: careful" in log_file.read_text() and "hidden" not in log_file.read_text()


def test_log_falls_back_to_stderr_when_the_syslog_socket_is_missing(tmp_path: Path) -> None:
    err = io.StringIO()
    OcfLog("demo", environment(HA_LOGFACILITY="daemon"), stderr=err, syslog_socket=str(tmp_path / "none")).error("x")
    assert "ERROR: x" in err.getvalue()


def test_log_on_a_terminal_is_stderr_only(tmp_path: Path) -> None:
    err, log_file = TtyBuffer(), tmp_path / "l"
    OcfLog("demo", environment(HA_LOGFILE=str(log_file), HA_debug="1"), stderr=err).debug("d")
    assert "DEBUG: d" in err.getvalue() and not log_file.exists()


def test_unwritable_log_file_does_not_lose_the_line(tmp_path: Path) -> None:
    err = io.StringIO()
    OcfLog("demo", environment(HA_LOGFILE=str(tmp_path / "no" / "dir" / "log")), stderr=err).info("kept")
    assert "INFO: kept" in err.getvalue()


@pytest.mark.parametrize("seconds", [1, 5, 20, 90, 600])
def test_margin_is_bounded(seconds: float) -> None:
    assert 0.25 <= action_margin_s(seconds) <= 5 and action_margin_s(seconds) < seconds


class _ClosedPipe(io.StringIO):
    """A stdout whose reader went away: every write fails as a closed pipe does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_meta_data_into_a_closed_pipe_is_an_error_line_not_a_traceback() -> None:
    err = io.StringIO()
    code = run_agent(DemoAgent(), ["demo", "meta-data"], {}, stdout=_ClosedPipe(), stderr=err)
    assert code == OcfExit.ERR_GENERIC
    assert "Traceback" not in err.getvalue()
    assert "demo meta-data: its output could not be written (BrokenPipeError" in err.getvalue()


def test_the_agent_executable_into_a_closed_pipe_prints_no_traceback() -> None:
    """What ocf-tester did without xmllint: the pipe's reader gone before the agent writes."""
    agent = Path(__file__).resolve().parents[2] / "agents" / "xen-guest"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, str(agent), "meta-data"], stdout=write_end, stderr=subprocess.PIPE, timeout=60, check=False
        )
    finally:
        os.close(write_end)
    assert done.returncode == OcfExit.ERR_GENERIC, done.stderr
    assert b"Traceback" not in done.stderr and b"could not be written" in done.stderr, done.stderr
