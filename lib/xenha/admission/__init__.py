"""Admission: does a guest fit on a host, and booking its room race-free.

* :mod:`.resources` — the one type of a demand or a capacity, and a Xen guest's demand;
* :mod:`.load` — host-load arithmetic with one counting rule (admission and ``xenha status``);
* :mod:`.ledger` — the reservation ledger's format (pure; the agent and the planner read it);
* :mod:`.stores` — where a ledger lives: the CIB, or a file outside a cluster;
* :mod:`.admit` — the admission loop: read, decide, compare-and-swap.

Pure except :mod:`.stores` and the loop's waiting; nothing here calls libvirt: the loop takes
a facts provider (the target's hypervisor, in the agent).
"""
