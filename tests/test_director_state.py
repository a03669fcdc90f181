"""Pure tests of DirectorState (pyfaas/director/state.py), driven by events.

No sockets: peers are small integers, frames go in through ``received`` and
come out of ``take_output`` as encoded parts, which we decode again. Time is
a fake clock the tests move by hand; the Random strategy gets a seeded rng.
"""

import dataclasses
import itertools
import json
import random
from collections import Counter

import pytest

from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder
from pyfaas.config import DEFAULT_MAX_FRAME_BYTES, DirectorConfig
from pyfaas.director.state import DirectorState
from pyfaas.ids import function_id

CODE_V1 = b"pickled code of square, v1"
CODE_V2 = b"pickled code of square, v2"
FID_V1, FID_V2 = function_id(CODE_V1, "square"), function_id(CODE_V2, "square")


def director_config(**settings):
    """A DirectorConfig as a director.toml would give, with ``settings``
    (attribute names of DirectorConfig) changed."""
    return dataclasses.replace(DirectorConfig(
        path="director.toml", director_ip_addr="127.0.0.1",
        director_port=40000, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
        max_pending_calls=10000, log_level="info", log_directory="",
        log_filename="director.log", statistics_enabled=True,
        heartbeat_check_interval_ms=100,
        expected_heartbeat_interval_ms=2000,
        worker_selection_strategy="Round-Robin", greeting_msg="",
        startup_grace_ms=0),
        **settings)


class Sim:
    """A DirectorState with a fake clock and the peers connected to it.

    ``token`` and ``rng`` go to DirectorState; any other keyword is a
    DirectorConfig setting."""

    def __init__(self, token=None, rng=None, **settings):
        self.now = [1000.0]
        self.state = DirectorState(director_config(**settings),
                                   "127.0.0.1:40000", token,
                                   rng or random.Random(42),
                                   lambda: self.now[0])
        self._ids = itertools.count(1)
        self._rids = itertools.count(100)
        self.closed = {}

    def connect(self, role, version=1):
        peer = next(self._ids)
        self.state.connected(peer, ("127.0.0.1", 50000 + peer))
        self.state.received(peer, p.Preamble(version, role))
        return peer

    def send(self, peer, type_, meta=None, payload=b"", rid=None, flags=0):
        """Deliver one frame from ``peer``; return the request id used."""
        rid = next(self._rids) if rid is None else rid
        self.state.received(peer, p.Frame(type_, rid, p.encode_meta(meta),
                                          payload, flags))
        return rid

    def output(self):
        """Decode what the state queued: ``{peer: [Frame, ...]}``."""
        out, closing = self.state.take_output()
        self.closed.update(closing)
        frames = {}
        for peer, parts in out.items():
            decoder = FrameDecoder()
            decoder.feed(b"".join(bytes(part) for part in parts))
            decoder.feed(b"")  # whole frames only, or next_event raises
            frames[peer] = list(iter(decoder.next_event, p.CLOSED))
        return frames


def connect_client(sim):
    peer = sim.connect(p.ROLE_CLIENT)
    [hello] = sim.output()[peer]
    assert hello.type == p.HELLO
    return peer


def connect_worker(sim, worker_id):
    """Connect and register a Worker; return (peer, frames it was sent)."""
    peer = sim.connect(p.ROLE_WORKER)
    sim.send(peer, p.REGISTER_WORKER, {"worker_id": worker_id, "pid": 1,
                                       "max_threads": 2, "functions": []})
    frames = sim.output()[peer]
    assert frames[0].type == p.HELLO and frames[1].type == p.WELCOME
    return peer, frames[2:]


def reply_to_deploys(sim, out, answers):
    """Answer every DEPLOY in ``out``: ``answers`` maps peer -> OK or ERROR."""
    for peer, frames in out.items():
        for frame in frames:
            if frame.type != p.DEPLOY:
                continue
            if answers.get(peer, p.OK) == p.OK:
                meta = {"func_id": frame.meta()["func_id"]}
            else:
                meta = {"code": "registration", "message": "no module named x"}
            sim.send(peer, answers.get(peer, p.OK), meta, rid=frame.request_id)


def deploy(sim, client, code=CODE_V1, name="square"):
    """Deploy with every Worker agreeing; return the client's reply frame."""
    rid = sim.send(client, p.DEPLOY, {"name": name, "params": [["x", 1, 0]],
                                      "doc": "Square x."}, code)
    out = sim.output()
    reply_to_deploys(sim, out, {})
    frames = out.get(client, []) + sim.output().get(client, [])
    [reply] = [f for f in frames if f.request_id == rid]
    return reply


def make_cluster(n_workers=2, deployed=True, **kwargs):
    """Workers w1..wN, one client and (if ``deployed``) square v1 on them."""
    sim = Sim(**kwargs)
    workers = [connect_worker(sim, "w%d" % i)[0]
               for i in range(1, n_workers + 1)]
    client = connect_client(sim)
    if deployed:
        assert deploy(sim, client).type == p.OK
    return sim, client, workers


def call(sim, client, target="square", payload=b"args", **meta):
    return sim.send(client, p.CALL, dict(meta, f=target), payload,
                    flags=p.FLAG_PICKLED)


def routed(out):
    """{worker peer: [CALL frames]} from a decoded output."""
    return {peer: [f for f in fs if f.type == p.CALL]
            for peer, fs in out.items() if any(f.type == p.CALL for f in fs)}


def error_code(frame):
    assert frame.type == p.ERROR, frame
    return frame.meta()["code"]


# ----- handshake and protocol errors -----------------------------------------

def test_handshake_answers_hello():
    sim = Sim()
    peer = sim.connect(p.ROLE_CLIENT)
    [hello] = sim.output()[peer]
    assert hello.type == p.HELLO
    assert hello.meta()["protocol"] == p.PROTOCOL_VERSION
    assert hello.meta()["director"] == "127.0.0.1:40000"
    assert sim.closed == {}


def test_version_mismatch_gets_an_error_then_a_close():
    sim = Sim()
    peer = sim.connect(p.ROLE_CLIENT, version=2)
    [err] = sim.output()[peer]
    assert error_code(err) == "version"
    assert "version 2" in err.meta()["message"]
    assert peer in sim.closed


def test_unexpected_frame_type_closes_only_that_peer():
    sim = Sim()
    bad, good = connect_client(sim), connect_client(sim)
    sim.send(bad, p.HEARTBEAT)
    out = sim.output()
    assert error_code(out[bad][0]) == "protocol"
    assert "HEARTBEAT" in out[bad][0].meta()["message"]
    assert list(sim.closed) == [bad]
    rid = sim.send(good, p.PING)
    [pong] = sim.output()[good]
    assert (pong.type, pong.request_id) == (p.OK, rid)
    assert list(sim.closed) == [bad]


def test_worker_must_register_before_anything_else():
    sim = Sim()
    peer = sim.connect(p.ROLE_WORKER)
    sim.output()
    sim.send(peer, p.HEARTBEAT, {"inflight": 0})
    [err] = sim.output()[peer]
    assert error_code(err) == "protocol"
    assert peer in sim.closed and sim.state.cluster.workers == {}


# ----- deploy ----------------------------------------------------------------

def test_deploy_with_no_workers_is_ok_at_once():
    sim, client, _ = make_cluster(n_workers=0, deployed=False)
    rid = sim.send(client, p.DEPLOY, {"name": "square"}, CODE_V1)
    [ok] = sim.output()[client]
    assert (ok.type, ok.request_id) == (p.OK, rid)
    assert ok.meta() == {"func_id": FID_V1, "name": "square", "replaced": None,
                         "workers": [], "failed": {}}


def test_deploy_waits_for_every_worker():
    sim, client, (w1, w2) = make_cluster(deployed=False)
    rid = sim.send(client, p.DEPLOY, {"name": "square"}, CODE_V1)
    out = sim.output()
    assert set(out) == {w1, w2}
    for peer in (w1, w2):
        [dep] = out[peer]
        assert (dep.type, dep.payload) == (p.DEPLOY, CODE_V1)
        assert dep.meta()["func_id"] == FID_V1
        assert dep.meta()["name"] == "square"
    sim.send(w1, p.OK, rid=out[w1][0].request_id)
    assert sim.output() == {}  # still waiting for w2
    sim.send(w2, p.OK, rid=out[w2][0].request_id)
    [ok] = sim.output()[client]
    assert (ok.type, ok.request_id) == (p.OK, rid)
    assert ok.meta()["workers"] == ["w1", "w2"] and ok.meta()["failed"] == {}


def test_deploy_failing_on_one_worker_reports_it():
    sim, client, (w1, w2) = make_cluster(deployed=False)
    sim.send(client, p.DEPLOY, {"name": "square"}, CODE_V1)
    reply_to_deploys(sim, sim.output(), {w2: p.ERROR})
    [ok] = sim.output()[client]
    assert (ok.type, ok.meta()["workers"]) == (p.OK, ["w1"])
    assert ok.meta()["failed"] == {"w2": "no module named x"}
    for _ in range(4):  # calls only go where the function loaded
        call(sim, client)
        assert list(routed(sim.output())) == [w1]


def _listing(sim, client):
    sim.send(client, p.LIST)
    [frame] = sim.output()[client]
    return json.loads(frame.payload)


def test_deploy_failing_everywhere_is_an_error_and_unregistered():
    sim, client, (w1, w2) = make_cluster(deployed=False)
    rid = sim.send(client, p.DEPLOY, {"name": "square"}, CODE_V1)
    reply_to_deploys(sim, sim.output(), {w1: p.ERROR, w2: p.ERROR})
    [err] = sim.output()[client]
    assert err.request_id == rid and error_code(err) == "registration"
    assert "no module named x" in err.meta()["message"]
    assert _listing(sim, client) == {}
    call(sim, client)
    assert error_code(sim.output()[client][0]) == "not_registered"


def test_redeploy_with_new_code_replaces_the_old_version():
    sim, client, (w1, w2) = make_cluster()
    rid = sim.send(client, p.DEPLOY, {"name": "square"}, CODE_V2)
    out = sim.output()
    for peer in (w1, w2):
        meta = out[peer][0].meta()
        assert (meta["replaces"], meta["func_id"]) == (FID_V1, FID_V2)
    reply_to_deploys(sim, out, {})
    [ok] = sim.output()[client]
    assert ok.request_id == rid
    assert ok.meta()["replaced"] == FID_V1 and ok.meta()["func_id"] == FID_V2
    assert list(_listing(sim, client)) == [FID_V2]
    call(sim, client, FID_V1)
    assert error_code(sim.output()[client][0]) == "not_registered"


def test_failed_redeploy_keeps_the_old_version_callable():
    sim, client, (w1, w2) = make_cluster()
    sim.send(client, p.DEPLOY, {"name": "square"}, CODE_V2)
    # worker.py answers ERROR before dropping the old version it replaces
    reply_to_deploys(sim, sim.output(), {w1: p.ERROR, w2: p.ERROR})
    assert error_code(sim.output()[client][0]) == "registration"
    call(sim, client)
    out = sim.output()
    assert client not in out, out[client]
    [(_, [fwd])] = routed(out).items()
    assert fwd.meta()["f"] == FID_V1


def test_same_code_under_two_names_keeps_both_names():
    sim, client, _ = make_cluster()
    assert deploy(sim, client, CODE_V1, name="alias").type == p.OK
    sim.send(client, p.UNDEPLOY, {"f": "alias"})
    sim.output()
    call(sim, client, "square")
    assert client not in sim.output()  # routed to a worker, no error


def test_worker_joining_later_gets_every_registered_function():
    sim, client, (w1,) = make_cluster(n_workers=1)
    deploy(sim, client, CODE_V2, name="cube")
    w2, frames = connect_worker(sim, "w2")
    assert sorted((f.type, f.payload) for f in frames) == [
        (p.DEPLOY, CODE_V1), (p.DEPLOY, CODE_V2)]
    reply_to_deploys(sim, {w2: frames}, {})
    assert sim.output() == {}  # the Director asked, no client waits
    fid_cube = function_id(CODE_V2, "cube")
    assert _listing(sim, client)[fid_cube]["workers"] == ["w1", "w2"]


# ----- calls and routing -----------------------------------------------------

def test_call_by_name_and_by_id_reaches_a_worker():
    sim, client, (w1,) = make_cluster(n_workers=1)
    for target in ("square", FID_V1):
        rid = call(sim, client, target, payload=b"\x80args")
        [fwd] = sim.output()[w1]
        assert fwd.type == p.CALL and fwd.meta() == {"f": FID_V1}
        assert fwd.payload == b"\x80args" and fwd.flags == p.FLAG_PICKLED
        assert fwd.request_id != rid


def test_call_with_no_workers_fails_at_once():
    sim, client, _ = make_cluster(n_workers=0)
    call(sim, client)
    assert error_code(sim.output()[client][0]) == "no_workers"
    assert sim.state.cluster.pending == {}


def test_round_robin_alternates():
    sim, client, (w1, w2) = make_cluster(worker_selection_strategy="Round-Robin")
    picks = []
    for _ in range(6):
        call(sim, client)
        picks.extend(routed(sim.output()))
    assert picks[0::2] == [picks[0]] * 3 and picks[1::2] == [picks[1]] * 3
    assert {picks[0], picks[1]} == {w1, w2}



def test_round_robin_passes_over_a_full_worker_whatever_else_is_in_flight():
    # f runs on A and B (2 threads each), g on C only; slow g calls pile up
    # on C. Round-Robin must still pass over A once its threads are busy
    # while B has free ones.
    sim = Sim(worker_selection_strategy="Round-Robin")
    wa, _ = connect_worker(sim, "A")
    wb, _ = connect_worker(sim, "B")
    wc, _ = connect_worker(sim, "C")
    client = connect_client(sim)
    for name, code, failing in (("f", b"code f", (wc,)),
                                ("g", b"code g", (wa, wb))):
        sim.send(client, p.DEPLOY, {"name": name, "params": [["x", 1, 0]]},
                 code)
        reply_to_deploys(sim, sim.output(), {peer: p.ERROR
                                             for peer in failing})
        sim.output()
    for _ in range(4):
        call(sim, client, target="g")
    sim.output()
    sent = {wa: 0, wb: 0}
    for _ in range(40):
        call(sim, client, target="f")
        for peer, calls in routed(sim.output()).items():
            for frame in calls:
                sent[peer] += 1
                if peer == wb:  # B answers at once; A never does
                    sim.send(wb, p.OK, {}, b"r", rid=frame.request_id)
                    sim.output()
    assert sent[wa] == 2 and sent[wb] == 38  # A got what its threads take

def test_random_picks_only_eligible_workers_and_each_of_them():
    sim, client, (w1, w2, w3) = make_cluster(
        3, deployed=False, worker_selection_strategy="Random", rng=random.Random(3))
    sim.send(client, p.DEPLOY, {"name": "square"}, CODE_V1)
    reply_to_deploys(sim, sim.output(), {w3: p.ERROR})
    sim.output()
    counts = Counter()
    for _ in range(200):
        call(sim, client)
        counts.update(list(routed(sim.output())))
    assert set(counts) == {w1, w2}
    assert min(counts.values()) > 50


def test_least_loaded_picks_the_worker_with_fewer_calls_in_flight():
    sim, client, (w1, w2) = make_cluster(worker_selection_strategy="Least-Loaded")
    for _ in range(3):
        call(sim, client)
    out = routed(sim.output())
    assert sorted(len(v) for v in out.values()) == [1, 2]
    busy = max(out, key=lambda peer: len(out[peer]))
    for frame in out[busy]:  # the busy worker finishes everything
        sim.send(busy, p.OK, rid=frame.request_id)
    sim.output()
    call(sim, client)
    assert list(routed(sim.output())) == [busy]


def test_reply_goes_to_the_right_client_unchanged():
    sim, c1, (w1,) = make_cluster(n_workers=1)
    c2 = connect_client(sim)
    rid1, rid2 = call(sim, c1), call(sim, c2)
    fwd1, fwd2 = sim.output()[w1]
    meta = b'{"worker_id":"w1","cached":false}'
    sim.send(w1, p.OK, meta, b"\x80result2", rid=fwd2.request_id,
             flags=p.FLAG_PICKLED)
    sim.send(w1, p.ERROR, {"code": "execution"}, rid=fwd1.request_id)
    out = sim.output()
    assert out[c2] == [p.Frame(p.OK, rid2, meta, b"\x80result2",
                               p.FLAG_PICKLED)]
    assert out[c1] == [p.Frame(p.ERROR, rid1, b'{"code":"execution"}')]
    assert sim.state.cluster.pending == {}


def test_late_reply_with_an_unknown_request_id_is_dropped():
    sim, client, (w1,) = make_cluster(n_workers=1)
    call(sim, client)
    [fwd] = sim.output()[w1]
    sim.send(w1, p.OK, rid=fwd.request_id)
    assert len(sim.output()[client]) == 1
    sim.send(w1, p.OK, rid=fwd.request_id)  # a duplicate
    sim.send(w1, p.OK, rid=987654)          # never asked
    assert sim.output() == {} and sim.closed == {}


