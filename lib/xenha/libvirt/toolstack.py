"""Xen's own toolstack (``xl``), for what libvirt's libxl driver cannot see or cannot reach.

Two things the Xen lab showed (docs/xen-lab-findings.md, "Moves that go wrong on real Xen";
the decision: docs/decisions/stop-through-xl.md):

- A libvirtd restarted during an incoming migration forgets the half-received domain, which
  Xen keeps: paused, never run, its memory held, its name taken. libvirt then says the guest
  is not there; only Xen's own list shows it.
- A migration libxl cannot abort holds the domain's job for as long as its copy hangs
  (minutes, when the network to the target is cut): every libvirt call that needs the job
  (shutdown, destroy) waits 30 s for it and fails ("cannot acquire state change lock").
  Xen destroys the domain at once; libvirt's job then fails and ends on its own.

Whether a host has such a toolstack is a driver trait (``DriverTraits.toolstack``); this
module is the only one that runs it. Every call is bounded by the action's deadline.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from xenha.deadline import Deadline
    from xenha.runner import CommandResult, CommandRunner

# xl's answers for a name, and for an ID, that no domain has (seen with Xen 4.17's xl)
_NO_SUCH_DOMAIN = ("is an invalid domain identifier", "does not exist")


class ToolstackError(Exception):
    """An ``xl`` command that failed: what, on which host, what to do."""

    def __init__(self, what: str, node: str, detail: str) -> None:
        super().__init__(f"{what} on {node} through xl failed: {detail}; check `xl list` on {node}")


class XenDomain(NamedTuple):
    """One line of ``xl list -v``: Xen's own view of a domain."""

    name: str
    domain_id: int
    state: str  # xl's flags, "r-----": running, blocked, paused, shutdown, crashed, dying
    cpu_seconds: float
    uuid: str

    @property
    def paused(self) -> bool:
        return "p" in self.state

    @property
    def never_ran(self) -> bool:
        """No vCPU of it has run on this host: a domain being received (or restored) here."""
        return self.cpu_seconds == 0.0


def parse_list(text: str) -> list[XenDomain]:
    """The domains in the output of ``xl list -v`` (header skipped; lines it cannot read too).

    >>> parse_list('''Name  ID   Mem VCPUs State Time(s)  UUID  Reason-Code Security Label
    ... Domain-0  0  768  2  r-----  60.5  00000000-0000-0000-0000-000000000000  -  -
    ... pv1  7  128  1  --p---  0.0  1b7c9a5e-2f3d-4c1a-9e8b-0a1b2c3d4e5f  -  -''')[1]
    XenDomain(name='pv1', domain_id=7, state='--p---', cpu_seconds=0.0, uuid='1b7c9a5e-2f3d-4c1a-9e8b-0a1b2c3d4e5f')
    """
    domains = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or not fields[1].isdigit():
            continue
        try:
            cpu_seconds = float(fields[5])
        except ValueError:
            continue
        domains.append(XenDomain(fields[0], int(fields[1]), fields[4], cpu_seconds, fields[6]))
    return domains


class Unknown(enum.Enum):
    """What stop makes of a domain Xen holds under the guest's name that libvirt does not know."""

    DEBRIS = "debris"  # paused, never ran: a half-received arrival; destroy it
    NOT_OURS = "not ours"  # its UUID is not the one the configuration declares: leave it
    UNVERIFIED = "unverified"  # it ran, or could: whose it is cannot be told; stop must fail


def judge_unknown(domain: XenDomain, config_uuid: str | None) -> Unknown:
    """What a domain only Xen knows under the guest's name is to the guest's stop (pure).

    Only a domain that never ran can be an interrupted arrival: one started by hand (``xl
    create``) has run, and so may be the guest itself; a running one is never destroyed
    unverified, and stop does not call the guest stopped beside it.

    >>> debris = XenDomain("pv1", 7, "--p---", 0.0, "u1")
    >>> judge_unknown(debris, None), judge_unknown(debris, "U1"), judge_unknown(debris, "u2")
    (<Unknown.DEBRIS: 'debris'>, <Unknown.DEBRIS: 'debris'>, <Unknown.NOT_OURS: 'not ours'>)
    >>> judge_unknown(debris._replace(state="-b----", cpu_seconds=3.2), None)
    <Unknown.UNVERIFIED: 'unverified'>
    """
    if config_uuid and domain.uuid.lower() != config_uuid.strip().lower():
        return Unknown.NOT_OURS
    if domain.paused and domain.never_ran:
        return Unknown.DEBRIS
    return Unknown.UNVERIFIED


class Toolstack:
    """``xl`` on this host, each call bounded by ``deadline``."""

    def __init__(self, command: str, deadline: Deadline, node: str, runner: CommandRunner | None = None) -> None:
        from xenha.runner import CommandRunner  # noqa: PLC0415 - subprocess only when xl runs (performance.md)

        self.command = command
        self.deadline = deadline
        self.node = node
        self._runner = runner or CommandRunner()

    def _run(self, *argv: str) -> CommandResult:
        return self._runner.run((self.command, *argv), self.deadline.remaining())

    def domain(self, identifier: str | int) -> XenDomain | None:
        """The domain Xen knows by this name or ID, or None when it has none."""
        if isinstance(identifier, int) and identifier < 0:
            raise ValueError(f"no Xen domain has the ID {identifier}: look it up by name")  # xl would read an option
        result = self._run("list", "-v", str(identifier))
        if not result.ok:
            if result.returncode is not None and any(answer in result.stderr for answer in _NO_SUCH_DOMAIN):
                return None
            raise ToolstackError(f"reading domain {identifier}", self.node, result.describe())
        found = parse_list(result.stdout)
        return found[0] if found else None

    def destroy(self, domain_id: int, name: str) -> None:
        """Destroy domain ``domain_id`` (called ``name``) and verify Xen no longer has it.

        By ID, not name: the domain that was judged is the one destroyed. One already gone is
        no error (a retried stop).
        """
        current = self.domain(domain_id)
        if current is None:
            return
        if current.name != name:
            raise ToolstackError(f"destroying {name}", self.node, f"domain {domain_id} is now {current.name}")
        result = self._run("destroy", str(domain_id))
        # Judged by what Xen lists afterwards, not by xl's status: a domain that went away
        # meanwhile makes xl say "does not exist" (seen in the lab), and that is what was wanted.
        # A dying domain ("d") never runs again; Xen frees its memory as its last mappings go.
        left = self.domain(domain_id)
        if left is not None and "d" not in left.state:
            detail = result.describe() if not result.ok else f"domain {domain_id} is still there after xl destroy"
            raise ToolstackError(f"destroying {name} (domain {domain_id})", self.node, detail)
