"""Real processes: calls that go wrong, in threads and in isolated processes.

``limited``: one Worker (4 threads, ``call_timeout_s`` 1 s) behind a
Director, both with ``[network] max_frame_bytes`` 1 MiB: timeouts, results
and exceptions that cannot travel, arguments and results over the limit.
``isolated``: one Worker with ``isolation = "process"``, one child process,
a memory and a CPU limit: crashes, limits and timeouts kill only the child.
After each fault the same Worker process (same pid) and a brand-new client
must still serve a normal call.
"""

import ctypes
import os
import threading
import time

import pytest

from fault_helpers import pid_gone
from helpers import wait_until
from pyfaas.errors import (PyFaaSFunctionCrashedError,
                           PyFaaSFunctionExecutionError,
                           PyFaaSSerializationError, PyFaaSTimeoutError)

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
CALL_TIMEOUT_S = 1.0
MEMORY_LIMIT_MB = 256


# ----- functions that run on the Workers -------------------------------------

def whoami():
    return os.getpid()


def slow(seconds):
    time.sleep(seconds)
    return seconds


def echo_size(blob):
    return len(blob)


def make_lock():
    return threading.Lock()


def make_generator():
    return (i for i in range(3))


def big_result(n):
    return b"x" * n


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_locked():
    raise LockedError("holding a lock")


def exit_13():
    os._exit(13)


def segfault():
    ctypes.string_at(0)


def eat_memory():
    return len(bytearray(2 * MEMORY_LIMIT_MB * MIB))


def burn_cpu():
    n = 0
    while True:
        n += 1


