"""Issue 11's libxl differences that are pure decisions: error kinds, what validation refuses.

(The lab shows each on real Xen: tests/xen; the seam tests of monitor/stop are in
test_guest_agent.py.)
"""

from __future__ import annotations

import io
from pathlib import Path

from xenha.agents.guest.agent import GuestAgent
from xenha.agents.guest.migration_plan import progress_line
from xenha.agents.guest.shutoff import ShutOff, meaning
from xenha.libvirt.domain import JobProgress
from xenha.libvirt.domxml import parse_domain
from xenha.libvirt.drivers import config_refusals, traits
from xenha.libvirt.errors import ErrorKind, classify, libvirt_module
from xenha.ocf import OcfExit, run_agent


class _Error:
    """What libvirt.libvirtError answers (code, origin, message)."""

    def __init__(self, code: int, origin: int, message: str) -> None:
        self.code, self.origin, self.message = code, origin, message

    def get_error_code(self) -> int:
        return self.code

    def get_error_domain(self) -> int:
        return self.origin

    def get_error_message(self) -> str:
        return self.message


def _kind(message: str, connecting: bool = False) -> ErrorKind:
    libvirt = libvirt_module()
    error = _Error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_LIBXL, message)
    return classify(error, "do it", "xen:///system", "node1", connecting).kind


def test_libxl_internal_errors_are_routine_failures_unless_its_driver_is_down() -> None:
    assert _kind("libxenlight state driver is not active", connecting=True) is ErrorKind.HYPERVISOR_DOWN
    assert _kind("Failed to send migration data to destination host") is ErrorKind.FAILED
    assert _kind("Failed to shutdown domain '3' with libxenlight") is ErrorKind.FAILED
    reason = classify(
        _Error(libvirt_module().VIR_ERR_INTERNAL_ERROR, libvirt_module().VIR_FROM_LIBXL, "Failed to send data"),
        "migrate web1", "xen:///system", "node1", False,
    ).reason()  # fmt: skip
    assert "not running" not in reason and reason.startswith("migrate web1 failed on node1: Failed to send data")


def test_internal_errors_of_other_drivers_are_not_hypervisor_down() -> None:
    libvirt = libvirt_module()
    error = _Error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU, "libxenlight state driver is not active")
    assert classify(error, "x", "qemu:///system", "node1", False).kind is ErrorKind.FAILED


def _domain(extra: str = "", domain_type: str = "xen") -> bytes:
    return (
        f"<domain type='{domain_type}'><name>web1</name><memory unit='MiB'>256</memory>{extra}"
        "<os><type>linux</type></os></domain>"
    ).encode()


def test_max_memory_and_a_foreign_domain_type_are_refused_on_xen_only() -> None:
    spec = parse_domain(_domain("<maxMemory slots='2' unit='MiB'>512</maxMemory>"), "web1.xml")
    assert spec.has_max_memory and spec.memory_mib == 512
    refusals = config_refusals(traits("xen"), spec.hypervisor_type, spec.has_max_memory)
    assert len(refusals) == 1 and "<maxMemory>" in refusals[0] and "remove it" in refusals[0]
    assert config_refusals(traits("xen"), "kvm", False) == [
        "<domain type='kvm'> cannot run on a xen:// hypervisor: use type='xen'"
    ]
    assert config_refusals(traits("xen"), "xen", False) == []
    assert config_refusals(traits("qemu"), "kvm", True) == []
    assert config_refusals(traits("test"), "test", True) == []
    assert not parse_domain(_domain(), "web1.xml").has_max_memory


def _validate(tmp_path: Path, xml: bytes, hypervisor: str) -> tuple[int, str]:
    config = tmp_path / "web1.xml"
    config.write_bytes(xml)
    err = io.StringIO()
    environ = {
        "OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "web1", "HA_RSCTMP": str(tmp_path),
        "HA_LOGFACILITY": "none", "OCF_RESKEY_config": str(config), "OCF_RESKEY_hypervisor": hypervisor,
    }  # fmt: skip
    code = run_agent(GuestAgent(), ["xen-guest", "validate-all"], environ, stdout=io.StringIO(), stderr=err)
    return code, err.getvalue()


def test_validate_all_refuses_what_libxl_would_refuse_at_start(tmp_path: Path) -> None:
    code, err = _validate(tmp_path, _domain("<maxMemory slots='2' unit='MiB'>512</maxMemory>"), "xen:///system")
    assert code == OcfExit.ERR_CONFIGURED, err
    assert "ocf-exit-reason:" in err and "<maxMemory>" in err and "web1.xml" in err
    code, err = _validate(tmp_path, _domain(domain_type="kvm"), "xen:///system")
    assert code == OcfExit.ERR_CONFIGURED and "use type='xen'" in err, err
    code, err = _validate(tmp_path, _domain(), "xen:///system")
    assert code == OcfExit.SUCCESS, err


def test_a_shut_off_domain_is_stopped_only_without_a_job_and_without_an_id() -> None:
    assert meaning(has_id=False, job_active=False) is ShutOff.STOPPED
    assert meaning(has_id=True, job_active=True) is ShutOff.RESTARTING  # libxl's restart, before the destroy
    assert meaning(has_id=False, job_active=True) is ShutOff.RESTARTING  # between destroy and re-create
    assert meaning(has_id=True, job_active=False) is ShutOff.DEAD_KEPT  # on_poweroff/on_crash=preserve


def test_libxls_job_statistics_make_a_progress_line_of_elapsed_time_only() -> None:
    """Issue 11 item 6: libxl's jobStats hold the elapsed time only (no "0 of 0 MiB")."""
    libxl_stats = {"type": 2, "time_elapsed": 4200}  # what libxlDomainGetJobStats fills in
    progress = JobProgress.from_stats(libxl_stats, traits("xen").reports_job_data)
    assert progress_line("web1", "node2", progress) == "migrating web1 to node2: 4.2 s elapsed"
