"""Director promises found wanting once, each kept by a test that failed
before its fix.

Overlapping registrations of one name keep the newest version; arguments
over a Worker's frame limit are refused, not fatal; a draining Director
still delivers a large result; every call of a CALL_MANY is routed and
answered alone, and a malformed one closes only that peer; a paused
Director does not evict its Workers. Pure ones drive DirectorState; the
others use real processes on 127.0.0.1 and end with a normal call.
"""

import os
import signal
import time

import pytest

from helpers import decode_frames, wait_until
from test_director_state import (Sim, call, connect_client, connect_worker,
                                 make_cluster, routed)
from pyfaas.wire import protocol as p
from pyfaas.errors import PyFaaSSerializationError
from pyfaas.ids import function_id

pytestmark = pytest.mark.timeout(60)


def size(blob):
    return len(blob)


def slow_blob(seconds, n):
    time.sleep(seconds)
    return b"y" * n


def whoami():
    return os.getpid()


# ----- pure ----------------------------------------------------------------------

def test_a_worker_back_under_its_id_stays_when_its_old_connection_closes():
    # Evicted for silence, w1's old connection lingers (its last frames
    # unread) while w1 registers again on a new one; the old one's end must
    # not evict the new registration.
    sim, client, (old,) = make_cluster(n_workers=1,
                                       expected_heartbeat_interval_ms=1000)
    sim.now[0] += 3.5
    sim.state.tick()
    sim.output()
    assert old in sim.closed and sim.state.cluster.workers == {}
    new, _ = connect_worker(sim, "w1")
    assert list(sim.state.cluster.workers) == ["w1"]
    sim.state.received(old, p.Frame(p.HEARTBEAT, 0, b'{"inflight":0}'))
    sim.state.disconnected(old)
    assert sim.state.cluster.workers["w1"].peer_id == new
    call(sim, client)
    assert list(routed(sim.output())) == [new]


def test_frames_after_a_close_was_asked_for_are_not_handled():
    sim, client, workers = make_cluster(n_workers=1)
    sim.send(client, p.CALL_MANY, {"f": "square", "rids": [1], "sizes": [9]},
             b"xx")  # sizes do not match: the client is closed
    call(sim, client)  # in the same receive: dropped, not routed
    out = sim.output()
    assert client in sim.closed and not routed(out)
    assert sim.state.cluster.pending == {}



def test_overlapping_registrations_keep_the_newest_version():
    sim = Sim()
    worker, _ = connect_worker(sim, "w1")
    first, second = connect_client(sim), connect_client(sim)
    meta = {"name": "f", "params": None}
    sim.send(first, p.DEPLOY, meta, b"v0")
    [d0] = sim.output()[worker]
    sim.send(worker, p.OK, {}, rid=d0.request_id)
    sim.output()
    sim.send(first, p.DEPLOY, meta, b"v1, which fails to load")
    [d1] = sim.output()[worker]
    sim.send(second, p.DEPLOY, meta, b"v2")
    [d2] = sim.output()[worker]
    sim.send(worker, p.ERROR, {"code": "registration", "message": "no"},
             rid=d1.request_id)
    sim.send(worker, p.OK, {}, rid=d2.request_id)
    sim.output()
    # The failed older registration did not bring v0 back over v2.
    assert sim.state.cluster.by_name["f"] == function_id(b"v2", "f")




# ----- real processes -------------------------------------------------------------

def test_arguments_over_the_workers_limit_are_refused_not_fatal(
        fresh_cluster):
    cl = fresh_cluster(workers=2,
                       worker_extra={"network": {"max_frame_bytes": 65536}})
    with cl.client() as client:
        client.register(size)
        with pytest.raises(PyFaaSSerializationError) as info:
            client.call("size", b"z" * 100000)
        assert "frame limit" in str(info.value)
        assert len(client.worker_ids()) == 2
        assert client.call("size", b"z" * 1000) == 1000


def test_director_drain_delivers_a_large_result(fresh_cluster):
    cl = fresh_cluster(workers=1)
    with cl.client() as client:
        client.register(slow_blob)
        fut = client.submit("slow_blob", 0.5, 30 * 1024 * 1024)
        wait_until(lambda: any(w["inflight"] for w in client.workers()), 10)
        cl.director.signal(signal.SIGTERM)
        assert len(fut.result(20)) == 30 * 1024 * 1024
    assert cl.director.wait(15) == 0


# ----- several calls in one frame (CALL_MANY) ------------------------------------

def test_call_many_routes_and_answers_each_call_on_its_own():
    from test_director_state import make_cluster, routed
    sim, client, (w1, w2) = make_cluster()
    sim.send(client, p.CALL_MANY, {"f": "square", "rids": [7, 8, 9],
                                   "sizes": [1, 2, 3]}, b"abbccc",
             rid=7, flags=p.FLAG_PICKLED)
    calls = routed(sim.output())
    forwarded = sorted(bytes(f.payload) for fs in calls.values() for f in fs)
    assert forwarded == [b"a", b"bb", b"ccc"]
    assert set(calls) == {w1, w2}  # Round-Robin spread them
    # Each Worker answers its calls; the client gets one reply per rid.
    for peer, frames in calls.items():
        for f in frames:
            sim.send(peer, p.OK, None, b"r" + bytes(f.payload),
                     rid=f.request_id)
    replies = sim.output()[client]
    assert sorted((f.request_id, bytes(f.payload)) for f in replies) == [
        (7, b"ra"), (8, b"rbb"), (9, b"rccc")]


def test_malformed_call_many_closes_only_that_peer():
    from test_director_state import make_cluster
    sim, client, _ = make_cluster()
    sim.send(client, p.CALL_MANY, {"f": "square", "rids": [1, 2],
                                   "sizes": [5]}, b"abcde", rid=1)
    [reply] = sim.output()[client]
    assert reply.type == p.ERROR and reply.meta()["code"] == "protocol"
    assert client in sim.closed


# ----- second review -------------------------------------------------------------

def test_a_paused_director_does_not_evict_its_workers(fresh_cluster):
    cl = fresh_cluster(workers=2)  # 200 ms heartbeats: 0.6 s to eviction
    with cl.client() as client:
        ids = set(client.worker_ids())
        cl.director.signal(signal.SIGSTOP)
        time.sleep(1.5)  # the pause under test, not a wait for a condition
        cl.director.signal(signal.SIGCONT)
        client.register(whoami)
        assert client.call("whoami")
        assert set(client.worker_ids()) == ids
