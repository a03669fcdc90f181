"""Every reply of a Worker reaches the connection it answers, exactly once.

All replies go through one queue (:class:`pyfaas.worker.replies.Replies`):
the thread that queues while nobody writes writes everything queued. The
first tests drive it with connections that are real socket pairs (a
reply's bytes are decoded at the other end); the last runs a Worker
against a scripted Director.
"""

import socket
import threading

import pytest

from helpers import decode_frames, wait_until
from scripted_director_for_workers import echo, gate, gated, serving_worker
from pyfaas.errors import PyFaaSNetworkError
from pyfaas.wire import protocol as p
from pyfaas.worker.replies import Replies

pytestmark = pytest.mark.timeout(60)


class PairConnection:
    """What Replies writes to (``send(parts)``, ``closed``), over one end of
    a socket pair; the test reads the other end. ``hold`` makes the next
    send wait until released, as a slow socket would."""

    def __init__(self, closed=False):
        self.mine, self.theirs = socket.socketpair()
        self.closed = closed
        self.sends = 0
        self.hold = None          # (started, release) events
        self.fail_next = False

    def send(self, parts):
        if self.fail_next:
            self.fail_next = False
            raise PyFaaSNetworkError("connection to director lost")
        self.sends += 1
        hold, self.hold = self.hold, None
        if hold is not None:
            hold[0].set()
            assert hold[1].wait(10)
        self.mine.sendall(b"".join(bytes(x) for x in parts))

    def request_ids(self, count):
        """The request ids of the next ``count`` frames received."""
        self.theirs.settimeout(5)
        data = self.theirs.recv(65536)
        while len(decode_frames(data)) < count:
            more = self.theirs.recv(65536)
            assert more, "the connection ended"
            data += more
        return [f.request_id for f in decode_frames(data)]

    def received_nothing(self):
        self.theirs.setblocking(False)
        try:
            return self.theirs.recv(1) == b""
        except BlockingIOError:
            return True

    def close(self):
        self.mine.close()
        self.theirs.close()


@pytest.fixture
def connections():
    made = []

    def make(**kwargs):
        conn = PairConnection(**kwargs)
        made.append(conn)
        return conn

    yield make
    for conn in made:
        if conn.hold is not None:
            conn.hold[1].set()
        conn.close()


def reply(rid):
    return p.frame_parts(p.OK, rid, {"n": rid})


def held_write(replies, conn, rid):
    """Start a write of ``rid`` on another thread and hold it in ``send``;
    return (the release event, the thread)."""
    started, release = threading.Event(), threading.Event()
    conn.hold = (started, release)
    writer = threading.Thread(target=replies.send, args=(conn, reply(rid)))
    writer.start()
    assert started.wait(5)
    return release, writer


def test_replies_queued_for_two_connections_each_reach_their_own(connections):
    replies = Replies()
    busy, old, new = connections(), connections(closed=True), connections()
    release, writer = held_write(replies, busy, 1)
    # Queued while another thread writes: they wait for it.
    replies.send(old, reply(2))  # its Director went away meanwhile
    replies.send(new, reply(3))
    replies.send(new, reply(4))
    assert not replies.idle()
    release.set()
    writer.join(5)
    assert busy.request_ids(1) == [1]
    assert new.request_ids(2) == [3, 4] and new.sends == 1  # one write
    assert old.sends == 0 and old.received_nothing()
    assert replies.idle()


def test_replies_queued_during_a_write_go_out_next_each_once(connections):
    replies = Replies()
    conn = connections()
    release, writer = held_write(replies, conn, 1)
    queued = [threading.Thread(target=replies.send, args=(conn, reply(rid)))
              for rid in (2, 3, 4)]
    for thread in queued:
        thread.start()
    for thread in queued:  # each returns at once: the writer has them
        thread.join(5)
        assert not thread.is_alive()
    release.set()
    writer.join(5)
    assert sorted(conn.request_ids(4)) == [1, 2, 3, 4]
    assert conn.sends == 2 and replies.idle()
    assert conn.received_nothing()  # nothing twice


def test_a_failed_send_is_dropped_and_the_next_reply_goes_out(connections,
                                                              caplog):
    replies = Replies()
    conn = connections()
    conn.fail_next = True
    replies.send(conn, reply(1))
    assert "could not send reply" in caplog.text
    assert replies.idle()
    replies.send(conn, reply(2))
    assert conn.request_ids(1) == [2]


def test_concurrent_calls_each_get_exactly_one_reply(tmp_path):
    with serving_worker(str(tmp_path), max_threads=4) as (_, link, _):
        fid_echo, fid_gated = link.deploy(echo), link.deploy(gated)
        held = [link.call(fid_gated, "burst-%d" % i, i) for i in range(6)]
        quick = [link.call(fid_echo, i) for i in range(40)]
        wait_until(lambda: gate("burst-3.started").is_set(), 5,
                   "four gated calls should be running")
        for i in range(6):
            gate("burst-%d" % i).set()
        got = link.replies(set(held + quick))
    assert all(f.type == p.OK for f in got.values())
    from pyfaas import serialization as ser
    assert [ser.loads(got[rid].payload) for rid in held] == list(range(6))
    assert [ser.loads(got[rid].payload) for rid in quick] == list(range(40))
