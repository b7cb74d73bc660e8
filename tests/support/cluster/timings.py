"""Named moments of a scenario and the spans between them, for printing measured timings.

    watch = Stopwatch()
    watch.mark("crash")
    ...
    watch.mark("running elsewhere", at=placement.since)
    print(watch.report())     # crash +0.000 s / running elsewhere +4.812 s

All times are ``time.monotonic()`` values, like the invariant monitor's.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Stopwatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.marks: dict[str, float] = {}

    def mark(self, name: str, at: float | None = None) -> float:
        moment = self._clock() if at is None else at
        self.marks[name] = moment
        return moment

    def between(self, first: str, second: str) -> float:
        return self.marks[second] - self.marks[first]

    def since(self, name: str) -> float:
        return self._clock() - self.marks[name]

    def report(self, title: str = "") -> str:
        if not self.marks:
            return f"{title}: nothing measured" if title else "nothing measured"
        origin = min(self.marks.values())
        lines = [title] if title else []
        for name, moment in sorted(self.marks.items(), key=lambda item: item[1]):
            lines.append(f"  {name:<40} +{moment - origin:7.3f} s")
        return "\n".join(lines)
