"""The CIB model: what it reads, what it refuses, and what keeps the proof away."""

from __future__ import annotations

import pathlib
import re

import pytest

from xenha.admission.ledger import ledger_id
from xenha.admission.resources import Resources
from xenha.planner.cibdocument import read_cib_document
from xenha.planner.cibmodel import parse_cib, parse_ledger
from xenha.planner.model import CibError, parse_utilization_value
from xenha.planner.synthetic import GuestSpec, HostSpec, render_cib

DATA = pathlib.Path(__file__).parent / "data" / "planner"

HOSTS = [HostSpec("host1", 16384, 8), HostSpec("host2", 16384, 8), HostSpec("host3", 8192, 4)]
GUESTS = [
    GuestSpec("web1", 4096, 2, "host1"),
    GuestSpec("db1", 8192, 4, "host2"),
    GuestSpec("spare", 1024, 1, None),
]


def test_hosts_guests_and_options_are_read() -> None:
    model = parse_cib(render_cib(HOSTS, GUESTS).encode())
    assert [(host.name, host.capacity, host.online) for host in model.hosts] == [
        ("host1", Resources(16384, 8), True),
        ("host2", Resources(16384, 8), True),
        ("host3", Resources(8192, 4), True),
    ]
    assert [(guest.resource, guest.demand, guest.active_on) for guest in model.guests] == [
        ("web1", Resources(4096, 2), ("host1",)),
        ("db1", Resources(8192, 4), ("host2",)),
        ("spare", Resources(1024, 1), ()),
    ]
    assert model.options.placement_strategy == "balanced"
    assert model.fencing_devices == ("fence",)
    assert model.have_quorum
    assert model.blockers == ()
    assert all(guest.blockers == () for guest in model.guests)


def test_the_captured_cluster_reads_as_crm_simulate_shows_it() -> None:
    # tests/unit/data/planner/three-hosts.xml, as crm_simulate listed it (fail-host03.output.xml).
    model = parse_cib((DATA / "three-hosts.xml").read_bytes())
    placement = {guest.resource: guest.active_on for guest in model.guests}
    assert placement["vm0003"] == ("host03",)
    assert placement["vm0009"] == ("host01",)
    assert len(model.guests) == 12


def test_a_down_host_is_not_available() -> None:
    hosts = [*HOSTS[:2], HostSpec("host3", 8192, 4, up=False)]
    model = parse_cib(render_cib(hosts, GUESTS[:2]).encode())
    host3 = model.host("host3")
    assert host3 is not None
    assert (host3.online, host3.available, host3.unclean, host3.state) == (False, False, False, "down")
    assert model.blockers == ()


def test_target_role_stopped_guests_are_not_meant_to_run() -> None:
    guests = [
        GuestSpec("web1", 4096, 2, "host1"),
        GuestSpec("old", 2048, 1, None, (("target-role", "Stopped"),)),
    ]
    model = parse_cib(render_cib(HOSTS, guests).encode())
    assert [guest.resource for guest in model.running_guests] == ["web1"]


@pytest.mark.parametrize(
    ("meta", "blocker"),
    [
        (("is-managed", "false"), "not managed"),
        (("resource-stickiness", "-100"), "resource-stickiness"),
        (("maintenance", "true"), "maintenance"),
    ],
)
def test_guest_meta_attributes_that_keep_the_proof_away(meta: tuple[str, str], blocker: str) -> None:
    guests = [GuestSpec("web1", 4096, 2, "host1", (meta,))]
    model = parse_cib(render_cib(HOSTS, guests).encode())
    assert any(blocker in reason for reason in model.guests[0].blockers)


def test_infinite_stickiness_is_fine() -> None:
    guests = [GuestSpec("web1", 4096, 2, "host1", (("resource-stickiness", "INFINITY"),))]
    model = parse_cib(render_cib(HOSTS, guests).encode())
    assert model.guests[0].blockers == ()


def test_a_constraint_naming_a_guest_keeps_the_proof_away() -> None:
    pin = '<rsc_location id="pin-web1" rsc="web1" node="host1" score="INFINITY"/>'
    model = parse_cib(render_cib(HOSTS, GUESTS, constraints=pin).encode())
    web1 = next(guest for guest in model.guests if guest.resource == "web1")
    db1 = next(guest for guest in model.guests if guest.resource == "db1")
    assert web1.blockers == ("web1 is named in a constraint",)
    assert db1.blockers == ()


def test_constraints_through_tags_and_patterns() -> None:
    cib = render_cib(HOSTS, GUESTS, constraints='<rsc_location id="l" rsc="dbs" node="host1" score="10"/>')
    cib = cib.replace("</constraints>", '</constraints><tags><tag id="dbs"><obj_ref id="db1"/></tag></tags>')
    model = parse_cib(cib.encode())
    assert next(g for g in model.guests if g.resource == "db1").blockers == ("db1 is named in a constraint",)
    pattern = render_cib(HOSTS, GUESTS, constraints='<rsc_location id="p" rsc-pattern="^web" node="host1" score="5"/>')
    assert "constraints with rsc-pattern (p)" in parse_cib(pattern.encode()).blockers


