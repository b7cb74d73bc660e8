"""How an agent executable ends: run the action, flush, and leave at once.

``os._exit`` skips interpreter shutdown. That is deliberate: a libvirt call abandoned at
its deadline may still be blocked in a worker thread, and nothing may delay the answer to
Pacemaker. Output is flushed by hand first.
"""

from __future__ import annotations

import os
import sys
import time
from typing import NoReturn

from xenha.ocf.agent import Agent, run_agent

PROC_STAT = "/proc/self/stat"


def exec_agent(agent: Agent) -> NoReturn:
    code = run_agent(agent, sys.argv, os.environ, spent_before_s=process_age_s())
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def process_age_s() -> float:
    """How long ago this process started: what Pacemaker's timeout already counts.

    Python's start and the imports take tens of milliseconds on a quiet host and can take
    half a second on a loaded one; the action's deadline must include them.
    """
    try:
        with open(PROC_STAT) as stat:
            text = stat.read()
        return age_from_stat(text, time.clock_gettime(time.CLOCK_BOOTTIME), os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError):
        return 0.0


def age_from_stat(stat_text: str, boottime_s: float, ticks_per_s: int) -> float:
    """The age of a process from its /proc/PID/stat line (starttime, field 22, in clock ticks).

    The command name (field 2) may hold spaces and parentheses: fields are counted after the
    last ')'.

    >>> age_from_stat("4242 (xen guest) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 1000 0", 12.5, 100)
    2.5
    >>> age_from_stat("1 (init) S", 1.0, 100)
    Traceback (most recent call last):
    ValueError: no start time in /proc/self/stat
    """
    fields = stat_text[stat_text.rindex(")") + 2 :].split()
    if len(fields) < 20:
        raise ValueError("no start time in /proc/self/stat")
    return max(0.0, boottime_s - int(fields[19]) / ticks_per_s)
