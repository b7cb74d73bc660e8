"""One action of xen-guest: what Pacemaker asked, the guest's spec, the memo and the services.

Validation fills it in (the spec from the file, or as remembered); the lifecycle, migration
and utilization modules act on it.
"""

from __future__ import annotations

from xenha.agents.guest.memo import Memo, MemoFile
from xenha.agents.guest.services import GuestServices
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

    def locate(self, hypervisor: Hypervisor) -> Domain | None:
        name = self.domain_name()
        if name is not None:
            return hypervisor.lookup(name)
        # Neither the configuration nor a remembered name: ask the hypervisor which domain
        # records this resource as its owner.
        self.ctx.log.warning(
            f"looking for the guest of {self.ctx.env.instance} by its metadata: its configuration "
            "cannot be read and no name is remembered on this node"
        )
        return hypervisor.find_owned_by(self.ctx.env.instance)

    def remember(self, config: ConfigFile, spec: DomainSpec) -> None:
        self.memo.save(self.memo.load().remembering(config, spec))

    def update_memo(self, memo: Memo) -> None:
        self.memo.save(memo)
