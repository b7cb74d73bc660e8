"""Watching the cluster's safety invariant from outside: no guest runs on two hosts at once.

:class:`InvariantMonitor` sweeps every node's libvirtd every ``interval_s`` (through the
node's unix socket, from the root namespaces). A sweep asks all nodes at the same moment,
one worker thread and one connection per node, and waits at most ``answer_timeout_s``: a
frozen or dead node is recorded as not answering and never holds up the others. Within a
sweep, a guest that counts as running on two or more nodes is a :class:`DoubleRun`
(consecutive sweeps with the same nodes extend one record).

A paused incoming migration copy does not count: libvirt shows the destination of a live
migration first as paused with reason "starting up" (seen here: QEMU launched, no guest
code run yet), then as paused with reason "migration"; the source during switch-over is
paused with reason "migration" too.

The monitor also keeps each guest's placement history, from which tests read timings
such as "node crash -> guest running elsewhere".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# libvirt's virDomainState and virDomainPausedReason values (stable ABI).
RUNNING, BLOCKED, PAUSED, SHUTDOWN, SHUTOFF, CRASHED, PMSUSPENDED = 1, 2, 3, 4, 5, 6, 7
PAUSED_MIGRATION = 2
PAUSED_STARTING_UP = 11
NOT_YET_RUN = frozenset({PAUSED_MIGRATION, PAUSED_STARTING_UP})  # paused reasons of copies not yet live
LIVE_STATES = frozenset({RUNNING, BLOCKED, PAUSED, SHUTDOWN, PMSUSPENDED})
STATE_NAMES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown",
               5: "shutoff", 6: "crashed", 7: "pmsuspended"}  # fmt: skip


def counts_as_running(state: int, reason: int) -> bool:
    """True when the domain is a live copy of the guest (it runs, or could just resume).

    A copy paused while it starts up or receives a migration has not run guest code yet.

    >>> counts_as_running(RUNNING, 1), counts_as_running(PAUSED, PAUSED_MIGRATION)
    (True, False)
    >>> counts_as_running(PAUSED, 1), counts_as_running(PAUSED, PAUSED_STARTING_UP)
    (True, False)
    >>> counts_as_running(SHUTOFF, 0)
    False
    """
    if state == PAUSED and reason in NOT_YET_RUN:
        return False
    return state in LIVE_STATES


@dataclass(frozen=True)
class Observation:
    """One node's answer in one sweep (monotonic times)."""

    node: str
    asked_at: float
    answered_at: float
    domains: Mapping[str, tuple[int, int]]  # name -> (state, reason), active domains only
    error: str | None = None


@dataclass(frozen=True)
class DoubleRun:
    guest: str
    nodes: tuple[str, ...]
    first_seen: float  # monotonic, start of the first sweep that saw it
    last_seen: float
    first_seen_wall: float
    sweeps: int
    states: tuple[str, ...]  # "node: state/reason" at first sight

    def describe(self) -> str:
        return (
            f"guest {self.guest} ran on {' and '.join(self.nodes)} at once "
            f"({', '.join(self.states)}) for {self.sweeps} sweep(s), "
            f"{self.last_seen - self.first_seen:.3f} s, from {time.ctime(self.first_seen_wall)}"
        )


@dataclass(frozen=True)
class Placement:
    """Where a guest counted as running from ``since`` on; ``unknown``: nodes that did not answer."""

    guest: str
    nodes: frozenset[str]
    unknown: frozenset[str]
    since: float
    since_wall: float


class _NodeWorker:
    """One thread and one libvirt connection per node; asked once per sweep."""

    def __init__(self, node: str, libvirt: Any) -> None:
        self.node = node
        self._libvirt = libvirt
        self._uri: str | None = None
        self._connection: Any = None
        self._request = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._asked_uri: str | None = None
        self.result: Observation | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"invariants-{node}", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return not self._done.is_set()

    def ask(self, uri: str) -> None:
        self._asked_uri = uri
        self.result = None
        self._done.clear()
        self._request.set()

    def wait(self, timeout_s: float) -> Observation | None:
        if self._done.wait(timeout_s):
            return self.result
        return None

    def stop(self) -> None:
        self._stopping = True
        self._request.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            self._request.wait()
            self._request.clear()
            if self._stopping:
                self._close()
                return
            asked = time.monotonic()
            try:
                domains = self._query(self._asked_uri or "")
                self.result = Observation(self.node, asked, time.monotonic(), domains)
            except self._libvirt.libvirtError as error:
                self._close()
                self.result = Observation(self.node, asked, time.monotonic(), {}, str(error))
            self._done.set()

    def _query(self, uri: str) -> dict[str, tuple[int, int]]:
        if self._connection is None or uri != self._uri:
            self._close()
            self._connection = self._libvirt.open(uri)
            self._uri = uri
        stats = self._connection.getAllDomainStats(
            self._libvirt.VIR_DOMAIN_STATS_STATE, self._libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        )
        return {domain.name(): (int(values["state.state"]), int(values["state.reason"])) for domain, values in stats}

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except self._libvirt.libvirtError:
                pass
        self._connection = None
        self._uri = None


