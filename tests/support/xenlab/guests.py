"""PV guests on the lab's SAN, and xenha's agents run in a dom0 as Pacemaker runs them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tests.support.cib import query
from tests.support.ocf import AgentRun
from tests.support.xenlab.lab import Lab, XenHost
from xenha.admission.resources import memory_demand_mib
from xenha.libvirt.domxml import GuestType

AGENTS_IN_DOM0 = "/usr/lib/ocf/resource.d/xenha"  # where xenha's .deb installs them
SAN_IN_DOM0 = "/srv/san"


def pv_demand_mib(memory_mib: int) -> int:
    """hv_memory a lab guest of ``memory_mib`` needs as xen-guest publishes it (one vCPU, PV):
    128 MiB -> 132."""
    return memory_demand_mib(memory_mib, 1, GuestType.PV)


def pv_domain_xml(
    name: str,
    memory_mib: int = 128,
    then: str | None = None,
    after_s: int = 0,
    on_poweroff: str = "destroy",
    on_reboot: str = "restart",
    on_crash: str = "destroy",
    extra: str = "",
    current_mib: int | None = None,
) -> str:
    """A PV guest: Debian's kernel with the lab's busybox initramfs, files on the SAN.

    ``then`` (reboot, poweroff, crash) makes the guest do that by itself ``after_s``
    seconds after boot. Debian's generic kernel needs >= 128 MiB as a PV guest.
    ``current_mib``: boot with less than ``memory_mib`` (ballooned down): xenha counts a
    guest by its maximum memory, and Xen builds only the current memory, so a big guest
    starts as fast as a small one under TCG.
    """
    cmdline = "console=hvc0 quiet" + (f" xenlab.after={after_s} xenlab.then={then}" if then else "")
    return (
        "<domain type='xen'>\n"
        f"  <name>{name}</name>\n"
        f"  <memory unit='MiB'>{memory_mib}</memory>\n"
        f"  <currentMemory unit='MiB'>{current_mib or memory_mib}</currentMemory>\n"
        f"{extra}"
        "  <vcpu>1</vcpu>\n"
        "  <os>\n"
        "    <type arch='x86_64' machine='xenpv'>xen</type>\n"
        f"    <kernel>{SAN_IN_DOM0}/vmlinuz</kernel>\n"
        f"    <initrd>{SAN_IN_DOM0}/guest-initrd.gz</initrd>\n"
        f"    <cmdline>{cmdline}</cmdline>\n"
        "  </os>\n"
        f"  <on_poweroff>{on_poweroff}</on_poweroff>\n"
        f"  <on_reboot>{on_reboot}</on_reboot>\n"
        f"  <on_crash>{on_crash}</on_crash>\n"
        "  <devices><console type='pty'><target type='xen' port='0'/></console></devices>\n"
        "</domain>\n"
    )


def put_guest(lab: Lab, name: str, xml: str) -> str:
    """Write a guest's domain XML to the SAN; returns its path as every dom0 sees it."""
    (lab.san / "guests" / f"{name}.xml").write_text(xml)
    return f"{SAN_IN_DOM0}/guests/{name}.xml"


class FaultNotArranged(Exception):
    """The fault a test arranged did not happen: the test proves nothing (never an expected
    failure: xfail tests here expect AssertionError only)."""


@dataclass
class DomainView:
    """What Xen itself (``xl list``) and libvirt say of one domain on one host."""

    xl_id: int | None
    xl_flags: str | None  # r running, b blocked, p paused, s shutdown, c crashed, d dying
    libvirt_state: str | None


def stopped_for_copy(view: DomainView) -> bool:
    """Xen's own view of a source during a non-live migration: paused, or shut down with
    reason "suspend" (``xl list`` flags ``---ss-``: libxl suspends a PV guest for the copy)."""
    flags = view.xl_flags or ""
    return "p" in flags or flags[3:5] == "ss"


def domain_view(host: XenHost, name: str) -> DomainView:
    done = host.sh(
        f"xl list {name} 2>/dev/null | tail -n +2; echo ::; virsh -c xen:///system domstate {name} 2>/dev/null",
        timeout=60,
    )
    xl_part, _, virsh_part = done.stdout.partition("::")
    fields = xl_part.split()
    state = virsh_part.strip() or None
    if len(fields) >= 5:
        return DomainView(int(fields[1]), fields[4], state)
    return DomainView(None, None, state)


