"""Real processes: a Director and Workers on 127.0.0.1, driven through the Client.

Tests on the shared ``cluster`` only do ordinary things and use names of their
own. Tests that kill, restart or signal a process get a ``fresh_cluster`` and
end with a normal call that must succeed. Functions are defined in this module
so that they travel to the Workers by value.
"""

import importlib
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import (process_of, reserve_port, succeeds, total_requests,
                     wait_until, worker_pids)
from pyfaas import (Client, pyfaas_close, pyfaas_config, pyfaas_exec,
                    pyfaas_get_worker_ids, pyfaas_get_worker_info, pyfaas_list,
                    pyfaas_ping, pyfaas_register, pyfaas_unregister)
from pyfaas.errors import (PyFaaSFunctionExecutionError,
                           PyFaaSFunctionNotRegisteredError,
                           PyFaaSFunctionRegistrationError,
                           PyFaaSFunctionUnregistrationError,
                           PyFaaSNoWorkersError, PyFaaSParameterMismatchError,
                           PyFaaSTimeoutError, PyFaaSWorkerInfoError,
                           PyFaaSWorkerKillError, PyFaaSWorkerLostError)

pytestmark = pytest.mark.timeout(60)

EXIT_WAIT_S = 10.0


# ----- functions that run on the Workers -------------------------------------

def add3(a, b, c=12):
    """a + b + c"""
    return a + b + c


def whoami():
    return os.getpid()


def fails(x):
    value = x * 2
    raise ValueError("bad value %d" % value)  # the line the traceback shows


def exits():
    raise SystemExit(3)


def interrupts():
    raise KeyboardInterrupt("pressed")


def sleeper(seconds):
    time.sleep(seconds)
    return seconds


def make_adder(n):
    def adder(x):
        return x + n + len(CAPTURED)
    return adder


CAPTURED = "abc"


# ----- registering and calling -------------------------------------------------

def test_register_then_exec_by_name_by_id_and_call(client):
    fid = client.register(add3, name="core_add3")

    assert client.exec("core_add3", [5, 6], {"c": 56}) == 67
    assert client.exec(fid, [5, 6], {"c": 56}) == 67
    assert client.exec("core_add3", [1, 2]) == 15
    assert client.call("core_add3", 5, 6, c=56) == 67
    assert client.call(fid, 1, b=2) == 15


def test_functional_api_from_client_toml(cluster):
    pyfaas_config(cluster.client_config())
    try:
        fid = pyfaas_register(add3, "api_add3")
        assert pyfaas_exec("api_add3", [5, 6], {"c": 56}) == 67
        assert pyfaas_exec(fid, [5, 6]) == 23

        listing = pyfaas_list()
        assert listing[fid]["name"] == "api_add3"
        ids = pyfaas_get_worker_ids()
        assert len(ids) == 2
        assert pyfaas_get_worker_info(ids[0])["identity"]["worker_id"] == ids[0]
        assert pyfaas_ping()["workers"] == 2

        assert pyfaas_unregister("api_add3") == 1  # as the original's
        assert fid not in pyfaas_list()
        with pytest.raises(PyFaaSFunctionNotRegisteredError):
            pyfaas_exec("api_add3", [1, 2])
    finally:
        pyfaas_close()


def test_closure_and_lambda(client):
    client.register(make_adder(100), name="core_closure")
    offset = 7
    client.register(lambda x, y=1: (x + offset) * y, name="core_lambda")

    assert client.call("core_closure", 1) == 104
    assert client.call("core_lambda", 3) == 10
    assert client.call("core_lambda", 3, y=2) == 20


def test_lambda_without_name_is_refused_before_sending(client):
    with pytest.raises(PyFaaSFunctionRegistrationError, match="name="):
        client.register(lambda x: x)

    assert client.ping()["workers"] == 2


MODULE_SOURCE = '''
"""A user module that only the test process can import."""

FACTOR = 3


def _helper(x):
    return x * FACTOR


def compute(x):
    return {"value": _helper(x), "module": __name__}
'''


def test_function_from_a_module_the_worker_cannot_import(client, tmp_path,
                                                           monkeypatch):
    name = "pyfaas_user_mod_%d" % os.getpid()
    (tmp_path / (name + ".py")).write_text(MODULE_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))   # the test process only
    module = importlib.import_module(name)
    try:
        client.register(module.compute, name="core_user_module")

        result = client.call("core_user_module", 5)
        assert result["value"] == 15

        # The Worker really cannot import the module: it ran it by value.
        client.register(lambda: importlib.util.find_spec(name) is None,
                        name="core_cannot_import")
        assert client.call("core_cannot_import") is True
    finally:
        sys.modules.pop(name, None)


