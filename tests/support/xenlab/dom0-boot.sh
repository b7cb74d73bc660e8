#!/bin/sh
# The dom0's first process, baked into the cached image: mount the lab's share and hand over
# to the init script that comes with this run (tests/support/xenlab/dom0-init.sh), so that
# changing what the lab does at boot does not rebuild the root filesystem.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
modprobe 9pnet_virtio
modprobe 9p
mkdir -p /srv/xenlab
if mount -t 9p -o trans=virtio,version=9p2000.L,ro xenlab /srv/xenlab && [ -x /srv/xenlab/dom0-init.sh ]; then
    exec /srv/xenlab/dom0-init.sh
fi
echo "XENLAB FAILED: cannot mount the lab share (9p tag xenlab) or run its dom0-init.sh" >/dev/console
echo o >/proc/sysrq-trigger
sleep 60
