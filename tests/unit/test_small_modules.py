"""libvirt URIs, domain state verdicts, deadlines and the state file."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from xenha.deadline import Deadline, DeadlineExceeded, call_with_deadline
from xenha.libvirt import states as domstate
from xenha.libvirt.uri import UriError, default_remote, for_node, mask, parse
from xenha.ocf import OcfExit
from xenha.statefile import StateFile


@pytest.mark.parametrize(
    ("uri", "driver", "transport", "host"),
    [
        ("xen:///system", "xen", None, ""),
        ("xen+ssh://root@node2/system", "xen", "ssh", "node2"),
        ("qemu+tcp://%n/system", "qemu", "tcp", "%n"),
        ("test+unix:///default?socket=/run/x", "test", "unix", ""),
    ],
)
def test_uris(uri: str, driver: str, transport: str | None, host: str) -> None:
    parsed = parse(uri, placeholder=True)
    assert (parsed.driver, parsed.transport, parsed.host) == (driver, transport, host)


@pytest.mark.parametrize(
    "uri", ["", "system", "foo:///x", "qemu+pigeon://x/system", "xen:///sys\ntem", "qemu+tcp://%n/system"]
)
def test_unusable_uris(uri: str) -> None:
    with pytest.raises(UriError):
        parse(uri)


def test_remote_derivation() -> None:
    assert default_remote(parse("xen:///system")) == "xen+ssh://%n/system"
    assert default_remote(parse("qemu+tcp://a/system")) == "qemu+tcp://%n/system"
    assert for_node("xen+ssh://%n/system", "node3") == "xen+ssh://node3/system"


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("xen:///system", "xen:///system"),
        ("xen+tls://admin:pw@h/system", "xen+tls://admin:***@h/system"),
        ("qemu+ssh://h/system?keyfile=/k&password=pw", "qemu+ssh://h/system?keyfile=/k&password=***"),
    ],
)
def test_masking(uri: str, masked: str) -> None:
    assert mask(uri) == masked


@pytest.mark.parametrize(
    ("state", "reason", "code"),
    [
        (domstate.RUNNING, 1, OcfExit.SUCCESS),
        (domstate.BLOCKED, 0, OcfExit.SUCCESS),
        (domstate.SHUTDOWN, 1, OcfExit.SUCCESS),
        (domstate.SHUTOFF, 1, OcfExit.NOT_RUNNING),
        (domstate.PAUSED, domstate.PAUSED_USER, OcfExit.DEGRADED),
        (domstate.PAUSED, domstate.PAUSED_UNKNOWN, OcfExit.DEGRADED),
        (domstate.PAUSED, domstate.PAUSED_MIGRATION, OcfExit.SUCCESS),
        (domstate.PAUSED, domstate.PAUSED_SAVE, OcfExit.SUCCESS),
        (domstate.PAUSED, domstate.PAUSED_IOERROR, OcfExit.ERR_GENERIC),
        (domstate.PAUSED, domstate.PAUSED_POSTCOPY_FAILED, OcfExit.ERR_GENERIC),
        (domstate.CRASHED, 0, OcfExit.ERR_GENERIC),
        (domstate.PMSUSPENDED, 0, OcfExit.DEGRADED),
        (domstate.NOSTATE, 0, OcfExit.ERR_GENERIC),
        (42, 0, OcfExit.ERR_GENERIC),
    ],
)
def test_state_verdicts(state: int, reason: int, code: OcfExit) -> None:
    assert domstate.judge(state, reason).code == code


def test_deadline_arithmetic() -> None:
    now = [100.0]
    deadline = Deadline(110.0, clock=lambda: now[0])
    assert deadline.remaining() == 10
    assert deadline.within(3).remaining() == 3
    assert deadline.within(30).remaining() == 10
    assert deadline.minus(4).remaining() == 6
    now[0] = 111.0
    assert deadline.expired() and deadline.remaining() == 0


def test_bounded_call_returns_raises_or_times_out() -> None:
    assert call_with_deadline(lambda: 42, 1, "answer") == 42
    with pytest.raises(KeyError):
        call_with_deadline(lambda: {}["x"], 1, "missing")
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="hang did not answer"):
        call_with_deadline(release.wait, 0.2, "hang")
    assert time.monotonic() - started < 1
    release.set()


def test_state_file(tmp_path: Path) -> None:
    state = StateFile(str(tmp_path / "rsc"), "xen-guest", "web1:0/../x")
    assert state.load() == {}
    assert state.save({"domain": "web1"})
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o600
    assert Path(state.path).parent == tmp_path / "rsc"
    assert state.update(memory_mib=5) == {"domain": "web1", "memory_mib": 5}
    Path(state.path).write_text("{not json")
    assert state.load() == {}
    state.remove()
    assert not Path(state.path).exists()


def test_migration_policy_names_are_auto_and_the_migration_methods() -> None:
    from xenha.agents.guest.migration_plan import AUTO, Method
    from xenha.agents.guest.spec import MIGRATION_POLICIES

    assert set(MIGRATION_POLICIES) == {AUTO} | {method.value for method in Method}


@given(
    user=st.text(st.characters(whitelist_categories=("Ll", "Nd")), min_size=1, max_size=8),
    password=st.text(st.characters(whitelist_categories=("Lu",)), min_size=6, max_size=20),
    query_key=st.sampled_from(["password", "passwd", "secret", "key", "PASSWORD"]),
)
def test_masking_never_shows_a_password(user: str, password: str, query_key: str) -> None:
    assume(password not in query_key)  # "PASSWO" is in the key "PASSWORD", which is not masked
    for uri in (
        f"xen+ssh://{user}:{password}@node2/system",
        f"qemu+tls://{user}:{password}@node2:16514/system?keyfile=/k",
        f"qemu+tcp://node2/system?{query_key}={password}&x=1",
    ):
        assert password not in mask(uri)
