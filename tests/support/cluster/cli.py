"""``tools/test-cluster``: the test cluster for humans.

    cluster up [--nodes N]          fresh cluster, waits until every node is online
    cluster status                  each node's state and Pacemaker's view (from crm_mon XML)
    cluster ssh NODE [CMD...]       a command (default: a shell) inside NODE
    cluster start|stop|kill NODE    boot / graceful shutdown / power cut
    cluster freeze|thaw NODE        hang / resume every process of NODE
    cluster cut|restore NODE        pull / plug NODE's network cable
    cluster wait                    wait until all running nodes see each other online
    cluster down [--graceful] [--purge]   stop everything; --purge also deletes the state

The prefix (default ``xhc``, or $XENHA_CLUSTER_PREFIX) names the namespaces and cgroups;
state and logs are under build/cluster/<prefix>/ of the checkout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tests.support.cluster.claim import PrefixBusy, PrefixClaim
from tests.support.cluster.cluster import NODE_ENV, Cluster, ClusterError
from tests.support.cluster.layout import DEFAULT_NODE_COUNT, DEFAULT_PREFIX, ClusterLayout, LayoutError
from tests.support.cluster.network import NetworkError
from tests.support.commands import CommandFailed

NODE_COMMANDS = ("start", "stop", "kill", "freeze", "thaw", "cut", "restore")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="cluster", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    top.add_argument("--prefix", default=os.environ.get("XENHA_CLUSTER_PREFIX", DEFAULT_PREFIX))
    top.add_argument("--nodes", type=int, default=None, help=f"node count (default {DEFAULT_NODE_COUNT})")
    sub = top.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("--timeout", type=float, default=120.0)
    down = sub.add_parser("down")
    down.add_argument("--graceful", action="store_true")
    down.add_argument("--purge", action="store_true")
    sub.add_parser("status")
    wait = sub.add_parser("wait")
    wait.add_argument("--timeout", type=float, default=90.0)
    ssh = sub.add_parser("ssh")
    ssh.add_argument("node")
    ssh.add_argument("argv", nargs=argparse.REMAINDER)
    for name in NODE_COMMANDS:
        sub.add_parser(name).add_argument("node")
    return top


def node_count(prefix: str, requested: int | None) -> int:
    """The node count given, else the one of the running cluster's saved layout, else 3."""
    if requested is not None:
        return requested
    saved = ClusterLayout(prefix).state_dir / "node-count"
    try:
        return int(saved.read_text())
    except (OSError, ValueError):
        return DEFAULT_NODE_COUNT


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        layout = ClusterLayout(args.prefix, node_count(args.prefix, args.nodes))
        cluster = Cluster(layout, say=print)
        if args.command == "ssh":
            return ssh(cluster, args.node, args.argv)
        with PrefixClaim(args.prefix):
            return dispatch(cluster, args)
    except (ClusterError, CommandFailed, LayoutError, NetworkError, PrefixBusy) as error:
        print(f"cluster {args.command}: {error}", file=sys.stderr)
        return 1


def dispatch(cluster: Cluster, args: argparse.Namespace) -> int:
    layout = cluster.layout
    if args.command == "up":
        if cluster.running_nodes(include_frozen=True):
            raise ClusterError(f"cluster {layout.prefix} is already up: `cluster down` first")
        cluster.up(timeout_s=args.timeout)
        (layout.state_dir / "node-count").write_text(f"{layout.node_count}\n")
        return status(cluster)
    if args.command == "down":
        cluster.teardown(graceful=args.graceful, purge=args.purge)
        print(f"cluster {layout.prefix}: down")
        return 0
    if args.command == "status":
        return status(cluster)
    if args.command == "wait":
        print(f"online after {cluster.wait_online(args.timeout):.1f} s")
        return 0
    node = args.node
    layout.index(node)
    if args.command == "start":
        cluster.start_node(node)
    elif args.command == "stop":
        print(f"{node} stopped in {cluster.stop_node(node):.1f} s")
    elif args.command == "kill":
        cluster.kill_node(node)
    elif args.command == "freeze":
        cluster.freeze_node(node)
    elif args.command == "thaw":
        cluster.thaw_node(node)
    elif args.command == "cut":
        cluster.cut_network(node)
    elif args.command == "restore":
        cluster.restore_network(node)
    return 0


def status(cluster: Cluster) -> int:
    layout = cluster.layout
    print(f"cluster {layout.prefix}: state in {layout.state_dir}")
    asked = None
    for node in layout.node_names:
        pid = cluster.init_pid(node)
        state = "down" if pid is None else ("frozen" if cluster.is_frozen(node) else "running")
        print(f"  {node:<8} {layout.address(node):<12} {state:<8} init pid {pid or '-'}")
        if state == "running" and asked is None:
            asked = node
    if asked is None:
        return 0
    view = cluster.status(asked)
    print(f"Pacemaker, as seen from {asked}: DC {view.dc or 'none'}, quorum {'yes' if view.with_quorum else 'no'}")
    for node_state in view.nodes:
        flags = [
            name
            for name, value in (("online", node_state.online), ("unclean", node_state.unclean),
                                ("standby", node_state.standby), ("DC", node_state.is_dc))
            if value
        ]  # fmt: skip
        print(f"  node {node_state.name:<8} {' '.join(flags) or 'offline'}")
    for resource in view.resources:
        where = " ".join(resource.nodes) or "-"
        failed = " FAILED" if resource.failed else ""
        print(f"  {resource.id:<16} {resource.agent:<32} {resource.role:<10} {where}{failed}")
    for failure in view.failures:
        print(f"  failed: {failure.op_key} on {failure.node}: {failure.exit_status} {failure.exit_reason}")
    return 0


def ssh(cluster: Cluster, node: str, argv: Sequence[str]) -> int:
    command = list(argv) or ["/bin/bash", "-l"]
    full = [*cluster.nsenter_argv(node), *command]
    env = dict(NODE_ENV, TERM=os.environ.get("TERM", "dumb"))
    sys.stdout.flush()
    os.execvpe(full[0], full, env)
