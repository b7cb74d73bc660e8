"""Synthetic CIBs that look like a running cluster's: hosts, guests, utilization, status.

Two entry points:

* :func:`generate_cib` — the benchmark's N hosts x M guests, sizes drawn from a seeded mix
  and placed as ``placement-strategy=balanced`` keeps them (each on the host with the
  most free memory);
* :func:`render_cib` — any hand-written cluster (the tests' small CIBs with hand-computed
  answers): hosts with their capacity and state, guests with their size, host and
  meta-attributes, constraints, cluster options.

The status section is written directly, as a running cluster's looks after every guest
was started: on the host that runs a guest, a successful ``start`` and its recurring
``monitor``; on every other host that is up, a probe that found it not running (rc 7).
Letting ``crm_simulate`` start 1000 guests from an empty status would take over ten
minutes. Operation digests are Pacemaker's own
(:func:`xenha.planner.cibedit.operation_digest`): with a wrong or missing digest the
scheduler would restart every guest "due to resource definition change".
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from xenha.planner.cibedit import operation_digest

# The feature set of Pacemaker 2.1.5: a CIB that claims a newer one is rejected by
# crm_simulate's simulated executor ("Discarding update with feature set ...").
FEATURE_SET = "3.16.1"
SCHEMA = "pacemaker-3.9"
GUEST_MONITOR_INTERVAL_MS = 10000
GUEST_MONITOR_TIMEOUT_MS = 30000
HOST_MONITOR_INTERVAL_MS = 30000
HOST_MONITOR_TIMEOUT_MS = 20000
_UUID = "00000000-0000-0000-0000-000000000000"


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
class HostSpec:
    name: str
    memory_mib: int | None  # None: no hv_memory capacity at all
    vcpus: int | None
    up: bool = True


@dataclass(frozen=True)
class GuestSpec:
    name: str
    memory_mib: int | None  # None: no utilization
    vcpus: int | None
    host: str | None  # None: not running
    meta: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SyntheticSpec:
    hosts: int
    guests: int
    host_memory_mib: int
    host_vcpus: int
    shapes: tuple[GuestShape, ...] = DEFAULT_SHAPES
    placement_strategy: str = "balanced"
    seed: int = 1


def host_name(index: int) -> str:
    return f"host{index + 1:02d}"


def guest_name(index: int) -> str:
    return f"vm{index + 1:04d}"


def place_guests(spec: SyntheticSpec) -> tuple[GuestSpec, ...]:
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
        placed.append(GuestSpec(guest_name(index), shape.memory_mib, shape.vcpus, host_name(host)))
    return tuple(placed)


def generate_cib(spec: SyntheticSpec) -> str:
    """The benchmark's CIB: ``spec.hosts`` equal hosts and ``spec.guests`` running guests."""
    hosts = [HostSpec(host_name(i), spec.host_memory_mib, spec.host_vcpus) for i in range(spec.hosts)]
    return render_cib(hosts, place_guests(spec), placement_strategy=spec.placement_strategy)


def _nvpair(owner: str, name: str, value: object) -> str:
    return f"<nvpair id={quoteattr(f'{owner}-{name}')} name={quoteattr(name)} value={quoteattr(str(value))}/>"


def _utilization(owner: str, memory_mib: int | None, vcpus: int | None) -> str:
    pairs = [(name, value) for name, value in (("hv_memory", memory_mib), ("cpu", vcpus)) if value is not None]
    if not pairs:
        return ""
    inner = "".join(_nvpair(f"{owner}-utilization", name, value) for name, value in pairs)
    return f'<utilization id="{owner}-utilization">{inner}</utilization>'


def _op(  # noqa: PLR0913 - the fields of one lrm_rsc_op record, written as one
    resource: str, node: str, operation: str, interval_ms: int, rc: int, call_id: int, digest: str
) -> str:
    key = f"{resource}_{operation}_{interval_ms}"
    op_id = key if interval_ms else f"{resource}_last_0"
    return (
        f'<lrm_rsc_op id="{op_id}" operation_key="{key}" operation="{operation}" '
        f'crm-debug-origin="do_update_resource" crm_feature_set="{FEATURE_SET}" '
        f'transition-key="{call_id}:1:{rc}:{_UUID}" transition-magic="0:{rc};{call_id}:1:{rc}:{_UUID}" '
        f'exit-reason="" on_node="{node}" call-id="{call_id}" rc-code="{rc}" op-status="0" '
        f'interval="{interval_ms}" last-rc-change="1700000000" exec-time="10" queue-time="0" '
        f'op-digest="{digest}"/>'
    )


def _guest_parameters(name: str) -> dict[str, str]:
    return {"config": f"/etc/xen/guests/{name}.xml"}


