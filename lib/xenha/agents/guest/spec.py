"""What ``xen-guest`` declares: its parameters and actions (the source of its meta-data).

Names follow resource-agents' VirtualDomain wherever the concept is the same, so its users
can switch by changing the agent name; new concepts get new names.
"""

from __future__ import annotations

from xenha.agents.parameters import HYPERVISOR, cpu_overcommit_parameter, host_memory_reserve, quantity_parameter
from xenha.ocf import Action, AgentSpec, Parameter, ParamType
from xenha.ocf.metadata import COMMON_ACTIONS

AGENT_NAME = "xen-guest"
# "auto" and the values of xenha.agents.guest.migration_plan.Method (a unit test keeps them
# equal); repeated here so that the monitor path, which reads these declarations, does not
# load the migration code.
MIGRATION_POLICIES = ("auto", "live", "paused", "save-restore", "refuse")
_POLICY_VALUES = (
    "auto migrates live where this host's hypervisor can track the guest's dirty memory (the "
    "capabilities xen-host publishes as xenha-live-migration) and paused where it cannot; live "
    "migrates live, and refuses where the host cannot (never a doomed attempt); paused "
    "migrates peer to peer without live copying: the guest stops for the copy, about its "
    "memory over the link's rate (estimated, logged, and refused up front when it could not "
    "end inside migrate_to's timeout); save-restore saves the guest's memory to save_dir "
    "(shared storage) and restores it on the target; refuse fails migrate_to at once, and "
    "Pacemaker recovers by stopping the guest and starting it on the target."
)

