"""Real processes: futures, ``map``, ``pyfaas.Executor``, Least-Loaded, bench.

``Client.submit`` / ``exec_async`` futures, ordered and lazy ``map``, one
client shared by many threads, the standard Executor semantics (submit, map,
shutdown, context manager, exceptions from ``result()``, ``cancel()`` that
really cancels a queued call on the cluster), the Least-Loaded strategy and
a smoke run of ``python -m pyfaas bench``.

Functions are defined here so that they travel to the Workers by value.
"""

import concurrent.futures as cf
import inspect
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import interruptible, total_requests, wait_until
from pyfaas.errors import (PyFaaSFunctionExecutionError,
                           PyFaaSParameterMismatchError)
from pyfaas.client import Executor

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
BENCH_TIMEOUT_S = 120


# ----- functions that run on the Workers -------------------------------------

def square(x):
    return x * x


def cube(x):
    return x ** 3


def power(a, b):
    return a ** b


def quartic(x):
    return x ** 4


def mul_add(t, i):
    return t * 1000 + i


def fails_at(x, bad):
    """x * 10, except for the items in ``bad``; the first one fails slowly."""
    if x in bad:
        if x == bad[0]:
            time.sleep(0.2)   # a later failure is ready first
        raise ValueError("bad item %d" % x)
    return x * 10


def sleeper(seconds):
    time.sleep(seconds)
    return seconds


def sleep_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def whoami():
    return os.getpid()


def append(path, text):
    with open(path, "a") as fh:
        fh.write(text + "\n")
    return text


class Scaler:
    def __init__(self, k):
        self.k = k

    def scale(self, x):
        return x * self.k


def make_adder(n):
    def adder(x):
        return x + n
    return adder


@pytest.fixture(scope="module")
def registered(cluster):
    with cluster.client() as c:
        for fn in (square, cube, power, mul_add, fails_at, sleeper, whoami):
            c.register(fn)
    return cluster


@pytest.fixture
def aclient(registered):
    c = registered.client()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def executor(registered):
    ex = Executor(director="127.0.0.1:%d" % registered.port)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True)


# ----- Client.submit and exec_async ------------------------------------------------

def test_submit_returns_a_standard_future(aclient):
    fut = aclient.submit("power", 3, b=4)
    assert isinstance(fut, cf.Future)
    assert fut.result(timeout=10) == 81
    assert fut.done() and not fut.cancelled()

    futs = [aclient.exec_async("square", [i]) for i in range(50)]
    done, not_done = cf.wait(futs, timeout=10)
    assert not not_done
    assert [f.result() for f in futs] == [i * i for i in range(50)]


def test_submit_reraises_the_remote_exception_from_result(aclient):
    fut = aclient.submit("fails_at", 3, [3])
    with pytest.raises(PyFaaSFunctionExecutionError) as info:
        fut.result(timeout=10)
    assert info.value.remote_type == "ValueError"
    assert info.value.remote_message == "bad item 3"
    assert "in fails_at" in info.value.remote_traceback
    assert isinstance(fut.exception(timeout=1), PyFaaSFunctionExecutionError)
    assert aclient.submit("square", 4).result(timeout=10) == 16


def test_submit_with_wrong_arguments_raises_at_once(aclient):
    with pytest.raises(PyFaaSParameterMismatchError):
        aclient.submit("square", 1, 2)


# ----- map ---------------------------------------------------------------------------

def test_map_returns_2000_results_in_order(aclient):
    results = aclient.map("square", range(2000))
    assert inspect.isgenerator(results)
    assert list(results) == [i * i for i in range(2000)]


def test_map_zips_several_iterables(aclient):
    assert list(aclient.map("power", [2, 3, 4], [10, 2])) == [1024, 9]


