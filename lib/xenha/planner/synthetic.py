"""Synthetic CIBs that look like a running cluster: N hosts, M guests, utilization, status.

The status section is written directly, as a running cluster's looks after every guest
was started: on the host that runs a guest, a successful ``start`` and its recurring
``monitor``; on every other host, a probe that found it not running (rc 7). Letting
``crm_simulate`` start 1000 guests from an empty status would take over ten minutes.

Operation digests are Pacemaker's own (MD5 of the sorted parameter element, see
:func:`xenha.planner.cibedit.operation_digest`); with a wrong or missing digest the scheduler would restart
every guest "due to resource definition change", so the benchmark would measure a
cluster nobody runs.

Guests are placed on the host with the most free memory that fits them, in a seeded
random order of sizes, so that loads are even, as ``placement-strategy=balanced`` keeps
them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from xenha.planner.cibedit import operation_digest

# The feature set of Pacemaker 2.1.5: a CIB that claims a newer one is rejected by
# crm_simulate's simulated executor ("Discarding update with feature set ...").
FEATURE_SET = "3.16.1"
SCHEMA = "pacemaker-3.9"
GUEST_MONITOR_INTERVAL_MS = 10000
GUEST_MONITOR_TIMEOUT_MS = 30000
HOST_MONITOR_INTERVAL_MS = 30000
HOST_MONITOR_TIMEOUT_MS = 20000


@dataclass(frozen=True)
class GuestShape:
    memory_mib: int
    vcpus: int


# A mix of small and large guests, as a real pool has.
DEFAULT_SHAPES = (
    GuestShape(1024, 1),
    GuestShape(2048, 1),
    GuestShape(2048, 2),
    GuestShape(4096, 2),
    GuestShape(4096, 4),
    GuestShape(8192, 4),
)


@dataclass(frozen=True)
class SyntheticSpec:
    hosts: int
    guests: int
    host_memory_mib: int
    host_vcpus: int
    shapes: tuple[GuestShape, ...] = DEFAULT_SHAPES
    placement_strategy: str = "balanced"
    seed: int = 1


@dataclass(frozen=True)
class SyntheticGuest:
    name: str
    shape: GuestShape
    host: str


def host_name(index: int) -> str:
    return f"host{index + 1:02d}"


def guest_name(index: int) -> str:
    return f"vm{index + 1:04d}"


def place_guests(spec: SyntheticSpec) -> tuple[SyntheticGuest, ...]:
    """Sizes in a seeded random order, each on the host with the most free memory.

    Raises ValueError when a guest fits on no host: the spec describes no running cluster.
    """
    rng = random.Random(spec.seed)  # noqa: S311 - a reproducible benchmark, not a secret
    shapes = [spec.shapes[rng.randrange(len(spec.shapes))] for _ in range(spec.guests)]
    free_memory = [spec.host_memory_mib] * spec.hosts
    free_vcpus = [spec.host_vcpus] * spec.hosts
    placed = []
    for index, shape in enumerate(shapes):
        candidates = [
            host
            for host in range(spec.hosts)
            if free_memory[host] >= shape.memory_mib and free_vcpus[host] >= shape.vcpus
        ]
        if not candidates:
            raise ValueError(
                f"{guest_name(index)} ({shape.memory_mib} MiB, {shape.vcpus} vCPUs) fits on no host: "
                f"raise host_memory_mib or host_vcpus"
            )
        host = max(candidates, key=lambda h: (free_memory[h], -h))
        free_memory[host] -= shape.memory_mib
        free_vcpus[host] -= shape.vcpus
        placed.append(SyntheticGuest(guest_name(index), shape, host_name(host)))
    return tuple(placed)


def _nvpair(owner: str, name: str, value: object) -> str:
    return f'<nvpair id="{owner}-{name}" name="{name}" value="{value}"/>'


def _utilization(owner: str, memory_mib: int, vcpus: int) -> str:
    return (
        f'<utilization id="{owner}-utilization">'
        f"{_nvpair(owner + '-utilization', 'hv_memory', memory_mib)}"
        f"{_nvpair(owner + '-utilization', 'cpu', vcpus)}</utilization>"
    )


def _op(
    resource: str, node: str, operation: str, interval_ms: int, rc: int, call_id: int, digest: str
) -> str:
    key = f"{resource}_{operation}_{interval_ms}"
    op_id = key if interval_ms else f"{resource}_last_0"
    magic = f"0:{rc};{call_id}:1:{rc}:00000000-0000-0000-0000-000000000000"
    return (
        f'<lrm_rsc_op id="{op_id}" operation_key="{key}" operation="{operation}" '
        f'crm-debug-origin="do_update_resource" crm_feature_set="{FEATURE_SET}" '
        f'transition-key="{call_id}:1:{rc}:00000000-0000-0000-0000-000000000000" '
        f'transition-magic="{magic}" exit-reason="" on_node="{node}" call-id="{call_id}" '
        f'rc-code="{rc}" op-status="0" interval="{interval_ms}" last-rc-change="1700000000" '
        f'exec-time="10" queue-time="0" op-digest="{digest}"/>'
    )


def generate_cib(spec: SyntheticSpec) -> str:
    """The whole CIB as XML text."""
    guests = place_guests(spec)
    hosts = [host_name(index) for index in range(spec.hosts)]
    out: list[str] = [
        f'<cib crm_feature_set="{FEATURE_SET}" validate-with="{SCHEMA}" epoch="10" num_updates="0" '
        f'admin_epoch="0" have-quorum="1" dc-uuid="1">',
        "<configuration><crm_config>",
        '<cluster_property_set id="cib-bootstrap-options">',
        _nvpair("cib-bootstrap-options", "stonith-enabled", "true"),
        _nvpair("cib-bootstrap-options", "placement-strategy", spec.placement_strategy),
        _nvpair("cib-bootstrap-options", "cluster-infrastructure", "corosync"),
        _nvpair("cib-bootstrap-options", "cluster-name", "synthetic"),
        "</cluster_property_set></crm_config><nodes>",
    ]
    for index, host in enumerate(hosts):
        out.append(
            f'<node id="{index + 1}" uname="{host}">'
            f"{_utilization(host, spec.host_memory_mib, spec.host_vcpus)}</node>"
        )
    out.append("</nodes><resources>")
    out.append('<primitive id="fence" class="stonith" type="fence_dummy"/>')
    out.append(
        '<clone id="xen-host-clone"><primitive id="xen-host" class="ocf" provider="xenha" '
        f'type="xen-host"><operations><op id="xen-host-monitor" name="monitor" '
        f'interval="{HOST_MONITOR_INTERVAL_MS // 1000}s"/></operations></primitive></clone>'
    )
    for guest in guests:
        name = guest.name
        out.append(
            f'<primitive id="{name}" class="ocf" provider="xenha" type="xen-guest">'
            f'<instance_attributes id="{name}-instance_attributes">'
            f"{_nvpair(name + '-instance_attributes', 'config', f'/etc/xen/guests/{name}.xml')}"
            f"</instance_attributes>"
            f'<meta_attributes id="{name}-meta_attributes">'
            f"{_nvpair(name + '-meta_attributes', 'allow-migrate', 'true')}</meta_attributes>"
            f"{_utilization(name, guest.shape.memory_mib, guest.shape.vcpus)}"
            f'<operations><op id="{name}-monitor" name="monitor" '
            f'interval="{GUEST_MONITOR_INTERVAL_MS // 1000}s" '
            f'timeout="{GUEST_MONITOR_TIMEOUT_MS // 1000}s"/></operations></primitive>'
        )
    out.append("</resources><constraints/>")
    out.append(
        '<rsc_defaults><meta_attributes id="rsc-options">'
        f"{_nvpair('rsc-options', 'resource-stickiness', 1)}</meta_attributes></rsc_defaults>"
    )
    out.append("</configuration><status>")
    host_digest = operation_digest({})
    host_monitor_digest = operation_digest({"CRM_meta_timeout": str(HOST_MONITOR_TIMEOUT_MS)})
    by_host: dict[str, list[SyntheticGuest]] = {host: [] for host in hosts}
    for guest in guests:
        by_host[guest.host].append(guest)
    for index, host in enumerate(hosts):
        out.append(
            f'<node_state id="{index + 1}" uname="{host}" in_ccm="true" crmd="online" '
            f'crm-debug-origin="do_update_resource" join="member" expected="member">'
            f'<lrm id="{index + 1}"><lrm_resources>'
        )
        call_id = 1
        if index == 0:
            out.append('<lrm_resource id="fence" class="stonith" type="fence_dummy">')
            out.append(_op("fence", host, "start", 0, 0, call_id, host_digest))
            out.append("</lrm_resource>")
        else:
            out.append('<lrm_resource id="fence" class="stonith" type="fence_dummy">')
            out.append(_op("fence", host, "monitor", 0, 7, call_id, host_digest))
            out.append("</lrm_resource>")
        call_id += 1
        out.append('<lrm_resource id="xen-host" class="ocf" provider="xenha" type="xen-host">')
        out.append(_op("xen-host", host, "start", 0, 0, call_id, host_digest))
        out.append(
            _op("xen-host", host, "monitor", HOST_MONITOR_INTERVAL_MS, 0, call_id + 1, host_monitor_digest)
        )
        out.append("</lrm_resource>")
        call_id += 2
        running_here = {guest.name for guest in by_host[host]}
        for guest in guests:
            parameters = {"config": f"/etc/xen/guests/{guest.name}.xml"}
            digest = operation_digest(parameters)
            out.append(f'<lrm_resource id="{guest.name}" class="ocf" provider="xenha" type="xen-guest">')
            if guest.name in running_here:
                monitor_digest = operation_digest(
                    {**parameters, "CRM_meta_timeout": str(GUEST_MONITOR_TIMEOUT_MS)}
                )
                out.append(_op(guest.name, host, "start", 0, 0, call_id, digest))
                out.append(
                    _op(
                        guest.name, host, "monitor", GUEST_MONITOR_INTERVAL_MS, 0, call_id + 1, monitor_digest
                    )
                )
                call_id += 2
            else:
                out.append(_op(guest.name, host, "monitor", 0, 7, call_id, digest))
                call_id += 1
            out.append("</lrm_resource>")
        out.append("</lrm_resources></lrm></node_state>")
    out.append("</status></cib>")
    return "\n".join(out) + "\n"
