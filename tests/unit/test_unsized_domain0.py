"""xen-host on a Xen host whose Domain-0 has no fixed size (no ``dom0_mem=``): the pure
decision and the state it keeps (docs/decisions/xen-autoballoon.md; the lab test is
tests/xen_autoballoon)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from xenha.admission.load import GREEN, RED, YELLOW, Health, unsized_domain0_health, worst_health
from xenha.agents.host import _domain0
from xenha.libvirt.connection import Domain0Memory
from xenha.libvirt.errors import ErrorKind, HypervisorError
from xenha.statefile import StateFile


def test_a_ceiling_below_the_hosts_memory_is_sized() -> None:
    # dom0_mem=768M,max:768M on the lab's 1535 MiB host: libvirt says 768 of at most 768
    assert unsized_domain0_health(768, 768, 1535, 748).colour == GREEN
    # a large Domain-0 is still sized when Xen caps it below the host's memory
    assert unsized_domain0_health(60000, 65000, 65536, 400).colour == GREEN


def test_no_ceiling_is_yellow_with_the_figures_and_both_fixes() -> None:
    # the lab without dom0_mem: libvirt reports Domain-0's maximum as 1572336 KiB (1536 MiB)
    health = unsized_domain0_health(1421, 1536, 1535, 95)
    assert health.colour == YELLOW
    assert "it holds 1421 of 1535 MiB" in health.reason
    assert "offers them 95 MiB" in health.reason
    assert "dom0_mem=<size>,max:<size>" in health.reason and "host_memory_reserve" in health.reason
    # exactly the host's total (Xen's own memory not subtracted from the maximum) is no ceiling
    assert unsized_domain0_health(1421, 1535, 1535, 95).colour == YELLOW


def test_the_worst_health_wins_and_keeps_every_reason_of_its_colour() -> None:
    drift = Health(YELLOW, "the hypervisor has 3000 MiB free")
    unsized = Health(YELLOW, "Domain-0 has no fixed size")
    assert worst_health(Health(GREEN, "fine"), drift, unsized) == Health(YELLOW, f"{drift.reason}; {unsized.reason}")
    assert worst_health(drift, Health(RED, "libvirtd does not answer")).colour == RED
    assert worst_health(Health(GREEN, "fine"), Health(GREEN, "sized")) == Health(GREEN, "fine")


class Answers:
    def __init__(self, *answers: Domain0Memory | HypervisorError) -> None:
        self.answers = list(answers)

    def domain0_memory(self) -> Domain0Memory | None:
        answer = self.answers.pop(0)
        if isinstance(answer, HypervisorError):
            raise answer
        return answer


def context(tmp_path: Path) -> Any:
    log = SimpleNamespace(warnings=[])
    log.warning = log.warnings.append
    return SimpleNamespace(env=SimpleNamespace(rsctmp=str(tmp_path), instance="xen-host"), log=log)


def busy() -> HypervisorError:
    return HypervisorError(ErrorKind.FAILED, "look up Domain-0", "xen:///system", "node2", "cannot acquire lock")


def test_a_passing_error_keeps_the_last_maximum_too(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    hypervisor: Any = Answers(Domain0Memory(1421, 1536), busy())
    assert _domain0(ctx, hypervisor) == Domain0Memory(1421, 1536)
    assert _domain0(ctx, hypervisor) == Domain0Memory(1421, 1536)  # still unsized: still yellow
    assert "keeps Domain-0's last known 1421 MiB" in ctx.log.warnings[0]


def test_a_state_file_from_before_the_maximum_was_kept_reads_as_sized(tmp_path: Path) -> None:
    """An upgrade: the state holds Domain-0's memory only. A passing error then keeps it and
    does not invent an unsized Domain-0 (no yellow from a missing figure)."""
    ctx = context(tmp_path)
    StateFile(str(tmp_path), "xen-host", "xen-host").save({"started": True, "domain0_mib": 8192})
    hypervisor: Any = Answers(busy())
    assert _domain0(ctx, hypervisor) == Domain0Memory(8192, 8192)
