"""Real processes: a Worker whose threads are stuck takes no calls.

Two Workers without a supervisor, one thread each. A call that outlives
its time limit keeps its thread busy: its caller gets the timeout, status
shows the stuck call and the Worker as taking no calls, and the Director
sends the next calls to the other Worker, until the stuck call returns.
(Supervised Workers recycle themselves instead: test_cluster_heals_itself.)
"""

import os
import time

import pytest

from helpers import wait_until
from pyfaas.errors import PyFaaSTimeoutError
from pyfaas.tools.status import collect, render

pytestmark = pytest.mark.timeout(60)


def whoami():
    return os.getpid()


def nap(seconds):
    time.sleep(seconds)
    return os.getpid()


def test_the_director_routes_around_a_worker_whose_threads_are_stuck(
        fresh_cluster):
    cl = fresh_cluster(workers=2, max_threads=1)
    client = cl.client()
    client.register(whoami)
    client.register(nap)
    stuck = client.exec_async("nap", [1.5], timeout=0.3)
    with pytest.raises(PyFaaSTimeoutError):
        stuck.result(timeout=10)
    rows = wait_until(lambda: [w for w in client.workers() if w["stuck"]],
                      5, "no worker reported its stuck call")
    [row] = rows
    assert row["wedged"]
    assert "stuck (takes no calls)" in render(collect(client))
    [call] = client.worker_info(row["worker_id"])["network"]["stuck_now"]
    assert call["name"] == "nap"
    others = {w["pid"] for w in client.workers()} - {row["pid"]}
    assert {client.call("whoami") for _ in range(6)} == others
    wait_until(lambda: not any(w["stuck"] for w in client.workers()), 10,
               "the stuck call never returned")
    assert row["pid"] in {client.call("whoami") for _ in range(6)}
