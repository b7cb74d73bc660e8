"""A CIB in Ganeti htools' text format, so that ``hcheck -t FILE`` can judge the same cluster.

For the benchmark only: ``hcheck`` (ganeti-htools) is the peer a Ganeti user already
has. The translation keeps what hcheck can read (memory, vCPUs, which host runs which
guest) and declares every guest as shared-storage (``ext`` disk template), so that hcheck
checks failover to any node, as Pacemaker does. Its answer remains its own: a count of
hosts whose guests cannot all be evacuated, with its own packing order, ignoring CPU
(the vCPU ratio is set high) and rejecting exact fits.

Format (``man htools``, section "text data"): sections separated by one empty line:
groups, nodes, instances, cluster tags, instance policies.
"""

from __future__ import annotations

from xenha.planner.model import CibModel

GROUP_UUID = "00000000-0000-0000-0000-00000000cafe"
# Instance policy: no limit on instance sizes that could trip hcheck; vCPU ratio 64 (CPU
# overcommit is not what hcheck is compared on); spindle ratio 32.
_SPECS = "128,1,1024,1,1,1|128,1,1024,1,1,1;1048576,256,1048576,16,8,12"
_TEMPLATES = "diskless,file,sharedfile,plain,blockdev,drbd,rbd,ext"
DISK_MIB = 1024 * 1024


def to_htools_text(model: CibModel) -> str:
    used: dict[str, int] = {}
    for guest in model.running_guests:
        for node in guest.active_on[:1]:
            used[node] = used.get(node, 0) + guest.demand.memory_mib
    lines = [f"default|{GROUP_UUID}|preferred||", ""]
    for index, host in enumerate(model.hosts):
        memory = host.capacity.memory_mib
        role = "Y" if not host.available else ("M" if index == 0 else "N")
        free = memory - used.get(host.name, 0)
        cores = max(1, host.capacity.vcpus)
        lines.append(f"{host.name}|{memory}|0|{free}|{DISK_MIB}|{DISK_MIB}|{cores}|{role}|{GROUP_UUID}|1")
    lines.append("")
    first_host = model.hosts[0].name if model.hosts else ""
    for guest in model.running_guests:
        primary = guest.active_on[0] if guest.active_on else first_host
        status = "running" if guest.active_on else "ADMIN_down"
        vcpus = max(1, guest.demand.vcpus)
        lines.append(f"{guest.resource}|{guest.demand.memory_mib}|0|{vcpus}|{status}|Y|{primary}||ext||1")
    lines.extend(["", ""])
    lines.append(f"|{_SPECS}|{_TEMPLATES}|64.0|32.0")
    lines.append(f"default|{_SPECS}|{_TEMPLATES}|64.0|32.0")
    return "\n".join(lines) + "\n"
