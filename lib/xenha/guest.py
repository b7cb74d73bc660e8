"""``xen-guest``: one Xen guest as a Pacemaker resource.

The guest runs as a *transient* libvirt domain created from the XML file named by
``config`` (on storage every node sees): the file is the single definition, so no node
keeps a persistent definition that could start the guest behind the cluster's back
(docs/decisions/transient-domains.md).

Truthfulness comes first. A probe or a stop never says "not running" unless the hypervisor
said so: when the configuration cannot be read, the domain is found by the name remembered
from the last good read, or by the owner recorded in the domain's own metadata.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from xenha import domstate
from xenha.domxml import (
    ConfigFile,
    ConfigUnreadable,
    DomainSpec,
    DomainXmlError,
    GuestType,
    file_fingerprint,
    load_config,
    parse_domain,
    stat_config,
    with_owner,
)
from xenha.guest_spec import AGENT_NAME, DEFAULT_CPU_OVERCOMMIT, SPEC
from xenha.hypervisor import ErrorKind, FoundDomain, Hypervisor, HypervisorError
from xenha.libvirt_uri import UriError, hypervisor_problems, parse
from xenha.ocf import Agent, Context, Handler, OcfError, OcfExit
from xenha.statefile import StateFile

# The monitor path imports only the modules above: starting, migrating and talking to the
# cluster (capacity, reservation, pacemaker, runner, guest_migration) load their modules
# where they are used, which keeps a monitor within a few ms of the interpreter's floor.
if TYPE_CHECKING:
    from xenha.guest_migration import MigrationSettings
    from xenha.pacemaker import ClusterCli
    from xenha.reservation import AdmissionRequest

POLL_INTERVAL_S = 0.2
# Actions that may use the spec remembered with the file's fingerprint instead of parsing
# the file again (start and migrate_from need the file itself).
REMEMBERED_SPEC_ACTIONS = frozenset({"monitor", "status", "stop", "migrate_to", "reload-agent"})
# How often a monitor compares the published utilization with the CIB (one query).
UTILIZATION_RECHECK_S = 300.0
# After libvirtd went away mid-action: how long to wait for it to listen again.
RECONNECT_GRACE_S = 15.0
RECONNECT_POLL_S = 0.5
# Part of stop's time kept for destroy and verification after a graceful shutdown.
DESTROY_SHARE = 1.0 / 3.0


class GuestAgent(Agent):
    spec = SPEC

    def __init__(self) -> None:
        self._config: ConfigFile | None = None
        self._domain: DomainSpec | None = None
        self._saved: dict[str, Any] | None = None

    # ---- validation (no hypervisor) ---------------------------------------------------------
    def validate(self, ctx: Context) -> list[OcfError]:
        problems = [*ctx.params.problems(), *hypervisor_problems(ctx.params), *_migration_problems(ctx)]
        path = _config_path(ctx)
        if path is None:
            return problems
        if ctx.env.action in REMEMBERED_SPEC_ACTIONS:
            remembered = self._remembered_spec(ctx, path)
            if remembered is not None:
                self._domain = remembered  # unchanged since the last good read: no lxml needed
                return problems
        try:
            self._config = load_config(path)
            self._domain = parse_domain(self._config.data, path)
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

    def _remembered_spec(self, ctx: Context, path: str) -> DomainSpec | None:
        """The guest's spec as remembered, if the file has not changed since it was read."""
        remembered = self._state_data(ctx)
        if remembered.get("config") != path:
            return None
        try:
            fingerprint = file_fingerprint(stat_config(path))
            if remembered.get("config_fingerprint") != fingerprint:
                return None
            return DomainSpec(
                name=str(remembered["domain"]),
                uuid=remembered.get("uuid"),
                hypervisor_type=str(remembered["hypervisor_type"]),
                guest_type=GuestType(remembered["guest_type"]),
                memory_mib=int(remembered["memory_mib"]),
                vcpus=int(remembered["vcpus"]),
                video_mib=int(remembered.get("video_mib", 0)),
            )
        except (ConfigUnreadable, KeyError, TypeError, ValueError):
            return None  # read it afresh

    def translate(self, error: Exception) -> OcfError | None:
        if isinstance(error, HypervisorError):
            return OcfError(OcfExit.ERR_GENERIC, error.reason())
        return None

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "start": self._reconnecting(self.start),
            "stop": self._reconnecting(self.stop),
            "monitor": self._reconnecting(self.monitor),
            "status": self._reconnecting(self.monitor),
            "migrate_to": self.migrate_to,
            "migrate_from": self.migrate_from,
            "validate-all": self.validate_all,
            "reload-agent": self.reload_agent,
        }

    @staticmethod
    def _reconnecting(action: Handler) -> Handler:
        """Run ``action`` again, once, if libvirtd went away under it (e.g. was restarted).

        A restarted libvirtd keeps its guests running; its clients only lose their
        connection. Each action is idempotent and starts by locating the guest afresh, so
        running it again on a new connection answers truthfully. A libvirtd that hangs is
        not retried: it would hang again, and the deadline is what protects the action.
        """

        def run(ctx: Context) -> OcfExit:
            try:
                return action(ctx)
            except HypervisorError as error:
                if error.kind is not ErrorKind.UNREACHABLE or error.operation == "connect":
                    raise
                ctx.log.warning(f"lost libvirt during {ctx.action} ({error.detail}): reconnecting once")
            # A restarting libvirtd needs a moment before it listens again.
            grace = ctx.deadline.within(min(RECONNECT_GRACE_S, ctx.deadline.remaining() / 2))
            while True:
                try:
                    return action(ctx)
                except HypervisorError as error:
                    if error.kind is not ErrorKind.UNREACHABLE or error.operation != "connect" or grace.expired():
                        raise
                    time.sleep(RECONNECT_POLL_S)

        return run

    # ---- actions ----------------------------------------------------------------------------
    def validate_all(self, ctx: Context) -> OcfExit:
        return OcfExit.SUCCESS  # the framework ran validate() before calling this

    def reload_agent(self, ctx: Context) -> OcfExit:
        spec = self._require_spec()
        ctx.log.info("reloaded the agent's parameters; nothing in the running guest changes")
        self._publish_utilization(ctx, spec, force=True)
        return OcfExit.SUCCESS

    def migrate_to(self, ctx: Context) -> OcfExit:
        from xenha import guest_migration

        spec = self._require_spec()
        code = guest_migration.migrate_to(
            ctx,
            spec,
            _migration_settings(ctx),
            self._hypervisor(ctx),
            lambda action, node, target: self._book(ctx, spec, action, node, target),
        )
        _state(ctx).remove()  # the guest no longer lives here
        return code

    def migrate_from(self, ctx: Context) -> OcfExit:
        from xenha import guest_migration

        config, spec = self._require_config()
        code = guest_migration.migrate_from(ctx, spec, self._hypervisor(ctx))
        self._remember(ctx, config, spec)
        self._publish_utilization(ctx, spec, force=False)
        return code

    def monitor(self, ctx: Context) -> OcfExit:
        hypervisor = self._hypervisor(ctx)
        domain = self._locate(ctx, hypervisor, self._domain_name(ctx))
        if domain is None:
            return OcfExit.NOT_RUNNING
        status = hypervisor.status(domain)
        if status is None:
            return OcfExit.NOT_RUNNING
        verdict = domstate.judge(status.state, status.reason)
        name = domain.name()
        if verdict.code == OcfExit.SUCCESS:
            for problem in ctx.problems:
                ctx.log.warning(f"guest {name} runs, but its configuration has a problem: {problem.reason}")
            if self._domain is not None and not ctx.problems:
                if self._config is not None:
                    # the file changed since the last good read: remember what it says now
                    self._remember(ctx, self._config, self._domain)
                self._publish_utilization(ctx, self._domain, force=False)
            return OcfExit.SUCCESS
        if verdict.code == OcfExit.NOT_RUNNING:
            return OcfExit.NOT_RUNNING
        raise OcfError(verdict.code, f"guest {name} is {verdict.description} on {ctx.env.node_name}")

    def start(self, ctx: Context) -> OcfExit:
        from xenha.capacity import demand_of

        config, spec = self._require_config()
        hypervisor = self._hypervisor(ctx)
        existing = hypervisor.find(spec.name)
        if existing is not None and self._accept_existing(ctx, hypervisor, existing, spec):
            self._remember(ctx, config, spec)
            self._publish_utilization(ctx, spec, force=True)
            return OcfExit.SUCCESS
        demand = demand_of(spec)
        xml = with_owner(
            config.data,
            config.path,
            ctx.env.instance,
            {
                "guest-type": spec.guest_type.value,
                "vcpus": str(spec.vcpus),
                "memory-mib": str(spec.memory_mib),
                "demand-mib": str(demand.memory_mib),
            },
        )
        here = ctx.env.node_name
        release = self._book(ctx, spec, f"start {spec.name} on {here}", here, hypervisor)
        try:
            ctx.log.info(
                f"starting guest {spec.name} ({spec.guest_type.label}, {spec.memory_mib} MiB, "
                f"{spec.vcpus} vCPUs) from {config.path} on {here}"
            )
            domain = hypervisor.create(xml, spec.name)
            self._wait_running(ctx, hypervisor, domain, spec.name)
        finally:
            release()  # from now on the running domain itself holds the room
        self._remember(ctx, config, spec)
        self._publish_utilization(ctx, spec, force=True)
        ctx.log.info(f"guest {spec.name} is running on {here}")
        return OcfExit.SUCCESS

    def stop(self, ctx: Context) -> OcfExit:
        hypervisor = self._hypervisor(ctx)
        known_name = self._domain_name(ctx)
        domain = self._locate(ctx, hypervisor, known_name)
        if domain is None:
            ctx.log.info(f"guest {known_name or ctx.env.instance} is not running on {ctx.env.node_name}")
            return OcfExit.SUCCESS
        name = domain.name()
        graceful_s = self._graceful_seconds(ctx)
        active = self._active(hypervisor, domain)
        if graceful_s > 0 and active:
            ctx.log.info(f"shutting down guest {name} (waiting up to {graceful_s:.0f} s)")
            try:
                hypervisor.shutdown(domain)
            except HypervisorError as error:
                if error.kind not in (ErrorKind.INVALID_STATE, ErrorKind.NO_DOMAIN, ErrorKind.FAILED):
                    raise
                ctx.log.warning(f"graceful shutdown of {name} not possible: {error.detail}")
            graceful = hypervisor.deadline.within(graceful_s)
            active = self._active(hypervisor, domain)
            while active and not graceful.expired():
                time.sleep(min(0.5, max(0.05, graceful.remaining())))
                active = self._active(hypervisor, domain)
        if active:
            ctx.log.info(f"destroying guest {name}")
            try:
                hypervisor.destroy(domain)
            except HypervisorError as error:
                if error.kind not in (ErrorKind.INVALID_STATE, ErrorKind.NO_DOMAIN):
                    raise
            while self._active(hypervisor, domain):
                if hypervisor.deadline.expired():
                    raise OcfError(
                        OcfExit.ERR_GENERIC,
                        f"guest {name} is still active on {ctx.env.node_name} after destroy; the node needs fencing",
                    )
                time.sleep(POLL_INTERVAL_S)
        ctx.log.info(f"guest {name} is stopped on {ctx.env.node_name}")
        return OcfExit.SUCCESS

    # ---- helpers ----------------------------------------------------------------------------
    def _require_spec(self) -> DomainSpec:
        if self._domain is None:
            raise OcfError(OcfExit.ERR_GENERIC, "internal error: configuration was not validated")
        return self._domain

    def _require_config(self) -> tuple[ConfigFile, DomainSpec]:
        if self._config is None or self._domain is None:
            raise OcfError(OcfExit.ERR_GENERIC, "internal error: configuration was not validated")
        return self._config, self._domain

    def _hypervisor(self, ctx: Context) -> Hypervisor:
        """The local hypervisor; when its URI is unusable, nothing can be verified: fail."""
        try:
            uri = ctx.params.string("hypervisor") or ""
            parse(uri)
        except UriError as error:
            raise OcfError(OcfExit.ERR_CONFIGURED, str(error)) from None
        return Hypervisor(uri, ctx.deadline, ctx.env.node_name)

    def _domain_name(self, ctx: Context) -> str | None:
        """The guest's domain name: from the spec validation found, else as remembered, else unknown."""
        if self._domain is not None:
            return self._domain.name  # read from the file, or remembered with its unchanged fingerprint
        remembered = self._state_data(ctx)
        name = remembered.get("domain")
        path = _config_path(ctx)
        if isinstance(name, str) and name and (path is None or remembered.get("config") == path):
            return name
        return None

    def _locate(self, ctx: Context, hypervisor: Hypervisor, name: str | None) -> Any | None:
        if name is not None:
            return hypervisor.lookup(name)
        # Neither the configuration nor a remembered name: ask the hypervisor which domain
        # records this resource as its owner.
        ctx.log.warning(
            f"looking for the guest of {ctx.env.instance} by its metadata: its configuration "
            "cannot be read and no name is remembered on this node"
        )
        return hypervisor.find_owned_by(ctx.env.instance)

    def _active(self, hypervisor: Hypervisor, domain: Any) -> bool:
        status = hypervisor.status(domain)
        return status is not None and status.state != domstate.SHUTOFF

    def _accept_existing(self, ctx: Context, hypervisor: Hypervisor, existing: FoundDomain, spec: DomainSpec) -> bool:
        """True when an existing domain of the guest's name already is the running guest."""
        domain, status = existing
        if status.state == domstate.SHUTOFF:
            return False
        owner = hypervisor.owner(domain)
        if owner is not None and owner != ctx.env.instance:
            raise OcfError(
                OcfExit.ERR_CONFIGURED,
                f"domain {spec.name} on {ctx.env.node_name} belongs to cluster resource {owner}, "
                f"not {ctx.env.instance}: two resources name the same domain",
            )
        verdict = domstate.judge(status.state, status.reason)
        if verdict.code == OcfExit.SUCCESS:
            ctx.log.info(f"guest {spec.name} is already running on {ctx.env.node_name}")
            return True
        if status.state == domstate.PAUSED and verdict.code == OcfExit.DEGRADED:
            ctx.log.info(f"guest {spec.name} is {verdict.description}: resuming it")
            hypervisor.call(f"resume {spec.name}", domain.resume)
            self._wait_running(ctx, hypervisor, domain, spec.name)
            return True
        ctx.log.warning(f"guest {spec.name} is {verdict.description}: destroying it to start it afresh")
        hypervisor.destroy(domain)
        return False

    def _wait_running(self, ctx: Context, hypervisor: Hypervisor, domain: Any, name: str) -> None:
        while True:
            status = hypervisor.status(domain)
            if status is None:
                raise OcfError(
                    OcfExit.ERR_GENERIC,
                    f"guest {name} disappeared right after it started on {ctx.env.node_name}",
                )
            if domstate.running(status.state, status.reason):
                return
            verdict = domstate.judge(status.state, status.reason)
            if verdict.code in (OcfExit.ERR_GENERIC, OcfExit.NOT_RUNNING):
                raise OcfError(OcfExit.ERR_GENERIC, f"guest {name} is {verdict.description} right after it started")
            if hypervisor.deadline.expired():
                raise OcfError(OcfExit.ERR_GENERIC, f"guest {name} is still {verdict.description}, not running")
            time.sleep(POLL_INTERVAL_S)

    def _graceful_seconds(self, ctx: Context) -> float:
        try:
            if ctx.params.boolean("force_stop"):
                return 0.0
            configured = ctx.params.integer("shutdown_timeout")
        except OcfError:
            configured = None  # a broken value must not keep stop from stopping
        if configured is None:
            return ctx.timeout_s * (1.0 - DESTROY_SHARE)
        # Never eat into the time destroy needs.
        return min(float(configured), ctx.deadline.remaining() * (1.0 - DESTROY_SHARE))

    def _book(self, ctx: Context, spec: DomainSpec, action: str, node: str, target: Hypervisor) -> Callable[[], None]:
        """Check that ``node`` (``target`` is its libvirt) has room for the guest, and reserve it.

        Returns what releases the reservation; a failed release is only logged, since the
        reservation expires by itself. A refusal is the action's failure.
        """
        from xenha.reservation import AdmissionRefused, ClusterOrLocalLedger, ReservationError, admit

        request = _admission_request(ctx, spec, action, ctx.deadline.remaining() + 60)
        ledger = ClusterOrLocalLedger(self._cluster(ctx), ctx.env.rsctmp, node)
        admission_deadline = ctx.deadline.within(max(10.0, ctx.timeout_s * 0.3))
        try:
            booking = admit(request, ledger, target, admission_deadline, ctx.log, _token(ctx))
        except AdmissionRefused as refusal:
            raise OcfError(OcfExit.ERR_GENERIC, str(refusal)) from None
        except ReservationError as error:
            raise OcfError(OcfExit.ERR_GENERIC, f"cannot reserve room on {node}: {error}") from None

        def release() -> None:
            try:
                booking.release()
            except Exception as error:  # noqa: BLE001 - the reservation expires by itself; the result stands
                ctx.log.warning(f"could not release the reservation on {node}: {error}")

        return release

    def _cluster(self, ctx: Context) -> ClusterCli:
        from xenha.pacemaker import ClusterCli
        from xenha.runner import CommandRunner

        return ClusterCli(CommandRunner(), ctx.deadline)

    def _publish_utilization(self, ctx: Context, spec: DomainSpec, force: bool) -> None:
        """Set the resource's hv_memory and cpu utilization to the guest's demand.

        Only what differs is written. The last published values are kept in the state file,
        so an unchanged monitor costs no cluster call. The CIB itself is compared with at
        start and reload (``force``), when the node has no record (an arrival, usually: a
        guest's record goes when it leaves a node), and every UTILIZATION_RECHECK_S: a tool
        that replaces the configuration from a stale copy (pcs does: observed on the test
        cluster) can wipe a value written meanwhile, and a lost figure would make the
        scheduler place guests where they do not fit.
        """
        saved = self._state_data(ctx)
        now = time.time()
        checked_at = saved.get("published_checked_at")  # written with "published", never without
        stale = not isinstance(checked_at, (int, float)) or now - checked_at > UTILIZATION_RECHECK_S
        compare_with_cib = force or stale
        if not compare_with_cib and self._config is None:
            return  # the remembered spec is unchanged, so is its demand: nothing to do
        from xenha.capacity import demand_of

        wanted = {}
        demand = demand_of(spec)
        try:
            if ctx.params.boolean("autoset_utilization_hv_memory"):
                wanted["hv_memory"] = demand.memory_mib
            if ctx.params.boolean("autoset_utilization_cpu"):
                wanted["cpu"] = demand.vcpus
        except OcfError:
            return
        published = saved.get("published", {})
        if not compare_with_cib and all(published.get(name) == value for name, value in wanted.items()):
            return
        from xenha.pacemaker import NotInCluster, PacemakerError  # only now: it loads subprocess

        cluster = self._cluster(ctx)
        resource = ctx.env.instance
        try:
            current = cluster.resource_utilizations(resource) if compare_with_cib else {}
            for name, value in wanted.items():
                if current.get(name) == value:
                    continue
                cluster.set_resource_utilization(resource, name, value)
                if compare_with_cib and published.get(name) == value and not force:
                    ctx.log.warning(
                        f"utilization {name} of {resource} was {current.get(name, 'missing')} in the CIB, "
                        f"not {value} as published (configuration replaced from a stale copy?): set it again"
                    )
                else:
                    ctx.log.info(f"set utilization {name}={value} for {resource}")
        except NotInCluster:
            ctx.log.debug("no cluster: utilization not published")  # recorded anyway: tried again at the next recheck
        except PacemakerError as error:
            ctx.log.warning(f"could not publish the utilization of {resource}: {error}")
            return
        self._save(ctx, published=wanted, published_checked_at=now)

    def _state_data(self, ctx: Context) -> dict[str, Any]:
        """The state file's content, read once per action (Pacemaker runs one action of a resource at a time)."""
        if self._saved is None:
            self._saved = _state(ctx).load()
        return self._saved

    def _save(self, ctx: Context, **changes: Any) -> None:
        saved = self._state_data(ctx)
        saved.update(changes)
        _state(ctx).save(saved)

    def _remember(self, ctx: Context, config: ConfigFile, spec: DomainSpec) -> None:
        self._save(
            ctx,
            config=config.path,
            config_fingerprint=config.fingerprint,
            domain=spec.name,
            uuid=spec.uuid,
            hypervisor_type=spec.hypervisor_type,
            guest_type=spec.guest_type.value,
            memory_mib=spec.memory_mib,
            vcpus=spec.vcpus,
            video_mib=spec.video_mib,
        )


