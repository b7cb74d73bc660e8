"""ClusterCli gives a CIB call a share of its action's time (at least CALL_TIMEOUT_S), asks a
read again when it timed out and the deadline has room (a busy CIB answers later), and never
repeats a write. Pure logic: a scripted runner and a fake clock."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from xenha.deadline import Deadline
from xenha.pacemaker.cluster import CALL_SHARE, CALL_TIMEOUT_S, CibTimeout, ClusterCli
from xenha.runner import CommandResult, CommandRunner


class SlowCib(CommandRunner):
    """Times out the first ``late`` calls (each costing its whole timeout on the clock), then answers."""

    def __init__(self, late: int) -> None:
        super().__init__({})
        self.now = 0.0
        self.late = late
        self.calls: list[tuple[str, ...]] = []
        self.timeouts: list[float] = []

    def clock(self) -> float:
        return self.now

    def run(self, argv: Sequence[str], timeout_s: float, input_text: str | None = None) -> CommandResult:
        self.calls.append(tuple(argv))
        self.timeouts.append(timeout_s)
        if len(self.calls) <= self.late:
            self.now += timeout_s
            return CommandResult(tuple(argv), None, timed_out=True)
        self.now += 1.0
        return CommandResult(tuple(argv), 0, stdout="<node uname='xenhost1'/>")


def cli(cib: SlowCib, seconds: float) -> ClusterCli:
    return ClusterCli(cib, Deadline.after(seconds, cib.clock))


def test_a_read_that_timed_out_is_asked_again_within_the_deadline() -> None:
    cib = SlowCib(late=1)
    assert cli(cib, 120).query("/cib/configuration/nodes") == "<node uname='xenhost1'/>"
    assert len(cib.calls) == 2


def test_a_read_is_not_asked_again_without_room_for_a_whole_call() -> None:
    cib = SlowCib(late=1)
    with pytest.raises(CibTimeout, match="did not answer in time"):
        cli(cib, CALL_TIMEOUT_S + CALL_TIMEOUT_S / 2).query("/cib/configuration/nodes")
    assert len(cib.calls) == 1


def test_reads_stop_at_the_deadline() -> None:
    cib = SlowCib(late=100)
    with pytest.raises(CibTimeout):
        cli(cib, 120).query("/cib/configuration/nodes")
    assert len(cib.calls) == 120 // (CALL_SHARE * 120)


def test_a_call_gets_a_share_of_a_long_action_and_at_least_the_floor() -> None:
    cib = SlowCib(late=0)
    cli(cib, 240).query("/cib")  # xen-guest's start in the Xen cluster lab
    cli(cib, 20).query("/cib")  # Pacemaker's default timeout
    assert cib.timeouts == [CALL_SHARE * 240, CALL_TIMEOUT_S]


def test_a_write_that_timed_out_is_not_repeated() -> None:
    cib = SlowCib(late=1)
    with pytest.raises(CibTimeout):
        cli(cib, 120).modify_where("/cib/configuration/nodes/node", "<node/>")
    assert len(cib.calls) == 1
