"""Shared pytest set-up: the package under test comes from this checkout."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "lib", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
