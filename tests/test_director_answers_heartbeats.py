"""Pure tests: the Director answers the heartbeats of Workers that ask.

A Worker that announces its ``heartbeat_ms`` in REGISTER_WORKER is told in
WELCOME that the Director answers, then gets a HEARTBEAT (request id 0)
whenever something arrives from it (a frame, or bytes of a frame still
arriving), at most every half interval: so it can tell a Director that is
cut off or frozen from one that has nothing to say. A Worker that does not
ask (an older one) is sent nothing new. DirectorState with a fake clock,
no sockets (see test_director_state.py).
"""

from test_director_state import Sim, call, connect_client, deploy, routed
from pyfaas.wire import protocol as p

INTERVAL_MS = 1000


def register(sim, worker_id, **meta):
    """Connect a Worker and register it; return (peer, WELCOME, the rest)."""
    peer = sim.connect(p.ROLE_WORKER)
    sim.send(peer, p.REGISTER_WORKER, dict(meta, worker_id=worker_id, pid=1,
                                           max_threads=2, functions=[]))
    frames = sim.output()[peer]
    assert [f.type for f in frames[:2]] == [p.HELLO, p.WELCOME]
    return peer, frames[1], frames[2:]


def beats(frames):
    return [f for f in frames if f.type == p.HEARTBEAT]


def test_a_worker_that_asks_hears_back_at_most_every_half_interval():
    sim = Sim()
    peer, welcome, rest = register(sim, "w1", heartbeat_ms=INTERVAL_MS)
    assert welcome.meta()["heartbeat_ms"] == INTERVAL_MS
    assert beats(rest) == []    # WELCOME itself was the first sign of life

    sim.now[0] += 1.0
    sim.send(peer, p.HEARTBEAT, {"inflight": 0}, rid=0)
    [beat] = sim.output()[peer]
    assert (beat.type, beat.request_id, beat.meta()) == (p.HEARTBEAT, 0, {})

    sim.now[0] += 0.2           # within half an interval: no second one
    sim.send(peer, p.HEARTBEAT, {"inflight": 0}, rid=0)
    assert sim.output() == {}
    sim.now[0] += 0.3
    sim.send(peer, p.HEARTBEAT, {"inflight": 0}, rid=0)
    assert beats(sim.output()[peer]) != []


def test_any_frame_from_the_worker_earns_an_answer_not_only_heartbeats():
    # A Worker whose heartbeat waits behind its own replies still hears.
    sim = Sim()
    peer, _, _ = register(sim, "w1", heartbeat_ms=INTERVAL_MS)
    client = connect_client(sim)
    assert deploy(sim, client).type == p.OK
    sim.now[0] += 0.6
    rid = call(sim, client)
    [forwarded] = routed(sim.output())[peer]
    sim.send(peer, p.OK, rid=forwarded.request_id, flags=p.FLAG_PICKLED)
    out = sim.output()
    assert [f.request_id for f in out[client]] == [rid]
    assert len(beats(out[peer])) == 1


def test_bytes_of_a_large_frame_still_arriving_earn_an_answer():
    sim = Sim()
    peer, _, _ = register(sim, "w1", heartbeat_ms=INTERVAL_MS)
    sim.now[0] += 0.7
    sim.state.touch(peer)       # what the loop says while a frame arrives
    assert len(beats(sim.output()[peer])) == 1


def test_a_worker_that_does_not_ask_is_sent_nothing_new():
    sim = Sim()
    peer, welcome, rest = register(sim, "w1")
    assert "heartbeat_ms" not in welcome.meta() and rest == []
    for _ in range(3):
        sim.now[0] += 1.0
        sim.send(peer, p.HEARTBEAT, {"inflight": 0}, rid=0)
        sim.state.touch(peer)
    assert sim.output() == {}


def test_a_nonsense_interval_is_not_taken_for_a_request():
    sim = Sim()
    for n, value in enumerate([0, -5, True, "1000", 1.5]):
        peer, welcome, _ = register(sim, "w%d" % n, heartbeat_ms=value)
        assert "heartbeat_ms" not in welcome.meta(), value
        sim.now[0] += 1.0
        sim.send(peer, p.HEARTBEAT, {"inflight": 0}, rid=0)
        assert sim.output() == {}, value
