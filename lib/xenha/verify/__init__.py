"""``xenha verify``: the cluster's configuration checked against the known ways a Xen HA cluster fails.

Layers, each a module of one concept:

* :mod:`~xenha.verify.findings` — what a check reports (severity, object, figures, why,
  the pcs and crmsh commands that fix it) and the exit code they add up to (pure);
* :mod:`~xenha.verify.model` — the configuration as the checks read it: the planner's CIB
  model plus the operations, parameters, meta-attributes, fence devices and xen-host
  clone the planner does not need (pure);
* :mod:`~xenha.verify.fixes` — the pcs and crmsh command lines, as argument lists (pure);
* :mod:`~xenha.verify.timing` — how long a migration or a graceful stop takes (pure);
* :mod:`~xenha.verify.checks` — the checks, small pure functions of the model and the facts;
* :mod:`~xenha.verify.sources` — the edges: corosync's two_node, the guests' domain XML
  files on this node, the planner's N+1 answer;
* :mod:`~xenha.verify.report` — the table for people, JSON for scripts.

Why these checks, their severities and how each figure is computed:
docs/decisions/verify.md. User page: docs/verify.md.
"""
