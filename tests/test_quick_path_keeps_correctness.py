"""Real processes: the behaviour the quick synchronous path must keep.

A synchronous caller reads its own reply when nobody else reads, and the
Worker's reading thread runs calls known to be quick itself. Neither may
cost correctness: a call that turns slow does not hold up the others on
its Worker, callers sharing a client never wait for each other's replies,
a caller that times out leaves the connection usable, replies of futures
still arrive when no caller reads, and an idle connection that the
Director closed is replaced before a call is lost on it.

Functions are defined here so that they travel to the Workers by value.
"""

import os
import signal
import sys
import threading
import time

import pytest

from helpers import wait_until
from pyfaas import Client
from pyfaas.errors import (PyFaaSFunctionRegistrationError,
                           PyFaaSNetworkError, PyFaaSParameterMismatchError,
                           PyFaaSTimeoutError)

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"


def nap(seconds):
    time.sleep(seconds)
    return seconds


def whoami():
    return os.getpid()


class ExitsWhenUnpickled:
    def __reduce__(self):
        return (sys.exit, (3,))


def _restart_director(cl):
    """Stop the Director and start a new one on its port; wait for the
    Worker to come back with whoami."""
    port = cl.port
    assert cl.director.stop() == 0
    cl.start_director(port=port)
    with cl.client() as probe:
        wait_until(lambda: probe.workers() and "whoami" in [
            f["name"] for f in probe.list().values()], 10,
            "the worker did not come back with whoami")


@pytest.fixture(scope="module")
def one_worker(module_cluster_factory):
    """A Director and one Worker with two threads."""
    cl = module_cluster_factory(workers=1, max_threads=2)
    with cl.client() as c:
        c.register(nap)
        c.register(whoami)
    return cl


def test_a_quick_function_that_turns_slow_does_not_hold_up_its_worker(
        one_worker):
    client = one_worker.client()
    other = one_worker.client()
    for _ in range(5):  # now known as quick on the Worker
        assert client.call("nap", 0) == 0
    slow = client.submit("nap", 3.0)
    wait_until(lambda: other.workers()[0]["inflight"] >= 1, 5,
               "the slow call never started")
    # The reading thread ran it itself; the watchdog hands the reading on.
    assert other.call("whoami") == other.workers()[0]["pid"]
    assert not slow.done(), "whoami waited for the slow call"
    assert slow.result(timeout=10) == 3.0
    # And the function is no longer taken for quick: still correct.
    assert client.call("nap", 0) == 0


def test_callers_sharing_a_client_do_not_wait_for_each_others_replies(
        one_worker):
    client = one_worker.client()
    done = []

    def long_caller():
        done.append(("long", client.call("nap", 1.5)))

    thread = threading.Thread(target=long_caller)
    thread.start()
    try:
        wait_until(lambda: client.workers()[0]["inflight"] >= 1, 5,
                   "the long call never started")
        # Whoever reads the connection now (perhaps the long caller),
        # these replies reach this thread at once.
        for _ in range(20):
            assert isinstance(client.call("whoami"), int)
        assert done == [], "the short calls waited for the long one"
    finally:
        thread.join(10)
    assert done == [("long", 1.5)]


def test_futures_complete_with_no_caller_reading(one_worker):
    client = one_worker.client()
    futures = [client.submit("nap", 0.05 * (i % 3)) for i in range(30)]
    assert [f.result(timeout=10) for f in futures] == [
        0.05 * (i % 3) for i in range(30)]
    # A synchronous call in between takes the reading and gives it back.
    late = client.submit("nap", 0.3)
    assert client.call("nap", 0) == 0
    assert late.result(timeout=10) == 0.3


def test_a_caller_that_timed_out_leaves_the_connection_usable(one_worker):
    with Client(HOST, one_worker.port, 0.3) as client:
        with pytest.raises(PyFaaSTimeoutError):
            client.call("nap", 1.0)
        # The late reply is dropped when it comes; the stream stays whole.
        for _ in range(5):
            assert client.call("nap", 0) == 0
        time.sleep(1.0)
        assert client.call("nap", 0) == 0


def test_an_idle_connection_closed_by_a_restarted_director_is_replaced(
        fresh_cluster):
    cl = fresh_cluster(workers=1)
    client = cl.client()
    client.register(whoami)
    before = client.call("whoami")
    _restart_director(cl)
    # No request was in flight when the old connection closed: the first
    # call after the restart must not be lost on it.
    assert client.call("whoami") == before


def test_an_unread_late_reply_does_not_hide_the_directors_eof(fresh_cluster):
    cl = fresh_cluster(workers=1)
    with Client(HOST, cl.port, 1.0) as client:
        client.register(whoami)
        before = client.call("whoami")
        cl.director.signal(signal.SIGSTOP)
        try:
            with pytest.raises(PyFaaSTimeoutError):
                client.ping()
        finally:
            cl.director.signal(signal.SIGCONT)
        # The PING's late reply now waits in the socket, and nobody reads an
        # idle connection; then the Director goes away and comes back.
        with cl.client() as probe:
            probe.ping()
        _restart_director(cl)
        assert client.exec("whoami", timeout=5.0) == before


def test_a_call_sent_while_the_reader_runs_a_slow_callback_ends(
        fresh_cluster):
    # The thread reading the old connection is busy in a done-callback
    # when the Director restarts; a call sent meanwhile ends with its
    # result or a typed error, never hangs.
    cl = fresh_cluster(workers=1)
    client = Client(HOST, cl.port, 5.0)
    client.register(whoami)
    release, in_callback = threading.Event(), threading.Event()

    def slow_callback(_):
        in_callback.set()
        release.wait(20)

    client.submit("whoami").add_done_callback(slow_callback)
    assert in_callback.wait(5)
    try:
        _restart_director(cl)
        second = client.submit("whoami")
    finally:
        release.set()
    try:
        assert isinstance(second.result(timeout=10), int)
    except PyFaaSNetworkError:
        pass  # it went out on the connection the Director had closed
    assert isinstance(client.call("whoami"), int)


def test_code_that_exits_when_unpickled_is_refused_and_the_worker_serves_on(
        one_worker):
    client = one_worker.client()
    bomb = ExitsWhenUnpickled()

    def exits():
        return bomb

    with pytest.raises(PyFaaSFunctionRegistrationError) as info:
        client.register(exits)
    assert "SystemExit" in str(info.value)
    for _ in range(3):
        assert client.call("nap", 0) == 0


def test_a_call_shape_that_fitted_is_checked_again_after_a_new_signature(
        one_worker):
    def shaped(a, b=0):
        return a + b

    def reshaped(a, b):  # b is required now
        return a * b

    with one_worker.client() as client:
        client.register(shaped, name="hot_shaped")
        assert client.call("hot_shaped", 1) == 1  # this shape fits
        assert client.call("hot_shaped", 1, b=2) == 3
        client.register(reshaped, name="hot_shaped")
        with pytest.raises(PyFaaSParameterMismatchError):
            client.call("hot_shaped", 1)  # refused before sending
        assert client.call("hot_shaped", 3, b=2) == 6