def test_map_over_an_endless_iterable_is_lazy(registered, aclient):
    consumed = []

    def numbers():
        for i in itertools.count():
            consumed.append(i)
            yield i

    before = total_requests(aclient)
    results = aclient.map("square", numbers())
    assert consumed == []             # nothing is sent before iteration
    first = list(itertools.islice(results, 10))
    results.close()

    assert first == [i * i for i in range(10)]
    assert len(consumed) <= 1000, len(consumed)
    # Later calls on the same connection arrive after every map call the
    # Director forwarded, on each Worker (Round-Robin): then count.
    pids = {aclient.call("whoami") for _ in range(4)}
    assert len(pids) == 2
    sent = total_requests(aclient) - before
    assert sent < 1000, "%d calls reached the workers" % sent


def test_map_raises_the_first_failing_items_error_at_its_position(aclient):
    got = []
    with pytest.raises(PyFaaSFunctionExecutionError) as info:
        for value in aclient.map("fails_at", range(20),
                                 itertools.repeat([7, 12])):
            got.append(value)
    assert got == [i * 10 for i in range(7)]
    assert info.value.remote_message == "bad item 7"
    assert info.value.remote_type == "ValueError"
    assert aclient.call("square", 5) == 25


def test_map_timeout_bounds_the_whole_iteration(aclient):
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        list(aclient.map("sleeper", [0, 3], timeout=0.5))
    assert time.monotonic() - start < 2.0
    assert aclient.call("square", 6) == 36


def test_many_threads_share_one_client(aclient):
    errors = []

    def work(t):
        try:
            for i in range(200):
                result = aclient.call("mul_add", t, i)
                if result != t * 1000 + i:
                    errors.append((t, i, result))
        except Exception as exc:  # reported below, not lost in the thread
            errors.append((t, repr(exc)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=45)
    assert not any(th.is_alive() for th in threads)
    assert errors == []


def test_many_threads_mixing_submit_and_map(aclient):
    def work(t):
        futs = [aclient.submit("mul_add", t, i) for i in range(100)]
        mapped = list(aclient.map("mul_add", itertools.repeat(t, 100),
                                  range(100)))
        return [f.result(timeout=30) for f in futs] == mapped == [
            t * 1000 + i for i in range(100)]

    with cf.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))


# ----- Executor ------------------------------------------------------------------------

def test_executor_submit_plain_function_lambda_and_closure(executor):
    offset = 5
    assert executor.submit(square, 7).result(timeout=10) == 49
    assert executor.submit(lambda x: x + offset, 1).result(timeout=10) == 6
    assert executor.submit(make_adder(3), 4).result(timeout=10) == 7
    assert executor.submit(power, 2, b=5).result(timeout=10) == 32
    assert isinstance(executor.submit(cube, 2), cf.Future)


def test_executor_registers_a_function_once(executor):
    client = executor.client
    before = len(client.list())
    futs = [executor.submit(quartic, i) for i in range(30)]
    futs += [executor.submit(quartic, 2) for i in range(30)]
    assert [f.result(timeout=10) for f in futs] == [
        i ** 4 for i in range(30)] + [16] * 30
    listing = client.list()
    assert len(listing) == before + 1
    names = [info["name"] for info in listing.values()]
    assert sum("quartic" in name for name in names) == 1
    assert list(executor.map(quartic, range(3))) == [0, 1, 16]
    assert len(client.list()) == before + 1


def _count_deploys(executor, monkeypatch):
    """A list that grows by one each time the Executor registers code
    (through its client's public ``register``)."""
    sent = []
    register = executor.client.register

    def counting(fn, name=None, **kwargs):
        sent.append(name)
        return register(fn, name, **kwargs)

    monkeypatch.setattr(executor.client, "register", counting)
    return sent


def test_executor_does_not_resend_a_bound_method(executor, monkeypatch):
    sent = _count_deploys(executor, monkeypatch)
    scaler = Scaler(3)
    futs = [executor.submit(scaler.scale, i) for i in range(5)]
    assert [f.result(timeout=10) for f in futs] == [0, 3, 6, 9, 12]
    assert len(sent) == 1, sent


