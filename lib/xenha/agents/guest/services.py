"""The services an action of xen-guest uses, in one place: the seam unit tests replace.

An action reaches hypervisors, the cluster and the reservation ledgers only through
:class:`GuestServices`; the unit tests hand the agent one whose hypervisors and ledgers are
fakes (tests/unit/test_guest_agent.py), as the planner's tests hand it a ``PlanEnvironment``.

The cluster stack (subprocess, the Pacemaker wrapper, the admission package) is imported
where it is first used, here and nowhere else: a monitor never loads it
(docs/decisions/performance.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from xenha.libvirt.connection import Hypervisor
from xenha.ocf import Context

if TYPE_CHECKING:
    from xenha.admission.stores import Ledger
    from xenha.libvirt.live_migration import LiveMigration
    from xenha.libvirt.toolstack import Toolstack
    from xenha.pacemaker.cluster import ClusterCli


class GuestServices:
    """The real services: libvirt connections, Pacemaker's tools, the CIB or local ledger."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.clock: Callable[[], float] = time.time  # wall clock: when published figures were last checked
        self.sleep: Callable[[float], None] = time.sleep

    def hypervisor(self, uri: str, node: str) -> Hypervisor:
        """A connection (opened on first use) to the libvirtd at ``uri`` on ``node``, under the action's deadline."""
        return Hypervisor(uri, self._ctx.deadline, node)

    def live_migration(self, hypervisor: Hypervisor) -> LiveMigration | None:
        """What the host of ``hypervisor`` (this node's) can live-migrate; None: unknown."""
        from xenha.libvirt.live_migration import host_live_migration, state_file  # noqa: PLC0415 - migration code only when migrating (performance.md)

        return host_live_migration(hypervisor.driver, hypervisor.deadline, state_file(self._ctx.env.rsctmp))

    def toolstack(self, hypervisor: Hypervisor) -> Toolstack | None:
        """The hypervisor's own toolstack on this node (``xl`` on Xen), None where the driver has none."""
        from xenha.libvirt.toolstack import Toolstack  # noqa: PLC0415 - only stop on a Xen host needs it (performance.md)

        command = hypervisor.driver.toolstack
        return None if command is None else Toolstack(command, hypervisor.deadline, hypervisor.node)

    def cluster(self) -> ClusterCli:
        from xenha.pacemaker.cluster import ClusterCli  # noqa: PLC0415 - the cluster stack only when used (performance.md)
        from xenha.runner import CommandRunner  # noqa: PLC0415 - the cluster stack only when used (performance.md)

        return ClusterCli(CommandRunner(), self._ctx.deadline)

    def ledger(self, node: str) -> Ledger:
        """The reservation ledger of ``node``: in the CIB (a cluster's, or a CIB file), or on
        this host when the environment names no cluster. Decided from the environment only,
        never from a tool's failure (docs/decisions/reservation-protocol.md)."""
        from xenha.admission.stores import CibLedger, LocalLedger  # noqa: PLC0415 - the cluster stack only when used (performance.md)
        from xenha.pacemaker.cluster import cluster_mode  # noqa: PLC0415 - the cluster stack only when used (performance.md)

        if cluster_mode(os.environ) == "standalone":
            return LocalLedger(self._ctx.env.rsctmp, node)
        return CibLedger(self.cluster(), self._ctx.env.rsctmp, node)
