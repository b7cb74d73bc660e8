"""One action of xen-guest: what Pacemaker asked, the guest's spec, the memo and the services.

Validation fills it in (the spec from the file, or as remembered); the lifecycle, migration
and utilization modules act on it.
"""

from __future__ import annotations

from xenha.agents.guest.memo import Memo, MemoFile, RunningDomain
from xenha.agents.guest.services import GuestServices
from xenha.deadline import Deadline
from xenha.libvirt.connection import Hypervisor
from xenha.libvirt.domain import Domain
from xenha.libvirt.domxml import ConfigFile, DomainSpec
from xenha.libvirt.uri import UriError, parse
from xenha.ocf import Context, OcfError, OcfExit


class GuestAction:
    def __init__(self, ctx: Context, services: GuestServices, memo: MemoFile) -> None:
        self.ctx = ctx
        self.services = services
        self.memo = memo
        self.config: ConfigFile | None = None  # set when the file was read in this action
        self.spec: DomainSpec | None = None  # from the file, or remembered with its unchanged fingerprint
        # When stop's graceful wait ends: set once, so that a retry after a reconnect
        # continues the wait instead of starting it again (time-budget-and-settling.md).
        self.graceful_until: Deadline | None = None

    @property
    def here(self) -> str:
        return self.ctx.env.node_name

    def require_spec(self) -> DomainSpec:
        if self.spec is None:
            raise OcfError(OcfExit.ERR_GENERIC, "internal error: configuration was not validated")
        return self.spec

    def require_config(self) -> tuple[ConfigFile, DomainSpec]:
        if self.config is None or self.spec is None:
            raise OcfError(OcfExit.ERR_GENERIC, "internal error: configuration was not validated")
        return self.config, self.spec

    def config_path(self) -> str | None:
        try:
            path = self.ctx.params.string("config")
        except OcfError:
            return None
        return path if path and path.strip() else None

    def hypervisor(self) -> Hypervisor:
        """The local hypervisor; when its URI is unusable, nothing can be verified: fail."""
        try:
            uri = self.ctx.params.string("hypervisor") or ""
            parse(uri)
        except UriError as error:
            raise OcfError(OcfExit.ERR_CONFIGURED, str(error)) from None
        return self.services.hypervisor(uri, self.here)

    def domain_name(self) -> str | None:
        """The guest's domain name: from the spec validation found, else as remembered, else unknown."""
        if self.spec is not None:
            return self.spec.name
        return self.memo.load().domain_name(self.config_path())

    def remember(self, config: ConfigFile, spec: DomainSpec, started: Domain | None = None) -> None:
        """Remember the configuration as read; and ``started``, the domain this action started."""
        memo = self.memo.load().remembering(config, spec)
        if started is not None:
            memo = memo._replace(running=RunningDomain(started.name, started.uuid(), started.id()))
        self.memo.save(memo)

    def update_memo(self, memo: Memo) -> None:
        self.memo.save(memo)