def test_executor_does_not_resend_the_same_code(executor, monkeypatch):
    sent = _count_deploys(executor, monkeypatch)
    futs = [executor.submit(lambda x: x + 1, i) for i in range(5)]
    assert [f.result(timeout=10) for f in futs] == [1, 2, 3, 4, 5]
    assert len(sent) == 1, sent


def test_executor_map_in_order(executor):
    assert list(executor.map(square, range(300))) == [i * i
                                                      for i in range(300)]
    assert list(executor.map(power, [2, 3, 10], [3, 2, 0])) == [8, 9, 1]
    assert list(executor.map(lambda x: -x, range(5), chunksize=2)) == [
        0, -1, -2, -3, -4]


def test_executor_reraises_exceptions_from_result(executor):
    fut = executor.submit(fails_at, 4, [4])
    with pytest.raises(PyFaaSFunctionExecutionError) as info:
        fut.result(timeout=10)
    assert info.value.remote_type == "ValueError"
    assert "bad item 4" in str(info.value)
    with pytest.raises(PyFaaSFunctionExecutionError):
        list(executor.map(fails_at, [1, 2], itertools.repeat([2])))


def test_executor_shutdown_waits_for_pending_futures(registered):
    ex = Executor(director="127.0.0.1:%d" % registered.port)
    futs = [ex.submit(sleeper, 0.3) for _ in range(3)]
    ex.shutdown(wait=True)
    assert all(f.done() for f in futs)
    assert [f.result(timeout=0) for f in futs] == [0.3] * 3
    with pytest.raises(RuntimeError):
        ex.submit(square, 2)
    with pytest.raises(RuntimeError):
        ex.map(square, [1])
    ex.shutdown(wait=True)   # again: harmless


def test_executor_shutdown_without_wait_lets_pending_futures_finish(
        registered):
    ex = Executor(director="127.0.0.1:%d" % registered.port)
    fut = ex.submit(sleeper, 0.3)
    start = time.monotonic()
    ex.shutdown(wait=False)
    assert time.monotonic() - start < 0.2
    with pytest.raises(RuntimeError):
        ex.submit(square, 2)
    assert fut.result(timeout=10) == 0.3


def test_executor_context_manager(registered):
    with Executor(config=registered.client_config()) as ex:
        fut = ex.submit(sleeper, 0.3)
        assert ex.submit(square, 9).result(timeout=10) == 81
    assert fut.done() and fut.result(timeout=0) == 0.3
    with pytest.raises(RuntimeError):
        ex.submit(square, 2)


def test_cancel_a_queued_call_really_cancels_it(fresh_cluster, tmp_path):
    cl = fresh_cluster(workers=1, max_threads=1)
    path = str(tmp_path / "ran.txt")
    with Executor(director="127.0.0.1:%d" % cl.port) as ex:
        client = ex.client
        client.register(append)
        blocker = ex.submit(sleeper, 1.0)
        queued_ex = ex.submit(append, path, "executor")
        queued_client = client.submit("append", path, "client")
        wait_until(lambda: client.workers()[0]["inflight"] >= 3, 5,
                   "the three calls never reached the worker")
        assert not blocker.done()

        assert queued_ex.cancel() is True
        assert queued_client.cancel() is True
        assert queued_ex.cancelled() and queued_client.cancelled()
        with pytest.raises(cf.CancelledError):
            queued_ex.result(timeout=0)

        assert blocker.result(timeout=10) == 1.0
        # One thread, FIFO: this one runs after where the others would have.
        assert ex.submit(append, path + ".later", "later").result(
            timeout=10) == "later"
    assert os.path.exists(path + ".later")
    assert not os.path.exists(path)


def test_cancel_after_the_result_arrived_returns_false(aclient):
    fut = aclient.submit("square", 3)
    assert fut.result(timeout=10) == 9
    assert fut.cancel() is False
    assert fut.result() == 9


