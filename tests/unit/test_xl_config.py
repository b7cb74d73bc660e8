"""xl configuration files as ``config=`` (issue 11 item 5): detected by content, converted by
libvirt's own converter on the local hypervisor (here a fake of the connection's seam; the
lab converts with libvirt's libxl driver), validate-all without the hypervisor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_guest_agent import FakeHypervisor, Host
from xenha.libvirt.domxml import is_xl_config
from xenha.libvirt.drivers import traits
from xenha.libvirt.errors import ErrorKind, HypervisorError
from xenha.ocf import OcfExit

XL = b'# web1, as resource-agents\' Xen agent ran it\nname = "web1"\nmemory = 512\nvcpus = 2\nkernel = "/srv/k"\n'
CONVERTED = (
    "<domain type='xen'><name>web1</name><uuid>0b6fb2ad-0000-4000-8000-000000000042</uuid>"
    "<memory unit='KiB'>524288</memory><vcpu>2</vcpu><os><type>linux</type></os></domain>"
)


@pytest.mark.parametrize(
    "data",
    [
        XL,
        b"\xef\xbb\xbfname='web1'\n",  # a BOM
        b"\n\n   # comment\n\tmemory=512\n",
        b"builder = 'hvm'\n",
        b"on_crash=\"restart\"\n",
    ],
)
def test_xl_configurations_are_told_by_their_content(data: bytes) -> None:
    assert is_xl_config(data)


@pytest.mark.parametrize(
    "data",
    [
        b"<domain type='xen'><name>web1</name></domain>",
        b"\xef\xbb\xbf<?xml version='1.0'?><domain/>",
        b"  \n<!-- name = web1 -->\n<domain/>",
        b"",
        b"# only comments\n",
        b"name web1\n",  # no "="
        b"= 'web1'\n",  # no key
        b"1name = 'web1'\n",
        b"na me = 'web1'\n",
        b"\xff\xfe<\x00d\x00",  # UTF-16 XML: the XML parser judges it
    ],
)
def test_anything_else_is_read_as_xml(data: bytes) -> None:
    assert not is_xl_config(data)


class Converting(FakeHypervisor):
    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.converted: list[tuple[str, str]] = []
        self.conversion_fault: HypervisorError | None = None
        self.xml = CONVERTED

    def domain_xml_from_native(self, native_format: str, config: str, source: str) -> str:
        self.converted.append((native_format, config))
        if self.conversion_fault is not None:
            raise self.conversion_fault
        return self.xml


@pytest.fixture
def host(tmp_path: Path) -> Host:
    made = Host(tmp_path)
    made.hypervisor = Converting("node1")
    made.config = tmp_path / "web1"  # no extension: resource-agents' Xen agent took any name
    made.config.write_bytes(XL)
    return made


def test_start_converts_with_libvirts_xl_converter_and_runs_the_result(host: Host) -> None:
    assert host.run("start") == OcfExit.SUCCESS
    assert isinstance(host.hypervisor, Converting)
    assert host.hypervisor.converted == [("xen-xl", XL.decode())]
    assert "web1" in host.hypervisor.domains
    assert host.run("monitor") == OcfExit.SUCCESS
    assert host.cluster.utilization.get("cpu") == 2  # the demand comes from the converted XML
    assert host.run("stop") == OcfExit.SUCCESS


def memo(host: Host) -> dict[str, object]:
    loaded = json.loads((host.rsctmp / "xenha-xen-guest-web1.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_a_uuid_the_converter_invented_names_no_domain(host: Host) -> None:
    assert host.run("start") == OcfExit.SUCCESS
    assert memo(host)["uuid"] is None  # the file declares none: libvirt's converter made it up
    host.config.write_bytes(XL + b'uuid = "0b6fb2ad-0000-4000-8000-000000000042"\n')
    assert host.run("start") == OcfExit.SUCCESS  # already running: the file's version is read again
    assert memo(host)["uuid"] == "0b6fb2ad-0000-4000-8000-000000000042"


def test_validate_all_does_not_touch_the_hypervisor(host: Host) -> None:
    assert isinstance(host.hypervisor, Converting)
    host.hypervisor.conversion_fault = HypervisorError(
        ErrorKind.UNREACHABLE, "connect", "xen:///system", "node1", "Connection refused"
    )
    assert host.run("validate-all") == OcfExit.SUCCESS
    assert host.hypervisor.converted == []
    assert "is an xl configuration: libvirt converts and checks it at start" in host.log


def test_libvirtd_down_fails_start_as_generic_with_the_reason(host: Host) -> None:
    assert isinstance(host.hypervisor, Converting)
    host.hypervisor.conversion_fault = HypervisorError(
        ErrorKind.UNREACHABLE, "connect", "xen:///system", "node1", "Connection refused"
    )
    assert host.run("start") == OcfExit.ERR_GENERIC
    assert "cannot convert the xl configuration" in host.log


def test_a_file_libvirt_cannot_convert_is_a_configuration_error(host: Host) -> None:
    assert isinstance(host.hypervisor, Converting)
    host.hypervisor.conversion_fault = HypervisorError(
        ErrorKind.FAILED, "convert", "xen:///system", "node1", "config value memory was malformed"
    )
    assert host.run("start") == OcfExit.ERR_CONFIGURED
    assert f"libvirt cannot convert the xl configuration {host.config} on node1: config value memory" in host.log


def test_an_xl_configuration_on_a_driver_without_the_converter(host: Host) -> None:
    host.hypervisor.driver = traits("qemu")
    assert host.run("start", hypervisor="qemu:///system") == OcfExit.ERR_CONFIGURED
    assert "only Xen's libvirt driver converts" in host.log
