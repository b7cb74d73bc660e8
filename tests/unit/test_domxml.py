"""Reading a guest's domain XML: values, units, guest types, the owner metadata."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenha.libvirt.domxml import DomainXmlError, GuestType, parse_domain, parse_tree
from xenha.libvirt.owner import Owner, with_owner


def domain(body: str, kind: str = "xen") -> bytes:
    return f"<domain type='{kind}'><name>web1</name>{body}</domain>".encode()


PV = "<os><type arch='x86_64' machine='xenpv'>linux</type></os>"


@pytest.mark.parametrize(
    ("memory", "mib"),
    [
        ("<memory>1048576</memory>", 1024),
        ("<memory unit='KiB'>1048577</memory>", 1025),  # rounded up: demand is never understated
        ("<memory unit='MiB'>4096</memory>", 4096),
        ("<memory unit='G'>2</memory>", 2048),
        ("<memory unit='GB'>1</memory>", 954),
        ("<memory unit='bytes'>1</memory>", 1),
    ],
)
def test_memory_units(memory: str, mib: int) -> None:
    assert parse_domain(domain(memory + PV), "t").memory_mib == mib


def test_hotplug_maximum_counts() -> None:
    spec = parse_domain(
        domain("<maxMemory slots='4' unit='MiB'>8192</maxMemory><memory unit='MiB'>2048</memory>" + PV), "t"
    )
    assert spec.memory_mib == 8192


@pytest.mark.parametrize(
    ("os_element", "guest_type"),
    [
        ("<os><type>linux</type></os>", GuestType.PV),
        ("<os><type machine='xenpv'>xen</type></os>", GuestType.PV),
        ("<os><type machine='xenpvh'>xenpvh</type></os>", GuestType.PVH),
        ("<os><type machine='xenpvh'>linux</type></os>", GuestType.PVH),
        ("<os><type arch='x86_64' machine='xenfv'>hvm</type></os>", GuestType.HVM),
    ],
)
def test_guest_types(os_element: str, guest_type: GuestType) -> None:
    assert parse_domain(domain("<memory>1024</memory>" + os_element), "t").guest_type is guest_type


def test_vcpus_and_video() -> None:
    spec = parse_domain(
        domain(
            "<memory unit='MiB'>512</memory><vcpu current='2'>4</vcpu><os><type>hvm</type></os>"
            "<devices><video><model type='cirrus' vram='9216'/></video></devices>"
        ),
        "t",
    )
    assert (spec.vcpus, spec.video_mib, spec.hypervisor_type) == (4, 9, "xen")


def test_owner_metadata_is_added_and_replaced() -> None:
    data = domain("<memory>1024</memory>" + PV + "<metadata><other xmlns='urn:x'/></metadata>")
    once = with_owner(data, "t", Owner("web1", guest_type="pv"))
    twice = with_owner(once.encode(), "t", Owner("web2"))
    root = parse_tree(twice.encode(), "t")
    owners = root.findall("metadata/{urn:xenha:guest:1}guest")
    assert [owner.get("resource") for owner in owners] == ["web2"]
    assert root.find("metadata/{urn:x}other") is not None


def test_owner_with_markup_characters_is_escaped() -> None:
    text = with_owner(domain("<memory>1</memory>" + PV), "t", Owner('a"<b>&'))
    assert parse_tree(text.encode(), "t").find("metadata/{urn:xenha:guest:1}guest").get("resource") == 'a"<b>&'


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_escape_as_anything_but_domain_xml_errors(data: bytes) -> None:
    try:
        parse_domain(data, "fuzz")
    except DomainXmlError:
        pass


@settings(max_examples=200)
@given(
    name=st.text(min_size=1, max_size=50),
    memory=st.text(max_size=12),
    unit=st.sampled_from(["KiB", "MiB", "G", "bogus", ""]),
    vcpu=st.text(max_size=6),
)
def test_structured_garbage_is_refused_cleanly(name: str, memory: str, unit: str, vcpu: str) -> None:
    from xml.sax.saxutils import escape, quoteattr

    data = (
        f"<domain type='xen'><name>{escape(name)}</name><memory unit={quoteattr(unit)}>{escape(memory)}</memory>"
        f"<vcpu>{escape(vcpu)}</vcpu><os><type>linux</type></os></domain>"
    ).encode("utf-8", "surrogatepass")
    try:
        spec = parse_domain(data, "fuzz")
    except DomainXmlError:
        return
    assert spec.memory_mib > 0 and spec.vcpus > 0 and spec.name.strip()


_DOCTYPE_REFUSED = "declares a DOCTYPE or entities; domain XML needs neither: remove them"


@pytest.mark.parametrize(
    "prologue",
    [
        "<!DOCTYPE domain>",
        '<?xml version="1.0"?><!DOCTYPE domain SYSTEM "domain.dtd">',
        '<!DOCTYPE d [<!ENTITY a "x"><!ENTITY b "&a;&a;&a;&a;">]>',
        '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/shadow">]>',
        '<!DOCTYPE d [<!ENTITY % p "x">]>',
    ],
)
def test_a_doctype_is_refused_on_the_parsed_document(prologue: str) -> None:
    data = f"{prologue}<domain type='xen'><name>web</name><memory>1024</memory></domain>".encode()
    with pytest.raises(DomainXmlError, match=_DOCTYPE_REFUSED):
        parse_tree(data, "guest.xml")


def test_an_entity_loop_is_refused_without_expanding_it() -> None:
    data = b'<!DOCTYPE d [<!ENTITY a "&b;"><!ENTITY b "&a;">]><domain type="xen"><name>&a;</name></domain>'
    with pytest.raises(DomainXmlError, match=r"^guest\.xml "):
        parse_tree(data, "guest.xml")


def test_the_word_doctype_in_a_comment_is_no_declaration() -> None:
    data = b"<domain type='xen'><!-- no <!DOCTYPE here --><name>web</name></domain>"
    assert parse_tree(data, "guest.xml").findtext("name") == "web"
