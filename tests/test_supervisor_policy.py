"""Pure tests of the supervisor's decisions when its Worker ends.

No process is started: :meth:`Supervisor.ended` is given exit codes as
``Popen.returncode`` reports them, on a fake clock. What a user would
notice: a crash is followed by a restart after a growing delay, a Worker
that keeps crashing is given up with exit code 3, a recycled Worker starts
again at once without counting as a crash, and a Worker that stopped on
purpose, or cannot start, is not restarted.
"""

import signal
from types import SimpleNamespace

import pytest

from pyfaas.worker.supervisor import (CONFIG_EXIT, GAVE_UP_EXIT, RECYCLE_EXIT,
                                      RECYCLED, Supervisor, describe_exit)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def supervisor(max_restarts=3, window=60.0):
    clock = Clock()
    config = SimpleNamespace(max_restarts=max_restarts,
                             restart_window_s=window)
    return Supervisor(config, "worker.toml", clock), clock


def test_crashes_restart_after_a_growing_delay_then_the_supervisor_gives_up():
    sup, _ = supervisor(max_restarts=3)
    delays = [sup.ended(-signal.SIGSEGV) for _ in range(3)]
    assert delays == [(None, 0.1), (None, 0.2), (None, 0.4)]
    assert (sup.restarts, sup.last_cause) == (3, "SIGSEGV")
    assert sup.ended(1) == (GAVE_UP_EXIT, None)
    assert sup.last_cause == "exit code 1"


def test_crashes_older_than_the_window_are_forgotten():
    sup, clock = supervisor(max_restarts=1, window=10.0)
    assert sup.ended(-signal.SIGKILL)[0] is None
    clock.now += 11
    assert sup.ended(-signal.SIGKILL) == (None, 0.1)
    assert sup.ended(-signal.SIGKILL) == (GAVE_UP_EXIT, None)


def test_a_recycled_worker_starts_again_at_once_and_is_not_a_crash():
    sup, _ = supervisor(max_restarts=0)
    assert sup.ended(RECYCLE_EXIT) == (None, 0.0)
    assert sup.ended(RECYCLE_EXIT) == (None, 0.0)
    assert (sup.restarts, sup.last_cause) == (2, RECYCLED)


@pytest.mark.parametrize("code", [0, CONFIG_EXIT])
def test_a_worker_that_stopped_or_cannot_start_is_not_restarted(code):
    sup, _ = supervisor()
    assert sup.ended(code) == (code, None)
    assert sup.restarts == 0


def test_exit_descriptions_name_signals_and_codes():
    assert describe_exit(-signal.SIGSEGV) == "SIGSEGV"
    assert describe_exit(-signal.SIGKILL) == "SIGKILL"
    assert describe_exit(3) == "exit code 3"
