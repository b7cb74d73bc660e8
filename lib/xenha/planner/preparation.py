"""Before planning: the CIB read, checked against its schema, and refused when no plan means anything."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from xenha.planner.cibdocument import CibDocument, read_cib_document
from xenha.planner.cibmodel import build_model
from xenha.planner.cibsource import CibSnapshot
from xenha.planner.model import CibError, CibModel, schema_path
from xenha.runner import find_tool

SCHEMA_DIR = "/usr/share/pacemaker"


def validate_schema(document: CibDocument, schema_dir: str) -> bool:
    """Validate the configuration against the schema named by ``validate-with``.

    True when valid; False when it could not be checked (no such schema here, a schema
    older than pacemaker-3.0, or one that does not load): then the fast path steps aside
    and crm_simulate upgrades and checks the CIB itself. Raises CibError when it is checked
    and invalid: the scheduler would refuse it.
    """

    root = document.root
    validate_with = root.get("validate-with", "")
    path = schema_path(validate_with, schema_dir)
    if path is None or not os.path.isfile(path):
        return False
    major = validate_with.split("-", 1)[1].split(".", 1)[0]
    if int(major) < 3:
        return False
    try:
        schema = etree.RelaxNG(etree.parse(path))
    except (etree.XMLSyntaxError, etree.RelaxNGParseError, OSError):
        return False
    if schema.validate(root):
        return True
    problem = schema.error_log.last_error
    raise CibError(
        f"the CIB does not validate against {validate_with} (line {problem.line}: {problem.message}): "
        "fix it with 'crm_verify --xml-file FILE' before planning"
    )


def check_plannable(model: CibModel) -> None:
    """Refuse inputs on which no plan means anything; each message names the fix."""
    if not model.guests:
        raise CibError("the CIB has no xen-guest resources (primitives ocf:xenha:xen-guest): nothing to plan")
    if not model.have_quorum:
        raise CibError(
            "the cluster has no quorum (have-quorum is not 1): its scheduler recovers nothing; "
            "restore quorum first (see 'corosync-quorumtool -s'), or plan on a CIB saved while it had quorum"
        )
    if model.options.placement_strategy == "default":
        raise CibError(
            "placement-strategy is 'default': Pacemaker ignores utilization, so any host takes any guest "
            "and a plan means nothing; set it with "
            "'crm_attribute --type crm_config --name placement-strategy --update balanced'"
        )
    if not any(guest.has_utilization for guest in model.guests):
        raise CibError(
            "no xen-guest resource has utilization: set each guest's demand with "
            "'crm_resource --resource GUEST --utilization --set-parameter hv_memory --parameter-value MIB' "
            "(and cpu)"
        )
    if not any(host.has_capacity for host in model.hosts):
        raise CibError(
            "no host has an hv_memory capacity: set it with "
            "'crm_attribute --type nodes --node HOST --utilization --name hv_memory --update MIB' (and cpu)"
        )


def require_scheduler(lookup: Callable[[str], str | None] = find_tool) -> None:
    """Refuse to plan without crm_simulate: every verdict is defined as the scheduler's."""
    if lookup("crm_simulate") is None:
        raise CibError(
            "crm_simulate is not installed: install pacemaker-cli-utils (apt-get install pacemaker-cli-utils)"
        )


@dataclass(frozen=True)
class Prepared:
    snapshot: CibSnapshot
    model: CibModel
    validated: bool  # against its schema: the fast path's precondition


def prepare(snapshot: CibSnapshot, schema_dir: str = SCHEMA_DIR) -> Prepared:
    document = read_cib_document(snapshot.data)
    validated = validate_schema(document, schema_dir)
    model = build_model(document)
    check_plannable(model)
    return Prepared(snapshot, model, validated)
