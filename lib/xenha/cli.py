"""The ``xenha`` command line: ``plan``, ``check-add``, ``status``, ``verify``.

Only parsing and rendering live here; the work is in :mod:`xenha.planner` and
:mod:`xenha.verify`. Each
subcommand is one function taking the parsed arguments and a :class:`Console`, returning
the exit code, registered in :data:`COMMANDS` with the function that declares its
options; adding a subcommand is adding one such pair.

Exit codes follow the monitoring-plugin convention (0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN); a usage error is UNKNOWN too, not argparse's usual 2 (which a monitoring
system would read as CRITICAL).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TextIO

import xenha
from xenha.admission.resources import Resources
from xenha.planner.cibmodel import parse_cib
from xenha.planner.cibsource import CibSnapshot, query_live_cib, read_cib_file
from xenha.planner.model import CibError
from xenha.planner.preparation import Prepared, prepare, require_scheduler
from xenha.planner.report import (
    UNKNOWN,
    error_json,
    exit_code,
    plan_json,
    render_json,
    render_plan_text,
)
from xenha.planner.scenarios import (
    Plan,
    PlanEnvironment,
    plan_new_guest,
    run_plan,
)
from xenha.planner.scheduler import SchedulerError
from xenha.planner.status import now_epoch, render_status_text, status_json
from xenha.runner import CommandRunner, find_tool


@dataclass(frozen=True)
class Console:
    """The command's outside world: its streams and how it finds Pacemaker's tools."""

    out: TextIO
    err: TextIO
    find_tool: Callable[[str], str | None] = find_tool


class ProgressBar:
    """A one-line progress bar on a terminal; silent when the stream is not one."""

    WIDTH = 30

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._active = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self._active or total <= 1:
            return
        filled = self.WIDTH * done // total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {done}/{total} scheduler runs")
        if done >= total:
            self._stream.write("\r" + " " * (len(self._label) + self.WIDTH + 40) + "\r")
        self._stream.flush()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(UNKNOWN, f"{self.prog}: error: {message}\n")


def _failures(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0 or value > 8:
        raise argparse.ArgumentTypeError("give a number of host failures from 0 to 8")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _common(parser: argparse.ArgumentParser, failures: bool = True) -> None:
    parser.add_argument("--cib", metavar="FILE", help="a CIB file (default: the live CIB of this cluster)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    if failures:
        parser.add_argument(
            "--failures",
            metavar="K",
            type=_failures,
            default=1,
            help="check every set of up to K failed hosts (default 1)",
        )
        parser.add_argument(
            "--no-fast-path",
            action="store_true",
            help="run the scheduler on every scenario, even those the proof covers",
        )
        parser.add_argument(
            "--workers",
            metavar="N",
            type=_positive,
            default=None,
            help="scheduler runs at a time (default: one per CPU)",
        )


class _Workspace:
    """A private temporary directory, created only when something needs it (the live CIB)."""

    def __init__(self) -> None:
        self._directory: Any = None

    def path(self) -> str:
        if self._directory is None:
            self._directory = tempfile.TemporaryDirectory(prefix="xenha-")
        return str(self._directory.name)

    def __enter__(self) -> _Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._directory is not None:
            self._directory.cleanup()


def _snapshot(args: argparse.Namespace, workspace: _Workspace) -> CibSnapshot:
    if args.cib:
        return read_cib_file(args.cib)
    return query_live_cib(CommandRunner(), workspace.path())


def _environment(args: argparse.Namespace, console: Console) -> PlanEnvironment:
    environment = PlanEnvironment.default(progress=None if args.json else ProgressBar(console.err, "xenha"))
    return replace(environment, workers=args.workers) if args.workers else environment


def _unknown(command: str, args: argparse.Namespace, console: Console, message: str) -> int:
    if getattr(args, "json", False):
        console.out.write(render_json(error_json(command, message)))
    else:
        console.out.write(f"XENHA {command.upper()} UNKNOWN - {message}\n")
    return UNKNOWN


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


PlanFunction = Callable[[Prepared, PlanEnvironment], Plan]


def _planned(command: str, args: argparse.Namespace, console: Console, plan: PlanFunction) -> int:
    """What plan and check-add share: the CIB read and checked, the plan made, printed, its exit code."""
    try:
        require_scheduler(console.find_tool)
        environment = _environment(args, console)
        with _Workspace() as workspace:
            done = plan(prepare(_snapshot(args, workspace), environment.schema_dir), environment)
    except (CibError, SchedulerError) as error:
        return _unknown(command, args, console, str(error))
    console.out.write(render_json(plan_json(done)) if args.json else render_plan_text(done))
    return exit_code(done)


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    return _planned(
        "plan",
        args,
        console,
        lambda prepared, environment: run_plan(prepared, args.failures, environment, not args.no_fast_path),
    )


def add_check_add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory", metavar="MiB", type=_positive, required=True, help="the new guest's memory")
    parser.add_argument("--vcpus", metavar="N", type=_positive, required=True, help="the new guest's vCPUs")
    _common(parser)


def cmd_check_add(args: argparse.Namespace, console: Console) -> int:
    demand = Resources(args.memory, args.vcpus)
    return _planned(
        "check-add",
        args,
        console,
        lambda prepared, environment: plan_new_guest(
            prepared, demand, args.failures, environment, not args.no_fast_path
        ),
    )


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, failures=False)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    try:
        with _Workspace() as workspace:
            snapshot = _snapshot(args, workspace)
            model = parse_cib(snapshot.data)
    except CibError as error:
        return _unknown("status", args, console, str(error))
    now = now_epoch()
    if args.json:
        console.out.write(render_json(status_json(model, snapshot.label, now)))
    else:
        console.out.write(render_status_text(model, snapshot.label))
    return 0


def _bandwidth(text: str) -> int:
    value = _positive(text)
    if value > 1_000_000:
        raise argparse.ArgumentTypeError("give the migration network's bandwidth in MiB/s (at most 1000000)")
    return value


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, failures=False)
    parser.add_argument(
        "--bandwidth",
        metavar="MiB/s",
        type=_bandwidth,
        default=None,
        help="the migration network's bandwidth, for guests without migration_speed (default: 100, assumed)",
    )
    parser.add_argument(
        "--corosync-conf",
        metavar="FILE",
        help="read two_node from this corosync.conf (default: the running corosync, without --cib)",
    )
    parser.add_argument(
        "--configs",
        action="store_const",
        const=True,
        default=None,
        help="read each guest's domain XML (its config file) on this node (the default without --cib)",
    )
    parser.add_argument(
        "--no-configs",
        action="store_const",
        const=False,
        dest="configs",
        help="do not read the guests' domain XML (the default with --cib)",
    )
    parser.add_argument(
        "--no-plan", action="store_true", help="skip the N+1 check (the planner's answer for one failed host)"
    )


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    # Imported here: verify reads the agents' declarations and the libvirt layer's domain
    # XML, ~35 ms of imports that plan, check-add and status would otherwise pay.
    from xenha.verify.facts import DEFAULT_BANDWIDTH_MIB_S  # noqa: PLC0415 - see above
    from xenha.verify.findings import exit_code as verify_exit_code  # noqa: PLC0415 - see above
    from xenha.verify.report import render_text, verdict_json  # noqa: PLC0415 - see above
    from xenha.verify.run import VerifyEnvironment, VerifyOptions, verify  # noqa: PLC0415 - see above

    options = VerifyOptions(
        live=not args.cib,
        bandwidth_mib_s=args.bandwidth or DEFAULT_BANDWIDTH_MIB_S,
        bandwidth_stated=args.bandwidth is not None,
        corosync_conf=args.corosync_conf,
        read_configs=args.configs,
        n_plus_one=not args.no_plan,
    )
    environment = VerifyEnvironment(CommandRunner(), PlanEnvironment.default(), console.find_tool)
    try:
        with _Workspace() as workspace:
            verdict = verify(_snapshot(args, workspace), options, environment)
    except CibError as error:
        return _unknown("verify", args, console, str(error))
    console.out.write(render_json(verdict_json(verdict)) if args.json else render_text(verdict))
    return verify_exit_code(verdict.findings)


Command = Callable[[argparse.Namespace, Console], int]

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {
    "plan": (
        "N+k failover plan: which guests each set of failed hosts would leave stopped",
        add_plan_arguments,
        cmd_plan,
    ),
    "check-add": (
        "would a new guest of this size still leave the cluster able to survive K failures?",
        add_check_add_arguments,
        cmd_check_add,
    ),
    "status": (
        "per-host capacity, used, reserved and free, from the CIB",
        add_status_arguments,
        cmd_status,
    ),
    "verify": (
        "the configuration checked against the known ways a Xen HA cluster fails, with the commands that fix it",
        add_verify_arguments,
        cmd_verify,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xenha", description="xenha: capacity planning and configuration checks for Xen guests run by Pacemaker"
    )
    parser.add_argument("--version", action="version", version=f"xenha {xenha.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (summary, declare, _) in COMMANDS.items():
        declare(subparsers.add_parser(name, help=summary, description=summary))
    return parser


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    console = console or Console(sys.stdout, sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(console.err)
        return UNKNOWN
    _, _, command = COMMANDS[args.command]
    try:
        return command(args, console)
    except KeyboardInterrupt:
        console.err.write("xenha: interrupted\n")
        return UNKNOWN
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return UNKNOWN
