"""What the checks know besides the CIB: gathered at the edges (:mod:`xenha.verify.sources`), plain data here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xenha.libvirt.domxml import DomainSpec

DEFAULT_BANDWIDTH_MIB_S = 100  # a 1 Gbit/s migration network, less protocol overhead


@dataclass(frozen=True)
class DomainFile:
    """A guest's domain XML as read on this node: its spec and writable disks, or why not."""

    resource: str
    path: str
    spec: DomainSpec | None = None
    writable_disks: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class NPlusOne:
    """The planner's K=1 answer (``checked`` False: not asked, or ``detail`` says why it could not be)."""

    checked: bool
    tolerated: int | None = None  # host failures tolerated (0 or 1); None: guests stopped with every host up
    headline: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Facts:
    bandwidth_mib_s: int = DEFAULT_BANDWIDTH_MIB_S
    bandwidth_stated: bool = False  # given with --bandwidth (otherwise the default assumption)
    two_node: bool | None = None  # corosync's two_node; None: not known
    two_node_source: str = ""  # where it was read, or why it was not
    domains: Mapping[str, DomainFile] | None = None  # None: the domain XML files were not read
    nplus1: NPlusOne = NPlusOne(False)  # not asked (--no-plan): no finding