# ----- errors ---------------------------------------------------------------

def test_remote_exception_carries_type_message_and_traceback(client):
    client.register(fails, name="core_fails")

    with pytest.raises(PyFaaSFunctionExecutionError) as info:
        client.call("core_fails", 21)

    exc = info.value
    assert exc.remote_type == "ValueError"
    assert exc.remote_message == "bad value 42"
    assert 'raise ValueError("bad value %d" % value)' in exc.remote_traceback
    assert "in fails" in exc.remote_traceback
    assert exc.worker_id in client.worker_ids()
    assert "bad value 42" in str(exc)
    client.register(add3, name="core_after_fails")
    assert client.call("core_after_fails", 1, 2) == 15


@pytest.mark.parametrize("fn, remote_type", [(exits, "SystemExit"),
                                             (interrupts, "KeyboardInterrupt")])
def test_system_exit_and_keyboard_interrupt_are_reported(cluster, client, fn,
                                                         remote_type):
    name = "core_" + fn.__name__
    client.register(fn, name=name)
    client.register(whoami, name="core_whoami_" + fn.__name__)
    before = sorted(client.worker_ids())

    for _ in range(2):  # Round-Robin: once on each Worker
        with pytest.raises(PyFaaSFunctionExecutionError) as info:
            client.call(name)
        assert info.value.remote_type == remote_type

    # Both Workers still serve.
    assert sorted(client.worker_ids()) == before
    pids = {client.call("core_whoami_" + fn.__name__) for _ in range(4)}
    assert pids == worker_pids(cluster)


def test_wrong_arguments_are_refused_before_sending(client, tmp_path):
    log_file = tmp_path / "runs.txt"

    def record(a, b, *, flag=False):
        with open(str(log_file), "a") as fh:
            fh.write("%s %s %s\n" % (a, b, flag))
        return a + b

    client.register(record, name="core_record")
    before = total_requests(client)

    for args, kwargs in [([1], {}), ([1, 2, 3], {}), ([1, 2], {"nope": 1}),
                         ([1], {"a": 1, "b": 2}), ([1, 2, True], {})]:
        with pytest.raises(PyFaaSParameterMismatchError) as info:
            client.exec("core_record", args, kwargs)
        assert isinstance(info.value, TypeError)
        assert "core_record" in str(info.value)
    with pytest.raises(PyFaaSParameterMismatchError):
        client.call("core_record", 1)

    assert not log_file.exists()
    assert total_requests(client) == before

    assert client.call("core_record", 1, 2, flag=True) == 3
    assert log_file.read_text() == "1 2 True\n"


def test_reregistering_a_name_replaces_it_everywhere(cluster, client):
    def versioned():
        return ("v1", os.getpid())

    old = client.register(versioned, name="core_versioned")
    assert {client.call("core_versioned")[0] for _ in range(2)} == {"v1"}

    def versioned():  # noqa: F811 - the new code under the same name
        return ("v2", os.getpid())

    answer = client.register_info(versioned, name="core_versioned")
    assert answer["replaced"] == old
    assert answer["func_id"] != old
    assert sorted(answer["workers"]) == sorted(client.worker_ids())

    results = [client.call("core_versioned") for _ in range(6)]
    assert {version for version, _ in results} == {"v2"}
    assert {pid for _, pid in results} == worker_pids(cluster)

    entries = [fid for fid, info in client.list().items()
               if info["name"] == "core_versioned"]
    assert entries == [answer["func_id"]]
    assert client.call(answer["func_id"])[0] == "v2"
    with pytest.raises(PyFaaSFunctionNotRegisteredError):
        client.call(old)
    # A fresh client (no cached signature) sees the new version too.
    with Client("127.0.0.1", cluster.port, 10) as other:
        assert other.call("core_versioned")[0] == "v2"


def test_unregister(client):
    fid = client.register(add3, name="core_unreg")
    assert client.call("core_unreg", 1, 2) == 15

    assert client.unregister("core_unreg") == fid

    with pytest.raises(PyFaaSFunctionNotRegisteredError, match="core_unreg"):
        client.call("core_unreg", 1, 2)
    assert fid not in client.list()
    for wid in client.worker_ids():
        assert fid not in client.worker_info(wid)["functions"]
    with pytest.raises(PyFaaSFunctionUnregistrationError, match="core_nothing"):
        client.unregister("core_nothing")

    fid = client.register(add3, name="core_unreg")
    assert client.unregister(fid) == fid
    with pytest.raises(PyFaaSFunctionUnregistrationError):
        client.unregister(fid)


def test_list_shape(client):
    fid = client.register(add3, name="core_listed")

    listing = client.list()

    assert isinstance(listing, dict)
    info = listing[fid]
    assert info["name"] == "core_listed"
    for key in ("signature", "params", "doc", "registered_at", "workers"):
        assert key in info
    assert info["signature"].startswith("(a, b, c=")
    assert info["doc"] == "a + b + c"
    assert sorted(info["workers"]) == sorted(client.worker_ids())
    for other_fid, other in listing.items():
        assert set(other) >= {"name", "signature"}, other_fid


# ----- workers ---------------------------------------------------------------

def test_worker_ids_and_info(cluster, client):
    fid = client.register(add3, name="core_info_fn")
    ids = client.worker_ids()
    assert len(ids) == 2 and len(set(ids)) == 2

    pids = set()
    for wid in ids:
        info = client.worker_info(wid)
        assert set(info) >= {"identity", "system", "config", "functions",
                             "network"}
        assert info["identity"]["worker_id"] == wid
        assert info["system"]["python_version"]
        assert info["config"]["pool_size"] >= 1
        assert info["functions"][fid]["name"] == "core_info_fn"
        assert info["network"]["director"] == "127.0.0.1:%d" % cluster.port
        assert info["network"]["requests"] >= 0
        pids.add(info["identity"]["pid"])
    assert pids == worker_pids(cluster)


def test_unknown_worker_id(client):
    with pytest.raises(PyFaaSWorkerInfoError, match="w-no-such-worker"):
        client.worker_info("w-no-such-worker")
    with pytest.raises(PyFaaSWorkerKillError, match="w-no-such-worker"):
        client.kill_worker("w-no-such-worker")

    assert len(client.worker_ids()) == 2


def test_ping(client):
    answer = client.ping()

    assert answer["workers"] == 2
    assert answer["protocol"] == 1
    assert answer["functions"] >= 0
    assert answer["uptime_s"] >= 0
    assert 0 < answer["rtt_s"] < 5


def test_round_robin_alternates_between_the_workers(cluster, client):
    client.register(whoami, name="core_rr")

    pids = [client.call("core_rr") for _ in range(10)]

    assert set(pids) == worker_pids(cluster)
    assert all(a != b for a, b in zip(pids, pids[1:])), pids


def test_concurrent_calls_on_one_client(cluster, client):
    client.register(add3, name="core_concurrent")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: client.call("core_concurrent", i, i, c=1), range(64)))

    assert results == [2 * i + 1 for i in range(64)]


def test_timeout_is_prompt_and_the_client_still_works(client):
    client.register(sleeper, name="core_sleeper")
    client.register(add3, name="core_after_timeout")

    start = time.monotonic()
    with pytest.raises(PyFaaSTimeoutError) as info:
        client.exec("core_sleeper", [3], timeout=0.5)
    elapsed = time.monotonic() - start

    assert isinstance(info.value, TimeoutError)
    assert 0.5 <= elapsed < 1.5
    assert client.call("core_after_timeout", 1, 2) == 15


def test_timeout_then_several_calls_on_the_same_client(client):
    client.register(sleeper, name="core_sleeper2")
    with pytest.raises(PyFaaSTimeoutError):
        client.exec("core_sleeper2", [3], timeout=0.2)

    # The abandoned call is cancelled: the Director stops counting it long
    # before the function would have returned.
    wait_until(lambda: all(w["inflight"] == 0 for w in client.workers()), 1.5,
               lambda: "director still counts the call: %s" % client.workers())

    # Every call after the timeout must succeed, not only the first.
    for i in range(5):
        assert client.exec("core_sleeper2", [0], timeout=5) == 0, i


# ----- fresh clusters: strategies, kills, restarts, signals -------------------

