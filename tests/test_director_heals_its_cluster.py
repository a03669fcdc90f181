"""Pure tests of how the Director's state copes with Workers that die, get
stuck or fill up, and with a restart: driven by events, on a fake clock
(see test_director_state.py for the simulator).

What a user would notice: a call that kills Workers fails as poison once
it killed ``max_call_crashes`` of them and is not sent again; a lost call's
error names how its Worker died once the supervisor told; calls wait for a
supervised Worker to come back instead of failing; no call goes to a
Worker whose threads are all stuck; arguments in flight stay within their
byte budgets; calls made just after a restart wait for the Workers'
functions; connections in their handshake never crowd out the others.
"""

import pytest

from test_director_state import (CODE_V1, FID_V1, Sim, call, connect_client,
                                 deploy, error_code, routed)
from pyfaas.director.admission import MIN_AGE_S, Admission, Throttle
from pyfaas.director.deaths import RETURN_WAIT_S
from pyfaas.errors import PyFaaSPoisonCallError, error_from_meta
from pyfaas.wire import protocol as p


def register(sim, worker_id, restarts=0, last_cause=None, supervised=True,
             functions=(), **meta):
    """Connect and register a Worker; return (peer, everything sent to
    anyone meanwhile, decoded)."""
    peer = sim.connect(p.ROLE_WORKER)
    sim.send(peer, p.REGISTER_WORKER, dict(
        {"worker_id": worker_id, "pid": 1, "max_threads": 2,
         "functions": [list(f) for f in functions], "supervised": supervised,
         "restarts": restarts, "last_cause": last_cause}, **meta))
    out = sim.output()
    assert out[peer][1].type == p.WELCOME
    return peer, out


def answer_deploys(sim, frames_by_peer):
    for peer, frames in frames_by_peer.items():
        for frame in frames:
            if frame.type == p.DEPLOY:
                sim.send(peer, p.OK, {"func_id": frame.meta()["func_id"]},
                         rid=frame.request_id)


def supervised_cluster(n=3, **settings):
    sim = Sim(**settings)
    workers = {"w%d" % i: register(sim, "w%d" % i)[0] for i in range(1, n + 1)}
    client = connect_client(sim)
    assert deploy(sim, client).type == p.OK
    return sim, client, workers


def crash(sim, peer):
    """The Worker's process died: its connection closes."""
    sim.state.disconnected(peer, "connection closed")


def come_back(sim, worker_id, restarts, cause="SIGSEGV"):
    """Its supervisor started it again: it registers with what it holds.
    Returns (peer, what was sent meanwhile)."""
    return register(sim, worker_id, restarts, cause,
                    functions=[(FID_V1, "square")])


def calls_to(out):
    return {peer: len(frames) for peer, frames in routed(out).items()}


# ----- deaths and poison calls -----------------------------------------------

def test_a_call_that_kills_three_workers_fails_as_poison_naming_them():
    sim, client, workers = supervised_cluster()
    rid = call(sim, client, retries=5)
    sent = 0
    for _ in range(3):
        [(peer, frames)] = routed(sim.output()).items()
        sent += len(frames)
        crash(sim, peer)
    out = sim.output()
    assert client not in out  # its error waits for the causes
    assert routed(out) == {}  # and it is not sent again
    frames = []
    for name in workers:
        frames += come_back(sim, name, 1)[1].get(client, [])
    [err] = [f for f in frames if f.request_id == rid]
    assert error_code(err) == "poison_call" and sent == 3
    exc = error_from_meta(err.meta())
    assert isinstance(exc, PyFaaSPoisonCallError)
    assert sorted(w for w, _ in exc.deaths) == ["w1", "w2", "w3"]
    assert {c for _, c in exc.deaths} == {"SIGSEGV"}
    assert "killed 3 workers" in str(exc) and "SIGSEGV" in str(exc)


def test_a_lost_call_says_how_its_supervised_worker_died():
    sim, client, _ = supervised_cluster(n=1)
    rid = call(sim, client)
    [peer] = routed(sim.output())
    crash(sim, peer)
    assert client not in sim.output()
    [err] = come_back(sim, "w1", 1, "SIGKILL")[1][client]
    assert (err.request_id, error_code(err)) == (rid, "worker_lost")
    assert err.meta()["cause"] == "SIGKILL"
    assert "worker w1 died (SIGKILL)" in err.meta()["message"]


def test_a_lost_call_fails_with_the_reason_if_its_worker_stays_away():
    sim, client, _ = supervised_cluster(n=1)
    call(sim, client)
    [peer] = routed(sim.output())
    crash(sim, peer)
    sim.now[0] += RETURN_WAIT_S + 0.1
    sim.state.tick()
    [err] = sim.output()[client]
    assert error_code(err) == "worker_lost" and err.meta()["cause"] is None
    assert "connection closed" in err.meta()["message"]


def test_an_unsupervised_worker_loss_is_answered_at_once():
    sim = Sim()
    peer, _ = register(sim, "w1", supervised=False)
    client = connect_client(sim)
    assert deploy(sim, client).type == p.OK
    call(sim, client)
    sim.output()
    crash(sim, peer)
    [err] = sim.output()[client]
    assert error_code(err) == "worker_lost"


