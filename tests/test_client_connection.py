"""What a Client does with its connection, against a scripted Director.

Who reads the connection (a waiting caller or the reader thread) never
loses a reply; connections that break leave no reader thread behind;
``map`` sends many calls per frame; a cancelled future or an abandoned
``map`` tells the Director. The scripted Director (tests/scripted_director.py)
sees every frame the client sends and decides when to answer. The last
test uses real processes: a send to a frozen Director is bounded.
"""

import signal
import threading
import time

import pytest

from helpers import HOST, succeeds, wait_until
from pyfaas import Client
from pyfaas.errors import PyFaaSError, PyFaaSTimeoutError
from pyfaas.wire import protocol as p
from scripted_director import NEVER, ScriptedDirector, functions

pytestmark = pytest.mark.timeout(60)


def _readers():
    return sum(t.name == "pyfaas-client-reader" and t.is_alive()
               for t in threading.enumerate())


def size(blob):
    return len(blob)


def test_a_reply_that_comes_after_the_reading_caller_left_reaches_its_caller():
    # Caller A reads the connection while it waits; caller B, sending
    # meanwhile, leaves the reading to A. A's reply comes, A leaves; B's
    # comes only then, and must still reach B (the reader thread takes
    # over from A).
    a_sent, b_may_have_it = threading.Event(), threading.Event()
    held = {}

    def answer(peer, frame):
        if frame.type == p.LIST:
            functions(first=None, second=None)(peer, frame)
        elif frame.type == p.CALL and frame.meta()["f"] == "first":
            held["first"] = frame.request_id
            a_sent.set()
        elif frame.type == p.CALL:
            peer.send(p.OK, held["first"], None, b"\x80\x04K\x01.",
                      p.FLAG_PICKLED)  # pickle of 1
            b_may_have_it.wait(10)
            peer.send(p.OK, frame.request_id, None, b"\x80\x04K\x02.",
                      p.FLAG_PICKLED)  # pickle of 2

    with ScriptedDirector(answer) as director, \
            Client(config=director.client_config(timeout=5)) as client:
        client.list()
        got = {}
        first = threading.Thread(
            target=lambda: got.setdefault("first", client.call("first")))
        second = threading.Thread(
            target=lambda: got.setdefault("second", client.call("second")))
        first.start()
        try:
            assert a_sent.wait(10)
            second.start()
            first.join(10)
            assert got.get("first") == 1
        finally:
            b_may_have_it.set()
            first.join(10)
            if second.ident is not None:
                second.join(10)
        assert got.get("second") == 2  # not a timeout


def test_connections_that_break_leave_no_reader_thread_behind():
    with ScriptedDirector(functions(size=size)) as director, \
            Client(config=director.client_config(timeout=5)) as client:
        assert client.call("size", b"ab") == 2
        before = _readers()
        for _ in range(5):
            # A reset connection: the next send on it fails at once.
            director.drop_connections(reset=True)
            wait_until(succeeds(client.call, "size", b"abc"), 5)
        assert director.connections == 6
        wait_until(lambda: _readers() <= before, 5,
                   lambda: "%d reader threads for 1 connection" % _readers())


def test_map_sends_its_calls_many_to_a_frame():
    with ScriptedDirector(functions(size=size)) as director, \
            Client(config=director.client_config()) as client:
        results = list(client.map("size", [b"x" * i for i in range(256)],
                                  max_in_flight=128, batch=64))
        assert results == list(range(256))
        calls = director.received(p.CALL, p.CALL_MANY)
        assert [f.type for f in calls] == [p.CALL_MANY] * 4
        assert [len(f.meta()["rids"]) for f in calls] == [64] * 4


def test_cancelling_a_future_tells_the_director():
    with ScriptedDirector(functions(never=NEVER)) as director, \
            Client(config=director.client_config()) as client:
        fut = client.submit("never")
        assert fut.cancel() is True
        wait_until(lambda: director.received(p.CANCEL), 5)
        [call] = director.received(p.CALL)  # (it came first)
        assert [f.request_id for f in director.received(p.CANCEL)] == [
            call.request_id]


def test_a_map_that_times_out_cancels_the_calls_it_sent():
    with ScriptedDirector(functions(never=NEVER)) as director, \
            Client(config=director.client_config()) as client:
        with pytest.raises(PyFaaSTimeoutError, match="map: results not "
                                                     "ready within 0.2 s"):
            list(client.map("never", range(10), timeout=0.2))
        wait_until(lambda: len(director.received(p.CANCEL)) == 10, 5)
        [many] = director.received(p.CALL_MANY)  # (it came first)
        assert sorted(f.request_id for f in director.received(p.CANCEL)) \
            == many.meta()["rids"]


def _call_or_none(client):
    try:
        return client.call("size", b"abc")
    except PyFaaSError:
        return None


def test_a_send_to_a_frozen_director_ends_with_a_timeout(fresh_cluster):
    cl = fresh_cluster(workers=1)
    # Sends are bounded by the client's timeout (at least 5 s).
    with Client(HOST, cl.port, 2.0) as client:
        client.register(size)
        assert client.call("size", b"ab") == 2
        cl.director.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(PyFaaSTimeoutError):
                client.exec("size", [b"x" * 30000000], timeout=1.0)
            assert time.monotonic() - start < 10
        finally:
            cl.director.signal(signal.SIGCONT)
        # The client connects again by itself.
        assert wait_until(lambda: _call_or_none(client), 10) == 3
