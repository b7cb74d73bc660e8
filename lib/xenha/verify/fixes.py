"""The pcs and crmsh commands that fix a finding, as argument lists (pure).

Each function returns a :class:`~xenha.verify.findings.Fix` with the same change spelled
for both tools. Every form here was applied by the tests to a CIB file (``pcs -f FILE``,
``CIB_file=FILE crm ...``) and ``xenha verify`` run again to see the finding gone
(tests/acceptance/test_verify_fixes.py); the corosync ones edit corosync.conf and are
not applied there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xenha.verify.findings import Command, Fix

PCS = "pcs"
CRM = "crm"


def cluster_property(name: str, value: str) -> Fix:
    return Fix(
        ((PCS, "property", "set", f"{name}={value}"),),
        ((CRM, "configure", "property", f"{name}={value}"),),
    )


def resource_defaults(name: str, value: str) -> Fix:
    return Fix(
        ((PCS, "resource", "defaults", "update", f"{name}={value}"),),
        ((CRM, "configure", "rsc_defaults", f"{name}={value}"),),
    )


def resource_meta(resource: str, name: str, value: str | None) -> Fix:
    """Set a meta-attribute of a resource (or a clone); None removes it."""
    if value is None:
        return Fix(
            ((PCS, "resource", "meta", resource, f"{name}="),), ((CRM, "resource", "meta", resource, "delete", name),)
        )
    return Fix(
        ((PCS, "resource", "meta", resource, f"{name}={value}"),),
        ((CRM, "resource", "meta", resource, "set", name, value),),
    )


def resource_params(resource: str, values: Mapping[str, str], placeholders: Sequence[str] = ()) -> Fix:
    return Fix(
        ((PCS, "resource", "update", resource, *(f"{name}={value}" for name, value in values.items())),),
        tuple((CRM, "resource", "param", resource, "set", name, value) for name, value in values.items()),
        tuple(placeholders),
    )


def resource_utilization(resource: str, values: Mapping[str, str | None]) -> Fix:
    """Set utilization attributes of a resource; a None value removes the attribute."""
    return _utilization("resource", resource, values)


def node_utilization(node: str, values: Mapping[str, str | None], placeholders: Sequence[str] = ()) -> Fix:
    """Set utilization attributes of a node; a None value removes the attribute."""
    return _utilization("node", node, values, placeholders)


def _utilization(kind: str, owner: str, values: Mapping[str, str | None], placeholders: Sequence[str] = ()) -> Fix:
    """``kind`` is "resource" or "node": both tools spell the two alike."""
    return Fix(
        ((PCS, kind, "utilization", owner, *(f"{name}={value or ''}" for name, value in values.items())),),
        tuple(
            (CRM, kind, "utilization", owner, "delete", name)
            if value is None
            else (CRM, kind, "utilization", owner, "set", name, value)
            for name, value in values.items()
        ),
        tuple(placeholders),
    )


def operation(resource: str, name: str, attributes: Mapping[str, str], exists: bool) -> Fix:
    """Set attributes of a resource's operation ``name``, adding the operation if it has none.

    crmsh changes an existing operation with ``configure set`` and adds one by filtering
    the resource's definition (``configure filter``: the new ``op`` appended to its last
    line), since ``configure primitive`` cannot change an existing resource.
    """
    pairs = [f"{key}={value}" for key, value in attributes.items()]
    if exists:
        crmsh: tuple[Command, ...] = tuple(
            (CRM, "configure", "set", f"{resource}.{name}.{key}", value) for key, value in attributes.items()
        )
    else:
        interval = "" if "interval" in attributes else " interval=0s"
        crmsh = ((CRM, "configure", "filter", f'sed "$ s/$/ op {name} {" ".join(pairs)}{interval}/"', resource),)
    return Fix(((PCS, "resource", "update", resource, "op", name, *pairs),), crmsh)


def delete(element_id: str, pcs_kind: str = "resource") -> Fix:
    """Delete a resource (``pcs_kind='resource'``) or a constraint (``'constraint'``)."""
    return Fix(((PCS, pcs_kind, "delete", element_id),), ((CRM, "configure", "delete", element_id),))


FENCE_PLACEHOLDERS = ("BMC-ADDRESS", "USER", "PASSWORD")


def fence_device(node: str) -> Fix:
    """A fence device for ``node`` (IPMI, the commonest; the placeholders are its BMC's)."""
    params = ("ip=BMC-ADDRESS", "username=USER", "password=PASSWORD", f"pcmk_host_list={node}")
    return Fix(
        ((PCS, "stonith", "create", f"fence-{node}", "fence_ipmilan", *params),),
        ((CRM, "configure", "primitive", f"fence-{node}", "stonith:fence_ipmilan", "params", *params),),
        FENCE_PLACEHOLDERS,
    )


def host_agent_clone(monitor_interval: str = "30s") -> Fix:
    return Fix(
        (
            (
                PCS,
                "resource",
                "create",
                "xen-host",
                "ocf:xenha:xen-host",
                "op",
                "monitor",
                f"interval={monitor_interval}",
                "clone",
                "allow-unhealthy-nodes=true",
            ),
        ),
        (
            (
                CRM,
                "configure",
                "primitive",
                "xen-host",
                "ocf:xenha:xen-host",
                "op",
                "monitor",
                f"interval={monitor_interval}",
            ),
            (CRM, "configure", "clone", "xen-host-clone", "xen-host", "meta", "allow-unhealthy-nodes=true"),
        ),
    )


def clone_existing(primitive: str) -> Fix:
    return Fix(
        ((PCS, "resource", "clone", primitive, "allow-unhealthy-nodes=true"),),
        ((CRM, "configure", "clone", f"{primitive}-clone", primitive, "meta", "allow-unhealthy-nodes=true"),),
    )


def corosync_two_node() -> Fix:
    """two_node lives in corosync.conf and needs corosync restarted (it implies wait_for_all)."""
    edit = ("# add 'two_node: 1' to the quorum { } section of /etc/corosync/corosync.conf",)
    return Fix(
        ((PCS, "cluster", "stop", "--all"), edit, (PCS, "cluster", "sync"), (PCS, "cluster", "start", "--all")),
        (
            (CRM, "cluster", "stop", "--all"),
            (CRM, "corosync", "set", "quorum.two_node", "1"),
            (CRM, "corosync", "push"),
            (CRM, "cluster", "start", "--all"),
        ),
    )


def run_command(*argv: str) -> Fix:
    """Not a configuration change: the command that shows more (the same for both tools)."""
    return Fix((argv,), (argv,))
