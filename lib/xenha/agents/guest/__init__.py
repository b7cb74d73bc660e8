"""``xen-guest``: one Xen guest as a Pacemaker resource (:mod:`.agent` is the entry point).

* :mod:`.agent` — the OCF adapter: validation, dispatch, outcomes to exit codes;
* :mod:`.lifecycle` — start, stop, monitor;
* :mod:`.identity` — which domain is this resource's guest (never another's);
* :mod:`.migration` — migrate_to as one :class:`~.migration.Migration` object, migrate_from;
  :mod:`.migration_plan` its pure decisions;
* :mod:`.booking` — reserving room on a node through :mod:`xenha.admission`;
* :mod:`.utilization` — publishing the guest's demand to the CIB;
* :mod:`.memo` — what the agent remembers on a node (a typed record);
* :mod:`.action`, :mod:`.services` — one action's state, and the services it uses (the seam).
"""
