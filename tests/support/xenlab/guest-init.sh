#!/bin/busybox sh
# init of the lab's PV guests (a busybox initramfs). On the kernel command line,
# "xenlab.after=N xenlab.then=reboot|poweroff|crash" makes the guest do that by itself N
# seconds after it booted (a guest rebooting itself, powering off, or its kernel crashing);
# without them it idles. It ignores the shutdown request of a graceful stop (PID 1 does not
# act on busybox poweroff's signal), like a guest that hangs on shutdown.
/bin/busybox --install -s /bin
mount -t proc proc /proc
echo "XENLAB GUEST UP: $(cat /proc/cmdline)"
after=$(sed -n 's/.*xenlab\.after=\([0-9]*\).*/\1/p' /proc/cmdline)
then=$(sed -n 's/.*xenlab\.then=\([a-z]*\).*/\1/p' /proc/cmdline)
if [ -n "$after" ]; then
    sleep "$after"
    echo "XENLAB GUEST: $then"
    case $then in
    reboot) reboot -f ;;
    poweroff) poweroff -f ;;
    crash) echo c >/proc/sysrq-trigger ;;
    esac
fi
while true; do sleep 3600; done
