"""The one support library of the tests, the demo and the benchmarks: real daemons to test against.

- ``commands``: the one command runner (argument lists, the C locale, a deadline, a result).
- ``guests``: the one domain-XML builder (libvirt's test driver, tiny QEMU guests, filler guests).
- ``ocf``: runs an agent as Pacemaker's executor does; ``AgentCase`` binds one resource to it.
- ``cib``: CIB files for agents and tools that run without a cluster.
- ``libvirt_hosts``: libvirtd "hosts" in namespaces (single host, or networked for migrations).
- ``cluster``: the 3-node Pacemaker cluster in namespaces (docs/decisions/cluster-harness.md).

``xenlab`` (the Xen lab under QEMU) is reserved for its own package beside these.
"""