class InvariantMonitor:
    """Background sweeps of every node's libvirtd; see the module docstring.

    ``uris`` is called at every sweep and maps each node to its libvirt URI, or None while
    the node is down (e.g. ``lambda: {n: cluster.libvirt_uri(n) for n in nodes}``).
    """

    def __init__(
        self,
        uris: Callable[[], Mapping[str, str | None]],
        *,
        interval_s: float = 0.15,
        answer_timeout_s: float = 1.0,
    ) -> None:
        import libvirt

        libvirt.registerErrorHandler(lambda _context, _error: None, None)  # no stderr noise
        self._libvirt = libvirt
        self._uris = uris
        self.interval_s = interval_s
        self.answer_timeout_s = answer_timeout_s
        self._workers: dict[str, _NodeWorker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._double_runs: list[DoubleRun] = []
        self._ongoing: dict[tuple[str, tuple[str, ...]], int] = {}  # (guest, nodes) -> index
        self._placements: dict[str, list[Placement]] = {}
        self._unanswered: dict[str, int] = {}
        self.sweeps = 0
        self.slowest_sweep_s = 0.0

    # ---- life cycle --------------------------------------------------------------------------
    def start(self) -> InvariantMonitor:
        self._thread = threading.Thread(target=self._run, name="invariant-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + self.answer_timeout_s + 5.0)
        for worker in self._workers.values():
            worker.stop()
        for worker in self._workers.values():
            worker.join(1.0)  # a worker stuck on a frozen daemon is a daemon thread: left behind

    def __enter__(self) -> InvariantMonitor:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ---- results -----------------------------------------------------------------------------
    @property
    def double_runs(self) -> list[DoubleRun]:
        with self._lock:
            return list(self._double_runs)

    def placements(self, guest: str) -> list[Placement]:
        with self._lock:
            return list(self._placements.get(guest, []))

    def running_on(self, guest: str) -> frozenset[str]:
        history = self.placements(guest)
        return history[-1].nodes if history else frozenset()

    def unanswered(self) -> dict[str, int]:
        """Per node, how many sweeps it did not answer (down, frozen, cut off)."""
        with self._lock:
            return dict(self._unanswered)

    def first_running(self, guest: str, *, after: float, exclude: Iterable[str] = ()) -> Placement | None:
        """The first placement since ``after`` (monotonic) with the guest running on a node
        outside ``exclude``."""
        excluded = set(exclude)
        for placement in self.placements(guest):
            if placement.since >= after and placement.nodes - excluded:
                return placement
        return None

    def wait_running(
        self, guest: str, *, after: float, exclude: Iterable[str] = (), timeout_s: float = 60.0
    ) -> Placement:
        """Wait until :meth:`first_running` finds a placement; raise TimeoutError otherwise."""
        excluded = tuple(exclude)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.first_running(guest, after=after, exclude=excluded)
            if found is not None:
                return found
            time.sleep(self.interval_s / 2)
        history = "; ".join(f"{sorted(p.nodes)} from {p.since:.2f}" for p in self.placements(guest))
        raise TimeoutError(
            f"guest {guest} was not seen running outside {sorted(excluded)} within {timeout_s:.0f} s "
            f"(placements: {history or 'never seen'}; sweeps not answered: {self.unanswered()})"
        )

    def assert_no_double_run(self) -> None:
        found = self.double_runs
        if found:
            raise AssertionError("; ".join(run.describe() for run in found))

    # ---- sweeping ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sweep()
            elapsed = time.monotonic() - started
            self.slowest_sweep_s = max(self.slowest_sweep_s, elapsed)
            self._stop.wait(max(0.0, self.interval_s - elapsed))

    def sweep(self) -> list[Observation]:
        started, started_wall = time.monotonic(), time.time()
        uris = self._uris()
        asked: list[_NodeWorker] = []
        silent: set[str] = set()
        for node, uri in uris.items():
            worker = self._workers.get(node)
            if worker is None:
                worker = self._workers[node] = _NodeWorker(node, self._libvirt)
            if uri is None:
                continue  # node is down: nothing runs there
            if worker.busy:
                silent.add(node)  # still stuck in an earlier call (frozen daemon)
                continue
            worker.ask(uri)
            asked.append(worker)
        deadline = started + self.answer_timeout_s
        observations = []
        for worker in asked:
            observation = worker.wait(max(0.0, deadline - time.monotonic()))
            if observation is None or observation.error is not None:
                silent.add(worker.node)
            else:
                observations.append(observation)
        self._record(observations, silent, started, started_wall)
        self.sweeps += 1
        return observations

    def _record(self, observations: list[Observation], silent: set[str], at: float, at_wall: float) -> None:
        running: dict[str, list[tuple[str, int, int]]] = {}
        for observation in observations:
            for guest, (state, reason) in observation.domains.items():
                if counts_as_running(state, reason):
                    running.setdefault(guest, []).append((observation.node, state, reason))
        with self._lock:
            for node in silent:
                self._unanswered[node] = self._unanswered.get(node, 0) + 1
            ongoing: dict[tuple[str, tuple[str, ...]], int] = {}
            for guest, copies in running.items():
                if len(copies) < 2:
                    continue
                nodes = tuple(sorted(node for node, _, _ in copies))
                key = (guest, nodes)
                if key in self._ongoing:
                    index = self._ongoing[key]
                    previous = self._double_runs[index]
                    self._double_runs[index] = DoubleRun(
                        guest, nodes, previous.first_seen, at, previous.first_seen_wall,
                        previous.sweeps + 1, previous.states,
                    )  # fmt: skip
                else:
                    index = len(self._double_runs)
                    states = tuple(
                        f"{node}: {STATE_NAMES.get(state, state)}/{reason}" for node, state, reason in copies
                    )
                    self._double_runs.append(DoubleRun(guest, nodes, at, at, at_wall, 1, states))
                ongoing[key] = index
            self._ongoing = ongoing
            for guest in set(running) | set(self._placements):
                where = frozenset(node for node, _, _ in running.get(guest, []))
                history = self._placements.setdefault(guest, [])
                if not history or history[-1].nodes != where:
                    history.append(Placement(guest, where, frozenset(silent), at, at_wall))
