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
echo $$ > "$HOST_DIR/init.pid"
exec /usr/bin/python3 "$(dirname "$0")/subreaper.py" \
    /usr/sbin/libvirtd --listen -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid
