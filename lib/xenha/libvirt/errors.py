"""libvirt's errors, classified at the boundary into kinds a caller can act on.

``libvirt`` is imported on first use, so that modules which only need the types (and
meta-data, which must never touch the hypervisor) do not pay for loading it.
"""

from __future__ import annotations

import enum
from typing import Any

from xenha.libvirt.uri import mask, scrub

_libvirt_module: Any = None


def libvirt_module() -> Any:
    """The ``libvirt`` module, imported once, with its stderr printing silenced."""
    global _libvirt_module
    if _libvirt_module is None:
        import libvirt  # noqa: PLC0415 - libvirt on the first call, never for meta-data (performance.md)

        libvirt.registerErrorHandler(lambda _context, _error: None, None)
        _libvirt_module = libvirt
    return _libvirt_module


class ErrorKind(enum.Enum):
    UNREACHABLE = "unreachable"  # no connection, connection lost, authentication failed
    TIMEOUT = "timeout"  # no answer before the deadline: libvirtd hung or overloaded
    HYPERVISOR_DOWN = "hypervisor down"  # libvirtd answers but its driver is inactive
    NO_DOMAIN = "no domain"
    NO_METADATA = "no metadata"
    INVALID_STATE = "invalid state"  # the operation does not apply to the domain's state
    UNSUPPORTED = "unsupported"  # the driver cannot do this (xenha.libvirt.drivers)
    FAILED = "failed"


class HypervisorError(Exception):
    """A hypervisor call that failed, with what is needed to explain it."""

    def __init__(
        self,
        kind: ErrorKind,
        operation: str,
        uri: str,
        node: str,
        detail: str,
        code: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.operation = operation
        self.uri = mask(uri)
        self.node = node
        self.detail = " ".join(scrub(detail, uri).split())  # libvirt's messages may repeat the URI
        self.code = code

    def reason(self) -> str:
        """What failed, where and what to check; the URI comes last (Pacemaker keeps 128 characters)."""
        if self.kind is ErrorKind.TIMEOUT:
            return (
                f"{self.operation}: libvirtd on {self.node} did not answer in time; check that it is not hung "
                f"({self.detail}; {self.uri})"
            )
        if self.kind is ErrorKind.UNREACHABLE:
            return (
                f"{self.operation}: cannot reach libvirtd on {self.node}: {self.detail}; check that it runs "
                f"(virsh -c {self.uri} list)"
            )
        if self.kind is ErrorKind.HYPERVISOR_DOWN:
            return (
                f"{self.operation}: the hypervisor on {self.node} is not running: {self.detail}; check that "
                f"{self.node} booted into it ({self.uri})"
            )
        return f"{self.operation} failed on {self.node}: {self.detail} ({self.uri})"


# libvirt's libxl driver says this (VIR_ERR_INTERNAL_ERROR) when its state driver did not start,
# i.e. the host did not boot into Xen (libxlConnectOpen, src/libxl/libxl_driver.c). It reports
# routine failures with the same code ("Failed to send migration data to destination host",
# "Failed to shutdown domain '…'"), so only this message means the hypervisor is down.
_LIBXL_DOWN = "state driver is not active"


def _kind_of(libvirt: Any, code: int, origin: int, connecting: bool, message: str = "") -> ErrorKind:
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return ErrorKind.NO_DOMAIN
    if code == getattr(libvirt, "VIR_ERR_NO_DOMAIN_METADATA", 80):
        return ErrorKind.NO_METADATA
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        return ErrorKind.INVALID_STATE
    if code == libvirt.VIR_ERR_INTERNAL_ERROR and origin == libvirt.VIR_FROM_LIBXL and _LIBXL_DOWN in message:
        return ErrorKind.HYPERVISOR_DOWN
    if connecting or code in (
        libvirt.VIR_ERR_SYSTEM_ERROR,
        libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_AUTH_FAILED,
        getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", 94),
        getattr(libvirt, "VIR_ERR_AUTH_CANCELLED", 79),
    ):
        return ErrorKind.UNREACHABLE
    return ErrorKind.FAILED


def classify(error: Any, operation: str, uri: str, node: str, connecting: bool) -> HypervisorError:
    """Turn a ``libvirt.libvirtError`` into a :class:`HypervisorError` with a kind."""
    libvirt = libvirt_module()
    code = error.get_error_code()
    message = error.get_error_message() or str(error)
    kind = _kind_of(libvirt, code, error.get_error_domain(), connecting, message)
    return HypervisorError(kind, operation, uri, node, message, code)
