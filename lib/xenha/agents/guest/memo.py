"""What xen-guest remembers on a node between actions: a typed record in a state file.

The guest's spec is remembered with the configuration file's fingerprint, so that a monitor,
a stop or a migrate_to whose file has not changed needs no XML parser (performance.md);
the utilization last published is remembered so that an unchanged monitor costs no
cluster call. The domain this resource runs here is remembered by its identity (name,
UUID, ID), so that a monitor recognises its own guest without asking for its owner
metadata, and still finds it after the operator renamed it in the configuration
(docs/decisions/owner-metadata.md). The memo is a cache, never the truth: a file that
cannot be read counts as empty, and its absence only costs a re-read or a search.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from xenha.libvirt.domxml import ConfigFile, DomainSpec, GuestType
from xenha.statefile import StateFile


class RunningDomain(NamedTuple):
    """The domain this resource was last seen running here as, verified to be its own.

    ``domain_id`` is the hypervisor's ID of that running instance: a domain of the same name
    and UUID started later (by hand, from the same file) gets another ID, so it is never
    taken for this one without its owner metadata being read.
    """

    name: str
    uuid: str
    domain_id: int


class Memo(NamedTuple):
    config: str | None = None  # the path the spec was read from
    config_fingerprint: str | None = None  # that file's identity when it was read
    spec: DomainSpec | None = None
    published: Mapping[str, int] = {}  # utilization last written to the CIB
    published_checked_at: float | None = None  # when it was last compared with the CIB (wall clock)
    running: RunningDomain | None = None  # the domain verified as this resource's, while it runs here

    def spec_of(self, path: str, fingerprint: str) -> DomainSpec | None:
        """The remembered spec, if it was read from ``path`` as it is now."""
        if self.config != path or self.config_fingerprint != fingerprint:
            return None
        return self.spec

    def domain_name(self, path: str | None) -> str | None:
        """The remembered domain name, unless it belongs to another configuration file."""
        if self.spec is None or not self.spec.name or (path is not None and self.config != path):
            return None
        return self.spec.name

    def remembering(self, config: ConfigFile, spec: DomainSpec) -> Memo:
        return self._replace(config=config.path, config_fingerprint=config.fingerprint, spec=spec)

    # ---- the file's format (JSON, flat: the keys have not changed since the untyped dict) ---
    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.config is not None:
            data.update(config=self.config, config_fingerprint=self.config_fingerprint)
        if self.spec is not None:
            spec = self.spec
            data.update(domain=spec.name, uuid=spec.uuid, hypervisor_type=spec.hypervisor_type,
                        guest_type=spec.guest_type.value, memory_mib=spec.memory_mib, vcpus=spec.vcpus,
                        video_mib=spec.video_mib)  # fmt: skip
        if self.published_checked_at is not None:
            data.update(published=dict(self.published), published_checked_at=self.published_checked_at)
        if self.running is not None:
            data.update(running_name=self.running.name, running_uuid=self.running.uuid,
                        running_id=self.running.domain_id)  # fmt: skip
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Memo:
        """The record in ``data``; what is malformed is left out (and read afresh)."""
        checked_at = data.get("published_checked_at")
        published = data.get("published")
        valid = isinstance(checked_at, (int, float)) and isinstance(published, dict)
        config = data.get("config")
        fingerprint = data.get("config_fingerprint")
        return cls(
            config=config if isinstance(config, str) else None,
            config_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            spec=_spec(data),
            published=published if valid and isinstance(published, dict) else {},
            published_checked_at=float(checked_at) if valid and isinstance(checked_at, (int, float)) else None,
            running=_running(data),
        )


def _running(data: Mapping[str, Any]) -> RunningDomain | None:
    name, uuid, domain_id = data.get("running_name"), data.get("running_uuid"), data.get("running_id")
    if not isinstance(name, str) or not isinstance(uuid, str) or not isinstance(domain_id, int):
        return None
    return RunningDomain(name, uuid, domain_id)


def _spec(data: Mapping[str, Any]) -> DomainSpec | None:
    try:
        uuid = data.get("uuid")
        return DomainSpec(
            name=str(data["domain"]),
            uuid=uuid if isinstance(uuid, str) else None,
            hypervisor_type=str(data["hypervisor_type"]),
            guest_type=GuestType(data["guest_type"]),
            memory_mib=int(data["memory_mib"]),
            vcpus=int(data["vcpus"]),
            video_mib=int(data.get("video_mib", 0)),
        )
    except (KeyError, TypeError, ValueError):
        return None


class MemoFile:
    """The memo of one resource on this node, read once per action (Pacemaker runs one
    action of a resource at a time)."""

    def __init__(self, directory: str, agent: str, instance: str) -> None:
        self._file = StateFile(directory, agent, instance)
        self._memo: Memo | None = None

    def load(self) -> Memo:
        if self._memo is None:
            self._memo = Memo.from_json(self._file.load())
        return self._memo

    def save(self, memo: Memo) -> None:
        self._memo = memo
        self._file.save(memo.to_json())

    def remove(self) -> None:
        self._memo = Memo()
        self._file.remove()
