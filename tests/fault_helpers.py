"""Helpers of the fault-injection tests (test_security*.py, test_calls_that_fail_in_threads_and_processes*.py).

Reading what a Director printed, an environment without a cluster token,
whether a process is gone. Like helpers.py, nothing here sleeps to let
things settle, and nothing starts or stops processes.
"""

import os
import re
from pathlib import Path

from helpers import wait_until
from pyfaas import security

ROOT = Path(__file__).resolve().parent.parent


def director_says(cl, pattern, timeout=5.0):
    """Wait until the Director's output matches ``pattern``; return it."""
    return wait_until(
        lambda: re.search(pattern, cl.director.output().decode(
            errors="replace")), timeout,
        lambda: "director output never matched %r:\n%s" % (
            pattern, cl.director.output().decode(errors="replace")[-2000:]))


def env_without_token(**extra):
    """os.environ without $PYFAAS_TOKEN, with this checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != security.TOKEN_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep)
                       if x])
    env.update(extra)
    return env


def pid_gone(pid):
    """True when no process has this pid any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
