"""Small per-resource state kept under ``HA_RSCTMP`` (a per-boot directory).

Written atomically (a temporary file renamed over the old one) and created 0600, so a
crash mid-write never leaves half a file and nothing in it is readable by other users.
A file that cannot be parsed counts as absent: state is a cache, never the truth.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


class StateFile:
    def __init__(self, directory: str, agent: str, instance: str) -> None:
        safe_instance = _UNSAFE.sub("_", instance) or "default"
        self.directory = directory
        self.path = os.path.join(directory, f"xenha-{agent}-{safe_instance}.json")

    def load(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: Mapping[str, Any]) -> bool:
        """Replace the state; False when the directory is not writable (state is optional)."""
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(dict(data), handle, sort_keys=True)
            os.replace(temporary, self.path)
        except OSError:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            return False
        return True

    def update(self, **changes: Any) -> dict[str, Any]:
        data = self.load()
        data.update(changes)
        self.save(data)
        return data

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass
