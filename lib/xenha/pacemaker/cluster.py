"""Pacemaker's command-line tools, wrapped: the CIB, node and resource utilization, attributes.

Every call goes through :class:`xenha.runner.CommandRunner` with a timeout taken from the
action's deadline. Pacemaker's exit codes that carry meaning are named here; anything else
becomes a :class:`PacemakerError` whose message says which tool failed and how.

``CIB_file=...`` (a CIB held in a file, honoured by all of Pacemaker's tools) is for tests
and offline tools. It is *not* the same as a live cluster: ``cibadmin`` rewrites the file in
place with no lock, so concurrent writers lose updates. xenha's own calls against a CIB file
therefore take turns on an flock beside it (``<CIB_file>.xenha-lock``), and an admission
holds it from its read to its booking (docs/decisions/cib-file-serialisation.md); writers
other than xenha's agents that do not take that lock are not serialised.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Literal

from xenha.deadline import Deadline
from xenha.filelock import LockBusy, lock_file
from xenha.pacemaker.cibxml import (
    cib_version,
    integer_value,
    xpath_literal,
)
from xenha.runner import CommandResult, CommandRunner
from xenha.xmlscan import elements

# crm_exit_t values (include/crm/common/results.h)
EXIT_NO_SUCH_OBJECT = 105  # ENXIO: an xpath matched nothing / attribute not set
EXIT_EXISTS = 108  # EEXIST: cibadmin --create of an id that exists
EXIT_NOT_CONNECTED = 102  # no CIB manager to talk to: not in a cluster

# One CIB call may take CALL_SHARE of the time its action had when it first talked to the
# cluster, and at least CALL_TIMEOUT_S: an operator who gives a slow cluster long operation
# timeouts gives its CIB calls more patience too (a fixed 15 s failed xen-guest starts with
# minutes of a 240 s timeout left, in the Xen cluster lab: docs/xen-lab-findings.md).
CALL_TIMEOUT_S = 15.0
CALL_SHARE = 0.25


class PacemakerError(Exception):
    """A Pacemaker tool failed; ``str()`` says which and why."""


class NotInCluster(PacemakerError):
    """No cluster to talk to (no CIB manager on this node and no ``CIB_file``)."""


class CibTimeout(PacemakerError):
    """A tool was killed at its deadline: what it asked of the CIB may or may not have happened."""


ClusterMode = Literal["cib-file", "cluster", "standalone"]


def cluster_mode(environ: Mapping[str, str]) -> ClusterMode:
    """Whether an agent works against a CIB file, a cluster, or no cluster: decided once, from
    the environment, never from a tool's failure (a passing error is not "no cluster").

    Pacemaker's executor hands every action the feature set (``OCF_RESKEY_crm_feature_set``,
    an attribute of every action in the transition graph). ``CRM_meta_on_node`` alone does
    not say "cluster": it is also how an agent run by hand (or by the tests) is told which
    node it is on. An agent run with neither ``CIB_file`` nor the feature set has no cluster;
    its admission says so in its log line ("no cluster in the environment").

    >>> cluster_mode({"CIB_file": "/tmp/cib.xml", "OCF_RESKEY_crm_feature_set": "3.16.2"})
    'cib-file'
    >>> cluster_mode({"OCF_RESKEY_crm_feature_set": "3.16.2"}), cluster_mode({"OCF_RESKEY_CRM_meta_on_node": "n1"})
    ('cluster', 'standalone')
    """
    if environ.get("CIB_file"):
        return "cib-file"
    if environ.get("OCF_RESKEY_crm_feature_set"):
        return "cluster"
    return "standalone"


class CibFileLock:
    """The flock beside a CIB file that xenha's calls take turns on; re-entrant within a process."""

    def __init__(self, cib_file: str) -> None:
        self.path = f"{cib_file}.xenha-lock"
        self._descriptor: int | None = None
        self._depth = 0

    def acquire(self, deadline: Deadline) -> None:
        if self._depth == 0:
            try:
                self._descriptor = lock_file(self.path, deadline)
            except (OSError, LockBusy) as error:
                raise PacemakerError(f"the CIB file's lock {self.path} could not be taken ({error}): retry") from None
        self._depth += 1

    def release(self) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0 and self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


