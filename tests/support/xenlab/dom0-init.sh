#!/bin/sh
# dom0's init for one run of the Xen lab (the image has no init system): Xen's daemons,
# the lab's two networks, the shared storage, sshd for the harness, xenha from the
# project's .deb, and libvirtd (libxl) listening on TCP without auth — the lab's private
# network only. Reports "XENLAB READY" (or "XENLAB FAILED: why") on the console.
# Kernel command line: xenlab.host=N xenlab.hosts=COUNT.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "XENLAB $*" >/dev/console; }
fail() { say "FAILED: $*"; sleep 5; echo o >/proc/sysrq-trigger; sleep 60; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

mount -o remount,rw / || fail "cannot remount / read-write"
mkdir -p /run /tmp /dev/pts /dev/shm /srv/san
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
N=$(sed -n 's/.*xenlab\.host=\([0-9]*\).*/\1/p' /proc/cmdline)
COUNT=$(sed -n 's/.*xenlab\.hosts=\([0-9]*\).*/\1/p' /proc/cmdline)
[ -n "$N" ] && [ -n "$COUNT" ] || fail "no xenlab.host=/xenlab.hosts= on the kernel command line"
hostname "xenhost$N"
echo "xenhost$N" >/etc/hostname
{
    echo "127.0.0.1 localhost"
    for i in $(seq "$COUNT"); do echo "10.99.0.$i xenhost$i"; done
} >/etc/hosts

for module in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback xen-blkback virtio_net; do
    modprobe "$module" 2>/dev/null
done
mount -t xenfs xenfs /proc/xen || fail "cannot mount xenfs: is this dom0 under Xen?"

# The NICs by MAC (udev renames them): 52:54:00:99:* is the lab network between the hosts,
# 52:54:00:98:* QEMU's user-mode NIC that carries only the harness's ssh (restrict=on).
ip link set lo up
for path in /sys/class/net/*; do
    name=${path##*/}
    case $(cat "$path/address") in
    52:54:00:99:*) ip link set "$name" up && ip addr add "10.99.0.$N/24" dev "$name" ;;
    52:54:00:98:*) ip link set "$name" up && ip addr add 10.0.2.15/24 dev "$name" ;;
    esac
done

mount -t 9p -o trans=virtio,version=9p2000.L,rw san /srv/san || fail "cannot mount the shared storage (9p tag san)"

# /var/lock is /run/lock: xl (resource-agents' Xen agent runs it) locks /var/lock/xl
mkdir -p /var/run/xen /var/lib/xen /var/log/xen/console /run/xenstored /run/libvirt /var/lib/libvirt /var/log/libvirt /run/sshd /run/lock
/usr/sbin/xenstored --pid-file /run/xenstored.pid || fail "xenstored did not start"
sleep 1
/usr/lib/xen-4.17/bin/xen-init-dom0 >/var/log/xen/xen-init-dom0.log 2>&1 || fail "xen-init-dom0 failed"
/usr/sbin/xenconsoled --log=guest --pid-file=/run/xenconsoled.pid || fail "xenconsoled did not start"

mkdir -p /root/.ssh
cp /srv/xenlab/ssh/authorized_keys /root/.ssh/authorized_keys
chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys
/usr/sbin/sshd -o UseDNS=no -o PasswordAuthentication=no || fail "sshd did not start"

# xenha from the project's own .deb, as users install it (not baked into the cached image)
(dpkg -i /srv/xenlab/debs/*.deb >/var/log/xenlab-dpkg.log 2>&1 && echo ok || echo failed) >/run/xenlab-dpkg &
dpkg_job=$!

printf 'listen_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\n' >/etc/libvirt/libvirtd.conf
/usr/sbin/libvirtd --listen >/var/log/libvirtd.out 2>&1 &
for _ in $(seq 300); do
    virsh -c xen:///system version >/dev/null 2>&1 && break
    sleep 1
done
virsh -c xen:///system version >/dev/null 2>&1 || fail "libvirtd (libxl) did not answer: $(tail -3 /var/log/libvirtd.out)"
wait "$dpkg_job"
[ "$(cat /run/xenlab-dpkg)" = ok ] || fail "dpkg -i of the xenha .deb failed: $(tail -3 /var/log/xenlab-dpkg.log)"

touch /run/xenlab-ready
say "READY xenhost$N at $(uptime_s) s: xenha $(dpkg-query -W -f '${Version}' xenha-agents), $(xl info | grep -E '^(total|free)_memory' | tr -s ' ' | tr '\n' ' ')"
# PID 1 reaps what is orphaned to it (the shell's wait takes any child)
while true; do
    wait
    sleep 5
done
