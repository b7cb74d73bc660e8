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

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xenha import domstate
from xenha.domxml import (
    ConfigFile,
    ConfigUnreadable,
    DomainSpec,
    DomainXmlError,
    file_fingerprint,
    load_config,
    parse_domain,
    stat_config,
    with_owner,
)
from xenha.hypervisor import ErrorKind, Hypervisor, HypervisorError
from xenha.libvirt_uri import UriError, parse
from xenha.ocf import Action, Agent, AgentSpec, Context, Handler, OcfError, OcfExit, Parameter, ParamType
from xenha.statefile import StateFile

AGENT_NAME = "xen-guest"

PARAMETERS = (
    Parameter(
        "config",
        "Path to the guest's libvirt domain XML.",
        "Absolute path to the libvirt domain XML file of the guest, on storage that every "
        "node sees at the same path. The guest is started from this file as a transient "
        "domain; its <name> identifies the guest on every host. "
        "Example: /srv/xen/web1.xml",
        required=True,
        unique=True,
    ),
    Parameter(
        "hypervisor",
        "libvirt URI of the local hypervisor.",
        "libvirt connection URI of the hypervisor on the node running the action. "
        "xen:///system on a Xen host; qemu:///system and test:///default work for testing.",
        default="xen:///system",
    ),
    Parameter(
        "shutdown_timeout",
        "Seconds of graceful shutdown before the guest is destroyed.",
        "How long stop waits for the guest to shut down after an ACPI/PV shutdown request "
        "before destroying it. Unset, it is two thirds of the stop operation's timeout, so "
        "that destroying and verifying always fit in the remaining third. 0 destroys at once. "
        "Example: 60",
        type=ParamType.INTEGER,
        minimum=0,
        unit="seconds",
        reloadable=True,
    ),
    Parameter(
        "force_stop",
        "Destroy the guest on stop without asking it to shut down.",
        "As in VirtualDomain: when true, stop destroys the guest immediately (same as shutdown_timeout=0).",
        type=ParamType.BOOLEAN,
        default="false",
        reloadable=True,
    ),
)

ACTIONS = (
    Action("start", 90),
    Action("stop", 90),
    Action("monitor", 30, interval_s=10),
    Action("status", 30),
    Action("validate-all", 10),
    Action("meta-data", 5),
    Action("reload-agent", 20),
)

SPEC = AgentSpec(
    name=AGENT_NAME,
    shortdesc="Xen guest with capacity-checked live migration",
    longdesc=(
        "Runs one Xen guest through libvirt. The guest is defined by a libvirt domain XML "
        "file on shared storage and runs as a transient domain on one node at a time. "
        "Monitor answers from the hypervisor itself; a probe never reports a guest as "
        "stopped when the hypervisor could not confirm it. Every hypervisor call is bounded "
        "by the operation's timeout, so a hung libvirtd cannot hang the agent."
    ),
    parameters=PARAMETERS,
    actions=ACTIONS,
)

POLL_INTERVAL_S = 0.2
# Part of stop's time kept for destroy and verification after a graceful shutdown.
DESTROY_SHARE = 1.0 / 3.0


@dataclass(frozen=True)
class Identity:
    """How the agent knows which domain is its guest, and how sure it is."""

    name: str
    spec: DomainSpec | None
    config: ConfigFile | None
    source: str  # "config" or "remembered"


