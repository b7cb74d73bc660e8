"""Small clusters with hand-computed answers, written as CIB files for xenha plan.

Every cluster is a running one (the status section records each guest started on its
host and probed elsewhere). Sizes in MiB; vCPUs after the slash. Each docstring works
out the answer by hand; the tests check xenha against it and against direct
``crm_simulate --simulate`` runs.
"""

from __future__ import annotations

import pathlib

from xenha.planner.synthetic import GuestSpec, HostSpec, render_cib


def n_plus_one(constraints: str = "") -> str:
    """Three hosts of 16384/8: N+1, and the fast path proves it (without ``constraints``).

    host1: web1 4096/2, web2 4096/2   host2: db1 8192/4   host3: app1 2048/1, app2 2048/1
    Demand 20480 MiB. Losing host1: host2 has 8192 free, takes both webs. Losing host2:
    db1 (8192) fits on host1 (8192 free). Losing host3: anything fits.
    Proof: 2 survivors x (16384 - 8192 + 1) = 16386 > 20480 - 8192 = 12288.
    Two hosts lost: 1 of 3 nodes left, no quorum: no-quorum-policy=stop stops everything.
    """
    hosts = [HostSpec(f"host{i}", 16384, 8) for i in (1, 2, 3)]
    guests = [
        GuestSpec("web1", 4096, 2, "host1"),
        GuestSpec("web2", 4096, 2, "host1"),
        GuestSpec("db1", 8192, 4, "host2"),
        GuestSpec("app1", 2048, 1, "host3"),
        GuestSpec("app2", 2048, 1, "host3"),
    ]
    return render_cib(hosts, guests, constraints=constraints)


def not_n_plus_one() -> str:
    """Three hosts of 8192/8: not N+1.

    host1: web1 6144/2   host2: db1 6144/2   host3: app1 4096/2, app2 2048/1
    Losing host1: web1 (6144) finds 2048 free on host2 and on host3: stopped, 6144 - 4096
    = 2048 MiB short. Losing host2: db1 likewise. Losing host3: app2 (2048) fits exactly on
    host1 or host2, app1 (4096) then finds 2048 on each: stopped, 2048 MiB short.
    """
    hosts = [HostSpec(f"host{i}", 8192, 8) for i in (1, 2, 3)]
    guests = [
        GuestSpec("web1", 6144, 2, "host1"),
        GuestSpec("db1", 6144, 2, "host2"),
        GuestSpec("app1", 4096, 2, "host3"),
        GuestSpec("app2", 2048, 1, "host3"),
    ]
    return render_cib(hosts, guests)


def exact_packing(placement_strategy: str) -> str:
    """Three hosts of 8192/8, resource-stickiness=0: N+1 only with placement-strategy=balanced.

    host1: vm2 2048/1   host2: vm1 4096/1, vm5 4096/1   host3: vm3 2048/1, vm4 4096/2
    Demand 16384 MiB; two survivors hold exactly 16384: recovery must pack perfectly
    ({4096, 4096} on one host, {2048, 2048, 4096} on the other). With stickiness 0 the
    scheduler may move running guests. ``balanced`` (most free capacity first) finds the
    packing after any single failure; ``utilization`` (fewest resources first, then CIB
    order) spreads the guests by count and leaves vm5 stopped, whichever host fails.
    (Verified against crm_simulate; the fast path cannot prove an exact packing.)
    """
    hosts = [HostSpec(f"host{i}", 8192, 8) for i in (1, 2, 3)]
    guests = [
        GuestSpec("vm1", 4096, 1, "host2"),
        GuestSpec("vm2", 2048, 1, "host1"),
        GuestSpec("vm3", 2048, 1, "host3"),
        GuestSpec("vm4", 4096, 2, "host3"),
        GuestSpec("vm5", 4096, 1, "host2"),
    ]
    return render_cib(hosts, guests, placement_strategy=placement_strategy, stickiness=0)


def host_already_down() -> str:
    """Five hosts of 8192/8, host5 down (fenced): its capacity does not count.

    host1: a 6144/2   host2: b 6144/2   host3: c 6144/2   host4: d 2048/1, e 2048/1
    Losing host1: a (6144) finds 2048 free on host2 and host3, 4096 on host4: stopped,
    although 8192 MiB are free in total (and host5, were it up, would take it).
    Same for host2 and host3. Losing host4: d and e (2048 each) fit exactly on two of the
    others. Quorum: 3 of 5 nodes survive a single failure, so it is kept.
    """
    hosts = [HostSpec(f"host{i}", 8192, 8, up=i != 5) for i in (1, 2, 3, 4, 5)]
    guests = [
        GuestSpec("a", 6144, 2, "host1"),
        GuestSpec("b", 6144, 2, "host2"),
        GuestSpec("c", 6144, 2, "host3"),
        GuestSpec("d", 2048, 1, "host4"),
        GuestSpec("e", 2048, 1, "host4"),
    ]
    return render_cib(hosts, guests)


PIN_WEB1 = (
    '<rsc_location id="pin-web1-host1" rsc="web1" node="host1" score="INFINITY"/>'
    '<rsc_location id="pin-web1-host2" rsc="web1" node="host2" score="-INFINITY"/>'
    '<rsc_location id="pin-web1-host3" rsc="web1" node="host3" score="-INFINITY"/>'
)


def pinned() -> str:
    """The n_plus_one cluster with web1 pinned to host1 by location constraints.

    Losing host1: web1 cannot run anywhere else, although host2 has room (8192 free after
    web2 moves there): stopped, 0 MiB short. The constraint keeps the fast path away, so
    every scenario goes to the scheduler.
    """
    return n_plus_one(constraints=PIN_WEB1)


def cpu_bound(last_guest_vcpus: int) -> str:
    """Three hosts of 65536 MiB but 4 vCPUs: memory never binds, vCPUs do.

    host1: g1 1024/2, g2 1024/2 (4 vCPUs: full)   host2: g3 1024/2   host3: g4 1024/N
    N=2: losing host1 puts g1 and g2 on host2 and host3, 2 vCPUs free on each: exact fits,
    N+1 (the fast path cannot prove exact fits: the scheduler decides). N=3: host3 has 1
    vCPU free, so one of g1, g2 is stopped: 1 vCPU short (2 needed, 1 free in total... on
    the host that took the other one, 0).
    """
    hosts = [HostSpec(f"host{i}", 65536, 4) for i in (1, 2, 3)]
    guests = [
        GuestSpec("g1", 1024, 2, "host1"),
        GuestSpec("g2", 1024, 2, "host1"),
        GuestSpec("g3", 1024, 2, "host2"),
        GuestSpec("g4", 1024, last_guest_vcpus, "host3"),
    ]
    return render_cib(hosts, guests)


def write(directory: pathlib.Path, name: str, text: str) -> str:
    path = directory / f"{name}.xml"
    path.write_text(text)
    return str(path)