def burn_cpu_for(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return seconds


# ----- fixtures --------------------------------------------------------------

@pytest.fixture(scope="module")
def limited(module_cluster_factory):
    """Director + 1 Worker (4 threads, call_timeout_s 1 s), frames <= 1 MiB."""
    small = {"network": {"max_frame_bytes": MIB}}
    cl = module_cluster_factory(workers=1, max_threads=4,
                                call_timeout_s=CALL_TIMEOUT_S,
                                director_extra=small, worker_extra=small)
    with cl.client() as client:
        for fn in (whoami, slow, echo_size, make_lock, make_generator,
                   big_result, raise_locked):
            client.register(fn, name=fn.__name__)
    return cl


@pytest.fixture(scope="module")
def isolated(module_cluster_factory):
    """Director + 1 Worker running calls in 1 child process with limits;
    frames <= 1 MiB."""
    small = {"network": {"max_frame_bytes": MIB}}
    cl = module_cluster_factory(workers=1, max_threads=1, isolation="process",
                                memory_limit_mb=MEMORY_LIMIT_MB,
                                cpu_time_limit_s=1, director_extra=small,
                                worker_extra=small)
    with cl.client() as client:
        for fn in (whoami, slow, echo_size, exit_13, segfault,
                   eat_memory, burn_cpu, burn_cpu_for, big_result,
                   make_lock, raise_locked):
            client.register(fn, name=fn.__name__)
    return cl


def _worker(cl):
    """(worker id, pid of the Worker process) of a 1-Worker cluster."""
    with cl.client() as client:
        (row,) = client.workers()
    return row["worker_id"], row["pid"]


def _still_serves(cl, worker_pid, client=None):
    """The same Worker process serves a normal call from a new client (and
    from ``client``, whose connection outlived the fault)."""
    fresh = cl.client()
    for c in [fresh] + ([client] if client is not None else []):
        (row,) = c.workers()
        assert row["pid"] == worker_pid, "the worker process changed"
        assert c.call("echo_size", b"four") == 4
    fresh.close()
    assert any(p.pid == worker_pid and p.alive()
               for p in cl.workers.values())


# ----- timeouts --------------------------------------------------------------

def test_exec_timeout_is_answered_by_the_worker_and_counted(limited):
    wid, pid = _worker(limited)
    client = limited.client()
    fid = [f for f, info in client.list().items() if info["name"] == "slow"][0]
    stuck_before = client.worker_info(wid)["network"]["stuck_calls"]

    start = time.monotonic()
    with pytest.raises(PyFaaSTimeoutError) as info:
        client.exec("slow", [3], timeout=0.5)
    elapsed = time.monotonic() - start

    assert elapsed < 1.5
    message = str(info.value)
    assert "'slow'" in message and wid in message, message  # the Worker's
    # The slot is free in the accounting long before the thread returns.
    wait_until(lambda: client.worker_info(wid)["network"]["inflight"] == 0,
               1.5, "the worker still counts the timed-out call")
    assert client.workers()[0]["inflight"] == 0
    assert client.worker_info(wid)["network"]["stuck_calls"] > stuck_before
    (proc,) = limited.workers.values()
    wait_until(lambda: b"exceeded its 0.5 s timeout" in proc.output(), 5,
               "the worker did not log the stuck call")
    wait_until(lambda: client.get_stats()["functions"][fid]["timeouts"] >= 1,
               5, lambda: "no timeout in the stats: %s"
               % client.get_stats()["functions"].get(fid))
    _still_serves(limited, pid, client)


def test_call_timeout_s_applies_to_calls_without_timeout(limited):
    _, pid = _worker(limited)
    client = limited.client()

    start = time.monotonic()
    with pytest.raises(PyFaaSTimeoutError) as info:
        client.exec("slow", [3])
    elapsed = time.monotonic() - start

    assert CALL_TIMEOUT_S - 0.1 <= elapsed < CALL_TIMEOUT_S + 1.5
    assert "call_timeout_s" in str(info.value)
    assert client.exec("slow", [0.05]) == 0.05  # short calls are not cut
    _still_serves(limited, pid, client)


# ----- what cannot travel ----------------------------------------------------

@pytest.mark.parametrize("name,type_name", [("make_lock", "lock"),
                                            ("make_generator", "generator")])
def test_result_that_cannot_be_pickled(limited, name, type_name):
    _, pid = _worker(limited)
    client = limited.client()

    with pytest.raises(PyFaaSSerializationError) as info:
        client.call(name)

    message = str(info.value)
    assert type_name in message and name in message, message
    _still_serves(limited, pid, client)


def test_result_over_the_size_limit(limited):
    _, pid = _worker(limited)
    client = limited.client()

    with pytest.raises(PyFaaSSerializationError) as info:
        client.call("big_result", 2 * MIB)

    message = str(info.value)
    assert "big_result" in message and "bytes" in message, message
    assert "max_frame_bytes" in message, message
    assert client.call("big_result", 1000) == b"x" * 1000
    _still_serves(limited, pid, client)


def test_exception_that_cannot_be_pickled(limited):
    _, pid = _worker(limited)
    client = limited.client()

    with pytest.raises(PyFaaSFunctionExecutionError) as info:
        client.call("raise_locked")

    assert info.value.remote_type == "LockedError"
    assert "LockedError" in str(info.value)
    assert "holding a lock" in info.value.remote_message
    _still_serves(limited, pid, client)


def test_argument_over_the_limit_is_not_sent(limited):
    wid, pid = _worker(limited)
    client = limited.client()
    requests = client.worker_info(wid)["network"]["requests"]
    routed = client.get_stats()["director"]["requests_routed"]

    with pytest.raises(PyFaaSSerializationError) as info:
        client.call("echo_size", b"x" * (2 * MIB))

    assert "nothing was sent" in str(info.value)
    assert "max_frame_bytes" in str(info.value)
    assert client.worker_info(wid)["network"]["requests"] == requests
    assert client.get_stats()["director"]["requests_routed"] == routed
    _still_serves(limited, pid, client)


# ----- process isolation -----------------------------------------------------

def _wait_gone(child):
    wait_until(lambda: pid_gone(child), 5, "the old child %d still runs"
               % child)


def _fault(cl, name, kind=PyFaaSFunctionCrashedError, **options):
    """Run ``name``; return (error, child pid before, child pid after).

    Only one child serves the Worker, so ``whoami`` returns its pid.
    """
    _, pid = _worker(cl)
    client = cl.client()
    child_before = client.call("whoami")
    assert child_before != pid, "the call did not run in a child process"
    with pytest.raises(kind) as info:
        client.exec(name, **options)
    child_after = client.call("whoami")
    _still_serves(cl, pid, client)
    return info.value, child_before, child_after


def test_isolated_os_exit_is_reported_and_the_child_replaced(isolated):
    error, before, after = _fault(isolated, "exit_13")
    assert "exit code 13" in str(error), str(error)
    assert "exit_13" in str(error)
    assert before != after
    _wait_gone(before)


def test_isolated_segfault_is_reported_as_signal_11(isolated):
    error, before, after = _fault(isolated, "segfault")
    assert "signal 11" in str(error), str(error)
    assert before != after
    _wait_gone(before)


def test_isolated_memory_limit(isolated):
    error, _, _ = _fault(isolated, "eat_memory")
    assert "memory limit" in str(error), str(error)
    assert str(MEMORY_LIMIT_MB) in str(error)
    assert "MemoryError" in str(error)


def test_isolated_cpu_time_limit_kills_the_child_with_a_signal(isolated):
    error, before, after = _fault(isolated, "burn_cpu")
    assert "signal" in str(error), str(error)
    assert "cpu_time_limit_s" in str(error), str(error)
    assert before != after
    _wait_gone(before)


def test_isolated_cpu_time_limit_applies_to_each_call(isolated):
    _, pid = _worker(isolated)
    client = isolated.client()
    child = client.call("whoami")
    # 4 calls of 0.4 s CPU each, one after the other in the same child:
    # each is well under the 1 s limit.
    try:
        assert [client.call("burn_cpu_for", 0.4) for _ in range(4)] == \
            [0.4] * 4
        assert client.call("whoami") == child
    finally:
        _still_serves(isolated, pid, client)


def test_isolated_timeout_kills_the_child(isolated):
    start = time.monotonic()
    error, before, after = _fault(isolated, "slow", PyFaaSTimeoutError,
                                  args=[5], timeout=0.5)
    assert "'slow'" in str(error), str(error)
    assert before != after
    _wait_gone(before)
    assert time.monotonic() - start < 5, "the child was not killed"


def test_isolated_result_that_cannot_be_pickled(isolated):
    error, before, after = _fault(isolated, "make_lock",
                                  PyFaaSSerializationError)
    assert "lock" in str(error) and "make_lock" in str(error), str(error)
    assert before == after  # nothing crashed


def test_isolated_exception_that_cannot_be_pickled(isolated):
    error, before, after = _fault(isolated, "raise_locked",
                                  PyFaaSFunctionExecutionError)
    assert error.remote_type == "LockedError", error.remote_type
    assert before == after


def test_isolated_result_over_the_size_limit_names_its_type(isolated):
    error, before, after = _fault(isolated, "big_result",
                                  PyFaaSSerializationError, args=[2 * MIB])
    assert "max_frame_bytes" in str(error), str(error)
    assert "(type bytes)" in str(error), str(error)
