"""``xen-guest``: one Xen guest as a Pacemaker resource — the OCF adapter.

The guest runs as a *transient* libvirt domain created from the XML file named by
``config`` (on storage every node sees): the file is the single definition, so no node
keeps a persistent definition that could start the guest behind the cluster's back
(docs/decisions/transient-domains.md).

This module validates, dispatches and maps outcomes onto exit codes; what the actions do is
in :mod:`.lifecycle` (start, stop, monitor), :mod:`.migration` and :mod:`.utilization`.
The services they use (hypervisors, the cluster, ledgers, the clock) come from
:class:`~.services.GuestServices`, which unit tests replace.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Mapping

from xenha.agents.guest import lifecycle
from xenha.agents.guest.action import GuestAction
from xenha.agents.guest.memo import MemoFile
from xenha.agents.guest.services import GuestServices
from xenha.agents.guest.spec import AGENT_NAME, SPEC
from xenha.agents.guest.utilization import publish_utilization
from xenha.agents.parameters import hypervisor_problems
from xenha.deadline import Deadline
from xenha.libvirt.domxml import (
    ConfigFile,
    ConfigUnreadable,
    DomainSpec,
    DomainXmlError,
    StorageHung,
    file_fingerprint,
    is_xl_config,
    load_config,
    parse_domain,
    stat_config,
)
from xenha.libvirt.drivers import DriverTraits, config_refusals, traits
from xenha.libvirt.errors import ErrorKind, HypervisorError
from xenha.libvirt.savedir import read_mount_table, save_dir_refusal
from xenha.libvirt.toolstack import ToolstackError
from xenha.libvirt.uri import UriError, parse
from xenha.ocf import Agent, Context, OcfError, OcfExit

# Actions that may use the spec remembered with the file's fingerprint instead of parsing
# the file again (start and migrate_from need the file itself).
REMEMBERED_SPEC_ACTIONS = frozenset({"monitor", "status", "stop", "migrate_to", "reload-agent"})
# What validation may spend reading files on shared storage (the configuration, save_dir),
# all reads together: a share of the action's remaining time, at most CONFIG_READ_MAX_S
# (time-budget-and-settling.md). Storage that does not answer in it is taken as hung.
CONFIG_READ_SHARE = 0.25
CONFIG_READ_MAX_S = 10.0
# After libvirtd went away mid-action: how long to wait for it to listen again.
RECONNECT_GRACE_S = 15.0
RECONNECT_POLL_S = 0.5

GuestHandler = Callable[[GuestAction], OcfExit]


class GuestAgent(Agent):
    spec = SPEC

    def __init__(self, services: Callable[[Context], GuestServices] = GuestServices) -> None:
        self._services = services
        self._action: GuestAction | None = None

    def _begin(self, ctx: Context) -> GuestAction:
        if self._action is None or self._action.ctx is not ctx:
            memo = MemoFile(ctx.env.rsctmp, AGENT_NAME, ctx.env.instance)
            self._action = GuestAction(ctx, self._services(ctx), memo)
        return self._action

    # ---- validation (no hypervisor) ---------------------------------------------------------
    def validate(self, ctx: Context) -> list[OcfError]:
        action = self._begin(ctx)
        budget = ctx.deadline.within(min(CONFIG_READ_MAX_S, ctx.deadline.remaining() * CONFIG_READ_SHARE))
        problems = [*ctx.params.problems(), *hypervisor_problems(ctx.params), *_migration_problems(ctx, budget)]
        path = action.config_path()
        if path is None:
            return problems
        try:
            if ctx.env.action in REMEMBERED_SPEC_ACTIONS and _remembered_spec(action, path, budget):
                return problems  # unchanged since the last good read: no lxml needed
            action.config = load_config(path, budget)
            native = action.config.data if is_xl_config(action.config.data) else None
            if native is not None:
                converted = _converted(action, action.config, problems)
                if converted is None:
                    return problems
                action.config = converted
            action.spec = parse_domain(action.config.data, path)
            if native is not None and action.spec.uuid and action.spec.uuid.encode().lower() not in native.lower():
                # libvirt's converter invents a UUID for a file without one: it names no domain
                action.spec = action.spec._replace(uuid=None)
            problems.extend(_driver_problems(ctx, action.spec, path))
        except ConfigUnreadable as error:
            problems.append(
                OcfError(
                    OcfExit.ERR_INSTALLED,
                    f"{error} on {ctx.env.node_name}: make the guest's configuration readable on this node",
                )
            )
        except DomainXmlError as error:
            problems.append(OcfError(OcfExit.ERR_CONFIGURED, str(error)))
        return problems

    def translate(self, error: Exception) -> OcfError | None:
        if isinstance(error, HypervisorError):
            return OcfError(OcfExit.ERR_GENERIC, error.reason())
        if isinstance(error, ToolstackError):
            return OcfError(OcfExit.ERR_GENERIC, str(error))
        return None

    def handlers(self) -> Mapping[str, Callable[[Context], OcfExit]]:
        return {
            "start": self._run(lifecycle.start, reconnect=True),
            "stop": self._run(lifecycle.stop, reconnect=True),
            "monitor": self._run(lifecycle.monitor, reconnect=True),
            "status": self._run(lifecycle.monitor, reconnect=True),
            "migrate_to": self._run(_migrate_to),
            "migrate_from": self._run(_migrate_from),
            "validate-all": lambda ctx: OcfExit.SUCCESS,  # the framework ran validate() before
            "reload-agent": self._run(_reload_agent),
        }

    def _run(self, handler: GuestHandler, reconnect: bool = False) -> Callable[[Context], OcfExit]:
        def run(ctx: Context) -> OcfExit:
            action = self._begin(ctx)
            return _reconnecting(action, handler) if reconnect else handler(action)

        return run


def _reconnecting(action: GuestAction, handler: GuestHandler) -> OcfExit:
    """Run ``handler`` again, once, if libvirtd went away under it (e.g. was restarted).

    A restarted libvirtd keeps its guests running; its clients only lose their connection.
    Each action is idempotent and starts by locating the guest afresh, so running it again
    on a new connection answers truthfully. A libvirtd that hangs is not retried: it would
    hang again, and the deadline is what protects the action.
    """
    ctx = action.ctx
    try:
        return handler(action)
    except HypervisorError as error:
        if error.kind is not ErrorKind.UNREACHABLE or error.operation == "connect":
            raise
        ctx.log.warning(f"lost libvirt during {ctx.action} ({error.detail}): reconnecting once")
    # A restarting libvirtd needs a moment before it listens again.
    grace = ctx.deadline.within(min(RECONNECT_GRACE_S, ctx.deadline.remaining() / 2))
    while True:
        try:
            return handler(action)
        except HypervisorError as error:
            if error.kind is not ErrorKind.UNREACHABLE or error.operation != "connect" or grace.expired():
                raise
            action.services.sleep(RECONNECT_POLL_S)


def _converted(action: GuestAction, config: ConfigFile, problems: list[OcfError]) -> ConfigFile | None:
    """An xl configuration as domain XML, converted by libvirt's own converter on the local
    hypervisor (docs/decisions/xl-configuration-files.md); None when it cannot be (the reason
    is among ``problems``, unless this is validate-all, which checks what it can without it).

    validate-all must not touch the hypervisor: it accepts a readable xl configuration, whose
    content libvirt's converter checks at start (a memo of an earlier conversion of the same
    file version lets it check the spec as usual).
    """
    ctx = action.ctx
    if ctx.env.action == "validate-all":
        memo = action.memo.load()
        if memo.config == config.path:
            action.spec = memo.spec_of(config.path, config.fingerprint)
        ctx.log.info(f"{config.path} is an xl configuration: libvirt converts and checks it at start")
        return None
    try:
        hypervisor = action.hypervisor()
    except OcfError as error:
        problems.append(error)
        return None
    native = hypervisor.driver.native_config_format
    if native is None:
        problems.append(
            OcfError(
                OcfExit.ERR_CONFIGURED,
                f"{config.path} is an xl configuration, which only Xen's libvirt driver converts; hypervisor="
                f"{hypervisor.uri} is not Xen: point config at a libvirt domain XML file",
            )
        )
        return None
    text = config.data.decode("utf-8", errors="replace")
    try:
        xml = hypervisor.domain_xml_from_native(native, text, config.path)
    except HypervisorError as error:
        if error.kind in (ErrorKind.UNREACHABLE, ErrorKind.TIMEOUT, ErrorKind.HYPERVISOR_DOWN):
            problems.append(OcfError(OcfExit.ERR_GENERIC, f"cannot convert the xl configuration: {error.reason()}"))
        else:
            problems.append(
                OcfError(
                    OcfExit.ERR_CONFIGURED,
                    f"libvirt cannot convert the xl configuration {config.path} on {ctx.env.node_name}: "
                    f"{error.detail}: fix the file",
                )
            )
        return None
    return config._replace(data=xml.encode("utf-8"))


def _remembered_spec(action: GuestAction, path: str, budget: Deadline) -> bool:
    """True when the memo holds the spec of ``path`` as the file is now (one stat, no parse).

    StorageHung passes through: the file is not read a second time on storage that did not
    answer the first.
    """
    memo = action.memo.load()
    if memo.config != path:
        return False
    try:
        action.spec = memo.spec_of(path, file_fingerprint(stat_config(path, budget)))
    except StorageHung:
        raise
    except (ConfigUnreadable, ValueError):
        action.spec = None  # read it afresh
    return action.spec is not None


def _reload_agent(action: GuestAction) -> OcfExit:
    spec = action.require_spec()
    action.ctx.log.info("reloaded the agent's parameters; nothing in the running guest changes")
    publish_utilization(action, spec, force=True)
    return OcfExit.SUCCESS


def _migrate_to(action: GuestAction) -> OcfExit:
    from xenha.agents.guest import migration  # noqa: PLC0415 - migration code only when migrating (performance.md)

    code = migration.migrate_to(action)
    action.memo.remove()  # the guest no longer lives here
    return code


def _migrate_from(action: GuestAction) -> OcfExit:
    from xenha.agents.guest import migration  # noqa: PLC0415 - migration code only when migrating (performance.md)

    config, spec = action.require_config()
    code = migration.migrate_from(action)
    action.remember(config, spec)
    publish_utilization(action, spec, force=False)
    return code


def _configured_driver(ctx: Context) -> DriverTraits | None:
    """The traits of the hypervisor parameter's driver (None: the URI is bad, already reported)."""
    try:
        return traits(parse(ctx.params.string("hypervisor") or "").driver)
    except (UriError, OcfError):
        return None


