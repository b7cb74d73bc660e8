"""Tiny real guests for the test cluster: 64 MiB TCG, no disk, no NIC, SeaBIOS idling.

``<domain type='qemu'>`` (TCG) boots in ~0.3 CPU-s here, cheaper than KVM; without a disk
SeaBIOS waits at "No bootable device": a real running VM with RAM to migrate. It has no
OS, so it ignores ACPI shutdown: stop it with ``force_stop=true``.
"""

from __future__ import annotations

from xml.sax.saxutils import escape


def tiny_guest_xml(name: str, memory_mib: int = 64) -> str:
    return f"""\
<domain type='qemu'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <currentMemory unit='MiB'>{memory_mib}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""
