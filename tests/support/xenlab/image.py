"""The Xen lab's disk image: a Debian 12 dom0 built by mmdebstrap, cached under build/.

The image holds Debian's packages only (Xen 4.17, libvirt's libxl driver, Pacemaker,
corosync, pcs, resource-agents for ocf-tester) plus a tiny first process
(``dom0-boot.sh``) that hands over to the per-run init on the lab's share. xenha itself is
NOT in the image: the lab installs the project's .deb at every boot, so that a change of
the code never rebuilds the root filesystem.

The cache key is a hash of everything that goes into the image: the suite, the mirrors,
the package list, the build steps (``_build``'s source) and the two scripts baked in. A changed key builds a
new image and then removes the images of other keys.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
DOM0_PACKAGES = (
    # Xen and the dom0 kernel (Debian's own: PV-capable, boots as dom0 and as a PV guest)
    "xen-hypervisor-4.17-amd64",
    "xen-utils-4.17",
    "linux-image-amd64",
    # libvirt with the libxl driver, and what xenha's .deb depends on
    "libvirt-daemon",
    "libvirt-daemon-driver-xen",
    "libvirt-clients",
    "python3-libvirt",
    "python3-lxml",
    "pacemaker-cli-utils",
    # the cluster stack (issue 11 item 6) and ocf-tester (resource-agents)
    "pacemaker",
    "corosync",
    "pcs",
    "resource-agents",
    # fencing by SBD on the lab's shared disk (docs/decisions/xen-cluster.md): the sbd daemon
    # and fence_sbd (Debian's fence-agents; mmdebstrap installs no Recommends)
    "sbd",
    "fence-agents",
    "libxml2-utils",  # xmllint: ocf-tester checks the meta-data with it
    # the lab's plumbing: boot without an init system, ssh for the harness, guests' busybox
    "busybox-static",
    "iproute2",
    "kmod",
    "udev",
    "procps",
    "openssh-server",
)
# libvirt-daemon pulls in the qemu driver, whose start fails without the libvirt-qemu user
# and takes libvirtd down with it (HARNESS.md section 6): the dom0 runs only libxl.
QEMU_DRIVER = "usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"
DISK_SIZE = "4G"
BAKED_SCRIPTS = ("dom0-boot.sh", "guest-init.sh")


@dataclass(frozen=True)
class Image:
    """The cached files a Xen host boots from (read-only: hosts write to overlays)."""

    directory: Path

    @property
    def xen(self) -> Path:
        """Xen's uncompressed ELF: QEMU's multiboot loader does not take the .gz."""
        return self.directory / "xen"

    @property
    def kernel(self) -> Path:
        """Debian's kernel: dom0's, and the PV guests' too."""
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.directory / "disk.img"

    @property
    def guest_initrd(self) -> Path:
        return self.directory / "guest-initrd.gz"


def cache_key() -> str:
    digest = hashlib.sha256()
    for part in (SUITE, *MIRRORS, *DOM0_PACKAGES, QEMU_DRIVER, DISK_SIZE):
        digest.update(part.encode() + b"\0")
    for name in BAKED_SCRIPTS:
        digest.update((HERE / name).read_bytes() + b"\0")
    for recipe in (_build, _guest_initramfs):  # the steps themselves, not this module's prose
        digest.update(inspect.getsource(recipe).encode() + b"\0")
    return digest.hexdigest()[:16]


def cached_image(cache: Path) -> Image | None:
    image = Image(cache / cache_key())
    return image if (image.directory / "complete").exists() else None


def ensure_image(cache: Path, log: Path) -> tuple[Image, float]:
    """The image for today's key, built when absent; and the seconds spent building it."""
    image = cached_image(cache)
    if image is not None:
        return image, 0.0
    started = time.monotonic()
    image = Image(cache / cache_key())
    partial = image.directory.with_name(image.directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _build(Image(partial), log)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / "complete").write_text(cache_key() + "\n")
    partial.rename(image.directory)
    prune_images(cache)  # images of older recipes: ~1 GiB each, never used again
    return image, time.monotonic() - started


def prune_images(cache: Path) -> list[Path]:
    """Remove cached images of other keys (old recipes); returns what was removed."""
    keep = cache_key()
    removed = [entry for entry in cache.iterdir() if entry.name != keep] if cache.exists() else []
    for entry in removed:
        shutil.rmtree(entry, ignore_errors=True)
    return removed


def _run(argv: list[str], log: Path, timeout: float) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        completed = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"xenlab image: {argv[0]} failed (exit {completed.returncode}); see {log}")


def _build(image: Image, log: Path) -> None:
    rootdir = image.directory / "rootdir"
    log.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--include=" + ",".join(DOM0_PACKAGES),
            f'--customize-hook=rm -f "$1"/{QEMU_DRIVER}',
            SUITE,
            str(rootdir),
            *MIRRORS,
        ],
        log,
        timeout=1800,
    )
    boot = rootdir / "sbin" / "xenlab-boot"
    shutil.copyfile(HERE / "dom0-boot.sh", boot)
    boot.chmod(0o755)
    with gzip.open(next((rootdir / "boot").glob("xen-4.17-amd64.gz")), "rb") as compressed:
        image.xen.write_bytes(compressed.read())
    shutil.copyfile(next((rootdir / "boot").glob("vmlinuz-*")), image.kernel)
    shutil.copyfile(next((rootdir / "boot").glob("initrd.img-*")), image.initrd)
    _guest_initramfs(rootdir / "bin" / "busybox", image.guest_initrd, log)
    _run(["mkfs.ext4", "-q", "-d", str(rootdir), "-L", "xenlab-root", str(image.disk), DISK_SIZE], log, timeout=900)
    shutil.rmtree(rootdir)


def _guest_initramfs(busybox: Path, target: Path, log: Path) -> None:
    """A busybox initramfs for PV guests (busybox-static: the guest has no libc)."""
    tree = target.with_suffix(".tree")
    shutil.rmtree(tree, ignore_errors=True)
    for directory in ("bin", "proc", "sys", "dev"):
        (tree / directory).mkdir(parents=True)
    shutil.copyfile(busybox, tree / "bin" / "busybox")
    (tree / "bin" / "busybox").chmod(0o755)
    shutil.copyfile(HERE / "guest-init.sh", tree / "init")
    (tree / "init").chmod(0o755)
    files = subprocess.run(["find", "."], cwd=tree, capture_output=True, check=True).stdout
    archive = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=files, capture_output=True, check=True
    ).stdout
    target.write_bytes(gzip.compress(archive))
    shutil.rmtree(tree)
    with log.open("a") as out:
        out.write(f"guest initramfs {target}: {target.stat().st_size} bytes\n")