def _migration_problems(ctx: Context) -> list[OcfError]:
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
        policy = ctx.params.choice("hvm_migration")
    except OcfError:
        return problems  # already among the parameter problems
    if policy != "save-restore":
        return problems
    save_dir = ctx.params.string("save_dir")
    if not save_dir:
        problems.append(
            OcfError(
                OcfExit.ERR_CONFIGURED,
                "hvm_migration=save-restore needs save_dir: a directory on storage every node shares",
            )
        )
        return problems
    try:
        is_directory = stat.S_ISDIR(stat_config(save_dir).st_mode)  # bounded: shared storage can hang
    except (ConfigUnreadable, ValueError):  # ValueError: a path os.stat refuses, as os.path.isdir counts it
        is_directory = False
    if not is_directory:
        problems.append(
            OcfError(
                OcfExit.ERR_INSTALLED,
                f"save_dir {save_dir} is not a directory on {ctx.env.node_name}: mount the shared storage",
            )
        )
    return problems


def _migration_settings(ctx: Context) -> MigrationSettings:
    from xenha.guest_migration import MigrationSettings

    return MigrationSettings(
        remote_template=ctx.params.string("remoteuri") or None,
        data_template=ctx.params.string("migrateuri") or None,
        network_suffix=ctx.params.string("migration_network_suffix") or "",
        speed_mib_s=ctx.params.integer("migration_speed") or 0,
        downtime_ms=ctx.params.integer("migration_downtime") or 0,
        hvm_policy=ctx.params.choice("hvm_migration"),
        save_dir=ctx.params.string("save_dir") or None,
    )


def _admission_request(ctx: Context, spec: DomainSpec, action: str, hold_s: float) -> AdmissionRequest:
    from xenha.capacity import demand_of
    from xenha.reservation import AdmissionRequest

    return AdmissionRequest(
        action=action,
        resource=ctx.env.instance,
        domain=spec.name,
        demand=demand_of(spec),
        hold_s=hold_s,
        memory_reserve_mib=ctx.params.integer("host_memory_reserve"),
        cpu_overcommit=ctx.params.decimal("cpu_overcommit") or DEFAULT_CPU_OVERCOMMIT,
    )


def _token(ctx: Context) -> str:
    """Who holds a reservation: node, process and a random part (os.urandom: no imports)."""
    return f"{ctx.env.node_name}:{os.getpid()}:{os.urandom(4).hex()}"


def _state(ctx: Context) -> StateFile:
    return StateFile(ctx.env.rsctmp, AGENT_NAME, ctx.env.instance)


def _config_path(ctx: Context) -> str | None:
    try:
        path = ctx.params.string("config")
    except OcfError:
        return None
    return path if path and path.strip() else None


def main() -> None:
    from xenha.ocf.entry import exec_agent

    exec_agent(GuestAgent())


__all__ = ["SPEC", "GuestAgent", "main"]
