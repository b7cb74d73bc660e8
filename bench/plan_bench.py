#!/usr/bin/python3
"""Benchmark of ``xenha plan`` against the naive loop and Ganeti's ``hcheck``.

For each synthetic cluster (N hosts x M guests, a running cluster's status section):

* **naive** — one ``crm_simulate --simulate --node-fail`` per scenario, one after another,
  reading the revised status (what an operator can do by hand today). On the large
  clusters that takes 20-40 minutes per cluster, so by default it is *sampled*: a few
  scenarios are timed and the time is extrapolated to all of them (the table says so);
  ``--naive full`` runs it all.
* **xenha** — ``bin/xenha plan --cib FILE --failures K --json``, as a user runs it (a
  fresh process: interpreter start, parsing, proof, scheduler runs on both cores).
* **hcheck** — ``hcheck -t FILE`` from ganeti-htools on the same cluster converted to
  htools' text format (xenha.planner.htools), when it is installed.

Every verdict of xenha is compared with the naive loop's on the scenarios the naive loop
ran (all of them, or the sample): a mismatch fails the benchmark.

Prints a markdown table. Fast commands are timed as the median of several runs,
interleaved with hcheck's, so that load from other processes weighs on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))

from xenha.planner.cibmodel import parse_cib
from xenha.planner.htools import to_htools_text
from xenha.planner.naive import run_naive
from xenha.planner.scenarios import enumerate_scenarios
from xenha.planner.synthetic import SyntheticSpec, generate_cib
from xenha.runner import CommandRunner, find_tool

XENHA = os.path.join(ROOT, "bin", "xenha")
CORES = os.cpu_count() or 1


@dataclass(frozen=True)
class Case:
    label: str
    spec: SyntheticSpec
    failures: int
    goal: str  # "hcheck x2" or "<= N s"
    goal_seconds: float | None = None


CASES = {
    "small": [
        Case("8 x 100, N+1-safe", SyntheticSpec(8, 100, 65536, 64), 1, "hcheck x2"),
        Case("8 x 100, not N+1", SyntheticSpec(8, 100, 51200, 64), 1, "<= 10 s", 10.0),
        Case("8 x 100, K=2, all by scheduler", SyntheticSpec(8, 100, 61440, 64), 2, "<= 90 s", 90.0),
    ],
    "issue": [
        Case("16 x 400, N+1-safe", SyntheticSpec(16, 400, 114688, 96), 1, "hcheck x2"),
        Case("32 x 1000, N+1-safe", SyntheticSpec(32, 1000, 131072, 128), 1, "hcheck x2"),
        Case("16 x 400, not N+1", SyntheticSpec(16, 400, 90112, 96), 1, "<= 10 s", 10.0),
        Case("32 x 1000, not N+1", SyntheticSpec(32, 1000, 118784, 128), 1, "<= 120 s", 120.0),
        Case("16 x 400, K=2, N+2-safe", SyntheticSpec(16, 400, 114688, 96), 2, "<= 90 s", 90.0),
        Case("16 x 400, K=2, pairs by scheduler", SyntheticSpec(16, 400, 102400, 96), 2, "<= 90 s", 90.0),
        Case("16 x 400, K=2, all by scheduler", SyntheticSpec(16, 400, 98304, 96), 2, "<= 90 s", 90.0),
    ],
}


def timed(argv: Sequence[str], timeout: float) -> tuple[float, subprocess.CompletedProcess[str]]:
    seconds, _, completed = timed_cpu(argv, timeout)
    return seconds, completed


def timed_cpu(argv: Sequence[str], timeout: float) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall time, and CPU time of the command and every process it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, completed


def hcheck_verdict(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("HCHECK_INIT_CLUSTER_GN1_FAIL="):
            failing = int(line.split("=", 1)[1])
            return "N+1" if failing == 0 else f"{failing} hosts not N+1"
    return "?"


def run_case(case: Case, directory: str, naive_mode: str, samples: int, repeat: int) -> dict[str, object]:
    cib = os.path.join(directory, f"{case.spec.hosts}x{case.spec.guests}-{case.spec.host_memory_mib}.xml")
    if not os.path.exists(cib):
        with open(cib, "w") as handle:
            handle.write(generate_cib(case.spec))
    with open(cib, "rb") as handle:
        model = parse_cib(handle.read())
    scenarios = enumerate_scenarios(model, case.failures)
    hcheck = find_tool("hcheck")
    htools_file = cib + ".htools"
    with open(htools_file, "w") as handle:
        handle.write(to_htools_text(model))

    xenha_argv = [XENHA, "plan", "--cib", cib, "--failures", str(case.failures), "--json"]
    hcheck_argv = [hcheck, "-t", htools_file, "--machine-readable"] if hcheck else None
    xenha_times: list[float] = []
    xenha_cpu: list[float] = []
    hcheck_times: list[float] = []
    document: dict[str, object] = {}
    hcheck_output = ""
    # Warm-up (page cache, .pyc), then interleaved runs.
    timed(xenha_argv, 3600)
    for run in range(repeat):
        load = os.getloadavg()[0]
        seconds, cpu, completed = timed_cpu(xenha_argv, 3600)
        xenha_times.append(seconds)
        xenha_cpu.append(cpu)
        document = json.loads(completed.stdout)
        if document.get("status") == "UNKNOWN":
            raise SystemExit(f"xenha failed on {case.label}: {document.get('error')}")
        if hcheck_argv:
            seconds, completed = timed(hcheck_argv, 3600)
            hcheck_times.append(seconds)
            hcheck_output = completed.stdout
        if run == 0 and xenha_times[0] > 5:
            break  # slow cases: one run is enough to read

    results = {tuple(s["failed_hosts"]): s for s in document["scenarios"]}  # type: ignore[index, union-attr]
    if naive_mode == "skip":
        chosen = []
    elif naive_mode == "full":
        chosen = list(scenarios)
    else:
        # The worst scenarios first (those that leave guests stopped), then single failures.
        bad = [s for s in scenarios if not results[s.failed]["ok"]]
        good = [s for s in scenarios if results[s.failed]["ok"] and s.failed]
        chosen = (bad[:1] + good[:1] + bad[1:] + good[1:])[:samples]
    guests = [guest.resource for guest in model.running_guests]
    naive = run_naive(
        cib,
        [(s.failed, None if s.quorum else False) for s in chosen],
        guests,
        CommandRunner(),
        time.monotonic,
    )
    mismatches = [
        r.failed
        for r in naive
        if set(r.stopped) != {g["resource"] for g in results[r.failed]["stopped_guests"]}  # type: ignore[index]
    ]
    naive_seconds = sum(r.seconds for r in naive)
    naive_label = ""
    if naive and len(naive) < len(scenarios):
        naive_seconds = naive_seconds / len(naive) * len(scenarios)
        naive_label = f" (est. from {len(naive)} of {len(scenarios)})"
    xenha_seconds = statistics.median(xenha_times)
    hcheck_seconds = statistics.median(hcheck_times) if hcheck_times else None
    met = "?"
    if case.goal_seconds is not None:
        met = "yes" if xenha_seconds <= case.goal_seconds else "NO"
    elif hcheck_seconds is not None:
        met = "yes" if xenha_seconds <= 2 * hcheck_seconds else "NO"
    return {
        "case": case,
        "scenarios": len(scenarios),
        "verdict": f"{document['status']}, tolerates {document['tolerated_failures']}",
        "proved": document["proved"],
        "scheduler_runs": document["scheduler_runs"],
        "naive": naive_seconds if naive else None,
        "naive_label": naive_label,
        "naive_checked": len(naive),
        "mismatches": mismatches,
        "xenha": xenha_seconds,
        "xenha_cpu": statistics.median(xenha_cpu),
        "load": load,
        "xenha_runs": len(xenha_times),
        "hcheck": hcheck_seconds,
        "hcheck_verdict": hcheck_verdict(hcheck_output) if hcheck_argv else "",
        "met": met,
    }


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def table(rows: list[dict[str, object]], hcheck_available: bool) -> str:
    lines = [
        "| cluster | K | scenarios | xenha verdict | proved / scheduler | naive loop | xenha "
        "| xenha CPU / cores | naive / xenha | hcheck | xenha / hcheck | hcheck verdict "
        "| goal | met | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        case = row["case"]
        assert isinstance(case, Case)
        xenha = row["xenha"]
        naive = row["naive"]
        hcheck = row["hcheck"]
        assert isinstance(xenha, float)
        speedup = f"{naive / xenha:.0f}x" if isinstance(naive, float) else "-"
        versus = f"{xenha / hcheck:.2f}" if isinstance(hcheck, float) else "-"
        lines.append(
            f"| {case.label} | {case.failures} | {row['scenarios']} | {row['verdict']} "
            f"| {row['proved']} / {row['scheduler_runs']} | {fmt(naive)}{row['naive_label']} "  # type: ignore[arg-type]
            f"| {fmt(xenha)} | {fmt(row['xenha_cpu'] / CORES)} | {speedup} | {fmt(hcheck)} | {versus} "  # type: ignore[operator]
            f"| {row['hcheck_verdict']} | {case.goal} | {row['met']} | {row['load']:.1f} |"
        )
    if not hcheck_available:
        lines.append("")
        lines.append("hcheck is not installed (Debian: apt-get install ganeti-htools): its columns are empty.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", choices=sorted(CASES), default="issue")
    parser.add_argument("--only", help="run only the cases whose label contains this text")
    parser.add_argument("--naive", choices=["sample", "full", "skip"], default="sample")
    parser.add_argument("--samples", type=int, default=2, help="naive scenarios timed when sampling")
    parser.add_argument("--repeat", type=int, default=5, help="runs of fast commands (median)")
    parser.add_argument("--keep", metavar="DIR", help="keep the generated CIBs in DIR")
    args = parser.parse_args(argv)
    cases = [case for case in CASES[args.sizes] if not args.only or args.only in case.label]
    cores = os.cpu_count() or 1
    version = pacemaker_version()
    print(f"xenha plan benchmark: {cores} cores, Pacemaker crm_simulate {version}, {time.strftime('%F')}")
    print()
    rows = []
    with tempfile.TemporaryDirectory(prefix="xenha-bench-") as scratch:
        directory = args.keep or scratch
        os.makedirs(directory, exist_ok=True)
        for case in cases:
            print(f"... {case.label}, K={case.failures}", file=sys.stderr, flush=True)
            rows.append(run_case(case, directory, args.naive, args.samples, args.repeat))
    print(table(rows, find_tool("hcheck") is not None))
    failures = [row for row in rows if row["mismatches"]]
    for row in failures:
        print(f"VERDICT MISMATCH with the naive loop: {row['case']}: {row['mismatches']}")
    print()
    print(
        "naive loop: crm_simulate --simulate --node-fail, one scenario after another; xenha: bin/xenha plan "
        "--json (median of runs under 5 s); xenha CPU / cores: its CPU time (crm_simulate runs included) "
        "divided by the cores, what the wall time would be on an otherwise idle machine; hcheck: hcheck -t "
        "(median); load: the 1-minute load average before the xenha run (others' work on this machine). "
        "Verdicts are compared with the naive loop on every scenario it ran."
    )
    return 1 if failures else 0


def pacemaker_version() -> str:
    completed = subprocess.run(["crm_simulate", "--version"], capture_output=True, text=True, check=False)
    return completed.stdout.split("\n", 1)[0].replace("Pacemaker ", "")


if __name__ == "__main__":
    sys.exit(main())
