"""Where the CIB comes from: a file (``--cib``), or the cluster this runs in.

The live CIB is read once with ``cibadmin --query`` (which honours ``CIB_file``) and saved
to a private file, so that every scenario of one plan sees the same snapshot even if the
cluster changes meanwhile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from xenha.planner.model import CibError
from xenha.runner import CommandRunner

QUERY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CibSnapshot:
    data: bytes
    path: str  # a file crm_simulate can read
    label: str  # for reports: the file name, or "live CIB"


def read_cib_file(path: str) -> CibSnapshot:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise CibError(f"{path} does not exist: give a CIB saved with 'cibadmin --query > FILE'") from None
    except OSError as error:
        raise CibError(f"cannot read {path}: {error.strerror}") from None
    if not data.strip():
        raise CibError(f"{path} is empty: give a CIB saved with 'cibadmin --query > FILE'")
    return CibSnapshot(data, os.path.abspath(path), path)


def query_live_cib(runner: CommandRunner, directory: str) -> CibSnapshot:
    result = runner.run(["cibadmin", "--query"], timeout_s=QUERY_TIMEOUT_S)
    if result.not_started is not None:
        raise CibError("cibadmin is not installed: install pacemaker-cli-utils, or give a CIB file with --cib FILE")
    if not result.ok:
        raise CibError(
            f"cannot read the live CIB ({result.describe()}): run this on a cluster node, "
            "or give a CIB file with --cib FILE"
        )
    data = result.stdout.encode()
    return CibSnapshot(data, write_private(directory, "cib.xml", data), "live CIB")


def write_private(directory: str, name: str, data: bytes) -> str:
    """Write ``data`` to ``directory/name``, readable by this user only; the path."""
    path = os.path.join(directory, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    return path
