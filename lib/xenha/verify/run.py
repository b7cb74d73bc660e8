"""One verification: the CIB read and refused when unusable, the facts gathered, every check run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from xenha.planner.cibdocument import read_cib_document
from xenha.planner.cibmodel import build_model
from xenha.planner.cibsource import CibSnapshot
from xenha.planner.model import CibError
from xenha.planner.preparation import Prepared, validate_schema
from xenha.planner.scenarios import PlanEnvironment
from xenha.runner import CommandRunner, find_tool
from xenha.verify import sources
from xenha.verify.checks import CHECKS, run_checks
from xenha.verify.facts import DEFAULT_BANDWIDTH_MIB_S, Facts, NPlusOne
from xenha.verify.findings import Finding
from xenha.verify.model import ClusterConfig, build_config


@dataclass(frozen=True)
class VerifyOptions:
    live: bool  # the CIB is the running cluster's: corosync and the domain XML are this node's
    bandwidth_mib_s: int = DEFAULT_BANDWIDTH_MIB_S
    bandwidth_stated: bool = False
    corosync_conf: str | None = None
    read_configs: bool | None = None  # None: when live
    n_plus_one: bool = True


@dataclass(frozen=True)
class VerifyEnvironment:
    runner: CommandRunner
    plan: PlanEnvironment
    find_tool: Callable[[str], str | None] = find_tool
    clock: Callable[[], float] = field(default=time.monotonic)


@dataclass(frozen=True)
class Verdict:
    source: str
    config: ClusterConfig
    facts: Facts
    findings: tuple[Finding, ...]
    checks: int
    seconds: float


def load(snapshot: CibSnapshot, schema_dir: str) -> tuple[ClusterConfig, bool]:
    """The checks' model of a CIB, and whether it was validated against its schema.

    Raises CibError (exit 3) when it is not a CIB, does not validate, or has no guests.
    """
    document = read_cib_document(snapshot.data)
    validated = validate_schema(document, schema_dir)
    planner = build_model(document)
    if not planner.guests:
        raise CibError(
            "the CIB has no xen-guest resources (primitives ocf:xenha:xen-guest): nothing to verify; "
            "create one with 'pcs resource create NAME ocf:xenha:xen-guest config=FILE'"
        )
    return build_config(document, planner), validated


def gather_facts(
    snapshot: CibSnapshot,
    config: ClusterConfig,
    validated: bool,
    options: VerifyOptions,
    environment: VerifyEnvironment,
) -> Facts:
    if len(config.nodes) != 2:
        two_node, two_node_source = None, "not a two-node cluster"  # two_node matters for two nodes only
    elif options.corosync_conf:
        two_node, two_node_source = sources.two_node_from_file(options.corosync_conf)
    elif options.live:
        two_node, two_node_source = sources.two_node_live(environment.runner)
    else:
        two_node, two_node_source = None, "a CIB file gives no corosync configuration: add --corosync-conf FILE"
    read_configs = options.live if options.read_configs is None else options.read_configs
    nplus1 = (
        sources.n_plus_one(Prepared(snapshot, config.planner, validated), environment.plan, environment.find_tool)
        if options.n_plus_one
        else NPlusOne(False)
    )
    return Facts(
        bandwidth_mib_s=options.bandwidth_mib_s,
        bandwidth_stated=options.bandwidth_stated,
        two_node=two_node,
        two_node_source=two_node_source,
        domains=sources.read_domains(config) if read_configs else None,
        nplus1=nplus1,
    )


def verify(snapshot: CibSnapshot, options: VerifyOptions, environment: VerifyEnvironment) -> Verdict:
    started = environment.clock()
    config, validated = load(snapshot, environment.plan.schema_dir)
    facts = gather_facts(snapshot, config, validated, options, environment)
    findings = run_checks(config, facts)
    return Verdict(snapshot.label, config, facts, findings, len(CHECKS), environment.clock() - started)
