#!/usr/bin/python3
"""Benchmark of ``xenha verify`` on synthetic clusters (the issue's goal: 32 hosts x 1000
guests answered in under 2 seconds).

Each run is ``bin/xenha verify --cib FILE --json`` as a user runs it: a fresh process
(interpreter start, parsing, every check, the N+1 check). On an N+1-safe cluster the
planner's proof settles N+1 without the scheduler; on one that is not, the scheduler runs
one scenario per core and verify stops at the first batch that leaves a guest stopped. With
a node-health strategy the proof steps aside (one of its preconditions), so every scenario
goes to the scheduler even on a safe cluster: the last row measures that.
Timings are medians of ``--repeat`` runs (wall and CPU); the exit status and the number
of findings are checked to be the same on every run.

Prints a markdown table; exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from plan_bench import timed_cpu

from xenha.planner.synthetic import SyntheticSpec, generate_cib

XENHA = os.path.join(ROOT, "bin", "xenha")


@dataclass(frozen=True)
class Case:
    label: str
    spec: SyntheticSpec
    goal_seconds: float | None
    health_strategy: str | None = None  # node-health-strategy: the planner's proof then steps aside


CASES = (
    Case("16 x 400, N+1-safe", SyntheticSpec(16, 400, 114688, 96), 2.0),
    Case("32 x 1000, N+1-safe", SyntheticSpec(32, 1000, 131072, 128), 2.0),
    Case("32 x 1000, N+1-safe, --no-plan", SyntheticSpec(32, 1000, 131072, 128), 2.0),
    Case("32 x 1000, not N+1 (scheduler)", SyntheticSpec(32, 1000, 118784, 128), None),
    Case(
        "16 x 400, N+1-safe, node-health-strategy (scheduler)",
        SyntheticSpec(16, 400, 114688, 96),
        None,
        "migrate-on-red",
    ),
)
BOOTSTRAP = '<cluster_property_set id="cib-bootstrap-options">'


def cib_text(case: Case) -> str:
    text = generate_cib(case.spec)
    if case.health_strategy is None:
        return text
    option = f'<nvpair id="bench-nhs" name="node-health-strategy" value="{case.health_strategy}"/>'
    return text.replace(BOOTSTRAP, BOOTSTRAP + option, 1)


def run(case: Case, directory: str, repeat: int) -> tuple[str, bool]:
    name = f"{case.spec.hosts}x{case.spec.guests}-{case.spec.host_memory_mib}-{case.health_strategy}.xml"
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        with open(path, "w") as handle:
            handle.write(cib_text(case))
    argv = [XENHA, "verify", "--cib", path, "--json"]
    if "--no-plan" in case.label:
        argv.append("--no-plan")
    walls, cpus, outcomes = [], [], set()
    runs = repeat if case.goal_seconds is not None else 1
    for _ in range(runs):
        wall, cpu, completed = timed_cpu(argv, 600)
        document = json.loads(completed.stdout)
        walls.append(wall)
        cpus.append(cpu)
        outcomes.add((completed.returncode, len(document.get("findings", ())), document.get("headline", "")))
    if len(outcomes) != 1:
        raise SystemExit(f"{case.label}: runs disagree: {outcomes}")
    ((code, count, _),) = outcomes
    nplus1 = [finding for finding in document["findings"] if finding["check"] == "n-plus-one"]
    verdict = nplus1[0]["problem"].split(";")[0] if nplus1 else ("not checked" if "--no-plan" in case.label else "N+1")
    wall = statistics.median(walls)
    met = case.goal_seconds is None or wall <= case.goal_seconds
    goal = "" if case.goal_seconds is None else f"<= {case.goal_seconds:g} s"
    mark = "" if case.goal_seconds is None else (" (met)" if met else " (MISSED)")
    row = (
        f"| {case.label} | {wall:.2f} | {statistics.median(cpus):.2f} | {runs} | {code} | {count} | {verdict} | "
        f"{goal}{mark} |"
    )
    return row, met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median)")
    args = parser.parse_args()
    print(f"### xenha verify on synthetic clusters ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print()
    print("| cluster | wall s | CPU s | runs | exit | findings | N+1 | goal |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    all_met = True
    with tempfile.TemporaryDirectory(prefix="xenha-verify-bench-") as directory:
        for case in CASES:
            row, met = run(case, directory, args.repeat)
            all_met = all_met and met
            print(row, flush=True)
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