PARAMETERS = (
    Parameter(
        "config",
        "Path to the guest's libvirt domain XML.",
        "Absolute path to the libvirt domain XML file of the guest, on storage that every node "
        "sees at the same path. The guest is started from this file as a transient domain; its "
        "<name> identifies the guest on every host. Example: /srv/xen/web1.xml",
        required=True,
        unique=True,
    ),
    HYPERVISOR,
    quantity_parameter(
        "shutdown_timeout",
        "Seconds of graceful shutdown before the guest is destroyed.",
        "How long stop waits for the guest to shut down after an ACPI/PV shutdown request before "
        "destroying it. Never more than the stop operation's time left when the wait starts, "
        "less what destroying and verifying keep (a third of it, at least 5 s); unset, it is "
        "all of that. 0 destroys at once. "
        "Example: 60",
        unit="seconds",
    ),
    Parameter(
        "force_stop",
        "Destroy the guest on stop without asking it to shut down.",
        "As in VirtualDomain: when true, stop destroys the guest immediately (the same as shutdown_timeout=0).",
        type=ParamType.BOOLEAN,
        default="false",
        reloadable=True,
    ),
    Parameter(
        "remoteuri",
        "libvirt URI of the target's hypervisor, for migration.",
        "The libvirt URI migrate_to uses to reach the target node's hypervisor; %n is replaced "
        "by the target node's name. Unset, it is derived from hypervisor over ssh, with "
        "migration_network_suffix applied: xen:///system becomes xen+ssh://%n/system. "
        "Example: xen+tls://%n/system",
        reloadable=True,
    ),
    Parameter(
        "migrateuri",
        "URI of the migration data channel.",
        "Where the guest's memory travels (libvirt's VIR_MIGRATE_PARAM_URI); %n is replaced by "
        "the target's name on the migration network (with migration_network_suffix). Unset, "
        "libvirt chooses, or tcp://%n when migration_network_suffix is set. "
        "Example: tcp://%n:49152",
        reloadable=True,
    ),
    Parameter(
        "migration_network_suffix",
        "Host-name suffix of the migration network.",
        "As in VirtualDomain: added to the target node's name (before the first dot of an FQDN) "
        "to reach it over a dedicated migration network, in the derived remote URI and in "
        "migrateuri. Example: -mig (node2.example.com becomes node2-mig.example.com)",
        default="",
        reloadable=True,
    ),
    quantity_parameter(
        "migration_speed",
        "Live migration bandwidth limit in MiB/s (0: unlimited).",
        "Caps the bandwidth of a live migration, where the hypervisor supports it. Example: 500",
        unit="MiB/s",
        default="0",
    ),
    quantity_parameter(
        "migration_downtime",
        "Maximum downtime of a live migration in ms (0: the hypervisor's default).",
        "The longest pause of the guest libvirt may accept to finish a live migration, where "
        "the hypervisor supports it. Example: 300",
        unit="milliseconds",
        default="0",
    ),
    Parameter(
        "pv_migration",
        "How a PV or PVH guest moves: auto, live, paused, save-restore or refuse.",
        "PV and PVH guests (no emulated devices) follow this policy. " + _POLICY_VALUES + " "
        "On Debian's Xen (built without shadow paging) PV guests cannot migrate live: auto "
        "moves them paused. Example: paused",
        type=ParamType.SELECT,
        choices=MIGRATION_POLICIES,
        default="auto",
        reloadable=True,
    ),
    Parameter(
        "hvm_migration",
        "How an HVM guest moves: auto, live, paused, save-restore or refuse.",
        "HVM guests, whose emulated devices make live migration fragile, follow this policy. "
        + _POLICY_VALUES
        + " The default, refuse, reboots rather than risks. Example: save-restore",
        type=ParamType.SELECT,
        choices=MIGRATION_POLICIES,
        default="refuse",
        reloadable=True,
    ),
    Parameter(
        "save_dir",
        "Directory on shared storage for save-restore migrations.",
        "Directory, at the same path on every node, where save-restore (pv_migration or "
        "hvm_migration) writes "
        "the guest's saved memory (as large as the guest's memory). Example: /srv/xen/save",
        reloadable=True,
    ),
    host_memory_reserve(
        "Used by the reservation check before a start or a migration, for target nodes where "
        "no xen-host publishes its reserve (the node attribute xenha-memory-reserve, which "
        "wins): a host's memory for guests is its total memory minus this reserve (and never "
        "more than the node's hv_memory utilization in the CIB, when set)."
    ),
    cpu_overcommit_parameter(
        "vCPUs allowed per physical CPU, when the CIB gives no cpu capacity.",
        "Used by the reservation check when the target node has no cpu utilization in the "
        "CIB: the node carries at most physical CPUs times this ratio in vCPUs.",
        "2.5",
    ),
    Parameter(
        "autoset_utilization_hv_memory",
        "Publish the guest's memory demand as its hv_memory utilization.",
        "As in VirtualDomain: when true, start and monitor (only when it changed) set the "
        "resource's hv_memory utilization to the guest's demand in MiB: its maximum memory "
        "plus the hypervisor's per-guest overhead, the same figure the reservation check "
        "uses, so that it meets xen-host's node capacity.",
        type=ParamType.BOOLEAN,
        default="true",
        reloadable=True,
    ),
    Parameter(
        "autoset_utilization_cpu",
        "Publish the guest's vCPUs as its cpu utilization.",
        "As in VirtualDomain: when true, start and monitor (only when it changed) set the "
        "resource's cpu utilization to the guest's maximum number of vCPUs.",
        type=ParamType.BOOLEAN,
        default="true",
        reloadable=True,
    ),
)

ACTIONS = (
    Action("start", 90),
    Action("stop", 90),
    Action("monitor", 30, interval_s=10),
    Action("status", 30),
    Action("migrate_to", 120),
    Action("migrate_from", 60),
    *COMMON_ACTIONS,
)

SPEC = AgentSpec(
    name=AGENT_NAME,
    shortdesc="Xen guest with capacity-checked live migration",
    longdesc=(
        "Runs one Xen guest through libvirt. The guest is defined by a libvirt domain XML file "
        "on shared storage and runs as a transient domain on one node at a time. Before a start "
        "or a migration, the agent checks that the target host has room for the guest and "
        "reserves it, so that migrations racing into one host never overbook it. PV/PVH and "
        "HVM guests move as pv_migration and hvm_migration say, live only where the host can. "
        "Monitor answers from the "
        "hypervisor itself; a probe never reports a guest as stopped when the hypervisor could "
        "not confirm it. Every hypervisor call is bounded by the operation's timeout, so a hung "
        "libvirtd cannot hang the agent. Use it with allow-migrate=true."
    ),
    parameters=PARAMETERS,
    actions=ACTIONS,
).check()
