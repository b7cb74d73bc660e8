#!/bin/bash
# PID 1 of nothing: the first process inside one simulated libvirt host's private mount and
# UTS namespaces (and its network namespace, when it has one). Gives libvirtd private
# directories, a passwd with the libvirt-qemu user and the hosts' /etc/hosts, then becomes
# the subreaper that runs libvirtd.
# Environment: HOST_NAME, HOST_DIR (per-host state), SHARED_DIR (passwd, group, hosts).
set -euo pipefail
hostname "$HOST_NAME"
mount --bind "$SHARED_DIR/passwd" /etc/passwd
mount --bind "$SHARED_DIR/group" /etc/group
mount --bind "$SHARED_DIR/hosts" /etc/hosts
mount --bind "$HOST_DIR/etc" /etc/libvirt
mount --bind "$HOST_DIR/run" /run/libvirt
mount --bind "$HOST_DIR/lib" /var/lib/libvirt
mount --bind "$HOST_DIR/cache" /var/cache/libvirt
mount --bind "$HOST_DIR/log" /var/log/libvirt
# This machine's memory total moves (virtio-mem plugs and unplugs memory): fix the host's
# memory as libvirtd reads it (the NUMA nodes' meminfo, behind getInfo) at its value now,
# as a real host's is; tests size guests and reserves against it.
for meminfo in /sys/devices/system/node/node*/meminfo; do
    frozen="$HOST_DIR/$(basename "$(dirname "$meminfo")")-meminfo"
    cat "$meminfo" > "$frozen"
    mount --bind "$frozen" "$meminfo"
done
echo $$ > "$HOST_DIR/init.pid"
# libvirt discards its qemu capabilities cache when the CPUID it reads differs from the
# cached one, and one CPUID leaf carries the id of the CPU that asks: pin libvirtd to one
# CPU so the seeded cache stays valid (libvirt gives each QEMU all CPUs again).
first_cpu=$(/usr/bin/python3 -c 'import os; print(min(os.sched_getaffinity(0)))')
exec /usr/bin/python3 "$(dirname "$0")/subreaper.py" taskset -c "$first_cpu" \
    /usr/sbin/libvirtd --listen -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid
