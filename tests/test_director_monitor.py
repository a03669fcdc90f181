"""Pure tests of what the Director counts and of its status document.

Driven like test_director_state.py: a DirectorState with a fake clock,
peers as small integers, frames in through ``received`` and out through
``take_output``. The document is the one ``status --json``, STATUS and
the monitoring endpoint share (pyfaas/director/monitor.py).
"""

import json

from pyfaas.wire import protocol as p
from pyfaas.director.tallies import BUCKETS, Tally

from test_director_state import (FID_V1, Sim, call, connect_client,
                                 connect_worker, deploy, error_code,
                                 make_cluster, routed)


def answer(sim, out, type_=p.OK, meta=None, payload=b"result"):
    """Answer every CALL in ``out`` from its Worker; return how many."""
    n = 0
    for peer, frames in routed(out).items():
        for frame in frames:
            sim.send(peer, type_, meta, payload, rid=frame.request_id)
            n += 1
    return n


def worker_row(doc, worker_id):
    [row] = [w for w in doc["workers"] if w["worker_id"] == worker_id]
    return row


def function_row(doc, name="square"):
    [row] = [f for f in doc["functions"] if f["name"] == name]
    return row


def test_replies_are_counted_by_function_worker_and_outcome():
    sim, client, _ = make_cluster(n_workers=2)
    for _ in range(4):
        call(sim, client)
    out = sim.output()
    sim.now[0] += 0.003   # every call took 3 ms, Director to Worker and back
    assert answer(sim, out) == 4
    call(sim, client)
    out = sim.output()
    answer(sim, out, p.ERROR, {"code": "execution", "message": "boom"})

    doc = sim.state.status_document()

    f = function_row(doc)
    assert (f["calls"], f["errors"], f["lost"], f["cancelled"]) == (5, 1, 0, 0)
    assert f["signature"] == "(x)"
    assert abs(f["p50_s"] - 0.003) < 1e-9 and f["mean_s"] < 0.003
    le = dict(zip(doc["latency_buckets_s"], f["latency_buckets"]))
    assert le[0.0025] == 1 and le[0.005] == 5   # cumulative: <= bound
    assert doc["latency_buckets_s"] == list(BUCKETS)
    per_worker = {w["worker_id"]: w["by_function"][FID_V1]
                  for w in doc["workers"]}
    assert sorted(c["calls"] for c in per_worker.values()) == [2, 3]
    assert sum(c["errors"] for c in per_worker.values()) == 1
    assert doc["calls"]["routed"] == 5 and doc["calls"]["in_flight"] == 0
    [error] = doc["recent_errors"]
    assert (error["code"], error["message"], error["function"]) == \
        ("execution", "boom", "square")


def test_calls_in_flight_and_their_bytes():
    # Arguments under COUNTED_BYTES are not counted in bytes (cluster.py).
    sim, client, _ = make_cluster(n_workers=1)
    call(sim, client, payload=b"x" * 3000)
    call(sim, client, payload=b"y" * 2000)
    call(sim, client, payload=b"z" * 50)
    out = sim.output()

    calls = sim.state.status_document()["calls"]

    assert (calls["in_flight"], calls["pending_bytes"]) == (3, 5000)
    answer(sim, out)
    calls = sim.state.status_document()["calls"]
    assert (calls["in_flight"], calls["pending_bytes"]) == (0, 0)


def test_a_lost_worker_counts_lost_calls_an_eviction_and_keeps_the_totals():
    sim, client, workers = make_cluster(n_workers=2)
    call(sim, client)
    call(sim, client)
    out = sim.output()
    by_peer = routed(out)
    done, lost = workers
    for frame in by_peer[done]:
        sim.send(done, p.OK, None, b"r", rid=frame.request_id)
    sim.state.disconnected(lost, "connection closed")

    doc = sim.state.status_document()

    assert doc["evictions"]["disconnected"] == 1
    [gone] = doc["recent_evictions"]
    assert (gone["worker_id"], gone["reason"], gone["calls_lost"]) == \
        ("w2", "disconnected", 1)
    f = function_row(doc)
    assert (f["calls"], f["lost"]) == (1, 1)   # w2's figures stay counted
    assert [w["worker_id"] for w in doc["workers"]] == ["w1"]


def test_a_silent_worker_is_evicted_for_its_heartbeat():
    sim, _, _ = make_cluster(n_workers=1, deployed=False)
    sim.now[0] += 60
    sim.state.tick()
    doc = sim.state.status_document()
    assert doc["evictions"] == {"heartbeat": 1, "stopped": 0,
                                "disconnected": 0, "error": 0}
    assert doc["recent_evictions"][0]["detail"].startswith("no heartbeat")


def test_a_worker_id_registering_again_after_a_loss_is_a_restart():
    sim = Sim()
    peer, _ = connect_worker(sim, "w1")
    assert worker_row(sim.state.status_document(), "w1")["restarts"] == 0
    for expected in (1, 2):
        sim.state.disconnected(peer, "connection closed")
        peer, _ = connect_worker(sim, "w1")
        assert worker_row(sim.state.status_document(),
                          "w1")["restarts"] == expected


def test_cancelled_calls_are_counted():
    sim, client, _ = make_cluster(n_workers=1)
    rid = call(sim, client)
    sim.output()
    sim.send(client, p.CANCEL, rid=rid)
    call(sim, client)
    sim.output()
    sim.state.disconnected(client, "connection closed")   # the other call
    assert function_row(sim.state.status_document())["cancelled"] == 2


def test_the_directors_own_errors_are_counted_by_code():
    sim, client, _ = make_cluster(n_workers=1, max_pending_calls=1)
    call(sim, client)
    call(sim, client)                       # over max_pending_calls
    call(sim, client, target="nothing")     # not registered
    out = sim.output()
    assert [error_code(f) for f in out[client] if f.type == p.ERROR] == \
        ["overloaded", "not_registered"]

    doc = sim.state.status_document()

    assert doc["client_errors"] == {"not_registered": 1, "overloaded": 1}
    assert Sim().state.status_document()["client_errors"] == {"overloaded": 0}
    assert [e["code"] for e in doc["recent_errors"]] == \
        ["overloaded", "not_registered"]


def test_heartbeats_bring_the_workers_figures_and_bad_ones_are_ignored():
    sim = Sim()
    peer, _ = connect_worker(sim, "w1")
    sim.send(peer, p.HEARTBEAT, {"inflight": 1, "busy": 1, "rss": 5000000,
                                 "cpu": 1.5, "hits": 3, "misses": 1}, rid=0)
    row = worker_row(sim.state.status_document(), "w1")
    assert (row["busy_threads"], row["rss_bytes"], row["cpu_seconds"]) == \
        (1, 5000000, 1.5)
    assert row["cache_hit_ratio"] == 0.75
    sim.send(peer, p.HEARTBEAT, {"busy": -1, "rss": "lots", "cpu": True,
                                 "hits": float("nan")}, rid=0)
    row = worker_row(sim.state.status_document(), "w1")
    assert (row["busy_threads"], row["rss_bytes"], row["cpu_seconds"]) == \
        (1, 5000000, 1.5)                   # the last good figures stay
    assert sim.output().get(peer) is None   # a heartbeat needs no answer


def test_status_request_answers_the_document():
    sim, client, _ = make_cluster(n_workers=2)
    rid = sim.send(client, p.STATUS)
    [reply] = sim.output()[client]
    assert (reply.type, reply.request_id) == (p.OK, rid)
    doc = json.loads(bytes(reply.payload))
    assert set(doc) == set(sim.state.status_document())
    assert sorted(w["worker_id"] for w in doc["workers"]) == ["w1", "w2"]
    assert doc["director"]["director"] == "127.0.0.1:40000"


def test_the_document_is_plain_json_that_shares_nothing_with_the_state():
    sim, client, _ = make_cluster(n_workers=1)
    call(sim, client)
    answer(sim, sim.output())
    doc = sim.state.status_document()
    json.dumps(doc, allow_nan=False)
    doc["workers"][0]["functions"].append("changed")
    doc["workers"][0]["by_function"].clear()
    doc["evictions"]["heartbeat"] = 99
    again = sim.state.status_document()
    assert again["workers"][0]["functions"] == [FID_V1]
    assert again["workers"][0]["by_function"][FID_V1]["calls"] == 1
    assert again["evictions"]["heartbeat"] == 0


def test_an_unregistered_function_takes_its_figures_along():
    sim, client, _ = make_cluster(n_workers=1)
    call(sim, client)
    answer(sim, sim.output())
    sim.send(client, p.UNDEPLOY, {"f": "square"})
    sim.output()
    doc = sim.state.status_document()
    assert doc["functions"] == []
    assert doc["workers"][0]["by_function"] == {}
    assert deploy(sim, client).type == p.OK
    assert function_row(sim.state.status_document())["calls"] == 0


def test_history_gives_calls_per_second():
    sim, client, _ = make_cluster(n_workers=1)
    sim.state.sample()
    for _ in range(3):
        call(sim, client)
    answer(sim, sim.output())
    sim.state.sample()
    [(when, rate, errors)] = sim.state.status_document()["history"]
    assert rate > 0 and errors == 0


def test_connections_by_state():
    sim, client, _ = make_cluster(n_workers=2)
    sim.connect(p.ROLE_CLIENT)   # preamble sent, no handshake answer read
    doc = sim.state.status_document()
    assert doc["connections"]["worker"] == 2
    assert doc["connections"]["client"] == 2   # (no token: ready at once)


def test_a_tally_folds_latencies_into_cumulative_buckets():
    tally = Tally("f")
    for latency in (0.0002, 0.0002, 0.004, 100.0):
        tally.append(latency)
    assert tally.fold() == [0.0002, 0.0002, 0.004, 100.0]
    assert len(tally) == 0 and tally.count == 4
    le = dict(zip(BUCKETS, tally.buckets))
    assert (le[0.0001], le[0.00025], le[0.005], le[60.0]) == (0, 2, 3, 3)
    assert tally.fold() == () and tally.count == 4
    assert abs(tally.sum - 100.0044) < 1e-9


def test_a_client_with_a_workflow_that_leaves_counts_it_cancelled():
    sim, client, _ = make_cluster(n_workers=1)
    workflow = {"id": "wf", "entry_function": "square", "functions": {
        "square": {"positional_args": [2], "default_args": {},
                   "next": "", "cache_result": False}}}
    sim.send(client, p.CHAIN, None, json.dumps(workflow).encode())
    assert routed(sim.output())
    sim.state.disconnected(client, "connection closed")
    doc = sim.state.status_document()
    assert doc["workflows"] == {"ok": 0, "failed": 0, "cancelled": 1}
    assert function_row(doc)["cancelled"] == 1
    assert connect_client(sim)


def test_a_worker_whose_threads_are_all_stuck_shows_as_stuck_in_the_metrics():
    from prometheus_client.parser import text_string_to_metric_families
    from pyfaas.director.monitoring.metrics import render
    sim, client, (w1, w2) = make_cluster()
    sim.send(w1, p.HEARTBEAT, {"inflight": 2, "stuck": 2})  # of 2 threads
    sim.output()
    doc = sim.state.status_document()
    assert worker_row(doc, "w1")["state"] == "stuck"
    workers = {dict(s.labels)["state"]: s.value
               for family in text_string_to_metric_families(render(doc))
               if family.name == "pyfaas_workers" for s in family.samples}
    assert workers == {"serving": 1, "draining": 0, "stuck": 1}