def _driver_problems(ctx: Context, spec: DomainSpec, path: str) -> list[OcfError]:
    """What the configured hypervisor's driver would refuse at start (xenha.libvirt.drivers)."""
    driver = _configured_driver(ctx)
    if driver is None:
        return []
    return [
        OcfError(OcfExit.ERR_CONFIGURED, f"{path}: {refusal}")
        for refusal in config_refusals(driver, spec.hypervisor_type, spec.has_max_memory)
    ]


def _migration_problems(ctx: Context, budget: Deadline) -> list[OcfError]:
    """Checks of the migration and reservation parameters that their types cannot express."""
    problems = []
    remote = ctx.params.string("remoteuri")
    if remote:
        try:
            parse(remote, "remoteuri", placeholder=True)
        except UriError as error:
            problems.append(OcfError(OcfExit.ERR_CONFIGURED, str(error)))
    data = ctx.params.string("migrateuri")
    if data and "://" not in data:
        problems.append(
            OcfError(OcfExit.ERR_CONFIGURED, f"migrateuri={data!r} is not a URI: use one such as tcp://%n:49152")
        )
    try:
        policies = {ctx.params.choice("pv_migration"), ctx.params.choice("hvm_migration")}
    except OcfError:
        return problems  # already among the parameter problems
    if "save-restore" in policies:
        problems.extend(_save_dir_problems(ctx, budget))
    return problems


