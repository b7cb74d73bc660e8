"""What Pacemaker logged on every node during one scenario, parsed. Pure parsing plus a
window that remembers where each node's ``pacemaker.log`` ended when the scenario began.

Why the log and not only ``crm_mon``: Pacemaker (2.1.5 and later) records migrate_to and
migrate_from under their own history entry *without* the exit reason, so a refused
migration's reason ("cannot migrate vm1 to node2: needs ...") appears in ``crm_mon`` as
an empty string; the controller's log line keeps it. Fencing also erases the history of
the fenced node, and with it its failed actions; the log keeps those too.

Lines used (controller, executor and scheduler of Pacemaker 2.1.5)::

    ... pacemaker-controld [59] (log_executor_event) notice: Result of migrate_to operation
        for g5 on node2: error (cannot migrate g5 to node3: needs 70 MiB, ...) | CIB update 54, ...
    ... pacemaker-execd [56] (log_execute) info: executing - rsc:g5 action:migrate_to call_id:30
    ... pacemaker-execd [56] (log_finished) info: g5 migrate_to (call 30, PID 303) exited with
        status 1 (cannot migrate ...) (execution time 287ms)
    ... pacemaker-schedulerd[59] (pcmk__primitive_assign) info: Resource bad1 cannot run anywhere
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

LOG = "log/pacemaker/pacemaker.log"

_STAMP = re.compile(r"^(\w{3} +\d+ \d\d:\d\d:\d\d(?:\.\d+)?) (\S+) ")
_RESULT = re.compile(
    r"\(log_executor_event\) \s*\w+: Result of (?P<op>\w+) operation for (?P<rsc>\S+) on (?P<node>\S+): "
    r"(?P<result>.*?)(?: \((?P<reason>.*)\))?(?: \| .*)?$"
)
_EXECUTING = re.compile(
    r"\(log_execute\) \s*\w+: executing - rsc:(?P<rsc>\S+) action:(?P<op>\w+) call_id:(?P<call>\d+)"
)
_FINISHED = re.compile(
    r"\(log_finished\) \s*\w+: (?P<rsc>\S+) (?P<op>\S+) \(call (?P<call>\d+), PID \d+\) .*"
    r"\(execution time (?P<time>[\d.]+)(?P<unit>ms|s)(?: after being queued [^)]*)?\)$"
)
# Pacemaker's own words for an action that ran out of time (executor, controller, DC).
_TIMEOUT = re.compile(r"Timed Out|timed out after|\) timed out|did not send \S+ result")


@dataclass(frozen=True)
class Line:
    node: str  # whose log file
    when: datetime | None  # the line's own time stamp (year-less: for order and spans only)
    text: str


@dataclass(frozen=True)
class OpResult:
    """One "Result of <op> operation for <rsc> on <node>: <result> (<reason>)" line."""

    node: str
    resource: str
    op: str
    result: str  # "ok", "error", "not installed", "Timed Out", "Cancelled", ...
    reason: str
    when: datetime | None


@dataclass(frozen=True)
class Execution:
    """One action as the executor ran it: start and end time, duration."""

    node: str
    resource: str
    op: str
    call: int
    started: datetime | None
    seconds: float | None  # None while unfinished (or when the node died meanwhile)


def stamp(text: str) -> datetime | None:
    match = _STAMP.match(text)
    if match is None:
        return None
    raw = match.group(1)
    try:
        return datetime.strptime(f"2000 {raw}", "%Y %b %d %H:%M:%S.%f" if "." in raw else "%Y %b %d %H:%M:%S")
    except ValueError:
        return None


def op_results(lines: Iterable[Line]) -> list[OpResult]:
    found = []
    for line in lines:
        match = _RESULT.search(line.text)
        if match:
            found.append(
                OpResult(line.node, match["rsc"], match["op"], match["result"], match["reason"] or "", stamp(line.text))
            )
    return found


def executions(lines: Iterable[Line]) -> list[Execution]:
    """Every executor action whose start is in ``lines``, with its duration when it ended."""
    started: dict[tuple[str, str, str, int], datetime | None] = {}
    durations: dict[tuple[str, str, str, int], float] = {}
    for line in lines:
        match = _EXECUTING.search(line.text)
        if match:
            started[(line.node, match["rsc"], match["op"], int(match["call"]))] = stamp(line.text)
            continue
        match = _FINISHED.search(line.text)
        if match:
            seconds = float(match["time"]) / (1000.0 if match["unit"] == "ms" else 1.0)
            durations[(line.node, match["rsc"], match["op"], int(match["call"]))] = seconds
    return [
        Execution(node, resource, op, call, when, durations.get((node, resource, op, call)))
        for (node, resource, op, call), when in started.items()
    ]


def timeouts(lines: Iterable[Line], resources: Iterable[str]) -> list[Line]:
    """Lines in which Pacemaker says an action of one of ``resources`` ran out of time."""
    names = "|".join(re.escape(name) for name in resources)
    if not names:
        return []
    about = re.compile(rf"(?<![\w-])(?:{names})(?:_\w+_\d+|\s+on\s|\s+\w+ \(call)")
    return [line for line in lines if _TIMEOUT.search(line.text) and about.search(line.text)]


_CONTROLLER_STARTS = "(main) \tnotice: Starting Pacemaker controller"
_THROTTLE_KNOWN = "(throttle_send_command) \tinfo: New throttle mode:"


def throttle_known(log_text: str) -> bool:
    r"""Whether the node's latest controller has reported its load ("throttle mode").

    Until it has (about 30 s after the controller starts, at its first throttle timer), the
    DC limits the actions it runs at once there; seen here: ten live migrations into one
    node, planned together, ran two by two (a migration counts against its target too).

    >>> start = "Dec 03 07:14:42.802 node2 pacemaker-controld  [59] (main) \tnotice: Starting Pacemaker controller"
    >>> known = "Dec 03 07:15:13.838 node2 pacemaker-controld  [59] (throttle_send_command) \tinfo: New throttle mode: x"
    >>> throttle_known(start), throttle_known(f"{start}\n{known}"), throttle_known(f"{start}\n{known}\n{start}")
    (False, True, False)
    """
    started = log_text.rfind(_CONTROLLER_STARTS)
    return started >= 0 and log_text.find(_THROTTLE_KNOWN, started) >= 0


def cannot_run_anywhere(lines: Iterable[Line], resource: str) -> bool:
    wanted = f"Resource {resource} cannot run anywhere"
    return any(wanted in line.text for line in lines)


class LogWindow:
    """The part of every node's pacemaker.log written since the window was opened.

    Node logs live in each node's /var overlay on the host and survive kills and reboots,
    so the window also covers nodes that were fenced meanwhile.
    """

    def __init__(self, node_logs: Mapping[str, Path]) -> None:
        self._paths = dict(node_logs)
        self._offsets = {node: _size(path) for node, path in self._paths.items()}

    def lines(self) -> list[Line]:
        found = []
        for node, path in self._paths.items():
            try:
                with open(path, "rb") as handle:
                    handle.seek(self._offsets[node])
                    data = handle.read()
            except FileNotFoundError:
                continue
            for raw in data.decode(errors="replace").splitlines():
                found.append(Line(node, stamp(raw), raw))
        return found

    def results(self, resource: str | None = None, op: str | None = None) -> list[OpResult]:
        return [
            result
            for result in op_results(self.lines())
            if (resource is None or result.resource == resource) and (op is None or result.op == op)
        ]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
