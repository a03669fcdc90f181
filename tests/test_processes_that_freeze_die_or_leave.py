"""Real processes: Workers, the Director and clients that freeze, die or leave.

Each test gets its own cluster (``fresh_cluster``), injects one failure with
a signal or a close, checks that every call gets exactly one outcome, and
ends with a brand-new client making a normal call. A Worker killed with
SIGKILL mid-call (without retries) and a Director restarted after a clean
stop are covered in test_calls_across_real_processes.py.
"""

import os
import signal
import time

import pytest

from fault_helpers import director_says
from helpers import HOST, process_of, raw_connect, read_frame, wait_until, encode_frame
from pyfaas import Client
from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder
from pyfaas import serialization as ser
from pyfaas.errors import (PyFaaSNetworkError, PyFaaSOverloadedError,
                           PyFaaSShuttingDownError)

pytestmark = pytest.mark.timeout(60)

HEARTBEAT_S = 0.2
EXIT_WAIT_S = 10.0


# ----- functions that run on the Workers -------------------------------------

def whoami():
    return os.getpid()


def slow(seconds):
    time.sleep(seconds)
    return seconds


def slow_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def add(a, b):
    return a + b


# ----- helpers ---------------------------------------------------------------

def _started(client, wid, count=1):
    """Wait until Worker ``wid`` itself runs ``count`` call(s)."""
    wait_until(lambda: client.worker_info(wid)["network"]["inflight"] >= count,
               10, "the call never started on %s" % wid)


def _still_serves(cl, expect_pid=None):
    """A brand-new client calls ``whoami`` on a live Worker of the cluster."""
    with cl.client() as fresh:
        wait_until(lambda: fresh.worker_ids(), 10, "no worker is live")
        pid = fresh.call("whoami")
    live = {proc.pid for proc in cl.workers.values() if proc.alive()}
    assert pid in live
    if expect_pid is not None:
        assert pid == expect_pid
    assert "Traceback" not in cl.director.output().decode(errors="replace")


def _raw_client(port):
    """A raw client socket past the handshake (cluster without a token)."""
    sock = raw_connect(port, timeout=10)
    sock.sendall(p.encode_preamble(p.ROLE_CLIENT))
    decoder = FrameDecoder()
    assert read_frame(sock, decoder).type == p.HELLO
    return sock, decoder


def _raw_call(sock, rid, name, *args):
    sock.sendall(encode_frame(p.CALL, rid, {"f": name},
                                ser.dumps((args, {}), "arguments"),
                                p.FLAG_PICKLED))


# ----- Workers ---------------------------------------------------------------

def test_frozen_worker_mid_call_is_lost_and_its_late_result_dropped(
        fresh_cluster):
    cl = fresh_cluster(workers=1)
    client = cl.client()
    client.register(slow, name="slow")
    client.register(whoami, name="whoami")
    (wid,) = client.worker_ids()
    proc = process_of(cl, wid, client)
    sock, decoder = _raw_client(cl.port)
    with sock:
        _raw_call(sock, 1, "slow", 2.0)
        _started(client, wid)

        proc.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            reply = read_frame(sock, decoder, timeout=10)
            elapsed = time.monotonic() - start
        finally:
            proc.signal(signal.SIGCONT)

        assert (reply.type, reply.request_id) == (p.ERROR, 1), reply
        meta = reply.meta()
        assert meta["code"] == "worker_lost" and meta["worker_id"] == wid
        assert wid in meta["message"]
        # Evicted after 3 missed heartbeats, checked every heartbeat.
        assert elapsed < 5 * HEARTBEAT_S + 1.5, elapsed

        # Thawed, the Worker registers again and finishes the old call; its
        # result goes nowhere.
        wait_until(lambda: proc.pid in [w["pid"] for w in client.workers()],
                   10, "the thawed worker did not register again")
        (wid2,) = client.worker_ids()
        wait_until(lambda: client.worker_info(wid2)["network"]["inflight"]
                   == 0, 10, "the old call never finished")
        # Frames arrive in order: anything for request 1 would come first.
        sock.sendall(encode_frame(p.PING, 2))
        later = read_frame(sock, decoder)
        assert later.request_id == 2, "a second outcome arrived: %r" % later
    assert client.workers()[0]["inflight"] == 0
    _still_serves(cl, proc.pid)


@pytest.mark.parametrize("how", ["retries=1", "idempotent"])
def test_call_of_a_killed_worker_is_rerun_on_the_other_one(fresh_cluster,
                                                           how):
    cl = fresh_cluster(workers=2)
    client = cl.client()
    client.register(slow_pid, name="slow_pid",
                    idempotent=(how == "idempotent"))
    client.register(whoami, name="whoami")
    options = {"retries": 1} if how == "retries=1" else {}

    future = client.exec_async("slow_pid", [1.0], **options)
    wait_until(lambda: any(w["inflight"] for w in client.workers()), 5,
               "the call was never routed")
    (victim,) = [w["worker_id"] for w in client.workers() if w["inflight"]]
    _started(client, victim)
    victim_proc = process_of(cl, victim, client)
    (survivor_proc,) = [proc for proc in cl.workers.values()
                        if proc is not victim_proc]
    os.kill(victim_proc.pid, signal.SIGKILL)

    assert future.result(timeout=15) == survivor_proc.pid
    assert victim_proc.wait(EXIT_WAIT_S) == -signal.SIGKILL
    wait_until(lambda: victim not in client.worker_ids(), 5,
               "killed worker still listed")
    _still_serves(cl, survivor_proc.pid)


# ----- the Director ----------------------------------------------------------

def test_director_killed_and_restarted_on_the_same_port(fresh_cluster):
    cl = fresh_cluster(workers=2)
    client = cl.client()
    fid = client.register(add, name="add")
    client.register(slow, name="slow")
    client.register(whoami, name="whoami")
    future = client.exec_async("slow", [2])
    wait_until(lambda: any(w["inflight"] for w in client.workers()), 5,
               "the call was never routed")
    port, old = cl.port, cl.director

    old.signal(signal.SIGKILL)
    assert old.wait(EXIT_WAIT_S) == -signal.SIGKILL
    with pytest.raises(PyFaaSNetworkError) as info:
        future.result(timeout=5)
    assert "%s:%d" % (HOST, port) in str(info.value)

    cl.start_director(port=port)
    back = time.monotonic()
    assert cl.port == port
    with cl.client() as observer:
        def reannounced():
            listing = observer.list()
            return (len(observer.worker_ids()) == 2 and fid in listing
                    and len(listing[fid]["workers"]) == 2)
        wait_until(reannounced, 6, lambda: "functions not re-announced: %s"
                   % observer.list())
    # The same client object, whose connection died with the Director.
    assert client.call("add", 2, 3) == 5
    assert client.exec(fid, [1, 2]) == 3
    assert time.monotonic() - back < 6.0
    _still_serves(cl)


def test_idempotent_flag_survives_a_director_restart(fresh_cluster):
    cl = fresh_cluster(workers=2)
    client = cl.client()
    fid = client.register(slow_pid, name="slow_pid", idempotent=True)
    client.register(whoami, name="whoami")
    port = cl.port
    assert cl.director.stop() == 0
    cl.start_director(port=port)
    wait_until(lambda: fid in client.list() and
               len(client.list()[fid]["workers"]) == 2, 10,
               "slow_pid was not re-announced by both workers")

    future = client.exec_async("slow_pid", [1.0])
    wait_until(lambda: any(w["inflight"] for w in client.workers()), 5,
               "the call was never routed")
    (victim,) = [w["worker_id"] for w in client.workers() if w["inflight"]]
    _started(client, victim)
    victim_proc = process_of(cl, victim, client)
    os.kill(victim_proc.pid, signal.SIGKILL)

    try:
        assert future.result(timeout=15) != victim_proc.pid
        assert client.list()[fid].get("idempotent") is True
    finally:
        victim_proc.wait(EXIT_WAIT_S)
        _still_serves(cl)


def test_sigterm_drains_running_calls_and_exits_0(fresh_cluster):
    grace = 5.0
    cl = fresh_cluster(workers=1, director_extra={"network": {
        "shutdown_grace_s": grace}})
    client = cl.client()
    client.register(slow, name="slow")
    client.register(whoami, name="whoami")
    (wid,) = client.worker_ids()
    port = cl.port
    future = client.exec_async("slow", [1.0])
    _started(client, wid)

    cl.director.signal(signal.SIGTERM)
    start = time.monotonic()
    director_says(cl, r"stopping: no new connections or calls")
    # The connection stays open during the drain: the Director says why.
    with pytest.raises(PyFaaSShuttingDownError) as info:
        client.exec("slow", [0])
    assert "shutting down" in str(info.value)
    with pytest.raises(PyFaaSNetworkError):
        Client(HOST, port, 5).ping()

    assert future.result(timeout=10) == 1.0
    assert cl.director.wait(grace + 5) == 0
    assert time.monotonic() - start < grace
    assert b"PyFaaS director stopped" in cl.director.output()

    cl.start_director(port=port)
    _still_serves(cl)


def test_sigterm_grace_period_ends_calls_that_run_too_long(fresh_cluster):
    grace = 1.0
    cl = fresh_cluster(workers=1, director_extra={"network": {
        "shutdown_grace_s": grace}})
    client = cl.client()
    client.register(slow, name="slow")
    client.register(whoami, name="whoami")
    (wid,) = client.worker_ids()
    port = cl.port
    future = client.exec_async("slow", [2.5])
    _started(client, wid)

    cl.director.signal(signal.SIGTERM)
    start = time.monotonic()
    assert cl.director.wait(grace + 5) == 0
    assert grace - 0.1 <= time.monotonic() - start < grace + 1.5
    with pytest.raises(PyFaaSNetworkError):
        future.result(timeout=5)

    cl.start_director(port=port)
    _still_serves(cl)


# ----- clients ---------------------------------------------------------------

def test_client_that_leaves_mid_call_is_forgotten(fresh_cluster):
    cl = fresh_cluster(workers=1)
    leaver, observer = cl.client(), cl.client()
    leaver.register(slow, name="slow")
    leaver.register(whoami, name="whoami")
    (wid,) = observer.worker_ids()
    pid = observer.workers()[0]["pid"]
    future = leaver.exec_async("slow", [1.5])
    _started(observer, wid)

    leaver.close()

    with pytest.raises(PyFaaSNetworkError):
        future.result(timeout=5)
    director_says(cl, r"client 127\.0\.0\.1:\d+ left with 1 request\(s\) "
                       r"pending; dropped")
    assert observer.workers()[0]["inflight"] == 0
    assert observer.get_stats()["director"]["queue_depth"] == 0
    # The call ends on the Worker; its late result is dropped harmlessly.
    wait_until(lambda: observer.worker_info(wid)["network"]["inflight"] == 0,
               5, "the call never ended on the worker")
    assert observer.call("whoami") == pid
    assert cl.director.alive()
    _still_serves(cl, pid)


def test_saturated_cluster_refuses_new_calls_at_once(fresh_cluster):
    cl = fresh_cluster(workers=1, max_threads=1, director_extra={"network": {
        "max_pending_calls": 4}})
    client = cl.client()
    client.register(slow, name="slow")
    client.register(whoami, name="whoami")
    assert client.call("slow", 0) == 0

    outcomes = []

    def record(sent):
        def done(future):
            outcomes.append((time.monotonic() - sent, future.exception()))
        return done

    for _ in range(20):
        future = client.submit("slow", 1.0)
        future.add_done_callback(record(time.monotonic()))
    wait_until(lambda: len(outcomes) == 20, 15,
               lambda: "%d of 20 calls answered" % len(outcomes))

    refused = [t for t, exc in outcomes
               if isinstance(exc, PyFaaSOverloadedError)]
    served = [t for t, exc in outcomes if exc is None]
    assert len(refused) + len(served) == 20, outcomes
    assert len(refused) >= 10 and len(served) >= 4, outcomes
    assert max(refused) < 0.9, "refused calls waited: %s" % refused
    assert min(served) >= 1.0
    _still_serves(cl)


# ----- a Worker stopping gracefully drains ------------------------------------

@pytest.mark.parametrize("how", ["kill_worker", "SIGTERM"])
def test_graceful_worker_stop_finishes_its_calls_and_takes_no_new_ones(
        fresh_cluster, how):
    cl = fresh_cluster(workers=2)
    with cl.client() as client:
        client.register(slow_pid)
        client.register(whoami)
        ids = client.worker_ids()
        running = client.submit("slow_pid", 1.5)
        busy = next(w for w in ids if wait_until(
            lambda: any(x["inflight"] for x in client.workers()), 10)
            and client.worker_info(w)["network"]["inflight"])
        proc = process_of(cl, busy, client)
        if how == "kill_worker":
            client.kill_worker(busy)
        else:
            proc.signal(signal.SIGTERM)
        # Calls made as it begins to stop still get their result ...
        assert len({client.call("whoami") for _ in range(4)}) >= 1
        # ... and once the Director knows it drains, all go to the other.
        wait_until(lambda: any(w["worker_id"] == busy and w["draining"]
                               for w in client.workers()), 5,
                   "the Director never marked the Worker draining")
        other_pids = {client.call("whoami") for _ in range(10)}
        assert proc.pid not in other_pids
        # ... and the call it was running still ends with its result.
        assert running.result(10) == proc.pid
        assert proc.wait(EXIT_WAIT_S) == 0
        wait_until(lambda: busy not in client.worker_ids(), 5,
                   "the stopped Worker is still listed")
    _still_serves(cl)