def _save_dir_problems(ctx: Context, budget: Deadline) -> list[OcfError]:
    save_dir = ctx.params.string("save_dir")
    if not save_dir:
        return [
            OcfError(
                OcfExit.ERR_CONFIGURED,
                "save-restore migration (pv_migration or hvm_migration) needs save_dir: a directory on "
                "storage every node shares",
            )
        ]
    try:
        is_directory = stat.S_ISDIR(stat_config(save_dir, budget).st_mode)  # bounded: shared storage can hang
    except (ConfigUnreadable, ValueError):  # ValueError: a path os.stat refuses, as os.path.isdir counts it
        is_directory = False
    if not is_directory:
        return [
            OcfError(
                OcfExit.ERR_INSTALLED,
                f"save_dir {save_dir} is not a directory on {ctx.env.node_name}: mount the shared storage",
            )
        ]
    driver = _configured_driver(ctx)
    refusal = save_dir_refusal(driver, save_dir, read_mount_table()) if driver else None
    return [OcfError(OcfExit.ERR_CONFIGURED, refusal)] if refusal else []


def main() -> None:
    from xenha.ocf.entry import exec_agent  # noqa: PLC0415 - migration code only when migrating (performance.md)

    exec_agent(GuestAgent())


__all__ = ["SPEC", "GuestAgent", "main"]
