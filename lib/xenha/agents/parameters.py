"""What both agents declare alike: the ``hypervisor`` parameter and the vCPU overcommit default."""

from __future__ import annotations

from xenha.libvirt.uri import UriError, parse
from xenha.ocf import OcfError, OcfExit, Parameter, ParameterValues

DEFAULT_CPU_OVERCOMMIT = 4.0  # Ganeti's default instance policy: vcpu-ratio 4

HYPERVISOR = Parameter(
    "hypervisor",
    "libvirt URI of the local hypervisor.",
    "libvirt connection URI of the hypervisor on the node running the action. xen:///system "
    "on a Xen host; qemu:///system and test:///default work for testing.",
    default="xen:///system",
)


def hypervisor_problems(params: ParameterValues) -> list[OcfError]:
    """The agents' ``hypervisor`` parameter, checked without connecting (validate-all)."""
    try:
        parse(params.string("hypervisor") or "")
    except UriError as error:
        return [OcfError(OcfExit.ERR_CONFIGURED, str(error))]
    except OcfError:
        return []  # already among the parameter problems
    return []


def cpu_overcommit(params: ParameterValues) -> float:
    return params.decimal("cpu_overcommit") or DEFAULT_CPU_OVERCOMMIT