@dataclass
class Dom0Agent:
    """One resource of an agent, run in a dom0 by the installed package's executable."""

    agent: str
    instance: str
    params: dict[str, str]
    cib_file: str = f"{SAN_IN_DOM0}/cib.xml"
    extra_env: dict[str, str] = field(default_factory=dict)

    def environment(
        self, host: XenHost, action_timeout_ms: int, meta: Mapping[str, str], overrides: Mapping[str, str]
    ) -> dict[str, str]:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": self.instance,
            "HA_RSCTMP": f"/run/xenlab-rsctmp/{self.instance}",
            "CIB_file": self.cib_file,
            "OCF_RESKEY_CRM_meta_on_node": host.name,
            "OCF_RESKEY_CRM_meta_timeout": str(action_timeout_ms),
        }
        env.update({f"OCF_RESKEY_{key}": value for key, value in {**self.params, **overrides}.items()})
        env.update({f"OCF_RESKEY_CRM_meta_{key}": value for key, value in meta.items()})
        env.update(self.extra_env)
        return env

    def run(
        self,
        host: XenHost,
        action: str,
        timeout_ms: int = 120000,
        meta: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> AgentRun:
        """``<agent> <action>`` in ``host``'s dom0, with Pacemaker's OCF environment."""
        env = self.environment(host, timeout_ms, meta or {}, overrides or {})
        started = time.monotonic()
        done = host.run(
            ["sh", "-c", f'mkdir -p "$HA_RSCTMP" && exec {AGENTS_IN_DOM0}/{self.agent} {action}'],
            env=env,
            timeout=timeout_ms / 1000 + 120,  # the agent's own deadline first; ssh and TCG on top
        )
        return AgentRun(action, done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    def migrate(self, source: XenHost, target: XenHost, timeout_ms: int = 240000, **overrides: str) -> AgentRun:
        """migrate_to on the source, as Pacemaker calls it."""
        meta = {"migrate_source": source.name, "migrate_target": target.name}
        return self.run(source, "migrate_to", timeout_ms=timeout_ms, meta=meta, overrides=overrides)

    def arrive(self, source: XenHost, target: XenHost, **overrides: str) -> AgentRun:
        """migrate_from on the target, as Pacemaker calls it after a migrate_to that succeeded."""
        meta = {"migrate_source": source.name, "migrate_target": target.name}
        return self.run(target, "migrate_from", meta=meta, overrides=overrides)


def guest_agent(config: str, name: str, **params: str) -> Dom0Agent:
    """xen-guest for the guest ``name`` defined by ``config`` (a path in the dom0s), on the
    dom0's own libxl driver and reaching the other dom0 over libvirt's TCP transport, as the
    lab's hosts run it; ``params`` add to those."""
    return Dom0Agent(
        "xen-guest",
        name,
        {"config": config, "hypervisor": "xen:///system", "remoteuri": "xen+tcp://%n/system", **params},
    )


def started_on(lab: Lab, host: XenHost, name: str, memory_mib: int = 128) -> Dom0Agent:
    """A PV guest of ``memory_mib`` put on the SAN and started on ``host`` by xen-guest (with
    ``force_stop``: the lab's guest ignores a graceful shutdown); its agent."""
    agent = guest_agent(put_guest(lab, name, pv_domain_xml(name, memory_mib=memory_mib)), name, force_stop="true")
    started = agent.run(host, "start")
    assert started.code == 0, started
    return agent


def reservations(lab: Lab) -> str:
    """The ids of xen-guest's reservations in the lab's CIB ('' when there are none)."""
    crm_config = query(lab.san / "cib.xml", "//crm_config")
    assert crm_config, "cibadmin cannot read the lab's CIB"
    return " ".join(part for part in crm_config.split('"') if "-rsv-" in part and part.startswith("xenha-ledger"))


def destroy_everywhere(lab: Lab, name: str) -> None:
    for host in lab.hosts:
        host.sh(f"virsh -c xen:///system destroy {name} >/dev/null 2>&1; xl destroy {name} >/dev/null 2>&1; true")


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, interval_s: float = 2.0) -> None:
    """Poll ``check()`` until it is true; fail naming what was awaited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not true after {timeout_s:.0f} s")
