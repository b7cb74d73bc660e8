"""Configuration files of a test cluster, rendered from its layout. Pure functions.

libvirt's settings (qemu.conf, the libvirt-qemu user, the TCP listener) are the ones the
single-host harness already proved; they are imported from it rather than repeated.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from tests.support.cluster.layout import LIBVIRT_TCP_PORT, ClusterLayout
from tests.support.libvirt_hosts import GROUP_EXTRA, PASSWD_EXTRA, QEMU_CONF, libvirtd_settings

FENCE_AGENT = "fence_xenha_test"
FENCE_DEVICE = "fence-xenha"
TOKEN_MS = 1000

__all__ = [
    "FENCE_AGENT",
    "FENCE_DEVICE",
    "QEMU_CONF",
    "corosync_conf",
    "etc_group",
    "etc_hosts",
    "etc_passwd",
    "libvirtd_conf",
    "seed_cib",
]


def corosync_conf(layout: ClusterLayout) -> str:
    """knet without crypto, token 1000 ms: a crash is noticed in about a second."""
    nodes = "".join(
        f"    node {{\n        name: {node}\n        nodeid: {layout.index(node)}\n"
        f"        ring0_addr: {layout.address(node)}\n    }}\n"
        for node in layout.node_names
    )
    return (
        "totem {\n"
        "    version: 2\n"
        f"    cluster_name: {layout.cluster_name}\n"
        "    transport: knet\n"
        "    crypto_cipher: none\n"
        "    crypto_hash: none\n"
        f"    token: {TOKEN_MS}\n"
        "}\n"
        "logging {\n"
        "    to_stderr: no\n"
        "    to_logfile: yes\n"
        "    logfile: /var/log/corosync/corosync.log\n"
        "    to_syslog: no\n"
        "    timestamp: hires\n"
        "}\n"
        "quorum {\n"
        "    provider: corosync_votequorum\n"
        "}\n"
        f"nodelist {{\n{nodes}}}\n"
    )


def etc_hosts(layout: ClusterLayout) -> str:
    """Node names must resolve inside every node (corosync, libvirt migration URIs)."""
    lines = ["127.0.0.1 localhost"]
    lines += [f"{layout.address(node)} {node}" for node in layout.node_names]
    return "\n".join(lines) + "\n"


def etc_passwd(host_passwd: str) -> str:
    """The host's passwd plus the libvirt-qemu user Debian's qemu driver insists on."""
    if "\nlibvirt-qemu:" in "\n" + host_passwd:
        return host_passwd
    return _with_newline(host_passwd) + PASSWD_EXTRA


def etc_group(host_group: str) -> str:
    text = _with_newline(host_group)
    for line in GROUP_EXTRA:
        if "\n" + line.split(":")[0] + ":" not in "\n" + text:
            text += line
    return text


def libvirtd_conf(layout: ClusterLayout, node: str) -> str:
    settings = [
        *libvirtd_settings(layout.address(node)),
        f'host_uuid = "{layout.host_uuid(node)}"',
        'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
        "max_clients = 200",
        "max_workers = 40",
    ]
    assert f'tcp_port = "{LIBVIRT_TCP_PORT}"' in settings
    return "\n".join(settings) + "\n"


def seed_cib(layout: ClusterLayout, fence_device: bool = True) -> str:
    """The CIB every node starts from: fencing on, short DC dead time, stickiness 1.

    ``dc-deadtime=2s`` instead of 20 s lets the first DC be elected in a few seconds;
    ``resource-stickiness=1`` keeps resources where they are when a node comes back.
    Without ``fence_device`` the device is left for the operator to create (the demo does,
    with pcs).
    """
    host_list = quoteattr(" ".join(layout.node_names))
    device = f"""\
      <primitive id="{FENCE_DEVICE}" class="stonith" type="{FENCE_AGENT}">
        <instance_attributes id="{FENCE_DEVICE}-ia">
          <nvpair id="{FENCE_DEVICE}-ia-pcmk_host_list" name="pcmk_host_list" value={host_list}/>
        </instance_attributes>
        <operations>
          <op id="{FENCE_DEVICE}-monitor-interval-60s" name="monitor" interval="60s"/>
        </operations>
      </primitive>
"""
    return f"""\
<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-dc-deadtime" name="dc-deadtime" value="2s"/>
        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="true"/>
        <nvpair id="cib-bootstrap-options-cluster-name" name="cluster-name" value="{layout.cluster_name}"/>
      </cluster_property_set>
    </crm_config>
    <rsc_defaults>
      <meta_attributes id="rsc_defaults-options">
        <nvpair id="rsc_defaults-options-resource-stickiness" name="resource-stickiness" value="1"/>
      </meta_attributes>
    </rsc_defaults>
    <nodes/>
    <resources>
{device if fence_device else ""}    </resources>
    <constraints/>
  </configuration>
  <status/>
</cib>
"""


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"