def render_cib(  # noqa: PLR0913 - a test fixture builder: each keyword is one knob of the generated CIB
    hosts: Sequence[HostSpec],
    guests: Sequence[GuestSpec],
    placement_strategy: str = "balanced",
    stonith_enabled: bool = True,
    fencing_device: bool = True,
    constraints: str = "",
    properties: Sequence[tuple[str, str]] = (),
    have_quorum: bool = True,
    stickiness: int = 1,
) -> str:
    """A whole CIB as XML text, with the status of a settled running cluster."""
    options = [
        ("stonith-enabled", "true" if stonith_enabled else "false"),
        ("placement-strategy", placement_strategy),
        ("cluster-infrastructure", "corosync"),
        ("cluster-name", "synthetic"),
        *properties,
    ]
    out: list[str] = [
        f'<cib crm_feature_set="{FEATURE_SET}" validate-with="{SCHEMA}" epoch="10" num_updates="0" '
        f'admin_epoch="0" have-quorum="{1 if have_quorum else 0}" dc-uuid="1">',
        '<configuration><crm_config><cluster_property_set id="cib-bootstrap-options">',
        *(_nvpair("cib-bootstrap-options", name, value) for name, value in options),
        "</cluster_property_set></crm_config><nodes>",
    ]
    for index, host in enumerate(hosts):
        utilization = _utilization(host.name, host.memory_mib, host.vcpus)
        out.append(f'<node id="{index + 1}" uname="{host.name}">{utilization}</node>')
    out.append("</nodes><resources>")
    if fencing_device:
        out.append('<primitive id="fence" class="stonith" type="fence_dummy"/>')
    out.append(
        '<clone id="xen-host-clone"><primitive id="xen-host" class="ocf" provider="xenha" '
        f'type="xen-host"><operations><op id="xen-host-monitor" name="monitor" '
        f'interval="{HOST_MONITOR_INTERVAL_MS // 1000}s"/></operations></primitive></clone>'
    )
    for guest in guests:
        name = guest.name
        meta = (("allow-migrate", "true"), *guest.meta)
        out.append(
            f'<primitive id="{name}" class="ocf" provider="xenha" type="xen-guest">'
            f'<instance_attributes id="{name}-instance_attributes">'
            f"{_nvpair(name + '-instance_attributes', 'config', _guest_parameters(name)['config'])}"
            f"</instance_attributes>"
            f'<meta_attributes id="{name}-meta_attributes">'
            + "".join(_nvpair(f"{name}-meta_attributes", key, value) for key, value in meta)
            + "</meta_attributes>"
            f"{_utilization(name, guest.memory_mib, guest.vcpus)}"
            f'<operations><op id="{name}-monitor" name="monitor" '
            f'interval="{GUEST_MONITOR_INTERVAL_MS // 1000}s" '
            f'timeout="{GUEST_MONITOR_TIMEOUT_MS // 1000}s"/></operations></primitive>'
        )
    out.append(f"</resources><constraints>{constraints}</constraints>")
    out.append(
        '<rsc_defaults><meta_attributes id="rsc-options">'
        f"{_nvpair('rsc-options', 'resource-stickiness', stickiness)}</meta_attributes></rsc_defaults>"
    )
    out.append("</configuration><status>")
    out.extend(_status(hosts, guests, fencing_device))
    out.append("</status></cib>")
    return "\n".join(out) + "\n"


def _status(hosts: Sequence[HostSpec], guests: Sequence[GuestSpec], fencing_device: bool) -> list[str]:
    out: list[str] = []
    digests = {}
    for guest in guests:
        parameters = _guest_parameters(guest.name)
        digests[guest.name] = (
            operation_digest(parameters),
            operation_digest({**parameters, "CRM_meta_timeout": str(GUEST_MONITOR_TIMEOUT_MS)}),
        )
    first_up = next((host.name for host in hosts if host.up), "")
    for index, host in enumerate(hosts):
        node_id = index + 1
        if not host.up:
            # Down and fenced: the controller erased its resource history.
            out.append(
                f'<node_state id="{node_id}" uname="{host.name}" in_ccm="false" crmd="offline" '
                f'crm-debug-origin="do_state_transition" join="down" expected="down"/>'
            )
            continue
        out.append(
            f'<node_state id="{node_id}" uname="{host.name}" in_ccm="true" crmd="online" '
            f'crm-debug-origin="do_update_resource" join="member" expected="member">'
            f'<lrm id="{node_id}"><lrm_resources>'
        )
        fence_runs_here = host.name == first_up if fencing_device else None
        out.extend(_host_history(host.name, guests, digests, fence_runs_here))
        out.append("</lrm_resources></lrm></node_state>")
    return out


def _host_history(
    node: str, guests: Sequence[GuestSpec], digests: Mapping[str, tuple[str, str]], fence_runs_here: bool | None
) -> list[str]:
    """The resource history of an up host: the fencing device (None: there is none), xen-host, the guests."""
    out: list[str] = []
    empty_digest = operation_digest({})
    call_id = 1
    if fence_runs_here is not None:
        operation, rc = ("start", 0) if fence_runs_here else ("monitor", 7)
        out.append('<lrm_resource id="fence" class="stonith" type="fence_dummy">')
        out.append(_op("fence", node, operation, 0, rc, 1, empty_digest))
        out.append("</lrm_resource>")
        call_id += 1
    host_monitor_digest = operation_digest({"CRM_meta_timeout": str(HOST_MONITOR_TIMEOUT_MS)})
    out.append('<lrm_resource id="xen-host" class="ocf" provider="xenha" type="xen-host">')
    out.append(_op("xen-host", node, "start", 0, 0, call_id, empty_digest))
    out.append(_op("xen-host", node, "monitor", HOST_MONITOR_INTERVAL_MS, 0, call_id + 1, host_monitor_digest))
    out.append("</lrm_resource>")
    call_id += 2
    for guest in guests:
        start_digest, monitor_digest = digests[guest.name]
        out.append(f'<lrm_resource id="{guest.name}" class="ocf" provider="xenha" type="xen-guest">')
        if guest.host == node:
            out.append(_op(guest.name, node, "start", 0, 0, call_id, start_digest))
            out.append(_op(guest.name, node, "monitor", GUEST_MONITOR_INTERVAL_MS, 0, call_id + 1, monitor_digest))
            call_id += 2
        else:
            out.append(_op(guest.name, node, "monitor", 0, 7, call_id, start_digest))
            call_id += 1
        out.append("</lrm_resource>")
    return out
