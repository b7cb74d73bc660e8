"""resource-agents' ocf-tester drives xen-guest through every action on a real libvirtd."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import LibvirtHost
from tests.support.ocf import AGENTS


def test_ocf_tester_passes(local_host: LibvirtHost, tmp_path: Path) -> None:
    config = tmp_path / "ocftester.xml"
    config.write_text(domain_xml("ocftester", driver="test"))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OCF_", "HA_"))}
    env["HA_RSCTMP"] = str(tmp_path)
    tested = subprocess.run(
        [
            "ocf-tester", "-v", "-n", "ocftester",
            "-o", f"config={config}", "-o", f"hypervisor={local_host.test_uri}",
            str(AGENTS / "xen-guest"),
        ],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "passed all tests" in tested.stdout