def test_reply_from_the_wrong_worker_does_not_steal_the_call():
    sim, client, (w1, w2) = make_cluster(worker_selection_strategy="Least-Loaded")
    rid = call(sim, client)
    [(target, [fwd])] = routed(sim.output()).items()
    other = w2 if target == w1 else w1
    sim.send(other, p.OK, payload=b"bogus", rid=fwd.request_id)
    assert sim.output() == {}
    sim.send(target, p.OK, payload=b"real", rid=fwd.request_id)
    [reply] = sim.output()[client]
    assert (reply.request_id, reply.payload) == (rid, b"real")


# ----- failures --------------------------------------------------------------

def test_worker_disconnect_fails_its_calls_with_worker_lost():
    sim, c1, (w1, w2) = make_cluster(worker_selection_strategy="Least-Loaded")
    c2 = connect_client(sim)
    rids = [call(sim, c1), call(sim, c1), call(sim, c2), call(sim, c2)]
    calls = routed(sim.output())
    assert len(calls[w1]) == 2 and len(calls[w2]) == 2
    sim.state.disconnected(w1)
    out = sim.output()
    errors = out[c1] + out[c2]
    assert len(errors) == 2
    for err in errors:
        assert error_code(err) == "worker_lost"
        assert err.meta()["worker_id"] == "w1"
        assert "w1" in err.meta()["message"]
    assert {e.request_id for e in errors} < set(rids)
    # w2's calls go on, and can still be answered
    assert set(sim.state.cluster.pending) == {f.request_id for f in calls[w2]}
    assert list(sim.state.cluster.workers) == ["w2"]
    sim.send(w2, p.OK, rid=calls[w2][0].request_id)
    [(_, [ok])] = sim.output().items()
    assert ok.type == p.OK and ok.request_id in rids


def test_silent_worker_is_evicted_and_a_heartbeating_one_stays():
    sim, client, (w1, w2) = make_cluster(expected_heartbeat_interval_ms=1000)
    rids = {}
    for _ in range(2):
        rid = call(sim, client)
        [(peer, _)] = routed(sim.output()).items()
        rids[peer] = rid
    sim.now[0] += 2.5
    sim.send(w2, p.HEARTBEAT, {"inflight": 1}, rid=0)
    sim.now[0] += 0.5           # w1 silent exactly 3 expected intervals
    sim.state.tick()
    assert sim.output() == {} and sim.closed == {}
    sim.now[0] += 0.6
    sim.state.tick()
    [err] = sim.output()[client]
    assert error_code(err) == "worker_lost" and err.request_id == rids[w1]
    assert "no heartbeat" in err.meta()["message"]
    assert list(sim.closed) == [w1]
    assert list(sim.state.cluster.workers) == ["w2"]
    sim.state.disconnected(w1)  # the loop closes it later: nothing more
    assert sim.output() == {}


def test_client_disconnect_cancels_its_calls():
    sim, client, (w1,) = make_cluster(n_workers=1)
    call(sim, client)
    [fwd] = sim.output()[w1]
    sim.state.disconnected(client)
    [cancel] = sim.output()[w1]
    assert (cancel.type, cancel.request_id) == (p.CANCEL, fwd.request_id)
    assert sim.state.cluster.pending == {}
    assert sim.state.cluster.workers["w1"].inflight == set()
    sim.send(w1, p.OK, rid=fwd.request_id)  # the worker answered anyway
    assert sim.output() == {}


# ----- other requests --------------------------------------------------------

@pytest.mark.parametrize("target", ["square", FID_V1])
def test_undeploy(target):
    sim, client, (w1, w2) = make_cluster()
    rid = sim.send(client, p.UNDEPLOY, {"f": target})
    out = sim.output()
    assert out[client] == [p.Frame(p.OK, rid, p.encode_meta(
        {"func_id": FID_V1, "name": "square"}))]
    for peer in (w1, w2):
        assert [(f.type, f.meta()) for f in out[peer]] == [
            (p.UNDEPLOY, {"func_id": FID_V1})]
    call(sim, client)
    assert error_code(sim.output()[client][0]) == "not_registered"


def test_list_payload():
    sim, client, _ = make_cluster()
    entry = _listing(sim, client)[FID_V1]
    assert entry["name"] == "square" and entry["params"] == [["x", 1, 0]]
    assert entry["doc"] == "Square x." and entry["workers"] == ["w1", "w2"]


