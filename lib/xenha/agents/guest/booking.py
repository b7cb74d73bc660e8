"""xen-guest's use of admission: check that a node has room for the guest, and reserve it."""

from __future__ import annotations

import os
from collections.abc import Callable

from xenha.agents.guest.action import GuestAction
from xenha.agents.parameters import cpu_overcommit
from xenha.libvirt.connection import Hypervisor
from xenha.libvirt.domxml import DomainSpec
from xenha.ocf import OcfError, OcfExit

# How long a reservation outlives the action that made it, if nobody releases it.
HOLD_BEYOND_ACTION_S = 60


def book(action: GuestAction, spec: DomainSpec, what: str, target: Hypervisor) -> Callable[[], None]:
    """Check that ``target.node`` has room for the guest, and reserve it.

    ``what`` completes "cannot ...". Returns what releases the reservation; a failed release
    is only logged, since the reservation expires by itself. A refusal is the action's failure.
    """
    # The admission package is loaded only by the actions that book (performance.md).
    from xenha.admission.admit import AdmissionRefused, AdmissionRequest, admit  # noqa: PLC0415 - admission only when booking (performance.md)
    from xenha.admission.resources import demand_of  # noqa: PLC0415 - admission only when booking (performance.md)
    from xenha.admission.stores import ReservationError  # noqa: PLC0415 - admission only when booking (performance.md)

    ctx = action.ctx
    node = target.node
    request = AdmissionRequest(
        action=what,
        resource=ctx.env.instance,
        domain=spec.name,
        demand=demand_of(spec),
        hold_s=ctx.deadline.remaining() + HOLD_BEYOND_ACTION_S,
        memory_reserve_mib=ctx.params.integer("host_memory_reserve"),
        cpu_overcommit=cpu_overcommit(ctx.params),
        holder=f"{action.here}:{os.getpid()}:{os.urandom(4).hex()}",  # os.urandom: no imports
    )
    ledger = action.services.ledger(node)
    admission_deadline = ctx.deadline.within(max(10.0, ctx.timeout_s * 0.3))
    try:
        booking = admit(request, ledger, target, admission_deadline, ctx.log)
    except AdmissionRefused as refusal:
        raise OcfError(OcfExit.ERR_GENERIC, str(refusal)) from None
    except ReservationError as error:
        raise OcfError(OcfExit.ERR_GENERIC, f"cannot reserve room on {node}: {error}") from None

    def release() -> None:
        try:
            booking.release(ctx.deadline)
        except Exception as error:  # noqa: BLE001 - the reservation expires by itself; the result stands
            ctx.log.warning(f"could not release the reservation on {node}: {error}")

    return release
