"""Dispatching an OCF action: validation first, then the handler, then one exit reason.

The contract every agent of the suite gets from here:

* ``meta-data`` and ``usage``/``help`` never validate, never log, never touch the hypervisor.
* Every other action is validated first (``validate-all`` is exactly that validation).
  Actions listed as *lenient* (stop, monitor) still run when the configuration is broken and
  receive the problems: a stop or a probe must answer truthfully about what is running,
  whatever the configuration says now.
* An action ends with an exit code and, for anything but success, one ``ocf-exit-reason``
  line on stderr. An unexpected exception becomes ``OCF_ERR_GENERIC`` with a reason and a
  logged traceback, never a bare traceback on stderr.
* The action's deadline is Pacemaker's timeout minus a margin kept for answering.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, TextIO

from xenha import __version__
from xenha.deadline import Deadline
from xenha.ocf.codes import OcfError, OcfExit
from xenha.ocf.environment import OcfEnvironment
from xenha.ocf.log import OcfLog
from xenha.ocf.metadata import Action, choose_version, render
from xenha.ocf.parameters import Parameter, ParameterValues

DEFAULT_TIMEOUT_S = 20.0
# Kept back from Pacemaker's timeout so the agent can still log and answer: a tenth of the
# timeout, between a quarter of a second and five seconds.
MARGIN_FRACTION = 0.1
MARGIN_MIN_S = 0.25
MARGIN_MAX_S = 5.0


class Context:
    """Everything one action needs: what Pacemaker said, the parameters, log and deadline."""

    __slots__ = ("deadline", "env", "log", "params", "problems", "timeout_s")

    def __init__(
        self, env: OcfEnvironment, params: ParameterValues, log: OcfLog, deadline: Deadline, timeout_s: float
    ) -> None:
        self.env = env
        self.params = params
        self.log = log
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.problems: list[OcfError] = []

    @property
    def action(self) -> str:
        return self.env.action


Handler = Callable[[Context], OcfExit]


class AgentSpec(NamedTuple):
    name: str
    shortdesc: str
    longdesc: str
    parameters: tuple[Parameter, ...]
    actions: tuple[Action, ...]
    lenient_actions: frozenset[str] = frozenset({"stop", "monitor", "status"})

    def check(self) -> AgentSpec:
        """The spec itself, after checking every declaration (a bad one is a programming error)."""
        for parameter in self.parameters:
            parameter.check()
        return self

    def action_timeout_s(self, name: str) -> float:
        for action in self.actions:
            if action.name == name and not action.interval_s:
                return float(action.timeout_s)
        for action in self.actions:
            if action.name == name:
                return float(action.timeout_s)
        return DEFAULT_TIMEOUT_S

    def metadata(self, ocf_version: tuple[int, int]) -> str:
        return render(
            self.name,
            __version__,
            self.shortdesc,
            self.longdesc,
            self.parameters,
            self.actions,
            ocf_version,
        )

    def usage(self) -> str:
        names = sorted({action.name for action in self.actions} | {"usage"})
        return f"usage: {self.name} {{{'|'.join(names)}}}\n"


class Agent:
    """Base of the suite's agents: a spec, a validation, and one handler per action."""

    spec: AgentSpec

    def validate(self, ctx: Context) -> list[OcfError]:
        """Every problem with the configuration, without contacting the hypervisor."""
        return ctx.params.problems()

    def handlers(self) -> Mapping[str, Handler]:
        raise NotImplementedError

    def translate(self, error: Exception) -> OcfError | None:
        """The OCF result for an error of the agent's own layers (e.g. the hypervisor's).

        Handlers let such errors propagate; anything not translated here is an internal
        error of the agent.
        """
        return None


def action_margin_s(timeout_s: float) -> float:
    return min(MARGIN_MAX_S, max(MARGIN_MIN_S, timeout_s * MARGIN_FRACTION))


