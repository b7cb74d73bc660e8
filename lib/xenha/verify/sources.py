"""The edges of ``xenha verify``: corosync's two_node, the guests' domain XML, the planner's N+1 answer.

Everything that reads a file, runs a command or the scheduler is here; the parsers it uses
are pure functions with their own tests.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from xenha.deadline import Deadline
from xenha.libvirt.domxml import (
    ConfigUnreadable,
    DomainXmlError,
    is_xl_config,
    load_config,
    parse_domain,
    parse_tree,
)
from xenha.planner.model import CibError
from xenha.planner.preparation import Prepared, check_plannable, require_scheduler
from xenha.planner.report import headline
from xenha.planner.scenarios import (
    PlanEnvironment,
    enumerate_scenarios,
    plan_from_results,
    proved_results,
    scheduler_result,
    simulation_requests,
)
from xenha.planner.scheduler import SchedulerError, run_simulations
from xenha.runner import CommandRunner, find_tool
from xenha.verify.facts import DomainFile, NPlusOne
from xenha.verify.model import ClusterConfig

CMAPCTL_TIMEOUT_S = 10.0
DOMAIN_READ_BUDGET_S = 30.0
FILE_READ_S = 10.0  # one file on shared storage: a hung server costs this, once
FILE_READ_FLOOR_S = 1.0  # a file started inside the budget gets at least this long
T = TypeVar("T")
TWO_NODE_KEYS = ("runtime.votequorum.two_node", "quorum.two_node")


# --- corosync's two_node -------------------------------------------------------------------


def parse_cmapctl_value(output: str) -> str | None:
    """The value in ``corosync-cmapctl -g KEY`` output (``KEY (u8) = 1``), or None.

    >>> parse_cmapctl_value("runtime.votequorum.two_node (u8) = 1\\n")
    '1'
    >>> parse_cmapctl_value("Can't get key quorum.two_node. Error CS_ERR_NOT_EXIST")
    """
    match = re.search(r"\)\s*=\s*(\S+)\s*$", output.strip())
    return match.group(1) if match else None


def corosync_conf_two_node(text: str) -> bool:
    """Whether corosync.conf's ``quorum { }`` section sets ``two_node: 1`` (comments ignored).

    >>> corosync_conf_two_node("quorum {\\n  provider: corosync_votequorum\\n  two_node: 1\\n}\\n")
    True
    >>> corosync_conf_two_node("totem { two_node: 1 }\\nquorum {\\n provider: corosync_votequorum\\n}")
    False
    """
    sections: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0]
        words: list[str] = re.findall(r"[^\s{}]+\s*\{|\}|[^\s:{}]+\s*:\s*[^\s{}]*", line)
        for word in words:
            if word.endswith("{"):
                sections.append(word[:-1].strip())
            elif word == "}":
                if sections:
                    sections.pop()
            elif sections == ["quorum"]:
                key, _, value = word.partition(":")
                if key.strip() == "two_node":
                    return value.strip() == "1"
    return False


def two_node_live(runner: CommandRunner) -> tuple[bool | None, str]:
    """two_node from the running corosync: its runtime value, else its configured one."""
    for key in TWO_NODE_KEYS:
        result = runner.run(["corosync-cmapctl", "-g", key], timeout_s=CMAPCTL_TIMEOUT_S)
        if result.not_started is not None:
            return None, "corosync-cmapctl is not installed"
        value = parse_cmapctl_value(result.stdout) if result.ok else None
        if value is not None:
            return value == "1", f"corosync-cmapctl {key}"
        if "CS_ERR_NOT_EXIST" in result.stdout + result.stderr and key == TWO_NODE_KEYS[-1]:
            return False, f"corosync-cmapctl: {key} is not set"
    return None, "corosync-cmapctl did not answer: is corosync running on this node?"


def two_node_from_file(path: str) -> tuple[bool | None, str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return corosync_conf_two_node(handle.read()), path
    except OSError as error:
        return None, f"cannot read {path}: {error.strerror}"


# --- the guests' domain XML ----------------------------------------------------------------


def writable_disks(data: bytes, source: str) -> tuple[str, ...]:
    """The sources of the disks a guest may write: not ``<readonly/>``, not ``<shareable/>``, not a CD-ROM.

    >>> writable_disks(b'''<domain><devices>
    ...   <disk type="file" device="disk"><source file="/srv/a.img"/></disk>
    ...   <disk type="block" device="disk"><source dev="/dev/vg/b"/><shareable/></disk>
    ...   <disk type="file" device="cdrom"><source file="/srv/c.iso"/><readonly/></disk>
    ...   <disk type="network" device="disk"><source protocol="rbd" name="pool/d"/></disk>
    ... </devices></domain>''', "x.xml")
    ('/srv/a.img', 'rbd:pool/d')
    """
    found = []
    for disk in parse_tree(data, source).iterfind("devices/disk"):
        if disk.get("device") in ("cdrom", "floppy") or disk.find("readonly") is not None:
            continue
        if disk.find("shareable") is not None:
            continue
        element = disk.find("source")
        if element is None:
            continue
        if element.get("file") or element.get("dev") or element.get("dir"):
            found.append(os.path.normpath(element.get("file") or element.get("dev") or element.get("dir")))
        elif element.get("name"):
            found.append(f"{element.get('protocol', 'network')}:{element.get('name')}")
        elif element.get("volume"):
            found.append(f"volume:{element.get('pool', '')}/{element.get('volume')}")
    return tuple(found)


def read_domain(resource: str, path: str, budget: Deadline | None = None) -> DomainFile:
    """One guest's domain XML, read before ``budget`` passes (by default one file's share)."""
    if not path:
        return DomainFile(resource, path, error=f"{resource} has no config parameter: it cannot start")
    try:
        data = load_config(path, budget or Deadline.after(FILE_READ_S)).data
        if is_xl_config(data):  # only libvirt on a Xen host converts it (xl-configuration-files.md)
            return DomainFile(resource, path, error=f"{path} is an xl configuration: verify reads domain XML only")
        return DomainFile(resource, path, parse_domain(data, path), writable_disks(data, path))
    except (ConfigUnreadable, DomainXmlError) as error:
        return DomainFile(resource, path, error=f"{error} (on this node)")


def read_domains(
    config: ClusterConfig, budget_s: float = DOMAIN_READ_BUDGET_S, clock: Callable[[], float] = time.monotonic
) -> dict[str, DomainFile]:
    """Each guest's domain XML, read one after the other within ``budget_s`` in all.

    Each read has its own deadline (xenha.libvirt.domxml), but a hung shared storage would cost
    that deadline once per guest; past the budget the remaining files are not tried, and
    reported unread (the same storage is the likely cause).
    """
    started = clock()
    found = {}
    for count, guest in enumerate(config.guests):
        path = guest.params.get("config", "").strip()
        spent = clock() - started
        if spent > budget_s:
            found[guest.resource] = DomainFile(
                guest.resource,
                path,
                error=f"{path} not read: reading the guests' domain XML on this node took over {budget_s:.0f} s "
                f"(stopped after {count} of {len(config.guests)}): check that the storage answers",
            )
        else:
            share = min(FILE_READ_S, max(FILE_READ_FLOOR_S, budget_s - spent))
            found[guest.resource] = read_domain(guest.resource, path, Deadline.after(share))
    return found


# --- the planner's N+1 answer --------------------------------------------------------------


def n_plus_one(
    prepared: Prepared,
    environment: PlanEnvironment,
    lookup: Callable[[str], str | None] = find_tool,
) -> NPlusOne:
    """The planner's K=1 answer: the proof first, then the scheduler on what it leaves.

    Scheduler runs go ``environment.workers`` at a time and stop after the first batch in
    which a scenario leaves a guest stopped: one such scenario is the answer (WARNING), the
    others are ``xenha plan``'s to list.
    """
    started = environment.clock()
    try:
        check_plannable(prepared.model)
    except CibError as error:
        return NPlusOne(False, detail=str(error))
    scenarios = enumerate_scenarios(prepared.model, 1)
    results = proved_results(prepared, scenarios)
    pending = [scenario for scenario in scenarios if scenario not in results]
    if pending:
        try:
            require_scheduler(lookup)
        except CibError as error:
            return NPlusOne(False, detail=f"the proof does not cover every host failure and {error}")
        with tempfile.TemporaryDirectory(prefix="xenha-verify-") as directory:
            for batch in _batches(pending, max(1, environment.workers)):
                requests = simulation_requests(prepared, batch, directory)
                try:
                    simulations = run_simulations(requests, environment.runner, len(batch), environment.clock)
                except SchedulerError as error:
                    return NPlusOne(False, detail=f"the scheduler failed: {error}")
                answers = [scheduler_result(prepared.model, s, sim) for s, sim in zip(batch, simulations)]
                results.update(zip(batch, answers))
                if any(not answer.ok for answer in answers):
                    break
    done = [results[scenario] for scenario in scenarios if scenario in results]
    plan = plan_from_results(prepared, 1, done, environment.clock() - started)
    return NPlusOne(True, plan.tolerated, headline(plan))


def _batches(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
