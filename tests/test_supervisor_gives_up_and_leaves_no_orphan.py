"""Real processes: a Worker's supervisor knows when to stop.

A Worker that keeps dying is not restarted forever: past ``max_restarts``
crashes within ``restart_window_s`` its supervisor gives up with one log
line and exit code 3. A supervisor that is killed leaves no Worker behind:
the Worker sees it gone and stops by itself. SIGTERM stops both with exit
code 0 (checked by the cluster's stop). Every process is stopped by pid.
"""

import os
import signal

import pytest

from helpers import wait_until
from pyfaas.worker.supervisor import GAVE_UP_EXIT

pytestmark = pytest.mark.timeout(60)


def _pid_of(client, worker_id):
    for row in client.workers():
        if row["worker_id"] == worker_id:
            return row["pid"]
    return None


def _running(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_worker_that_keeps_dying_is_given_up_and_one_that_is_orphaned_stops(
        fresh_cluster):
    cl = fresh_cluster(workers=0)
    flaky = cl.start_worker(name="flaky", supervise=True, max_restarts=1)
    steady = cl.start_worker(name="steady", supervise=True)
    client = cl.client()
    ids = client.wait_for_workers(2, 15)

    # Two crashes within the window, one restart allowed: it gives up.
    flaky_id = [w for w in ids if client.worker_info(w)["identity"]["pid"]
                in flaky.worker_pids()][0]
    first = _pid_of(client, flaky_id)
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: (_pid_of(client, flaky_id) or first) != first
                        and _pid_of(client, flaky_id), 10,
                        "the flaky worker was not restarted")
    os.kill(second, signal.SIGKILL)
    assert flaky.wait(10) == GAVE_UP_EXIT
    log = open(os.path.join(cl.workdir, "logs", "flaky.log")).read()
    gave_up = [line for line in log.splitlines() if "not restarting" in line]
    assert len(gave_up) == 1 and "max_restarts = 1" in gave_up[0]
    wait_until(lambda: flaky_id not in client.worker_ids(), 10,
               "the given-up worker is still listed")

    # Its supervisor killed, the steady Worker stops by itself.
    worker_pid = steady.worker_pids()[-1]
    steady.signal(signal.SIGKILL)
    steady.wait(10)
    wait_until(lambda: not _running(worker_pid), 15,
               "the orphaned worker is still running")
    wait_until(lambda: client.worker_ids() == [], 10,
               "the orphaned worker is still registered")


def test_sigterm_stops_the_supervisor_and_its_worker_with_code_0(
        fresh_cluster):
    cl = fresh_cluster(workers=1, supervise=True)
    [proc] = cl.workers.values()
    worker_pid = proc.worker_pids()[-1]
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert not _running(worker_pid)
    assert b"passing SIGTERM on to worker" in open(os.path.join(
        cl.workdir, "logs", "worker1.log"), "rb").read()
