"""The packages in dist/ (``make packages``), installed the way an operator installs them.

The .deb is installed on this machine with dpkg, every check runs from the installed files
only (from /, with no PYTHONPATH and the distribution's PATH), and the package is purged
at the end, leaving dpkg's view of the system exactly as it was. The .rpm cannot be
installed on Debian; its file list is compared with the .deb's.

Run by ``make package-test``, which builds the packages first.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

import xenha

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
VERSION = xenha.__version__
PACKAGE = "xenha-agents"
DEB = DIST / f"{PACKAGE}_{VERSION}_all.deb"
AGENT_NAMES = sorted(path.name for path in (REPO / "agents").iterdir())
OCF_DIR = Path("/usr/lib/ocf/resource.d/xenha")
SITE = Path("/usr/lib/python3/dist-packages")
MAN7 = Path("/usr/share/man/man7")
# Everything the package puts on the system, checked absent before and after.
INSTALLED_PATHS = [
    OCF_DIR,
    SITE / "xenha",
    SITE / f"xenha-{VERSION}.dist-info",
    Path("/usr/bin/xenha"),
    Path(f"/usr/share/doc/{PACKAGE}"),
    Path("/usr/share/man/man1/xenha.1.gz"),
    *(MAN7 / f"ocf_xenha_{agent}.7.gz" for agent in AGENT_NAMES),
]
OCF_1_1 = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}


def installed_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without anything that could point Python at this checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTHON") and key not in ("VIRTUAL_ENV", "PYENV_VERSION")
    }
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    env["LC_ALL"] = "C.UTF-8"
    env.update(extra or {})
    return env


def run(argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A command run from /, as an operator on the cluster node would."""
    return subprocess.run(
        argv, cwd="/", env=installed_environment(extra_env), capture_output=True, text=True, timeout=120
    )


def dpkg_state() -> list[str]:
    listed = run(["dpkg-query", "-W", "-f", "${Package}:${Architecture} ${Version} ${db:Status-Abbrev}\n"])
    assert listed.returncode == 0, listed.stderr
    return sorted(listed.stdout.splitlines())


def rpm_file() -> Path:
    found = sorted(DIST.glob(f"{PACKAGE}-{VERSION}-*.noarch.rpm"))
    assert len(found) == 1, f"expected one {PACKAGE} {VERSION} RPM in {DIST}, found {found}: run make packages"
    return found[0]


@pytest.fixture(scope="module")
def system_before() -> list[str]:
    assert DEB.is_file(), f"{DEB} is missing: run make packages (make package-test does)"
    status = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", PACKAGE])
    assert status.returncode != 0 or not status.stdout.startswith("ii"), (
        f"{PACKAGE} is already installed on this machine; this test installs and purges it: "
        f"remove it first (dpkg --purge {PACKAGE})"
    )
    present = [str(path) for path in INSTALLED_PATHS if path.exists()]
    assert not present, f"files of {PACKAGE} are already on this machine: {present}"
    return dpkg_state()


@pytest.fixture(scope="module")
def installed(system_before: list[str]) -> Iterator[None]:
    result = run(["dpkg", "--install", str(DEB)])
    try:
        assert result.returncode == 0, (
            f"dpkg --install failed (are the dependencies installed? tools/install-deps):\n{result.stdout}{result.stderr}"
        )
        yield
    finally:
        # normally test_purge_leaves_the_system_as_before has purged it already
        if run(["dpkg-query", "-W", PACKAGE]).returncode == 0:
            run(["dpkg", "--purge", PACKAGE])


def test_python_imports_the_installed_package(installed: None) -> None:
    shown = run(["python3", "-c", "import xenha; print(xenha.__file__, xenha.__version__)"])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [str(SITE / "xenha" / "__init__.py"), VERSION]


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_installed_agent_prints_metadata_from_the_installed_package(installed: None, agent: str) -> None:
    executable = OCF_DIR / agent
    assert os.access(executable, os.X_OK)
    # python3 -v lists every module file it loads: xenha's must come from dist-packages
    shown = run(["/usr/bin/python3", "-I", "-v", str(executable), "meta-data"], OCF_1_1)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f'<resource-agent name="{agent}" version="{VERSION}">' in shown.stdout
    assert "<version>1.1</version>" in shown.stdout
    loaded = [line for line in shown.stderr.splitlines() if "xenha" in line and ".py" in line]
    assert any(str(SITE / "xenha") in line for line in loaded), loaded
    assert not any(str(REPO) in line for line in loaded), loaded
    # exactly what the checkout's agent says: the same code, installed
    checkout = subprocess.run(
        [str(REPO / "agents" / agent), "meta-data"], env=installed_environment(OCF_1_1), capture_output=True, text=True
    )
    plain = run([str(executable), "meta-data"], OCF_1_1)
    assert plain.returncode == 0 and plain.stderr == ""
    assert plain.stdout == checkout.stdout


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_pacemaker_finds_the_installed_agent(installed: None, agent: str) -> None:
    shown = run(["crm_resource", "--show-metadata", f"ocf:xenha:{agent}"])
    assert shown.returncode == 0, shown.stderr
    assert f'<resource-agent name="{agent}"' in shown.stdout


