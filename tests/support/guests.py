"""Guests for tests: the one domain-XML builder of the suite, for libvirt's test driver and for
tiny real QEMU guests (64 MiB TCG, no disk, no NIC, SeaBIOS idling).

``<domain type='qemu'>`` (TCG) boots in ~0.3 CPU-s here, cheaper than KVM; without a disk
SeaBIOS waits at "No bootable device": a real running VM with RAM to migrate. It has no
OS, so it ignores ACPI shutdown: stop it with ``force_stop=true``.

Such a guest's memory is almost all zero pages, which a live migration sends as flags: it
takes half a second whatever the bandwidth limit. To keep a migration in flight long
enough to break something under it, a guest can boot :func:`filler_boot_image` from a
read-only floppy instead: it writes FILLED_MIB of non-zero memory once, then halts, so a
migration limited to N MiB/s (xen-guest ``migration_speed``) takes FILLED_MIB / N seconds.
SeaBIOS takes a second or more to reach the floppy: a test waits until the last word the
filler writes (FILLED_LAST_WORD, written last: the fill runs upwards) holds FILLED_PATTERN
before it migrates (scenario.Scenario.wait_filled).
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

FILLED_MIB = 48
FILLED_START = 0x100000  # 1 MiB, above the BIOS
FILLED_LAST_WORD = FILLED_START + FILLED_MIB * 2**20 - 4  # guest-physical address
FILLED_PATTERN = bytes.fromhex("a5a55a5a")  # 0x5a5aa5a5, little-endian, as stosd stores it
FLOPPY_BYTES = 1474560

# Boot sector (real mode, loaded at 0x7c00): enter "unreal" mode to reach memory above
# 1 MiB, fill 1 MiB .. 49 MiB with 0x5a5aa5a5, halt with interrupts off (no CPU used).
#   cli; cld; xor ax,ax; mov ds,ax; lgdt [gdtr]     ; gdt: null, flat 4 GiB data segment
#   mov eax,cr0; or al,1; mov cr0,eax               ; protected mode, for one load:
#   mov bx,8; mov es,bx                             ; ES limit 4 GiB
#   and al,0xfe; mov cr0,eax                        ; back to real mode; ES keeps its limit
#   mov edi,0x100000; mov ecx,0xc00000; mov eax,0x5a5aa5a5; a32 rep stosd
#   halt: hlt; jmp halt
# (assembled with GNU as --32 .code16; objdump -M i8086 shows the listing above)
_FILLER_CODE = bytes.fromhex(
    "fafc31c08ed8660f0116487c0f20c00c010f22c0bb08008ec324fe0f22c0"
    "66bf0000100066b90000c00066b8a5a55a5a6766f3abf4ebfd90"
    "0000000000000000ffff00000092cf00"  # gdt (at 0x7c38)
    "0f00387c0000"  # gdtr (at 0x7c48): limit 15, base 0x7c38
)


def filler_boot_image() -> bytes:
    """A 1.44 MB floppy image whose boot sector fills FILLED_MIB of guest memory."""
    sector = _FILLER_CODE + bytes(510 - len(_FILLER_CODE)) + b"\x55\xaa"
    return sector + bytes(FLOPPY_BYTES - len(sector))


def domain_xml(
    name: str,
    driver: str = "qemu",
    memory_mib: int = 64,
    vcpus: int = 1,
    os_type: str = "hvm",
    machine: str | None = None,
    boot_image: str | None = None,
) -> str:
    """A domain for libvirt's ``test`` driver, or a tiny real guest for the ``qemu`` driver.

    ``boot_image`` (qemu only): a floppy image to boot, read-only and shared
    (:func:`filler_boot_image`).

    >>> "<devices>" in domain_xml("t", driver="test"), "machine='pc'" in domain_xml("q")
    (False, True)
    """
    qemu = driver == "qemu"
    machine = machine or ("pc" if qemu else None)
    machine_attribute = f" machine='{machine}'" if machine else ""
    boot = "\n    <boot dev='fd'/>" if boot_image else ""
    parts = [
        f"<domain type='{driver}'>",
        f"  <name>{escape(name)}</name>",
        f"  <memory unit='MiB'>{memory_mib}</memory>",
        f"  <currentMemory unit='MiB'>{memory_mib}</currentMemory>",
        f"  <vcpu>{vcpus}</vcpu>",
        "  <os>",
        f"    <type arch='x86_64'{machine_attribute}>{escape(os_type)}</type>{boot}",
        "  </os>",
    ]
    if qemu:
        parts += ["  <features><acpi/></features>", "  <clock offset='utc'/>"]
    parts += [
        "  <on_poweroff>destroy</on_poweroff>",
        "  <on_reboot>restart</on_reboot>",
        "  <on_crash>destroy</on_crash>",
    ]
    if qemu:
        parts += ["  <devices>", "    <emulator>/usr/bin/qemu-system-x86_64</emulator>"]
        if boot_image:
            parts += [
                "    <disk type='file' device='floppy'>",
                "      <driver name='qemu' type='raw'/>",
                f"      <source file={quoteattr(boot_image)}/>",
                "      <target dev='fda' bus='fdc'/>",
                "      <readonly/>",
                "    </disk>",
            ]
        parts += ["    <controller type='usb' model='none'/>", "    <memballoon model='none'/>", "  </devices>"]
    return "\n".join([*parts, "</domain>", ""])