def run_agent(
    agent: Agent,
    argv: Sequence[str],
    environ: Mapping[str, str],
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    spent_before_s: float = 0.0,
) -> int:
    """Run one action as Pacemaker asked for it and return the exit code.

    ``spent_before_s``: how long the process already ran before this call (the interpreter's
    start and the imports): Pacemaker's timer started when it forked the agent.
    """
    clock = time.monotonic
    started = clock() - max(0.0, spent_before_s)
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    spec = agent.spec
    if len(argv) < 2:
        err.write(spec.usage())
        return OcfExit.ERR_ARGS
    action = argv[1]
    env = OcfEnvironment.from_environ(action, environ)

    if action == "meta-data":
        return _print(out, err, spec.metadata(choose_version(env.ocf_version)), f"{spec.name} meta-data")
    if action in ("usage", "help", "--help", "-h"):
        return _print(out, err, spec.usage(), f"{spec.name} {action}")

    reply = _Reply(OcfLog(spec.name, env, stderr=err), err, environ.get("OCF_EXIT_REASON_PREFIX") or "ocf-exit-reason:")
    handler = agent.handlers().get(action)
    if handler is None:
        return reply.fail(OcfError(OcfExit.ERR_UNIMPLEMENTED, f"{spec.name} does not implement the action {action!r}"))
    if not _usable_instance(env.instance):
        return reply.fail(
            OcfError(
                OcfExit.ERR_CONFIGURED,
                f"OCF_RESOURCE_INSTANCE={env.instance[:40]!r} cannot be a Pacemaker resource id "
                "(it contains control characters): name the resource with letters, digits, '-', '_' and '.'",
            )
        )
    timeout_s = (env.timeout_ms / 1000.0) if env.timeout_ms else spec.action_timeout_s(action)
    deadline = Deadline(started + timeout_s - action_margin_s(timeout_s), clock)
    ctx = Context(env, ParameterValues(spec.parameters, env.params), reply.log, deadline, timeout_s)
    code = _run_handler(agent, ctx, handler, reply)
    reply.log.debug(f"{action} returned {int(code)} after {clock() - started:.3f} s")
    return code


def _print(out: TextIO, err: TextIO, text: str, what: str) -> int:
    """Write ``text`` to stdout; a reader that went away (a closed pipe) is an error, not a traceback.

    ocf-tester pipes meta-data into xmllint, which exits at once when it is not installed.
    """
    try:
        out.write(text)
        out.flush()
    except (OSError, ValueError) as error:
        try:
            err.write(f"{what}: its output could not be written ({type(error).__name__}: {error})\n")
        except (OSError, ValueError):
            pass
        return OcfExit.ERR_GENERIC
    return OcfExit.SUCCESS


def _run_handler(agent: Agent, ctx: Context, handler: Handler, reply: _Reply) -> int:
    """Validate, then run the handler; every outcome becomes an exit code (and a reason)."""
    spec, log, action = agent.spec, ctx.log, ctx.action
    try:
        for name in ctx.params.unknown():
            log.warning(f"ignoring parameter {name!r}: {spec.name} has no such parameter")
        problems = agent.validate(ctx)
        for problem in problems[1:]:
            log.error(f"also: {problem.reason}")
        if problems and (action == "validate-all" or action not in spec.lenient_actions):
            return reply.fail(problems[0])
        ctx.problems = problems
        return int(handler(ctx))
    except OcfError as error:
        return reply.fail(error)
    except Exception as error:  # noqa: BLE001 - the last line of defence: no bare tracebacks
        translated = agent.translate(error)
        if translated is not None:
            return reply.fail(translated)
        import traceback  # noqa: PLC0415 - only after an internal error: it loads linecache and more

        for line in traceback.format_exc().splitlines():
            log.error(line)
        return reply.fail(
            OcfError(
                OcfExit.ERR_GENERIC,
                f"internal error in {spec.name} {action}: {type(error).__name__}: {error} "
                "(traceback in the log; please report it)",
            )
        )


def _usable_instance(instance: str) -> bool:
    """Resource ids are XML ids: no control characters (nothing XML could carry)."""
    return all(char >= " " and char != "\x7f" and not ("\ud800" <= char <= "\udfff") for char in instance)


# Pacemaker keeps the first 128 characters of an exit reason; the full text goes to the log.
EXIT_REASON_MAX = 128


class _Reply:
    """How an action answers Pacemaker: the log, stderr, and the exit-reason prefix."""

    def __init__(self, log: OcfLog, err: TextIO, prefix: str) -> None:
        self.log = log
        self._err = err
        self._prefix = prefix

    def fail(self, error: OcfError) -> int:
        """Log ``error``, write its exit reason, and return its code."""
        return _finish(self.log, self._err, self._prefix, error)


def _finish(log: OcfLog, err: TextIO, prefix: str, error: OcfError) -> int:
    reason = " ".join(error.reason.split())
    if error.code in (OcfExit.NOT_RUNNING, OcfExit.DEGRADED, OcfExit.DEGRADED_PROMOTED):
        log.warning(reason)
    else:
        log.error(reason)
    if len(reason) > EXIT_REASON_MAX:
        reason = reason[: EXIT_REASON_MAX - 3] + "..."
    try:
        err.write(f"{prefix}{reason}\n")
        err.flush()
    except (OSError, ValueError):
        pass
    return int(error.code)
