"""Real processes: supervised Workers come back by themselves.

One cluster for the module: a Director and three Workers run as
``python -m pyfaas worker`` does by default (each under its supervisor),
two threads each. Each test hurts it (SIGKILL, segfaults, stuck threads)
and ends with every Worker back under its id and a normal call working.
The supervisors, and the Worker processes they started, are stopped by
pid at the end (conftest.py, local_cluster.py).
"""

import os
import signal
import time

import pytest

from helpers import wait_until
from pyfaas.errors import (PyFaaSFunctionExecutionError,
                           PyFaaSPoisonCallError, PyFaaSTimeoutError,
                           PyFaaSWorkerLostError)
from pyfaas.tools.status import collect, render

pytestmark = pytest.mark.timeout(60)

WORKERS = 3


# ----- functions that run on the Workers -------------------------------------

def whoami():
    return os.getpid()


def segfault():
    import ctypes
    return ctypes.string_at(0)


def hang():
    import threading
    threading.Event().wait()


def shout(size):
    raise ValueError("A" * size)


# ----- the cluster -------------------------------------------------------------

@pytest.fixture(scope="module")
def healing(module_cluster_factory):
    cl = module_cluster_factory(workers=WORKERS, supervise=True,
                                max_threads=2)
    client = cl.client()
    client.register(whoami)
    client.register(segfault, name="segfault_idempotent", idempotent=True)
    client.register(segfault)
    client.register(hang)
    client.register(shout)
    return cl, client


def rows(client):
    return {w["worker_id"]: w for w in client.workers()}


def all_back(client, before, timeout=15):
    """Wait until every Worker of ``before`` (worker id -> row) is live
    again, in a new process; return the rows."""
    def back():
        now = rows(client)
        return now if set(before) <= set(now) and all(
            now[w]["pid"] != before[w]["pid"] for w in before) else None
    return wait_until(back, timeout, lambda: "workers not all back: %s"
                      % rows(client))


def still_serves(client):
    pids = {w["pid"] for w in client.workers()}
    assert client.call("whoami") in pids


# ----- the tests ---------------------------------------------------------------

def test_a_killed_worker_is_back_under_its_id_with_the_cause(healing):
    cl, client = healing
    before = rows(client)
    victim = sorted(before)[0]
    start = time.monotonic()
    os.kill(before[victim]["pid"], signal.SIGKILL)
    row = wait_until(lambda: rows(client).get(victim) if rows(client).get(
        victim, {}).get("pid") not in (None, before[victim]["pid"]) else None,
        10, "worker %s did not come back" % victim)
    back_s = time.monotonic() - start
    print("a worker killed with SIGKILL was back in %.2f s" % back_s)
    assert row["restarts"] == before[victim]["restarts"] + 1
    assert row["last_cause"] == "SIGKILL" and row["supervised"]
    info = client.worker_info(victim)
    assert info["supervision"]["last_cause"] == "SIGKILL"
    assert info["identity"]["pid"] == row["pid"]
    text = render(collect(client))
    assert "SIGKILL" in text and "restarts" in text
    still_serves(client)


def test_a_poison_call_fails_typed_and_every_worker_comes_back(healing):
    cl, client = healing
    before = rows(client)
    with pytest.raises(PyFaaSPoisonCallError) as info:
        client.call("segfault_idempotent")
    exc = info.value
    assert isinstance(exc, PyFaaSWorkerLostError)
    assert sorted(w for w, _ in exc.deaths) == sorted(before)
    assert [c for _, c in exc.deaths] == ["SIGSEGV"] * WORKERS
    assert "killed 3 workers" in str(exc) and "not sent again" in str(exc)
    now = all_back(client, before)
    assert all(now[w]["last_cause"] == "SIGSEGV" for w in now)
    logs = "".join(open(os.path.join(cl.workdir, "logs", name + ".log"),
                        errors="replace").read() for name in cl.workers)
    assert "Fatal Python error: Segmentation fault" in logs  # faulthandler
    assert "in segfault" in logs
    still_serves(client)


def test_a_crash_without_retries_says_which_signal_killed_the_worker(
        healing):
    cl, client = healing
    before = rows(client)
    with pytest.raises(PyFaaSWorkerLostError) as info:
        client.call("segfault")
    assert info.value.cause == "SIGSEGV"
    assert "died (SIGSEGV)" in str(info.value)
    all_back(client, {info.value.worker_id: before[info.value.worker_id]})
    still_serves(client)


def test_workers_whose_threads_are_all_stuck_recycle_themselves(healing):
    cl, client = healing
    before = rows(client)
    # Two per Worker take every thread; the two more are handed back
    # unstarted and run (and get stuck) once Workers are back.
    futures = [client.exec_async("hang", timeout=1.0)
               for _ in range(WORKERS * 2 + 2)]
    for future in futures:
        with pytest.raises(PyFaaSTimeoutError):
            future.result(timeout=15)
    now = all_back(client, before)
    assert all(now[w]["last_cause"].startswith("recycled") for w in now)
    start = time.monotonic()
    still_serves(client)
    assert time.monotonic() - start < 2.0  # (a stuck call never returns)


def test_a_long_exception_message_keeps_its_type_start_and_traceback_end(
        healing):
    cl, client = healing
    with pytest.raises(PyFaaSFunctionExecutionError) as info:
        client.call("shout", 200000)
    exc = info.value
    assert exc.remote_type == "ValueError"
    assert exc.remote_message.startswith("AAAA")
    assert "[cut: 200000 characters in all]" in exc.remote_message
    assert len(exc.remote_message) < 5000
    assert 'raise ValueError("A" * size)' in exc.remote_traceback
    assert exc.remote_traceback.rstrip().endswith("characters in all]")
