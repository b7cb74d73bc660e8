"""A guest resource moving between two real libvirtd hosts (qemu driver), for the migration tests.

The agent runs inside the host's namespaces, as Pacemaker would run it there; the cluster is
played by a CIB file (``CIB_file``), which gives the nodes their capacity and holds the
reservation ledger.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from tests.support.cib import query, write_cib
from tests.support.domains import domain_state, domain_state_and_reason
from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import HostSet
from tests.support.ocf import AgentCase, AgentRun


@dataclass
class Move:
    """One guest resource and the two hosts it moves between."""

    hosts: HostSet
    name: str
    cib: Path
    base: AgentCase

    def at(self, host: str) -> AgentCase:
        return self.base.on(self.hosts.hosts[host].nsenter_argv(), host)

    def migrate(self, source: str, target: str, **overrides: str) -> AgentRun:
        meta = {"migrate_source": source, "migrate_target": target}
        return self.at(source).run("migrate_to", meta=meta, timeout_ms=60000, **overrides)

    def arrive(self, source: str, target: str, **overrides: str) -> AgentRun:
        meta = {"migrate_source": source, "migrate_target": target}
        return self.at(target).run("migrate_from", meta=meta, **overrides)

    def state(self, host: str) -> int | None:
        return domain_state(self.hosts.hosts[host].qemu_uri, self.name)

    def hosts_where(self, counts: Callable[[int, int], bool]) -> list[str]:
        """The hosts whose copy of the guest ``counts`` (given its state and reason)."""
        where = []
        for host in ("hostA", "hostB"):
            found = domain_state_and_reason(self.hosts.hosts[host].qemu_uri, self.name)
            if found is not None and counts(*found):
                where.append(host)
        return where

    def reservations(self) -> str:
        """The ids of the reservations in the CIB's ledgers ('' when there are none)."""
        # query() answers '' for "no match" and for "cannot read the CIB" alike: read a
        # section every CIB has, so that an unreadable CIB fails instead of passing as empty.
        crm_config = query(self.cib, "//crm_config")
        assert crm_config, f"cibadmin cannot read {self.cib}"
        # Every nvpair of a ledger set is a reservation (the set holds nothing else), however
        # reservation ids are spelled; a version nvpair (exactly "<set id>-version"), which
        # the protocol before issue 12 had, is not.
        ids = [
            nvpair.get("id", "")
            for ledger in ElementTree.fromstring(crm_config).iter("cluster_property_set")
            if ledger.get("id", "").startswith("xenha-ledger-")
            for nvpair in ledger.iter("nvpair")
            if nvpair.get("id") != ledger.get("id", "") + "-version"
        ]
        return " ".join(ids)


def guest_move(hosts: HostSet, tmp_path: Path, name: str, **params: str) -> Move:
    """A 64 MiB guest ``name`` between hostA and hostB, 1 GiB each; ``params`` add to the agent's."""
    config = tmp_path / f"{name}.xml"
    config.write_text(domain_xml(name, driver="qemu", memory_mib=64))
    cib = write_cib(tmp_path / "cib.xml", {"hostA": {"hv_memory": 1024}, "hostB": {"hv_memory": 1024}})
    base = AgentCase(
        "xen-guest", name,
        {"config": str(config), "hypervisor": "qemu:///system", "remoteuri": "qemu+tcp://%n/system",
         "force_stop": "true", **params},
        str(tmp_path / "rsctmp"), extra_env={"CIB_file": str(cib)},
    )  # fmt: skip
    return Move(hosts, name, cib, base)


def migrate_in_background(move: Move, timeout_ms: int) -> tuple[threading.Thread, list[AgentRun]]:
    """Start migrate_to from hostA to hostB in a thread; its result lands in the list."""
    results: list[AgentRun] = []

    def run() -> None:
        meta = {"migrate_source": "hostA", "migrate_target": "hostB"}
        results.append(move.at("hostA").run("migrate_to", meta=meta, timeout_ms=timeout_ms, timeout=180))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def destroy_everywhere(hosts: HostSet, name: str) -> None:
    for host in hosts.hosts.values():
        if host.libvirtd_pid() is None:
            continue
        subprocess.run(["virsh", "-c", host.qemu_uri, "destroy", name], capture_output=True, check=False)
