"""Pure tests of the Director's routes (``Cluster.routes``).

A call's route (its function and the Workers that may run it) is kept per
CALL meta bytes and rebuilt when anything it depends on changes. Each test
first routes a call, so a route is cached, then changes the cluster and
checks that the next call with the same meta sees the change.
"""

from pyfaas.wire import protocol as p

from test_director_state import (CODE_V2, FID_V1, FID_V2, call, connect_worker,
                                 deploy, error_code, make_cluster,
                                 reply_to_deploys, routed)


def _targets(sim, client, n=4):
    """Route ``n`` calls of "square"; return {worker peer: call count}."""
    counts = {}
    for _ in range(n):
        call(sim, client)
        for peer, frames in routed(sim.output()).items():
            counts[peer] = counts.get(peer, 0) + len(frames)
    return counts


def test_a_route_is_kept_between_calls():
    sim, client, (w1, w2) = make_cluster()
    assert set(_targets(sim, client)) == {w1, w2}
    routes = dict(sim.state.cluster.routes)
    assert len(routes) == 1
    _targets(sim, client)
    assert sim.state.cluster.routes == routes  # the same Route objects, reused


def test_a_lost_worker_is_not_chosen_any_more():
    sim, client, (w1, w2) = make_cluster()
    _targets(sim, client)
    sim.state.disconnected(w1)
    sim.output()
    assert _targets(sim, client) == {w2: 4}


def test_a_draining_worker_is_not_chosen_any_more():
    sim, client, (w1, w2) = make_cluster()
    _targets(sim, client)
    sim.send(w1, p.HEARTBEAT, {"draining": True}, rid=7)
    sim.output()
    assert _targets(sim, client) == {w2: 4}


def test_a_worker_that_joins_is_chosen():
    sim, client, (w1,) = make_cluster(n_workers=1)
    assert _targets(sim, client) == {w1: 4}
    w2, frames = connect_worker(sim, "w2")
    assert [f.type for f in frames] == [p.DEPLOY]
    assert set(_targets(sim, client)) == {w1, w2}


def test_a_worker_that_failed_to_load_the_function_is_not_chosen():
    sim, client, (w1,) = make_cluster(n_workers=1)
    _targets(sim, client)
    w2, frames = connect_worker(sim, "w2")
    # While its DEPLOY is on the way, w2 takes calls (they queue behind it)
    assert set(_targets(sim, client)) == {w1, w2}
    reply_to_deploys(sim, {w2: frames}, {w2: p.ERROR})
    sim.output()
    assert _targets(sim, client) == {w1: 4}


def test_an_unregistered_function_is_not_routed_nor_kept():
    sim, client, _ = make_cluster()
    _targets(sim, client)
    sim.send(client, p.UNDEPLOY, {"f": "square"})
    sim.output()
    # No stale route keeps the function (and its code) alive.
    assert sim.state.cluster.routes == {}
    call(sim, client)
    [err] = sim.output()[client]
    assert error_code(err) == "not_registered"
    assert sim.state.cluster.routes == {}


def test_a_replaced_function_is_routed_by_its_new_id():
    sim, client, _ = make_cluster()
    _targets(sim, client)
    assert deploy(sim, client, CODE_V2).type == p.OK
    call(sim, client)
    [(_, [fwd])] = routed(sim.output()).items()
    assert fwd.meta()["f"] == FID_V2 != FID_V1


def test_no_workers_left_is_an_error_not_a_stale_route():
    sim, client, (w1,) = make_cluster(n_workers=1)
    _targets(sim, client)
    sim.state.disconnected(w1)
    sim.output()
    call(sim, client)
    [err] = sim.output()[client]
    assert error_code(err) == "no_workers"


def test_options_reach_the_worker_with_the_function_id():
    sim, client, (w1,) = make_cluster(n_workers=1)
    for _ in range(2):  # the second call uses the kept route
        call(sim, client, timeout=2.5, cache=True)
        [fwd] = routed(sim.output())[w1]
        assert fwd.meta() == {"f": FID_V1, "timeout": 2.5, "cache": True}


def test_every_call_of_a_call_many_is_answered_when_there_is_no_route():
    sim, client, _ = make_cluster()
    sim.send(client, p.CALL_MANY, {"f": "cube", "rids": [7, 8, 9],
                                   "sizes": [1, 1, 1]}, b"abc", rid=7,
             flags=p.FLAG_PICKLED)
    replies = sim.output()[client]
    assert sorted(f.request_id for f in replies) == [7, 8, 9]
    assert {error_code(f) for f in replies} == {"not_registered"}


def test_a_call_many_uses_one_route_and_follows_the_options():
    sim, client, (w1, w2) = make_cluster()
    sim.send(client, p.CALL_MANY, {"f": "square", "rids": [7, 8],
                                   "sizes": [1, 1], "timeout": 3.0}, b"ab",
             rid=7, flags=p.FLAG_PICKLED)
    calls = routed(sim.output())
    assert set(calls) == {w1, w2}
    for frames in calls.values():
        assert [f.meta() for f in frames] == [{"f": FID_V1, "timeout": 3.0}]
