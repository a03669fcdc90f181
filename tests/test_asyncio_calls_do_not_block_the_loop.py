"""asyncio code awaits remote calls without blocking its event loop.

``await client.acall(...)`` / ``await client.aexec(...)`` and ``await
future`` on a call future, run with ``asyncio.run`` against a real local
cluster: many concurrent awaits, the remote exception in the awaiting task,
an event loop that keeps running while calls wait (and while a new client
connects), the receive timeout, and a cancelled task that cancels its call
on the cluster.
"""

import asyncio
import os
import time

import pytest

from helpers import wait_until
from pyfaas import Client
from pyfaas.errors import (PyFaaSFunctionExecutionError,
                           PyFaaSParameterMismatchError, PyFaaSTimeoutError)

pytestmark = pytest.mark.timeout(60)


def triple(x, plus=0):
    return 3 * x + plus


def invert(x):
    return 1 / x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def wait_for_file(path, timeout):
    """Return once ``path`` exists (the test creates it to let us go)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(path)


def append(path, text):
    with open(path, "a") as fh:
        fh.write(text)
    return text


@pytest.fixture(scope="module")
def registered(cluster):
    with cluster.client() as client:
        for fn in (triple, invert, nap, append):
            client.register(fn)
    return cluster


def test_many_concurrent_awaits_get_their_own_results(registered):
    async def main():
        with registered.client() as client:
            calls = [client.acall("triple", i, plus=1) for i in range(300)]
            calls += [client.aexec("triple", [i], {"plus": 2})
                      for i in range(100)]
            calls += [client.submit("triple", i) for i in range(100)]
            return await asyncio.gather(*calls)

    results = asyncio.run(main())
    assert results == ([3 * i + 1 for i in range(300)]
                       + [3 * i + 2 for i in range(100)]
                       + [3 * i for i in range(100)])


def test_the_remote_exception_reaches_the_awaiting_task(registered):
    async def main():
        with registered.client() as client:
            outcomes = await asyncio.gather(
                client.acall("invert", 0), client.acall("invert", 4),
                client.acall("invert"), client.exec_async("invert", [0]),
                return_exceptions=True)
            return outcomes, await client.acall("invert", 2)

    outcomes, after = asyncio.run(main())
    assert isinstance(outcomes[0], PyFaaSFunctionExecutionError)
    assert outcomes[0].remote_type == "ZeroDivisionError"
    assert outcomes[1] == 0.25
    assert isinstance(outcomes[2], PyFaaSParameterMismatchError)
    assert isinstance(outcomes[3], PyFaaSFunctionExecutionError)
    assert after == 0.5


def test_the_loop_runs_on_while_calls_wait(registered):
    async def ticker(stop, gaps):
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def main():
        stop, gaps = asyncio.Event(), []
        ticking = asyncio.ensure_future(ticker(stop, gaps))
        # A new client: connecting and reading the signature happen off
        # the loop too.
        with Client("127.0.0.1", registered.port) as client:
            naps = await asyncio.gather(*[client.acall("nap", 0.5)
                                          for _ in range(6)])
        stop.set()
        await ticking
        return naps, gaps

    naps, gaps = asyncio.run(main())
    assert naps == [0.5] * 6
    # Had a call blocked the loop, one gap would be 0.5 s or more.
    assert len(gaps) > 20 and max(gaps) < 0.3, max(gaps)


def test_no_answer_within_the_receive_timeout_is_a_timeout_error(
        registered):
    async def main():
        with Client("127.0.0.1", registered.port, timeout=0.3) as client:
            start = time.monotonic()
            with pytest.raises(PyFaaSTimeoutError) as info:
                await client.acall("nap", 2)
            assert time.monotonic() - start < 1.5
            assert "did not answer within 0.3 s" in str(info.value)
            with pytest.raises(PyFaaSTimeoutError):
                await client.aexec("nap", [2], timeout=0.2)  # the Worker's
            return await client.acall("nap", 0)

    assert asyncio.run(main()) == 0


def test_a_cancelled_task_cancels_its_queued_call(fresh_cluster, tmp_path):
    cluster = fresh_cluster(workers=1, max_threads=1)
    path = str(tmp_path / "ran.txt")
    go = str(tmp_path / "go")

    async def main():
        with cluster.client() as client:
            client.register(wait_for_file)
            client.register(append)
            # The Worker's one thread runs this until the test lets it go,
            # so the second call waits in its queue however slow the
            # machine is.
            blocker = asyncio.ensure_future(
                client.acall("wait_for_file", go, 30))
            queued = asyncio.ensure_future(client.acall("append", path, "x"))
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_until(
                    lambda: client.workers()[0]["inflight"] >= 2, 10,
                    "the two calls never reached the worker"))
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            open(go, "w").close()
            assert await blocker is True
            # One thread, in order: this runs after where the other would.
            return await client.acall("append", path + ".later", "later")

    assert asyncio.run(main()) == "later"
    assert os.path.exists(path + ".later")
    assert not os.path.exists(path)
