"""What Pacemaker tells an agent through its environment, read once into a value object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

from xenha.booleans import is_true

PARAM_PREFIX = "OCF_RESKEY_"
META_PREFIX = "OCF_RESKEY_CRM_meta_"
DEFAULT_RSCTMP = "/run/resource-agents"


def _milliseconds(text: str | None) -> int | None:
    """Pacemaker passes timeout and interval in milliseconds; anything else counts as absent."""
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit():
        return None
    return int(text)


def _ocf_version(major: str | None, minor: str | None) -> tuple[int, int] | None:
    if major is None or not major.strip().isdigit():
        return None
    minor_number = int(minor) if minor is not None and minor.strip().isdigit() else 0
    return (int(major), minor_number)


class OcfEnvironment(NamedTuple):
    """One action's view of the OCF environment.

    Nothing here is read at import time: agents build it from ``os.environ`` in ``main``,
    tests build it from a plain dictionary.
    """

    action: str
    instance: str
    params: Mapping[str, str]
    meta: Mapping[str, str]
    timeout_ms: int | None = None
    interval_ms: int = 0
    rsctmp: str = DEFAULT_RSCTMP
    ocf_version: tuple[int, int] | None = None
    log_facility: str | None = None
    log_file: str | None = None
    debug_log: str | None = None
    debug: bool = False

    @classmethod
    def from_environ(cls, action: str, environ: Mapping[str, str]) -> OcfEnvironment:
        params = {
            key[len(PARAM_PREFIX) :]: value
            for key, value in environ.items()
            if key.startswith(PARAM_PREFIX) and not key.startswith(META_PREFIX)
        }
        meta = {key[len(META_PREFIX) :]: value for key, value in environ.items() if key.startswith(META_PREFIX)}
        return cls(
            action=action,
            instance=environ.get("OCF_RESOURCE_INSTANCE") or "default",
            params=params,
            meta=meta,
            timeout_ms=_milliseconds(meta.get("timeout")),
            interval_ms=_milliseconds(meta.get("interval")) or 0,
            rsctmp=environ.get("HA_RSCTMP") or DEFAULT_RSCTMP,
            ocf_version=_ocf_version(environ.get("OCF_RA_VERSION_MAJOR"), environ.get("OCF_RA_VERSION_MINOR")),
            log_facility=environ.get("HA_LOGFACILITY"),
            log_file=environ.get("HA_LOGFILE"),
            debug_log=environ.get("HA_DEBUGLOG"),
            debug=is_true(environ.get("HA_debug")) or is_true(environ.get("HA_DEBUG")),
        )

    @property
    def is_probe(self) -> bool:
        """A monitor with interval 0: Pacemaker asking "is it running here?" on every node."""
        return self.action in ("monitor", "status") and self.interval_ms == 0

    @property
    def migrate_source(self) -> str | None:
        return self.meta.get("migrate_source") or None

    @property
    def migrate_target(self) -> str | None:
        return self.meta.get("migrate_target") or None

    @property
    def node_name(self) -> str:
        """The node this action runs on: as Pacemaker names it, else the host name."""
        return self.meta.get("on_node") or os.uname().nodename
