"""Guests for tests: tiny domain XML, and an agent bound to one resource's configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.harness.ocf import AgentRun, ocf_environment, run_agent


def domain_xml(
    name: str,
    driver: str = "test",
    memory_mib: int = 64,
    vcpus: int = 1,
    os_type: str = "hvm",
    machine: str | None = None,
) -> str:
    """A domain XML for the test driver, or a tiny real QEMU/TCG guest for the qemu driver.

    The qemu guest has no disk and no NIC: SeaBIOS idles at "No bootable device", which is a
    real running VM with memory to migrate, cheap enough for two cores.
    """
    machine_attribute = f" machine='{machine}'" if machine else (" machine='pc'" if driver == "qemu" else "")
    devices = ""
    if driver == "qemu":
        devices = (
            "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
            "<controller type='usb' model='none'/><memballoon model='none'/></devices>"
        )
    return (
        f"<domain type='{driver}'>\n"
        f"  <name>{name}</name>\n"
        f"  <memory unit='MiB'>{memory_mib}</memory>\n"
        f"  <currentMemory unit='MiB'>{memory_mib}</currentMemory>\n"
        f"  <vcpu>{vcpus}</vcpu>\n"
        f"  <os><type arch='x86_64'{machine_attribute}>{os_type}</type></os>\n"
        "  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>\n"
        f"  {devices}\n"
        "</domain>\n"
    )


@dataclass
class AgentCase:
    """One resource of an agent: its parameters, its state directory, how to run actions."""

    agent: str
    instance: str
    params: dict[str, str]
    rsctmp: str
    prefix: list[str] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        action: str,
        interval_ms: int | None = None,
        timeout_ms: int = 30000,
        meta: Mapping[str, str] | None = None,
        timeout: float = 180,
        **overrides: str,
    ) -> AgentRun:
        import os

        os.makedirs(self.rsctmp, exist_ok=True)
        params = {**self.params, **overrides}
        all_meta = {"timeout": str(timeout_ms), **(meta or {})}
        if interval_ms is not None:
            all_meta["interval"] = str(interval_ms)
        env = ocf_environment(self.instance, params, all_meta, self.rsctmp)
        env.update(self.extra_env)
        return run_agent(self.agent, action, env, timeout=timeout, prefix=self.prefix)

    def on(self, prefix: list[str], node: str) -> AgentCase:
        """The same resource, with actions run inside another host (``prefix``) named ``node``."""
        return AgentCase(
            self.agent, self.instance, dict(self.params), self.rsctmp.rstrip("/") + f"-{node}", prefix,
            dict(self.extra_env, OCF_RESKEY_CRM_meta_on_node=node),
        )  # fmt: skip

    def probe(self, **overrides: str) -> AgentRun:
        return self.run("monitor", interval_ms=0, **overrides)

    def monitor(self, **overrides: str) -> AgentRun:
        return self.run("monitor", interval_ms=10000, **overrides)
