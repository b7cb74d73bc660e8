"""N+k failover planning answered by Pacemaker's own scheduler.

Layers, each a module of one concept:

* :mod:`~xenha.planner.cibmodel` — the CIB parsed into frozen dataclasses (pure);
* :mod:`~xenha.planner.fastpath` — a sound proof that a scenario keeps every guest
  running, for any placement order the scheduler may choose (pure);
* :mod:`~xenha.planner.scheduler` — ``crm_simulate`` runs and the pure parser of their
  XML output and saved transition graph;
* :mod:`~xenha.planner.scenarios` — which hosts fail together, the quorum they keep, and
  the plan: proof where it goes through, the scheduler everywhere else;
* :mod:`~xenha.planner.report` — table and JSON, exit codes;
* :mod:`~xenha.planner.cibedit` — what-if edits of a CIB (a new guest for check-add);
* :mod:`~xenha.planner.synthetic` and :mod:`~xenha.planner.htools` — synthetic CIBs
  for the benchmark, and their translation for Ganeti's ``hcheck``.

The design and the proof are in docs/decisions/planner.md.
"""