def test_random_strategy_uses_both_workers(fresh_cluster):
    cl = fresh_cluster(workers=2, strategy="Random")
    client = cl.client()
    client.register(whoami, name="who")

    pids = [client.call("who") for _ in range(40)]

    assert set(pids) == worker_pids(cl)  # chance of failure: 2 ** -39


def test_kill_worker(fresh_cluster):
    cl = fresh_cluster(workers=2)
    client = cl.client()
    client.register(whoami, name="who")
    victim, survivor = client.worker_ids()
    victim_proc = process_of(cl, victim, client)
    survivor_proc = process_of(cl, survivor, client)

    client.kill_worker(victim)

    wait_until(lambda: victim not in client.worker_ids(), 5,
               "worker %s still listed" % victim)
    assert victim_proc.wait(EXIT_WAIT_S) == 0
    assert client.worker_ids() == [survivor]
    with pytest.raises(PyFaaSWorkerInfoError, match=victim):
        client.worker_info(victim)
    assert [client.call("who") for _ in range(3)] == [survivor_proc.pid] * 3


def test_no_workers_fails_at_once(fresh_cluster):
    cl = fresh_cluster(workers=0)
    client = cl.client()
    answer = client.register_info(add3, name="add3")
    assert answer["workers"] == []

    start = time.monotonic()
    with pytest.raises(PyFaaSNoWorkersError):
        client.exec("add3", [1, 2], timeout=10)
    assert time.monotonic() - start < 1.0

    # A Worker that joins later receives the function and serves it.
    cl.start_worker(heartbeat_ms=200)
    cl.wait_for_workers(1)
    assert client.call("add3", 1, 2) == 15


def test_worker_killed_while_idle_is_evicted(fresh_cluster):
    cl = fresh_cluster(workers=2)
    client = cl.client()
    client.register(whoami, name="who")
    victim, survivor = client.worker_ids()
    victim_proc = process_of(cl, victim, client)
    survivor_pid = process_of(cl, survivor, client).pid

    os.kill(victim_proc.pid, signal.SIGKILL)
    start = time.monotonic()

    wait_until(lambda: victim not in client.worker_ids(), 1.5,
               "worker %s still listed after SIGKILL" % victim)
    assert time.monotonic() - start < 1.5
    assert victim_proc.wait(EXIT_WAIT_S) == -signal.SIGKILL
    assert [client.call("who") for _ in range(4)] == [survivor_pid] * 4


def test_frozen_worker_is_evicted_by_heartbeat_and_comes_back(fresh_cluster):
    cl = fresh_cluster(workers=2)
    client = cl.client()
    client.register(whoami, name="who")
    victim, survivor = client.worker_ids()
    victim_proc = process_of(cl, victim, client)
    survivor_pid = process_of(cl, survivor, client).pid

    # SIGSTOP keeps the connection open: only missed heartbeats reveal it
    # (3 x 200 ms, checked every 200 ms).
    victim_proc.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: victim not in client.worker_ids(), 3,
                   "frozen worker %s still listed" % victim)
        assert [client.call("who") for _ in range(4)] == [survivor_pid] * 4
    finally:
        victim_proc.signal(signal.SIGCONT)

    # Thawed, it finds its connection closed, registers again and serves.
    wait_until(lambda: len(client.worker_ids()) == 2, 10,
               "thawed worker did not register again")
    pids = {client.call("who") for _ in range(4)}
    assert pids == {victim_proc.pid, survivor_pid}