def test_a_call_with_retries_waits_for_its_only_worker_to_come_back():
    sim, client, _ = supervised_cluster(n=1)
    rid = call(sim, client, retries=1)
    [peer] = routed(sim.output())
    crash(sim, peer)
    assert sim.output() == {}
    new, out = come_back(sim, "w1", 1)
    answer_deploys(sim, out)
    [again] = routed(out)[new]
    sim.send(new, p.OK, None, b"result", rid=again.request_id)
    [reply] = sim.output()[client]
    assert (reply.type, reply.request_id, reply.payload) == (p.OK, rid,
                                                             b"result")


def test_a_worker_that_was_only_cut_off_is_not_said_to_have_died():
    sim, client, _ = supervised_cluster(n=1)
    call(sim, client)
    [peer] = routed(sim.output())
    sim.state.disconnected(peer, "no heartbeat for 0.7 s")
    # the same count: it did not die, SIGSEGV was an older death
    [err] = come_back(sim, "w1", 0, "SIGSEGV")[1][client]
    assert err.meta()["cause"] is None
    assert "no heartbeat for 0.7 s" in err.meta()["message"]


# ----- stuck threads and handed-back calls -----------------------------------

def heartbeat(sim, peer, **meta):
    sim.send(peer, p.HEARTBEAT, dict({"inflight": 0}, **meta), rid=0)


def test_no_call_goes_to_a_worker_whose_threads_are_all_stuck():
    sim, client, workers = supervised_cluster(n=2)
    heartbeat(sim, workers["w1"], stuck=2)
    for _ in range(4):
        call(sim, client)
    assert calls_to(sim.output()) == {workers["w2"]: 4}
    heartbeat(sim, workers["w1"], stuck=1)
    for _ in range(2):
        call(sim, client)
    assert workers["w1"] in calls_to(sim.output())


def test_round_robin_passes_over_a_worker_with_no_free_thread():
    sim = Sim()
    w1, _ = register(sim, "w1", max_threads=2)
    w2, _ = register(sim, "w2", max_threads=8)
    client = connect_client(sim)
    assert deploy(sim, client).type == p.OK
    heartbeat(sim, w1, stuck=1)
    for _ in range(6):
        call(sim, client)      # w1 takes one: with its stuck call, it is full
    assert calls_to(sim.output()) == {w1: 1, w2: 5}


def test_least_loaded_takes_the_worker_with_the_smallest_share_busy():
    sim = Sim(worker_selection_strategy="Least-Loaded")
    small, _ = register(sim, "small", max_threads=1)
    big, _ = register(sim, "big", max_threads=8)
    client = connect_client(sim)
    assert deploy(sim, client).type == p.OK
    for _ in range(4):
        call(sim, client)
    assert calls_to(sim.output()) == {small: 1, big: 3}


def test_a_call_handed_back_unstarted_runs_on_another_worker():
    sim, client, workers = supervised_cluster(n=2)
    rid = call(sim, client, payload=b"x" * 100)
    [(peer, [sent])] = routed(sim.output()).items()
    heartbeat(sim, peer, stuck=2)
    sim.send(peer, p.ERROR, {"code": "not_started", "message": "stuck",
                             "call": sent.meta()}, sent.payload,
             rid=sent.request_id, flags=sent.flags)
    [(other, [again])] = routed(sim.output()).items()
    assert other != peer and again.payload == b"x" * 100
    sim.send(other, p.OK, None, b"done", rid=again.request_id)
    [reply] = sim.output()[client]
    assert (reply.request_id, reply.payload) == (rid, b"done")
    assert sim.state.cluster.pending_bytes == 0


# ----- bytes in flight ----------------------------------------------------------

def test_calls_past_the_director_byte_budget_are_refused_as_overloaded():
    sim, client, workers = supervised_cluster(n=2, max_pending_bytes=10000)
    call(sim, client, payload=b"x" * 6000)
    rid = call(sim, client, payload=b"x" * 6000)
    out = sim.output()
    [err] = [f for f in out[client] if f.request_id == rid]
    assert error_code(err) == "overloaded"
    assert "max_pending_bytes" in err.meta()["message"]


def test_a_full_worker_budget_sends_calls_elsewhere_then_refuses_them():
    sim = Sim()
    w1, _ = register(sim, "w1", max_inflight_bytes=10000)
    w2, _ = register(sim, "w2", max_inflight_bytes=10000)
    client = connect_client(sim)
    assert deploy(sim, client).type == p.OK
    for _ in range(4):
        call(sim, client, payload=b"x" * 5000)
    assert calls_to(sim.output()) == {w1: 2, w2: 2}
    rid = call(sim, client, payload=b"x" * 5000)
    [err] = sim.output()[client]
    assert err.request_id == rid and error_code(err) == "overloaded"
    assert "max_inflight_bytes" in err.meta()["message"]
    big = call(sim, client, payload=b"x" * 50000)  # over any budget
    [err] = sim.output()[client]
    assert err.request_id == big and error_code(err) == "overloaded"


def test_a_call_larger_than_the_budget_goes_to_an_idle_worker():
    sim = Sim()
    w1, _ = register(sim, "w1", max_inflight_bytes=10000)
    client = connect_client(sim)
    assert deploy(sim, client).type == p.OK
    call(sim, client, payload=b"x" * 50000)
    assert calls_to(sim.output()) == {w1: 1}
    assert sim.state.cluster.workers["w1"].inflight_bytes == 50000


def test_small_arguments_are_not_counted_in_bytes():
    sim, client, _ = supervised_cluster(n=1, max_pending_bytes=2000)
    for _ in range(10):
        call(sim, client, payload=b"x" * 1000)
    assert len(routed(sim.output())[sim.state.cluster.workers["w1"]
                                     .peer_id]) == 10
    assert sim.state.cluster.pending_bytes == 0


# ----- the start-up grace --------------------------------------------------------

def test_a_call_right_after_a_restart_waits_for_the_worker_to_announce():
    sim = Sim(startup_grace_ms=3000)
    client = connect_client(sim)
    rid = call(sim, client, target="square")
    assert sim.output() == {}
    peer, out = register(sim, "w1", functions=[(FID_V1, "square")])
    assert out[peer][1].meta()["want"] == [FID_V1] and client not in out
    sim.send(peer, p.ANNOUNCE, {"func_id": FID_V1, "name": "square",
                                "params": [["x", 1, 0]]}, CODE_V1)
    [(worker, [sent])] = routed(sim.output()).items()
    sim.send(worker, p.OK, None, b"81", rid=sent.request_id)
    [reply] = sim.output()[client]
    assert (reply.request_id, reply.payload) == (rid, b"81")


def test_after_the_grace_an_unknown_function_fails_as_before():
    sim = Sim(startup_grace_ms=3000)
    client = connect_client(sim)
    rid = call(sim, client, target="nope")
    assert sim.output() == {}
    sim.now[0] += 3.1
    sim.state.tick()
    [err] = sim.output()[client]
    assert (err.request_id, error_code(err)) == (rid, "not_registered")
    call(sim, client, target="nope")
    assert error_code(sim.output()[client][0]) == "not_registered"


def test_a_held_call_can_be_cancelled():
    sim = Sim(startup_grace_ms=3000)
    client = connect_client(sim)
    rid = call(sim, client, target="square")
    sim.send(client, p.CANCEL, rid=rid)
    sim.now[0] += 3.1
    sim.state.tick()
    assert sim.output() == {}


# ----- connections in their handshake ---------------------------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_oldest_connection_in_its_handshake_makes_room():
    clock = Clock()
    adm = Admission(max_connections=10, max_handshaking=3, max_per_addr=2,
                    clock=clock)
    assert adm.admit(1, "a", 0) == []
    assert adm.admit(2, "a", 1) == []
    assert adm.admit(3, "a", 2) == []      # young ones are not shed yet
    clock.now += MIN_AGE_S + 0.1
    assert adm.admit(4, "a", 3) == [1]     # address over its cap
    assert adm.admit(5, "b", 3) == [2]     # over the cap in all
    adm.done(5)                            # b finished its handshake


def test_the_cap_in_all_holds_when_an_address_over_its_cap_is_spared():
    clock = Clock()
    adm = Admission(max_connections=10, max_handshaking=2, max_per_addr=1,
                    clock=clock)
    assert adm.admit(1, "a", 0) == []
    clock.now += MIN_AGE_S + 0.1
    assert adm.admit(2, "b", 1) == []
    # b is over its cap, but its one connection is too young to shed; the
    # cap in all still makes room, with a's old one.
    assert adm.admit(3, "b", 2) == [1]


def test_a_connection_past_its_handshake_is_never_closed_for_another():
    clock = Clock()
    adm = Admission(max_connections=2, max_handshaking=8, max_per_addr=8,
                    clock=clock)
    assert adm.admit(1, "a", 0) == []
    adm.done(1)
    assert adm.admit(2, "a", 1) == []
    assert adm.admit(3, "a", 2) == [2]     # the one in its handshake goes
    adm.done(3)
    assert adm.admit(4, "a", 2) is None    # both ready: the new one is not


def test_a_throttle_lets_one_line_through_per_interval_and_counts_the_rest():
    clock = Clock()
    throttle = Throttle(10.0, clock)
    assert throttle.ready() == 0
    assert [throttle.ready() for _ in range(5)] == [None] * 5
    clock.now += 10
    assert throttle.ready() == 5


@pytest.mark.parametrize("max_crashes", [1, 2])
def test_max_call_crashes_is_the_number_of_deaths_that_makes_poison(
        max_crashes):
    sim, client, workers = supervised_cluster(max_call_crashes=max_crashes)
    call(sim, client, retries=5)
    for _ in range(max_crashes):
        [(peer, _)] = routed(sim.output()).items()
        crash(sim, peer)
    assert routed(sim.output()) == {}
    sim.now[0] += RETURN_WAIT_S + 0.1
    sim.state.tick()
    [err] = sim.output()[client]
    assert error_code(err) == "poison_call"
    assert len(err.meta()["deaths"]) == max_crashes