def test_other_utilization_attributes_and_bad_values() -> None:
    cib = render_cib(HOSTS, GUESTS[:1]).replace(
        '<nvpair id="web1-utilization-cpu" name="cpu" value="2"/>',
        '<nvpair id="web1-utilization-cpu" name="cpu" value="2x"/><nvpair id="web1-u-disk" name="disk" value="5"/>',
    )
    blockers = parse_cib(cib.encode()).guests[0].blockers
    assert "web1 has cpu='2x', not a whole number of at least 0" in blockers
    assert "web1 has utilization disk besides hv_memory and cpu" in blockers


def test_failed_operations_keep_the_proof_away() -> None:
    cib = re.sub(
        r'(id="web1_monitor_10000" [^>]*?)rc-code="0"',
        r'\1rc-code="1"',
        render_cib(HOSTS, GUESTS[:1]),
    )
    guest = parse_cib(cib.encode()).guests[0]
    assert guest.blockers == ("web1: monitor on host1 returned rc=1 status=0",)


def test_a_guest_without_utilization_is_noted() -> None:
    model = parse_cib(render_cib(HOSTS, [GuestSpec("bare", None, None, "host1")]).encode())
    assert not model.guests[0].has_utilization
    assert model.notes == ("bare has no utilization: the scheduler places it without a capacity check",)


def test_cluster_wide_blockers() -> None:
    model = parse_cib(
        render_cib(
            HOSTS,
            GUESTS,
            properties=(("symmetric-cluster", "false"), ("node-health-strategy", "migrate-on-red")),
        ).encode()
    )
    assert "symmetric-cluster=false: nodes are opt-in through constraints" in model.blockers
    assert "node-health-strategy=migrate-on-red" in model.blockers


def test_standby_from_transient_attributes() -> None:
    cib = render_cib(HOSTS, GUESTS).replace(
        '<lrm id="2">',
        '<transient_attributes id="2"><instance_attributes id="status-2">'
        '<nvpair id="status-2-standby" name="standby" value="on"/></instance_attributes>'
        '</transient_attributes><lrm id="2">',
    )
    host2 = parse_cib(cib.encode()).host("host2")
    assert host2 is not None
    assert (host2.online, host2.standby, host2.available) == (True, True, False)


def test_ledger_reservations() -> None:
    from lxml import etree

    crm_config = etree.fromstring(
        "<crm_config>"
        '<cluster_property_set id="cib-bootstrap-options"/>'
        f'<cluster_property_set id="{ledger_id("node.a")}">'
        '<nvpair id="xenha-ledger-node.a-lock" name="lock" value="free"/>'
        '<nvpair id="xenha-ledger-node.a-r-1" name="xenha-ledger-node.a-r-1" '
        'value="xenha-reservation/2 resource=web%3A1 memory_mib=4160 vcpus=2 hold_s=240 holder=t1"/>'
        '<nvpair id="xenha-ledger-node.a-rsv-old" name="rsv-old" '
        'value="memory_mib=4160 vcpus=2 expires=1000 holder=t0 resource=old"/>'  # format 1: not read
        '<nvpair id="xenha-ledger-node.a-r-2" name="r-2" value="xenha-reservation/2 memory_mib=x"/>'
        "</cluster_property_set></crm_config>"
    )
    (reservation,) = parse_ledger(crm_config, ["node.a"])
    assert (reservation.node, reservation.resource, reservation.memory_mib, reservation.vcpus) == (
        "node.a",
        "web:1",
        4160,
        2,
    )
    assert reservation.hold_s == 240


def test_utilization_values() -> None:
    assert parse_utilization_value(None) == 0
    assert parse_utilization_value(" 4096 ") == 4096
    assert parse_utilization_value("4G") is None
    assert parse_utilization_value("-1") == -1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<cib", "not well-formed XML"),
        (b"", "not well-formed XML"),
        (b"<pacemaker-result/>", "not a CIB"),
        (b"<cib/>", "no <configuration> section"),
    ],
)
def test_bad_documents(data: bytes, message: str) -> None:
    with pytest.raises(CibError, match=message):
        parse_cib(data)


def test_the_status_section_is_read_without_building_it() -> None:
    document = read_cib_document((DATA / "three-hosts.xml").read_bytes())
    assert len(document.root.find("status")) == 0
    assert len(document.status.node_states) == 3
    assert len(document.status.operations) == 3 * (1 + 2 + 12) + 12  # fence, host, probes, monitors
