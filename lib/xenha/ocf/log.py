"""Logging as resource-agents' shell helpers do it, without their gaps.

Destinations follow ``ocf-shellfuncs``: on a terminal, stderr only; otherwise syslog
(``HA_LOGFACILITY``, unless empty or ``none``) and ``HA_LOGFILE``, and stderr when neither
is configured, so a line is never lost because there is no tty. Unlike the shell helper,
a facility whose syslog socket does not exist also falls back to stderr (Pacemaker records
an agent's stderr in its own log). Lines are tagged ``agent(instance)[pid]``.

The standard :mod:`logging` package is not used: importing it costs more than the rest of
a monitor action.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from xenha.ocf.environment import OcfEnvironment

_SYSLOG_SOCKET = "/dev/log"
_LEVEL_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3}


class OcfLog:
    def __init__(
        self,
        agent: str,
        env: OcfEnvironment,
        stderr: TextIO | None = None,
        syslog_socket: str = _SYSLOG_SOCKET,
    ) -> None:
        self.tag = f"{agent}({env.instance})[{os.getpid()}]"
        self._stderr = stderr if stderr is not None else sys.stderr
        self._debug_enabled = env.debug
        self._log_file = env.log_file or None
        self._debug_log = env.debug_log if env.debug_log not in (None, "", "/dev/null") else None
        facility = (env.log_facility or "").strip().lower()
        self._facility: int | None = None
        interactive = _is_tty(self._stderr)
        self._to_stderr_only = interactive
        if not interactive and facility not in ("", "none"):
            self._facility = _facility_code(facility)
            if self._facility is not None and not os.path.exists(syslog_socket):
                self._facility = None
        self._to_stderr = interactive or (self._facility is None and self._log_file is None)
        self._syslog_open = False

    def debug(self, message: str) -> None:
        if self._debug_enabled:
            self._emit("DEBUG", message)
        elif self._debug_log is not None:
            _append(self._debug_log, self._file_line("DEBUG", message))

    def info(self, message: str) -> None:
        self._emit("INFO", message)

    def warning(self, message: str) -> None:
        self._emit("WARNING", message)

    def error(self, message: str) -> None:
        self._emit("ERROR", message)

    def _file_line(self, level: str, message: str) -> str:
        return f"{time.strftime('%b %d %H:%M:%S')} {self.tag}:    {level}: {message}\n"

    def _emit(self, level: str, message: str) -> None:
        if self._to_stderr_only:
            self._write_stderr(f"{self.tag}: {level}: {message}\n")
            return
        if self._facility is not None:
            self._syslog(level, message)
        if self._log_file is not None and not _append(self._log_file, self._file_line(level, message)):
            # The file could not be written: say so where it can still be seen.
            self._write_stderr(self._file_line(level, message))
        if self._to_stderr:
            self._write_stderr(self._file_line(level, message))

    def _syslog(self, level: str, message: str) -> None:
        import syslog  # noqa: PLC0415 - small C module, imported only when syslog is configured

        assert self._facility is not None
        if not self._syslog_open:
            syslog.openlog(self.tag, 0, self._facility)
            self._syslog_open = True
        syslog.syslog(_LEVEL_PRIORITY[level], f"{level}: {message}")

    def _write_stderr(self, line: str) -> None:
        try:
            self._stderr.write(line)
            self._stderr.flush()
        except (OSError, ValueError):
            pass


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _facility_code(name: str) -> int | None:
    import syslog  # noqa: PLC0415 - only when syslog is configured (performance.md)

    codes: dict[str, int] = {
        "kern": syslog.LOG_KERN,
        "user": syslog.LOG_USER,
        "mail": syslog.LOG_MAIL,
        "daemon": syslog.LOG_DAEMON,
        "auth": syslog.LOG_AUTH,
        "syslog": syslog.LOG_SYSLOG,
        "lpr": syslog.LOG_LPR,
        "news": syslog.LOG_NEWS,
        "uucp": syslog.LOG_UUCP,
        "cron": syslog.LOG_CRON,
        **{f"local{n}": int(getattr(syslog, f"LOG_LOCAL{n}")) for n in range(8)},
    }
    return codes.get(name, syslog.LOG_DAEMON)


def _append(path: str, line: str) -> bool:
    try:
        with open(path, "a", encoding="utf-8", errors="replace") as handle:
            handle.write(line)
        return True
    except OSError:
        return False
