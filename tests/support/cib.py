"""CIB files for tests: Pacemaker's tools honour ``CIB_file``, so a file can play the cluster."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

from tests.support import commands


def nvpairs(prefix: str, values: Mapping[str, object]) -> str:
    return "".join(
        f"<nvpair id={quoteattr(f'{prefix}-{name}')} name={quoteattr(name)} value={quoteattr(str(value))}/>"
        for name, value in values.items()
    )


def write_cib(
    path: Path,
    nodes: Mapping[str, Mapping[str, int]],
    guests: Mapping[str, Mapping[str, str]] | None = None,
    placement_strategy: str = "utilization",
) -> Path:
    """A CIB with ``nodes`` (name → node utilization) and xen-guest primitives (id → params)."""
    node_xml = "".join(
        f'<node id="{index}" uname={quoteattr(name)}>'
        + (
            f'<utilization id="nodes-{index}-utilization">{nvpairs(f"nodes-{index}", util)}</utilization>'
            if util
            else ""
        )
        + "</node>"
        for index, (name, util) in enumerate(nodes.items(), start=1)
    )
    resources = "".join(
        f'<primitive id={quoteattr(guest)} class="ocf" provider="xenha" type="xen-guest">'
        f"<instance_attributes id={quoteattr(guest + '-ia')}>{nvpairs(guest + '-ia', params)}</instance_attributes>"
        f"</primitive>"
        for guest, params in (guests or {}).items()
    )
    node_states = "".join(
        f'<node_state id="{index}" uname={quoteattr(name)} in_ccm="true" crmd="online" join="member" expected="member"/>'
        for index, name in enumerate(nodes, start=1)
    )
    path.write_text(
        '<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0" '
        'have-quorum="1">'
        "<configuration><crm_config>"
        '<cluster_property_set id="cib-bootstrap-options">'
        f'<nvpair id="opt-placement" name="placement-strategy" value="{placement_strategy}"/>'
        '<nvpair id="opt-stonith" name="stonith-enabled" value="false"/>'
        '<nvpair id="opt-quorum" name="no-quorum-policy" value="ignore"/>'
        "</cluster_property_set></crm_config>"
        f"<nodes>{node_xml}</nodes><resources>{resources}</resources><constraints/></configuration>"
        f"<status>{node_states}</status></cib>\n"
    )
    return path


def query(cib: Path, xpath: str) -> str:
    """What ``cibadmin --query --xpath`` finds in the file ('' when nothing matches)."""
    found = commands.run(
        ["cibadmin", "--query", "--xpath", xpath], 60, env={"CIB_file": str(cib), "PATH": "/usr/sbin:/usr/bin"},
        inherit_env=False,
    )  # fmt: skip
    return found.stdout if found.ok else ""
