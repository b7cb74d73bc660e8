"""Pacemaker: its command-line tools wrapped (:mod:`.cluster`) and the CIB's XML (:mod:`.cibxml`).

A new Pacemaker call is a method of :class:`xenha.pacemaker.cluster.ClusterCli`; nothing
else in the suite runs Pacemaker's tools (the planner runs ``crm_simulate`` through its
own :mod:`xenha.planner.scheduler`).
"""
