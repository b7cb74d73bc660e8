"""xl's answers as xenha.libvirt.toolstack reads them (the outputs are Xen 4.17's, seen in the lab).

The runner is replaced by one that answers like xl over a list of domains; the lab
(tests/xen/test_xen_migration_faults.py) runs the real xl.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from xenha.deadline import Deadline
from xenha.libvirt.toolstack import Toolstack, ToolstackError
from xenha.runner import CommandResult

HEADER = "Name  ID   Mem VCPUs\tState\tTime(s)   UUID   Reason-Code\tSecurity Label\n"


class FakeXlRunner:
    """``xl list -v <id|name>`` and ``xl destroy <id>`` over ``domains`` (name, id, state)."""

    def __init__(self, domains: list[tuple[str, int, str]], destroy_works: bool = True,
                 destroy_says: str = "") -> None:  # fmt: skip
        self.domains = domains
        self.destroy_works = destroy_works
        self.destroy_says = destroy_says
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], timeout_s: float, input_text: str | None = None) -> CommandResult:
        args = tuple(argv)
        self.calls.append(args)
        wanted = args[-1]
        found = [d for d in self.domains if wanted in (d[0], str(d[1]))]
        if args[1] == "list":
            if not found:
                said = f"Error: Domain '{wanted}' does not exist." if wanted.isdigit() else (
                    f"{wanted} is an invalid domain identifier (rc=-6)")  # fmt: skip
                return CommandResult(args, 1, "", said)
            name, domain_id, state = found[0]
            line = f"{name} {domain_id} 128 1 {state} 3.1 1b7c9a5e-2f3d-4c1a-9e8b-0a1b2c3d4e5f - -\n"
            return CommandResult(args, 0, HEADER + line)
        if self.destroy_works:
            self.domains = [d for d in self.domains if d not in found]
        return CommandResult(args, 1 if self.destroy_says else 0, "", self.destroy_says)


def toolstack(runner: FakeXlRunner) -> Toolstack:
    return Toolstack("xl", Deadline.after(30.0), "xenhost2", runner)  # type: ignore[arg-type]


def test_a_missing_domain_by_name_or_by_id_is_none() -> None:
    xl = toolstack(FakeXlRunner([("pv1", 7, "--p---")]))
    assert xl.domain("pv2") is None and xl.domain(9) is None
    found = xl.domain("pv1")
    assert found is not None and (found.domain_id, found.paused, found.never_ran) == (7, True, False)


def test_destroy_is_judged_by_xens_list_afterwards() -> None:
    runner = FakeXlRunner([("pv1", 7, "--p---")], destroy_says="Error: Domain '7' does not exist.")
    toolstack(runner).destroy(7, "pv1")  # gone, whatever xl said
    assert ("xl", "destroy", "7") in runner.calls


def test_a_dying_domain_counts_as_destroyed_one_still_there_does_not() -> None:
    toolstack(FakeXlRunner([("pv1", 7, "--ps-d")], destroy_works=False)).destroy(7, "pv1")
    with pytest.raises(ToolstackError, match="destroying pv1 \\(domain 7\\) on xenhost2 through xl failed"):
        toolstack(FakeXlRunner([("pv1", 7, "--p---")], destroy_works=False)).destroy(7, "pv1")


def test_destroy_never_touches_a_domain_whose_id_now_has_another_name() -> None:
    runner = FakeXlRunner([("other", 7, "r-----")])
    with pytest.raises(ToolstackError, match="domain 7 is now other"):
        toolstack(runner).destroy(7, "pv1")
    assert all(call[1] != "destroy" for call in runner.calls)


def test_a_gone_domain_needs_no_destroy() -> None:
    runner = FakeXlRunner([])
    toolstack(runner).destroy(7, "pv1")
    assert runner.calls == [("xl", "list", "-v", "7")]


def test_a_negative_id_is_never_passed_to_xl() -> None:
    runner = FakeXlRunner([("pv1", 7, "--p---")])
    with pytest.raises(ValueError, match="look it up by name"):
        toolstack(runner).domain(-1)
    assert runner.calls == []
