"""Pacemaker's command-line tools, wrapped: the CIB, node and resource utilization, attributes.

Every call goes through :class:`xenha.runner.CommandRunner` with a timeout taken from the
action's deadline, so ``CIB_file=...`` (a CIB held in a file, honoured by all of
Pacemaker's tools) works the same as a live cluster. Pacemaker's exit codes that carry
meaning are named here; anything else becomes a :class:`PacemakerError` whose message says
which tool failed and how.
"""

from __future__ import annotations

from collections.abc import Sequence

from xenha.deadline import Deadline
from xenha.pacemaker.cibxml import NodeFigures, integer_value, node_figures_xpath, parse_node_figures, xpath_literal
from xenha.runner import CommandResult, CommandRunner
from xenha.xmlscan import elements, scan

# crm_exit_t values (include/crm/common/results.h)
EXIT_NO_SUCH_OBJECT = 105  # ENXIO: an xpath matched nothing / attribute not set
EXIT_EXISTS = 108  # EEXIST: cibadmin --create of an id that exists
EXIT_NOT_CONNECTED = 102  # no CIB manager to talk to: not in a cluster

CALL_TIMEOUT_S = 15.0


class PacemakerError(Exception):
    """A Pacemaker tool failed; ``str()`` says which and why."""


class NotInCluster(PacemakerError):
    """No cluster to talk to (no CIB manager on this node and no ``CIB_file``)."""


class ClusterCli:
    def __init__(self, runner: CommandRunner, deadline: Deadline) -> None:
        self._runner = runner
        self._deadline = deadline

    def _run(self, argv: Sequence[str]) -> CommandResult:
        result = self._runner.run(argv, min(CALL_TIMEOUT_S, self._deadline.remaining()))
        if result.not_started is not None:
            raise NotInCluster(result.describe() + " (install Pacemaker's command-line tools)")
        if result.timed_out:
            raise PacemakerError(f"{result.describe()}: the cluster's CIB did not answer in time")
        if result.returncode == EXIT_NOT_CONNECTED:
            raise NotInCluster(result.describe())
        return result

    def _check(self, result: CommandResult) -> CommandResult:
        if not result.ok:
            raise PacemakerError(result.describe())
        return result

    # ---- the CIB, with the primitives the reservation protocol is built on ------------------
    def query(self, xpath: str) -> str | None:
        """The elements matching ``xpath`` as XML text, or None when nothing matches."""
        result = self._run(["cibadmin", "--query", "--xpath", xpath])
        if result.returncode == EXIT_NO_SUCH_OBJECT:
            return None
        return self._check(result).stdout

    def create(self, section: str, xml: str) -> bool:
        """Add ``xml`` under ``section``; False when an element with its id already exists."""
        result = self._run(["cibadmin", "--create", "--scope", section, "--xml-text", xml])
        if result.returncode == EXIT_EXISTS:
            return False
        self._check(result)
        return True

    def modify_where(self, xpath: str, xml: str) -> bool:
        """Merge ``xml`` into the element matching ``xpath``; False when nothing matches.

        The CIB manager applies requests one at a time, so "modify where the condition in
        the xpath holds" is an atomic compare-and-swap shared by every node.
        """
        result = self._run(["cibadmin", "--modify", "--xpath", xpath, "--xml-text", xml])
        if result.returncode == EXIT_NO_SUCH_OBJECT:
            return False
        self._check(result)
        return True

    def delete_where(self, xpath: str) -> None:
        """Delete what matches ``xpath`` (nothing matching is fine)."""
        result = self._run(["cibadmin", "--delete", "--xpath", xpath])
        if result.returncode != EXIT_NO_SUCH_OBJECT:
            self._check(result)

    # ---- node utilization and attributes ----------------------------------------------------
    def node_figures(self, node: str) -> NodeFigures:
        return parse_node_figures(scan(self.query(node_figures_xpath(node)) or ""))

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
