"""A real N-node Pacemaker/Corosync/libvirtd cluster on one machine (docs/decisions/cluster-harness.md).

``cluster.Cluster`` starts, breaks and stops it; ``layout`` names everything after a prefix;
``node_init`` is each node's PID 1; ``invariants`` watches that no guest runs twice;
``xenha_config`` configures xenha on it with pcs, as an operator would.
"""