class ClusterCli:
    def __init__(self, runner: CommandRunner, deadline: Deadline) -> None:
        self._runner = runner
        self._deadline = deadline
        self._call_timeout_s = max(CALL_TIMEOUT_S, CALL_SHARE * deadline.remaining())
        cib_file = runner.environ.get("CIB_file")
        self._file_lock = CibFileLock(cib_file) if cib_file else None

    def hold(self, deadline: Deadline) -> None:
        """Against a CIB file: keep the file to ourselves until :meth:`let_go` (several calls
        as one step). Nothing to do in a cluster, whose CIB manager orders the requests."""
        if self._file_lock is not None:
            self._file_lock.acquire(deadline)

    def let_go(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()

    def _run(self, argv: Sequence[str], deadline: Deadline | None = None) -> CommandResult:
        """One call, given its share of the action's time (CALL_SHARE), never past the deadline."""
        within = self._deadline if deadline is None else deadline
        self.hold(within)
        try:
            result = self._runner.run(argv, min(self._call_timeout_s, within.remaining()))
        finally:
            self.let_go()
        if result.not_started is not None:
            raise NotInCluster(result.describe() + " (install Pacemaker's command-line tools)")
        if result.timed_out:
            raise CibTimeout(f"{result.describe()}: the cluster's CIB did not answer in time")
        if result.returncode == EXIT_NOT_CONNECTED:
            raise NotInCluster(result.describe())
        return result

    def _read(self, argv: Sequence[str], deadline: Deadline | None = None) -> CommandResult:
        """A call that changes nothing, asked again when it ran out of its time while the
        deadline has room for another whole call: a CIB busy for longer than one call answers
        later (xen-host's start failed on its first read with 70 s of its 120 left, in the Xen
        cluster lab). Writes go through :meth:`_run` alone: one that timed out may be applied."""
        within = self._deadline if deadline is None else deadline
        while True:
            try:
                return self._run(argv, within)
            except CibTimeout:
                if within.remaining() < self._call_timeout_s:
                    raise

    def _check(self, result: CommandResult) -> CommandResult:
        if not result.ok:
            raise PacemakerError(result.describe())
        return result

    # ---- the CIB, with the primitives the reservation protocol is built on ------------------
    def query(self, xpath: str, deadline: Deadline | None = None, no_children: bool = False) -> str | None:
        """The elements matching ``xpath`` as XML text, or None when nothing matches."""
        bare = ["--no-children"] if no_children else []
        result = self._read(["cibadmin", "--query", "--xpath", xpath, *bare], deadline)
        if result.returncode == EXIT_NO_SUCH_OBJECT:
            return None
        return self._check(result).stdout

    def configuration_version(self, deadline: Deadline | None = None) -> tuple[int, int]:
        """The CIB's (admin_epoch, epoch): every configuration change raises it, and no
        replace can bring an old value back (docs/decisions/reservation-protocol.md)."""
        version = cib_version(self.query("/cib", deadline, no_children=True) or "")
        if version is None:
            raise PacemakerError("cibadmin --query answered without the CIB's admin_epoch and epoch")
        return version

    def create(self, section: str, xml: str) -> bool:
        """Add ``xml`` under ``section``; False when an element with its id already exists."""
        result = self._run(["cibadmin", "--create", "--scope", section, "--xml-text", xml])
        if result.returncode == EXIT_EXISTS:
            return False
        self._check(result)
        return True

    def modify_where(self, xpath: str, xml: str, deadline: Deadline | None = None) -> bool:
        """Merge ``xml`` into the element matching ``xpath``; False when nothing matches.

        The CIB manager applies requests one at a time, so "modify where the condition in
        the xpath holds" is an atomic compare-and-swap shared by every node.
        """
        result = self._run(["cibadmin", "--modify", "--xpath", xpath, "--xml-text", xml], deadline)
        if result.returncode == EXIT_NO_SUCH_OBJECT:
            return False
        self._check(result)
        return True

    def delete_where(self, xpath: str, deadline: Deadline | None = None) -> None:
        """Delete what matches ``xpath`` (nothing matching is fine)."""
        result = self._run(["cibadmin", "--delete", "--xpath", xpath], deadline)
        if result.returncode != EXIT_NO_SUCH_OBJECT:
            self._check(result)

    # ---- node utilization and attributes ----------------------------------------------------
    def _node_attribute(self, node: str, name: str, *action: str, utilization: bool = False) -> CommandResult:
        """``crm_attribute`` on a permanent node attribute (or a node's utilization)."""
        kind = ["--utilization"] if utilization else []
        return self._run(["crm_attribute", "--type", "nodes", "--node", node, *kind, "--name", name, *action])

    def set_node_utilization(self, node: str, name: str, value: int) -> None:
        self._check(self._node_attribute(node, name, "--update", str(value), utilization=True))

    def set_node_attribute(self, node: str, name: str, value: str) -> None:
        """A permanent node attribute (configuration section)."""
        self._check(self._node_attribute(node, name, "--update", value))

    # ---- resource utilization ------------------------------------------------------------------
    def _resource_utilization(self, resource: str, *action: str) -> CommandResult:
        return self._run(["crm_resource", "--resource", resource, "--utilization", *action])

    def resource_utilizations(self, resource: str) -> dict[str, int]:
        """Every utilization value of ``resource`` in the CIB, in one query."""
        found = self.query(f"/cib/configuration/resources//primitive[@id={xpath_literal(resource)}]/utilization")
        values: dict[str, int] = {}
        for nvpair in elements(found or "", "nvpair"):
            value = integer_value(nvpair)
            if value is not None:
                values[nvpair.attributes.get("name", "")] = value
        return values

    def set_resource_utilization(self, resource: str, name: str, value: int) -> None:
        self._check(self._resource_utilization(resource, "--set-parameter", name, "--parameter-value", str(value)))

    # ---- transient node attributes (gone when the node leaves the cluster) -------------------
    def set_transient_attribute(self, node: str, name: str, value: str) -> None:
        self._check(
            self._run(["crm_attribute", "--node", node, "--lifetime", "reboot", "--name", name, "--update", value])
        )

    def delete_transient_attribute(self, node: str, name: str) -> None:
        result = self._run(["crm_attribute", "--node", node, "--lifetime", "reboot", "--name", name, "--delete"])
        if result.returncode != EXIT_NO_SUCH_OBJECT:
            self._check(result)