def test_worker_killed_during_a_call_fails_it_promptly(fresh_cluster):
    cl = fresh_cluster(workers=1)
    client = cl.client()
    client.register(sleeper, name="sleeper")
    client.register(whoami, name="who")
    (wid,) = client.worker_ids()
    proc = process_of(cl, wid, client)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: client.exec("sleeper", [5], timeout=15))
        wait_until(lambda: client.worker_info(wid)["network"]["inflight"] >= 1,
                   5, "the call never started on %s" % wid)
        os.kill(proc.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(PyFaaSWorkerLostError) as info:
            future.result(timeout=15)
        elapsed = time.monotonic() - start

    assert elapsed < 3.0
    assert info.value.worker_id == wid
    assert wid in str(info.value)
    proc.wait(EXIT_WAIT_S)

    new = cl.start_worker(heartbeat_ms=200)
    wait_until(lambda: client.worker_ids() and wid not in client.worker_ids(),
               5, "a new worker never replaced %s" % wid)
    assert client.call("who") == new.pid


def test_worker_started_before_the_director(fresh_cluster):
    cl = fresh_cluster(start=False)
    port = reserve_port()
    worker = cl.start_worker(port=port, heartbeat_ms=200)
    wait_until(lambda: b"starting" in worker.output(), 10,
               lambda: "worker did not start: %r" % worker.output())
    assert worker.alive()

    cl.start_director(port=port)
    assert cl.port == port
    client = cl.client()
    client.wait_for_workers(1, timeout=10)

    client.register(whoami, name="who")
    assert client.call("who") == worker.pid


def test_replacement_worker_receives_registered_functions(fresh_cluster):
    cl = fresh_cluster(workers=1)
    client = cl.client()
    client.register(add3, name="add3")
    client.register(whoami, name="who")
    (first_id,) = client.worker_ids()
    first = process_of(cl, first_id, client)
    assert client.call("who") == first.pid

    first.stop()
    wait_until(lambda: client.worker_ids() == [], 5, "first worker listed")
    second = cl.start_worker(heartbeat_ms=200)
    client.wait_for_workers(1, timeout=10)

    assert client.call("who") == second.pid
    assert client.call("add3", 5, 6, c=56) == 67
    (second_id,) = client.worker_ids()
    assert {info["name"] for info in
            client.worker_info(second_id)["functions"].values()} == \
        {"add3", "who"}


def test_director_restart_on_the_same_port(fresh_cluster):
    cl = fresh_cluster(workers=2)
    client = cl.client()
    fid = client.register(add3, name="add3")
    assert client.call("add3", 1, 2) == 15
    port = cl.port
    old_director = cl.director

    assert old_director.stop() == 0
    cl.start_director(port=port)
    assert cl.port == port

    # Same client object: it reconnects; the Workers re-announce add3.
    wait_until(succeeds(client.call, "add3", 1, 2), 10,
               "add3 never callable after the director restart")
    wait_until(lambda: len(client.worker_ids()) == 2, 10,
               "workers did not come back")
    assert client.call("add3", 5, 6, c=56) == 67
    assert client.exec(fid, [1, 2]) == 15
    assert [f["name"] for f in client.list().values()] == ["add3"]


def test_calls_right_after_a_director_restart_wait_for_the_workers(
        fresh_cluster):
    cl = fresh_cluster(workers=2)
    client = cl.client()
    client.register(add3, name="add3")
    port = cl.port
    assert cl.director.stop() == 0
    for proc in cl.workers.values():  # they come back after the calls
        proc.signal(signal.SIGSTOP)
    try:
        cl.start_director(port=port, startup_grace_ms=5000)
        call = client.exec_async("add3", [1, 2])
        with ThreadPoolExecutor(1) as pool:
            flow = pool.submit(cl.client().chain_exec, {
                "id": "after-restart", "entry_function": "add3",
                "functions": {"add3": {"positional_args": [1, 2],
                                       "default_args": {}, "next": "",
                                       "cache_result": False}}})
            # (validated first: the client lists no add3 yet and leaves
            # that to the Director, which waits for its Workers)
            client.ping()  # (answered after the call was handled)
            assert not call.done()  # it waits: no Worker holds add3 yet
            for proc in cl.workers.values():
                proc.signal(signal.SIGCONT)
            assert call.result(timeout=10) == 15
            assert flow.result(timeout=10) == 15
    finally:
        for proc in cl.workers.values():
            proc.signal(signal.SIGCONT)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_director_and_worker_exit_0_on_signal(fresh_cluster, signum):
    cl = fresh_cluster(workers=1)
    client = cl.client()
    client.register(whoami, name="who")
    (wid,) = client.worker_ids()
    first = process_of(cl, wid, client)

    first.signal(signum)
    assert first.wait(EXIT_WAIT_S) == 0
    assert b"stopped" in first.output()
    wait_until(lambda: client.worker_ids() == [], 5, "stopped worker listed")

    second = cl.start_worker(heartbeat_ms=200)
    client.wait_for_workers(1, timeout=10)
    assert client.call("who") == second.pid

    cl.director.signal(signum)
    assert cl.director.wait(EXIT_WAIT_S) == 0
    assert b"PyFaaS director stopped" in cl.director.output()

    # A Worker whose Director is gone (it is retrying) also stops cleanly.
    second.signal(signum)
    assert second.wait(EXIT_WAIT_S) == 0