class GuestAgent(Agent):
    spec = SPEC

    def __init__(self, hypervisor_factory: type[Hypervisor] = Hypervisor) -> None:
        self._hypervisor_factory = hypervisor_factory
        self._config: ConfigFile | None = None
        self._domain: DomainSpec | None = None

    # ---- validation (no hypervisor) ---------------------------------------------------------
    def validate(self, ctx: Context) -> list[OcfError]:
        problems = ctx.params.problems()
        try:
            parse(ctx.params.string("hypervisor") or "")
        except UriError as error:
            problems.append(OcfError(OcfExit.ERR_CONFIGURED, str(error)))
        except OcfError:
            pass  # already among the parameter problems
        path = _config_path(ctx)
        if path is None:
            return problems
        if ctx.env.action == "monitor" and self._remembered_fingerprint_matches(ctx, path):
            return problems  # unchanged since the last good read: no need to parse it again
        try:
            self._config = load_config(path)
            self._domain = parse_domain(self._config.data, path)
        except ConfigUnreadable as error:
            problems.append(
                OcfError(
                    OcfExit.ERR_INSTALLED,
                    f"{error} on {_node(ctx)}: make the guest's configuration readable on this node",
                )
            )
        except DomainXmlError as error:
            problems.append(OcfError(OcfExit.ERR_CONFIGURED, str(error)))
        return problems

    def _remembered_fingerprint_matches(self, ctx: Context, path: str) -> bool:
        remembered = _state(ctx).load()
        if remembered.get("config") != path or "domain" not in remembered:
            return False
        try:
            fingerprint = file_fingerprint(stat_config(path))
        except ConfigUnreadable:
            return False
        return bool(remembered.get("config_fingerprint") == fingerprint)

    def translate(self, error: Exception) -> OcfError | None:
        if isinstance(error, HypervisorError):
            return OcfError(OcfExit.ERR_GENERIC, error.reason())
        return None

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "start": self.start,
            "stop": self.stop,
            "monitor": self.monitor,
            "status": self.monitor,
            "validate-all": self.validate_all,
            "reload-agent": self.reload_agent,
        }

    # ---- actions ----------------------------------------------------------------------------
    def validate_all(self, ctx: Context) -> OcfExit:
        return OcfExit.SUCCESS  # the framework ran validate() before calling this

    def reload_agent(self, ctx: Context) -> OcfExit:
        ctx.log.info("reloaded the agent's parameters; nothing in the running guest changes")
        return OcfExit.SUCCESS

    def monitor(self, ctx: Context) -> OcfExit:
        hypervisor = self._hypervisor(ctx)
        identity = self._identity(ctx)
        domain = self._locate(ctx, hypervisor, identity)
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
            return OcfExit.SUCCESS
        if verdict.code == OcfExit.NOT_RUNNING:
            return OcfExit.NOT_RUNNING
        raise OcfError(verdict.code, f"guest {name} is {verdict.description} on {_node(ctx)}")

    def start(self, ctx: Context) -> OcfExit:
        config, spec = self._require_config()
        hypervisor = self._hypervisor(ctx)
        existing = hypervisor.lookup(spec.name)
        if existing is not None and self._accept_existing(ctx, hypervisor, existing, spec):
            self._remember(ctx, config, spec)
            return OcfExit.SUCCESS
        xml = with_owner(
            config.data,
            config.path,
            ctx.env.instance,
            {
                "guest-type": spec.guest_type.value,
                "vcpus": str(spec.vcpus),
                "memory-mib": str(spec.memory_mib),
            },
        )
        ctx.log.info(
            f"starting guest {spec.name} ({spec.guest_type.label}, {spec.memory_mib} MiB, "
            f"{spec.vcpus} vCPUs) from {config.path} on {_node(ctx)}"
        )
        domain = hypervisor.create(xml, spec.name)
        self._wait_running(ctx, hypervisor, domain, spec.name)
        self._remember(ctx, config, spec)
        ctx.log.info(f"guest {spec.name} is running on {_node(ctx)}")
        return OcfExit.SUCCESS

    def stop(self, ctx: Context) -> OcfExit:
        hypervisor = self._hypervisor(ctx)
        identity = self._identity(ctx)
        domain = self._locate(ctx, hypervisor, identity)
        if domain is None:
            ctx.log.info(
                f"guest {identity.name if identity else ctx.env.instance} is not running on {_node(ctx)}"
            )
            return OcfExit.SUCCESS
        name = domain.name()
        graceful_s = self._graceful_seconds(ctx)
        if graceful_s > 0 and self._active(hypervisor, domain):
            ctx.log.info(f"shutting down guest {name} (waiting up to {graceful_s:.0f} s)")
            try:
                hypervisor.shutdown(domain)
            except HypervisorError as error:
                if error.kind not in (ErrorKind.INVALID_STATE, ErrorKind.NO_DOMAIN, ErrorKind.FAILED):
                    raise
                ctx.log.warning(f"graceful shutdown of {name} not possible: {error.detail}")
            graceful = hypervisor.deadline.within(graceful_s)
            while self._active(hypervisor, domain) and not graceful.expired():
                time.sleep(min(0.5, max(0.05, graceful.remaining())))
        if self._active(hypervisor, domain):
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
                        f"guest {name} is still active on {_node(ctx)} after destroy; the node needs fencing",
                    )
                time.sleep(POLL_INTERVAL_S)
        ctx.log.info(f"guest {name} is stopped on {_node(ctx)}")
        return OcfExit.SUCCESS

    # ---- helpers ----------------------------------------------------------------------------
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
        return self._hypervisor_factory(uri, ctx.deadline, _node(ctx))

    def _identity(self, ctx: Context) -> Identity | None:
        """The guest's domain name: from the configuration, else as remembered, else unknown."""
        path = _config_path(ctx)
        if self._domain is not None and self._config is not None:
            return Identity(self._domain.name, self._domain, self._config, "config")
        remembered = _state(ctx).load()
        name = remembered.get("domain")
        if isinstance(name, str) and name and (path is None or remembered.get("config") == path):
            return Identity(name, None, None, "remembered")
        return None

    def _locate(self, ctx: Context, hypervisor: Hypervisor, identity: Identity | None) -> Any | None:
        if identity is not None:
            return hypervisor.lookup(identity.name)
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

    def _accept_existing(self, ctx: Context, hypervisor: Hypervisor, domain: Any, spec: DomainSpec) -> bool:
        """True when an existing domain of the guest's name already is the running guest."""
        status = hypervisor.status(domain)
        if status is None or status.state == domstate.SHUTOFF:
            return False
        owner = hypervisor.owner(domain)
        if owner is not None and owner != ctx.env.instance:
            raise OcfError(
                OcfExit.ERR_CONFIGURED,
                f"domain {spec.name} on {_node(ctx)} belongs to cluster resource {owner}, "
                f"not {ctx.env.instance}: two resources name the same domain",
            )
        verdict = domstate.judge(status.state, status.reason)
        if verdict.code == OcfExit.SUCCESS:
            ctx.log.info(f"guest {spec.name} is already running on {_node(ctx)}")
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
                    OcfExit.ERR_GENERIC, f"guest {name} disappeared right after it started on {_node(ctx)}"
                )
            verdict = domstate.judge(status.state, status.reason)
            if verdict.code == OcfExit.SUCCESS and status.state != domstate.PAUSED:
                return
            if verdict.code in (OcfExit.ERR_GENERIC, OcfExit.NOT_RUNNING):
                raise OcfError(
                    OcfExit.ERR_GENERIC, f"guest {name} is {verdict.description} right after it started"
                )
            if hypervisor.deadline.expired():
                raise OcfError(
                    OcfExit.ERR_GENERIC, f"guest {name} is still {verdict.description}, not running"
                )
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

    def _remember(self, ctx: Context, config: ConfigFile, spec: DomainSpec) -> None:
        _state(ctx).update(
            config=config.path,
            config_fingerprint=config.fingerprint,
            domain=spec.name,
            memory_mib=spec.memory_mib,
            vcpus=spec.vcpus,
            guest_type=spec.guest_type.value,
        )


def _state(ctx: Context) -> StateFile:
    return StateFile(ctx.env.rsctmp, AGENT_NAME, ctx.env.instance)


def _config_path(ctx: Context) -> str | None:
    try:
        path = ctx.params.string("config")
    except OcfError:
        return None
    return path if path and path.strip() else None


def _node(ctx: Context) -> str:
    import os

    return ctx.env.node_name or os.uname().nodename


def main() -> None:
    from xenha.ocf.entry import exec_agent

    exec_agent(GuestAgent())


__all__ = ["SPEC", "GuestAgent", "main"]