# ----- Least-Loaded ----------------------------------------------------------------------

def test_least_loaded_sends_a_burst_to_the_idle_worker(fresh_cluster):
    cl = fresh_cluster(workers=2, strategy="Least-Loaded")
    client = cl.client()
    client.register(sleep_pid)
    client.register(whoami)
    long_call = client.submit("sleep_pid", 2.0)
    wait_until(lambda: sum(w["inflight"] for w in client.workers()) >= 1, 5,
               "the long call never reached a worker")
    busy = [w["pid"] for w in client.workers() if w["inflight"]]
    assert len(busy) == 1

    burst = [client.call("whoami") for _ in range(10)]
    burst += [f.result(timeout=10)
              for f in [client.submit("whoami") for _ in range(1)]]

    assert not long_call.done()
    idle_pid = ({proc.pid for proc in cl.workers.values()} - set(busy)).pop()
    assert burst == [idle_pid] * 11
    assert long_call.result(timeout=10) == busy[0]


# ----- the bench command --------------------------------------------------------------------

@pytest.mark.timeout(BENCH_TIMEOUT_S + 30)
def test_bench_smoke(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep)
                       if x])
    env["TMPDIR"] = str(tmp_path)  # where its cluster's directory goes
    # Pinned to one CPU where that is possible (--cpu): both ways of
    # running are smoke-tested, the other one by test_defaults_tokens_and_odd_peers.
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyfaas", "bench", "--calls", "50",
         "--async-calls", "200", "--mib-rounds", "3", "--json"]
        + ([] if cpu is None else ["--cpu", str(cpu)]),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, cwd=str(ROOT),
        universal_newlines=True, preexec_fn=interruptible)
    try:
        out, err = proc.communicate(timeout=BENCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGINT lets the bench stop the cluster it started (finally:).
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        pytest.fail("bench did not finish within %d s" % BENCH_TIMEOUT_S)

    assert proc.returncode == 0, err
    figures = json.loads(out)
    for part in ("floor", "pyfaas"):
        for key in ("sync_p50_us", "sync_p99_us", "sync_calls_per_s",
                    "mib_p50_ms", "mib_per_s"):
            assert figures[part][key] > 0, (part, key)
    assert figures["pyfaas"]["async_calls"] == 200
    assert figures["pyfaas"]["async_calls_per_s"] > 0
    assert 0 < figures["start_to_first_result_s"] < 30
    rss = figures["rss_mb"]
    assert rss["director"] > 0 and rss["total"] >= rss["director"]
    assert len(rss) == 1 + figures["workers"] + 1   # director, workers, total
    assert figures["pinned_cpu"] == cpu
    if cpu is not None:
        assert figures["director_cpus"] == [cpu]
    assert not list(tmp_path.iterdir())  # the cluster's directory is gone


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"),
                    reason="pinning to a CPU needs Linux")
def test_bench_pinned_from_a_library_call_gives_the_cpus_back():
    from pyfaas.tools.bench import run_bench
    before = os.sched_getaffinity(0)
    cpu = max(before)
    with open(os.devnull, "w") as out:
        figures = run_bench(workers=1, calls=20, async_calls=20, mib_rounds=1,
                            as_json=True, out=out, cpu=cpu)
    assert figures["pinned_cpu"] == cpu and figures["director_cpus"] == [cpu]
    assert os.sched_getaffinity(0) == before


# ----- the API the issue names -------------------------------------------------------------

def test_executor_is_exported_as_pyfaas_executor():
    import pyfaas
    assert pyfaas.Executor is Executor


def test_functional_exec_async(registered):
    import pyfaas
    pyfaas.pyfaas_config(registered.client_config())
    try:
        fut = pyfaas.pyfaas_exec_async("square", [6])
        assert fut.result(timeout=10) == 36
    finally:
        pyfaas.pyfaas_close()
