"""``make xen-lab``: bring the Xen lab up with timings; ``KEEP=1`` leaves it up.

python3 -m tests.support.xenlab up [--hosts N] [--keep] [--autoballoon] DEB...
python3 -m tests.support.xenlab down
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.support.xenlab.lab import BUILD, HostConfig, LabError, start_lab, stop_lab, stop_recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xenlab")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="boot the Xen hosts, print timings, check each dom0")
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--keep", action="store_true", help="leave the lab up and print how to reach it")
    up.add_argument(
        "--autoballoon", action="store_true", help="no dom0_mem= on Xen's line: libvirt autoballoons Domain-0"
    )
    up.add_argument("--cluster", action="store_true", help="with the shared SBD disk and watchdogs (cluster mode)")
    up.add_argument("debs", nargs="*", type=Path, help="xenha .deb files to install in the dom0s")
    commands.add_parser("down", help="stop a lab left up by --keep, and remove its files")
    args = parser.parse_args(argv)

    if args.command == "down":
        stopped = stop_recorded(BUILD / "run")
        print("xenlab: stopped " + (", ".join(stopped) if stopped else "nothing (no lab was up)"))
        return 0

    try:
        config = HostConfig(dom0_mem_mib=None) if args.autoballoon else HostConfig()
        debs = [deb for deb in args.debs if deb.name.endswith(".deb")]
        lab = start_lab(debs, count=args.hosts, config=config, cluster=args.cluster)
    except LabError as error:
        print(f"xenlab: {error}", file=sys.stderr)
        return 1
    try:
        for line in lab.timings.lines():
            print(f"xenlab: {line}")
        for host in lab.hosts:
            summary = host.check(
                "echo $(hostname): $(xl info | grep -E '^(xen_version|total_memory|free_memory)' | tr -s ' ' | tr '\\n' ' ')"
                "; virsh -c xen:///system version | grep -i 'running hypervisor'"
                "; dpkg-query -W xenha-agents"
                + "".join(
                    f"; virsh -c xen+tcp://{peer.name}/system hostname >/dev/null && echo 'libvirtd of {peer.name}: reached'"
                    for peer in lab.hosts
                    if peer is not host
                ),
                timeout=120,
            )
            print("\n".join(f"xenlab:   {line}" for line in summary.splitlines()))
        if args.keep:
            print("xenlab: left up (KEEP=1). Reach each dom0 with:")
            print("\n".join(f"xenlab:   {line}" for line in lab.how_to_reach()))
            return 0
    except LabError as error:
        stop_lab(lab, keep_logs=True)
        print(f"xenlab: {error}", file=sys.stderr)
        return 1
    except BaseException:
        stop_lab(lab, keep_logs=True)
        raise
    stop_lab(lab)
    print("xenlab: torn down (no QEMU, no files left outside build/xenlab/cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