def test_pcs_describes_the_installed_guest_agent(installed: None) -> None:
    described = run(["pcs", "resource", "describe", "ocf:xenha:xen-guest"])
    assert described.returncode == 0, described.stderr
    assert "ocf:xenha:xen-guest" in described.stdout
    assert "Resource options:" in described.stdout and "  config (required):" in described.stdout
    assert "Default operations:" in described.stdout


def test_crmsh_describes_the_installed_host_agent(installed: None) -> None:
    described = run(["crm", "ra", "info", "ocf:xenha:xen-host"])
    assert described.returncode == 0, described.stdout + described.stderr
    assert "ERROR" not in described.stdout + described.stderr
    assert "(ocf:xenha:xen-host)" in described.stdout
    assert "Operations' defaults" in described.stdout


def test_xenha_command_is_installed(installed: None) -> None:
    where = run(["sh", "-c", "command -v xenha"])
    assert where.stdout.strip() == "/usr/bin/xenha"
    helped = run(["xenha", "--help"])
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: xenha")
    for command in ("plan", "check-add", "status"):
        assert command in helped.stdout
    version = run(["xenha", "--version"])
    assert (version.returncode, version.stdout.strip()) == (0, f"xenha {VERSION}")


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        *(
            (f"ocf_xenha_{agent}", ["SUPPORTED PARAMETERS", "SUPPORTED ACTIONS", "EXAMPLE PCS"])
            for agent in AGENT_NAMES
        ),
        ("xenha", ["SYNOPSIS", "check-add", "--failures K"]),
    ],
)
def test_man_pages_are_installed_and_render_cleanly(installed: None, page: str, expected: list[str]) -> None:
    located = run(["man", "-w", page])
    assert located.returncode == 0, located.stderr
    path = located.stdout.strip()
    assert path.startswith("/usr/share/man/man") and path.endswith(".gz")
    # as lintian renders pages: any groff warning is printed on stderr
    rendered = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", path], {"MANWIDTH": "80"})
    assert rendered.returncode == 0 and rendered.stderr == "", rendered.stderr
    text = run(["man", "-P", "cat", "-l", path], {"MANWIDTH": "80"}).stdout
    assert text.splitlines()[0].split()[0].lower() == f"{page}({path.split('/')[-2][3:]})"
    for heading in expected:
        assert heading in text


def test_package_versions_come_from_the_package_version() -> None:
    deb_version = run(["dpkg-deb", "--field", str(DEB), "Version"]).stdout.strip()
    rpm_version = run(["rpm", "-qp", "--qf", "%{VERSION}", str(rpm_file())]).stdout.strip()
    assert deb_version == rpm_version == VERSION


def test_packages_declare_the_runtime_dependencies() -> None:
    depends = run(["dpkg-deb", "--field", str(DEB), "Depends"]).stdout
    # Names, not substrings: "python3" is a substring of "python3-libvirt".
    names = {re.split(r"[\s:(]", item.strip())[0] for group in depends.split(",") for item in group.split("|")}
    for package in ("python3-libvirt", "python3-lxml", "pacemaker-cli-utils", "python3"):
        assert package in names, depends
    requires = run(["rpm", "-qpR", str(rpm_file())]).stdout.split()
    for package in ("python3-libvirt", "python3-lxml", "pacemaker-cli", "python3"):
        assert package in requires


def package_files(listing: list[tuple[str, bool]]) -> set[str]:
    """Files (not directories), with the documentation conventions of each system factored out."""
    files = set()
    for path, is_directory in listing:
        if is_directory or "__pycache__" in path:
            continue
        # Debian gzips larger documents; RPM-based systems do not
        document = path.startswith(f"/usr/share/doc/{PACKAGE}/") and not path.endswith("changelog.gz")
        files.add(path.removesuffix(".gz") if document else path)
    return files


def test_rpm_installs_the_same_files_as_the_deb() -> None:
    deb_listing = run(["dpkg-deb", "--contents", str(DEB)]).stdout.splitlines()
    deb = package_files(
        [(str(PurePosixPath("/", line.split()[5])), line.startswith("d")) for line in deb_listing if line.strip()]
    )
    rpm_listing = run(["rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", str(rpm_file())]).stdout
    rpm = package_files([(line.split(" ", 1)[1], line.startswith("d")) for line in rpm_listing.splitlines() if line])
    debian_only = {f"/usr/share/doc/{PACKAGE}/copyright", f"/usr/share/doc/{PACKAGE}/changelog.gz"}
    rpm_only = {f"/usr/share/licenses/{PACKAGE}/COPYING"}
    assert deb - debian_only == rpm - rpm_only
    assert debian_only <= deb and rpm_only <= rpm
    assert {str(OCF_DIR / agent) for agent in AGENT_NAMES} <= rpm
    assert "/usr/bin/xenha" in rpm and str(SITE / "xenha" / "__init__.py") in rpm
    # rpm -qlp, the listing operators read
    listed = run(["rpm", "-qlp", str(rpm_file())]).stdout.splitlines()
    assert set(listed) >= rpm


def test_purge_leaves_the_system_as_before(installed: None, system_before: list[str]) -> None:
    purged = run(["dpkg", "--purge", PACKAGE])
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert dpkg_state() == system_before
    left = [str(path) for path in INSTALLED_PATHS if path.exists()]
    assert not left, f"left behind after purge: {left}"