def test_workers_payload():
    sim, client, _ = make_cluster()
    sim.now[0] += 1.25
    sim.send(client, p.WORKERS)
    rows = json.loads(sim.output()[client][0].payload)
    assert [r["worker_id"] for r in rows] == ["w1", "w2"]
    assert rows[0]["max_threads"] == 2 and rows[0]["pid"] == 1
    assert rows[0]["functions"] == [FID_V1] and rows[0]["inflight"] == 0
    assert rows[0]["last_heartbeat_age_s"] == pytest.approx(1.25)
    assert rows[0]["addr"].startswith("127.0.0.1:")


def test_ping_summary():
    sim, client, _ = make_cluster()
    rid = sim.send(client, p.PING)
    [pong] = sim.output()[client]
    assert pong.request_id == rid
    meta = pong.meta()
    assert (meta["workers"], meta["functions"]) == (2, 1)
    assert (meta["protocol"], meta["director"]) == (1, "127.0.0.1:40000")


@pytest.mark.parametrize("type_, code", [(p.CALL, "not_registered"),
                                         (p.UNDEPLOY, "unregistration")])
def test_requests_naming_an_unknown_function(type_, code):
    sim, client, _ = make_cluster()
    rid = sim.send(client, type_, {"f": "nope"})
    [err] = sim.output()[client]
    assert (err.request_id, error_code(err)) == (rid, code)
    assert "nope" in err.meta()["message"]


@pytest.mark.parametrize("type_", [p.WORKER_INFO, p.KILL_WORKER])
def test_worker_requests_to_an_unknown_id(type_):
    sim, client, _ = make_cluster()
    sim.send(client, type_, {"worker_id": "w9"})
    [err] = sim.output()[client]
    assert error_code(err) == "unknown_worker"
    assert "w9" in err.meta()["message"] and "w1" in err.meta()["message"]


def test_worker_info_is_relayed_to_the_worker_and_back():
    sim, client, (w1, _w2) = make_cluster()
    rid = sim.send(client, p.WORKER_INFO, {"worker_id": "w1"})
    [fwd] = sim.output()[w1]
    assert fwd.type == p.WORKER_INFO
    sim.send(w1, p.OK, None, b'{"cpu":1}', rid=fwd.request_id)
    [reply] = sim.output()[client]
    assert (reply.request_id, reply.payload) == (rid, b'{"cpu":1}')


def test_overloaded_when_max_pending_is_reached():
    sim, client, (w1,) = make_cluster(n_workers=1, max_pending_calls=2)
    for _ in range(2):
        call(sim, client)
    assert len(sim.output()[w1]) == 2
    call(sim, client)
    assert error_code(sim.output()[client][0]) == "overloaded"


# ----- Director restart: Workers bring the functions back --------------------

def test_worker_restores_functions_the_director_lost():
    sim = Sim()
    w_old, _ = connect_worker(sim, "w-old")
    peer = sim.connect(p.ROLE_WORKER)
    sim.send(peer, p.REGISTER_WORKER, {"worker_id": "w1", "functions": [
        [FID_V1, "square"]]})
    welcome = sim.output()[peer][1]
    assert welcome.meta() == {"worker_id": "w1", "want": [FID_V1]}
    sim.send(peer, p.ANNOUNCE, {"func_id": FID_V1, "name": "square",
                                "params": [["x", 1, 0]]}, CODE_V1, rid=0)
    [dep] = sim.output()[w_old]  # the other Worker gets it too
    assert (dep.type, dep.payload) == (p.DEPLOY, CODE_V1)
    client = connect_client(sim)
    assert _listing(sim, client)[FID_V1]["name"] == "square"
    call(sim, client, "square")
    assert FID_V1 in [f.meta()["f"] for fs in routed(sim.output()).values()
                      for f in fs]


def test_worker_holding_a_stale_version_is_told_to_drop_it():
    sim, client, _ = make_cluster(n_workers=0)
    peer = sim.connect(p.ROLE_WORKER)
    sim.send(peer, p.REGISTER_WORKER, {"worker_id": "w1", "functions": [
        ["0123456789abcdef", "square"]]})
    frames = sim.output()[peer]
    # UNDEPLOY after WELCOME: a Worker reads nothing else before WELCOME
    assert [f.type for f in frames] == [p.HELLO, p.WELCOME, p.UNDEPLOY,
                                        p.DEPLOY]
    assert frames[2].meta() == {"func_id": "0123456789abcdef"}
    assert frames[1].meta()["want"] == [] and frames[3].payload == CODE_V1
