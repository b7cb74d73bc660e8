"""The demo's ``xenha verify`` step: the configuration checked live, and one finding fixed
with the very pcs command verify printed for it.

Self-contained (one function, called once from the demo after the failover plan), so that
it moves with the demo wherever the demo lives.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Protocol

from tests.support.cluster.cluster import Cluster

GUEST = "web1"


class Narration(Protocol):
    def step(self, title: str) -> None: ...

    def say(self, text: str) -> None: ...

    def show(self, cluster: Cluster, node: str, argv: list[str], keep: int = 40, check: bool = True) -> str: ...


def _verdict(cluster: Cluster, node: str, xenha: str) -> dict[str, Any]:
    result = cluster.run(node, [xenha, "verify", "--json"], 180.0)
    try:
        document: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        raise SystemExit(f"demo: xenha verify printed no JSON on {node}: {result.stdout}{result.stderr}") from None
    return document


def _allow_migrate_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        finding
        for finding in document.get("findings", ())
        if finding["check"] == "allow-migrate" and finding["object"] == f"resource {GUEST}"
    ]


def verify_step(cluster: Cluster, narrator: Narration, node: str, xenha: str) -> None:
    narrator.step("4b. xenha verify: the configuration checked, and a finding fixed with the command it prints")
    narrator.say(f"someone turned live migration off for {GUEST} while debugging, and forgot it:")
    narrator.show(cluster, node, ["pcs", "resource", "meta", GUEST, "allow-migrate=false"])
    narrator.show(cluster, node, [xenha, "verify"], keep=16, check=False)
    found = _allow_migrate_findings(_verdict(cluster, node, xenha))
    if not found:
        raise SystemExit(f"demo: xenha verify did not report allow-migrate=false on {GUEST}")
    narrator.say("the fix verify printed for it, run as printed:")
    for command in found[0]["fix"]["pcs"]:
        narrator.show(cluster, node, shlex.split(command))
    after = _verdict(cluster, node, xenha)
    if _allow_migrate_findings(after):
        raise SystemExit(f"demo: xenha verify still reports allow-migrate on {GUEST} after its own fix")
    narrator.say(f"verify again: XENHA VERIFY {after['status']} - {after['headline']}")
    narrator.say(f"({GUEST}'s allow-migrate finding is gone)")
