"""What both agents declare alike: the ``hypervisor`` parameter, the vCPU overcommit default,
and the shape of their tunable quantities."""

from __future__ import annotations

from xenha.libvirt.uri import UriError, parse
from xenha.ocf import OcfError, OcfExit, Parameter, ParameterValues, ParamType

DEFAULT_CPU_OVERCOMMIT = 4.0  # Ganeti's default instance policy: vcpu-ratio 4

HYPERVISOR = Parameter(
    "hypervisor",
    "libvirt URI of the local hypervisor.",
    "libvirt connection URI of the hypervisor on the node running the action. xen:///system "
    "on a Xen host; qemu:///system and test:///default work for testing.",
    default="xen:///system",
)


def quantity_parameter(name: str, shortdesc: str, longdesc: str, unit: str, default: str | None = None) -> Parameter:
    """A tunable whole number of ``unit``, 0 or more, that a reload applies (both agents have several)."""
    return Parameter(
        name, shortdesc, longdesc, type=ParamType.INTEGER, default=default, minimum=0, unit=unit, reloadable=True
    )


def host_memory_reserve(use: str) -> Parameter:
    """``host_memory_reserve``: the same value for both agents; ``use`` says what this one does with it."""
    return quantity_parameter(
        "host_memory_reserve",
        "Host memory not available to guests, in MiB.",
        f"{use} Unset: Domain-0's current memory when the hypervisor reports a Domain-0 (Xen), "
        "otherwise 1024. Example: 4096",
        unit="MiB",
    )


def cpu_overcommit_parameter(shortdesc: str, use: str, example: str) -> Parameter:
    """``cpu_overcommit``: the same ratio for both agents; ``use`` says what this one does with it."""
    return Parameter(
        "cpu_overcommit",
        shortdesc,
        f"{use} A decimal number; the default 4 is Ganeti's default vcpu-ratio. Example: {example}",
        type=ParamType.DECIMAL,
        default="4",
        maximum=1000,
        reloadable=True,
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
