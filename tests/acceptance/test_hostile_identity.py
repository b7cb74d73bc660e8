"""What the agent reads of a guest's identity, and what it shows of its URIs (issue 12, finding 13).

Findings 1 and 2 (renamed guest, another resource's or a hand-started domain under the
guest's name) are pinned in test_guest_identity.py. Here: a domain XML whose ``<name>`` the
agent reads differently from libvirt, and secrets in libvirt URIs that reach the log and
the exit reason. Real libvirtd (test driver); each action a separate process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ocf import AgentCase

SUCCESS, ERR_CONFIGURED = 0, 6


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_entity_in_the_name_is_refused_whatever_the_encoding(test_guest: AgentCase, encoding: str) -> None:
    config = Path(test_guest.params["config"])
    declared = (
        f'<?xml version="1.0" encoding="{encoding.upper()}"?>\n'
        '<!DOCTYPE domain [<!ENTITY suffix "1">]>\n'
        "<domain type='test'><name>web&suffix;</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os></domain>\n"
    )
    config.write_bytes(declared.encode(encoding))
    for action in ("validate-all", "start"):
        result = test_guest.run(action)
        assert result.code == ERR_CONFIGURED, (encoding, result)
        # Not "name": the file's path holds this test's name, so it would prove nothing.
        assert "declares a DOCTYPE or entities" in (result.reason or ""), result


SECRETS = {
    "raw-slash-in-password": ("qemu+tcp://admin:pa/ss-w0rd@127.0.0.1:9/system", "pa/ss-w0rd"),
    "auth_pass-key": ("qemu+tcp://127.0.0.1:9/system?auth_pass=s3kr1t-token", "s3kr1t-token"),
    "client_secret-key": ("qemu+tcp://127.0.0.1:9/system?no_verify=1&client_secret=s3kr1t-token", "s3kr1t-token"),
}


@pytest.mark.parametrize("case", sorted(SECRETS))
def test_no_secret_of_a_uri_reaches_the_log_or_the_exit_reason(test_guest: AgentCase, case: str) -> None:
    uri, secret = SECRETS[case]
    # nothing listens on port 9: every action that needs the hypervisor fails and names the URI
    for action, interval_ms in (("monitor", 0), ("start", None), ("stop", None)):
        result = test_guest.run(action, interval_ms=interval_ms, timeout_ms=8000, timeout=60, hypervisor=uri)
        assert result.code != SUCCESS or action == "stop", result
        shown = result.stderr + result.stdout
        assert secret not in shown, f"{action} showed the secret of {uri!r}:\n{shown}"
    # and as the migration's remote URI, where it is logged too
    validate = test_guest.run("validate-all", remoteuri=uri.replace("127.0.0.1:9", "%n:9"))
    assert secret not in validate.stderr + validate.stdout, validate
