"""How an agent executable ends: run the action, flush, and leave at once.

``os._exit`` skips interpreter shutdown. That is deliberate: a libvirt call abandoned at
its deadline may still be blocked in a worker thread, and nothing may delay the answer to
Pacemaker. Output is flushed by hand first.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from xenha.ocf.agent import Agent, run_agent


def exec_agent(agent: Agent) -> NoReturn:
    code = run_agent(agent, sys.argv, os.environ)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
