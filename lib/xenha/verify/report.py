"""``xenha verify``'s output: a headline and a table a person reads in five seconds, then the
details (why, and the pcs and crmsh commands) for each finding; JSON for scripts.

The first line is the monitoring headline (``XENHA VERIFY CRITICAL - ...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xenha.planner.report import names, table
from xenha.verify.findings import STATUS_WORDS, Finding, Fix, Severity, exit_code
from xenha.verify.run import Verdict

JSON_SCHEMA = "xenha-verify/1"
PROBLEM_WIDTH = 90  # table cells beyond this are cut; the details below give them whole
DETAILS_PER_CHECK = 3


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _ordered(findings: Sequence[Finding]) -> list[Finding]:
    """Worst first; within a severity, in the order the checks ran (stable sort)."""
    return sorted(findings, key=lambda finding: -finding.severity)


def _groups(findings: Sequence[Finding]) -> list[list[Finding]]:
    """Findings of one check and one severity together, worst group first."""
    groups: dict[tuple[Severity, str], list[Finding]] = {}
    for finding in _ordered(findings):
        groups.setdefault((finding.severity, finding.check), []).append(finding)
    return list(groups.values())


def headline(verdict: Verdict) -> str:
    findings = verdict.findings
    code = exit_code(findings)
    counts = [
        f"{sum(1 for finding in findings if finding.severity is severity)} {word}"
        for severity, word in ((Severity.CRITICAL, "critical"), (Severity.WARNING, "warning"), (Severity.INFO, "info"))
    ]
    counts[1] += "" if counts[1].startswith("1 ") else "s"
    serious = [finding for finding in _ordered(findings) if finding.severity is not Severity.INFO]
    if not serious:
        return f"XENHA VERIFY {STATUS_WORDS[code]} - no problem found by {verdict.checks} checks ({counts[2]})"
    worst = serious[0]
    return f"XENHA VERIFY {STATUS_WORDS[code]} - {', '.join(counts)}; first: {worst.check}: {worst.problem}"


def _cut(text: str, width: int = PROBLEM_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _objects(group: Sequence[Finding]) -> str:
    subjects = list(dict.fromkeys(finding.subject for finding in group))
    if len(subjects) == 1:
        return subjects[0]
    kinds = {subject.split(" ", 1)[0] for subject in subjects}
    if len(kinds) > 1:
        return f"{len(subjects)} objects: {names(subjects, 2)}"
    shown = [subject.split(" ", 1)[-1] for subject in subjects]
    return f"{len(subjects)} {kinds.pop()}s: {names(shown, 2)}"


def _fix_lines(fix: Fix) -> list[str]:
    lines = [f"    pcs:   {command}" for command in Fix.shown(fix.pcs)]
    lines += [f"    crmsh: {command}" for command in Fix.shown(fix.crmsh)]
    if fix.placeholders:
        lines.append(f"    (fill in {', '.join(fix.placeholders)})")
    return lines


def render_text(verdict: Verdict) -> str:
    config = verdict.config
    lines = [
        headline(verdict),
        f"{_plural(len(config.nodes), 'host')}, {_plural(len(config.guests), 'guest')}; {verdict.source}; "
        f"{verdict.checks} checks in {verdict.seconds:.2f} s"
        + ("" if verdict.facts.domains is not None else "; domain XML not read (--configs reads it)"),
    ]
    groups = _groups(verdict.findings)
    if groups:
        rows = [(group[0].severity.word, group[0].check, _objects(group), _cut(group[0].problem)) for group in groups]
        lines.append("")
        lines.extend(table(("severity", "check", "object", "what is wrong"), rows, (False, False, False, False)))
    for group in groups:
        for finding in group[:DETAILS_PER_CHECK]:
            lines.append("")
            lines.append(f"{finding.severity.word} {finding.check}, {finding.subject}: {finding.problem}")
            lines.append(f"    why:   {finding.why}")
            lines.extend(_fix_lines(finding.fix))
        if len(group) > DETAILS_PER_CHECK:
            lines.append(
                f"... and {len(group) - DETAILS_PER_CHECK} more {group[0].check} findings like these (--json lists all)"
            )
    return "\n".join(lines) + "\n"


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "check": finding.check,
        "severity": finding.severity.word,
        "object": finding.subject,
        "problem": finding.problem,
        "why": finding.why,
        "fix": {
            "pcs": Fix.shown(finding.fix.pcs),
            "crmsh": Fix.shown(finding.fix.crmsh),
            "placeholders": list(finding.fix.placeholders),
        },
    }


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    code = exit_code(verdict.findings)
    return {
        "schema": JSON_SCHEMA,
        "command": "verify",
        "status": STATUS_WORDS[code],
        "exit_code": code,
        "headline": headline(verdict).split(" - ", 1)[1],
        "source": verdict.source,
        "cib_epoch": verdict.config.planner.epoch,
        "hosts": len(verdict.config.nodes),
        "guests": len(verdict.config.guests),
        "checks": verdict.checks,
        "domain_xml_read": verdict.facts.domains is not None,
        "findings": [finding_json(finding) for finding in _ordered(verdict.findings)],
        "seconds": round(verdict.seconds, 3),
    }
