"""The Director loop's output to one peer over a real socket pair.

Frames the state queues go out per peer in order; a write the socket cannot
take whole is finished by ``_flush`` in order; a closing peer gets its last
frames before it is closed; a failed write drops the peer.
"""

import selectors
import socket

import pytest

from pyfaas import config
from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder
from pyfaas.director.loop import Director, _Conn
from pyfaas.tools.local_cluster import director_sections, write_toml

pytestmark = pytest.mark.timeout(60)

PEER = 99


@pytest.fixture
def director(tmp_path):
    path = write_toml(str(tmp_path / "director.toml"),
                      director_sections(str(tmp_path)))
    d = Director(config.load_director_config(path))
    yield d
    for conn in list(d._conns.values()):
        d._drop(conn, "test over", notify=False)
    d._sel.close()
    d._listener.close()
    d._wake_r.close()
    d._wake_w.close()


@pytest.fixture
def peer(director):
    """A connection of the Director (its end registered like an accepted
    one) and our end of it."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    conn = _Conn(PEER, theirs, ("127.0.0.1", 1), FrameDecoder(), False)
    conn.trusted = True
    director._conns[PEER] = conn
    director._sel.register(theirs, conn.events, conn)
    director.state.connected(PEER, ("127.0.0.1", 1))
    ours.settimeout(10)
    yield conn, ours
    ours.close()


def _queue(director, rid, payload=b"x"):
    director.state.send(PEER, p.OK, rid, None, payload)


def _received(sock, count):
    """The request ids of the next ``count`` frames on ``sock``."""
    decoder = FrameDecoder(2 ** 31)
    rids = []
    while len(rids) < count:
        data = sock.recv(1 << 20)
        assert data, "connection closed"
        decoder.feed(data)
        while True:
            event = decoder.next_event()
            if event is p.NEED_DATA:
                break
            rids.append(event.request_id)
    return rids


def test_a_frame_does_not_overtake_one_queued_before_it(director, peer):
    conn, ours = peer
    director.state.send(PEER, p.DEPLOY, 5, {"func_id": "f"})
    _queue(director, 6)
    director._apply_output()
    assert _received(ours, 2) == [5, 6]


def test_a_write_the_socket_cannot_take_is_finished_in_order(director, peer):
    conn, ours = peer
    # Fill the socket until it takes nothing more.
    filler = b"\0" * 65536
    stuffed = 0
    while True:
        try:
            stuffed += conn.sock.send(filler)
        except BlockingIOError:
            break
    _queue(director, 8, b"y" * 1000)
    director._apply_output()
    assert conn.out and conn.events & selectors.EVENT_WRITE
    _queue(director, 9)
    director._apply_output()  # queued behind the unfinished write
    # Read the filler, then let the loop finish its writes.
    got = 0
    while got < stuffed:
        got += len(ours.recv(min(1 << 20, stuffed - got)))
    for _ in range(100):
        if not conn.out:
            break
        director._flush(conn)
    assert not conn.out
    assert _received(ours, 2) == [8, 9]


def test_a_closing_peer_gets_its_frame_through_the_queue(director, peer):
    conn, ours = peer
    conn.closing = "closed by the test"
    _queue(director, 10)
    director._apply_output()
    assert _received(ours, 1) == [10]
    assert conn.sock is None  # closed once its last frame was written


def test_a_failed_write_drops_the_peer_and_tells_the_state(director,
                                                           peer):
    conn, ours = peer
    ours.close()
    # The peer's reset shows on the next send (the first may still succeed).
    for rid in range(20, 40):
        _queue(director, rid)
        director._apply_output()
        if conn.sock is None:
            break
    assert conn.sock is None and PEER not in director._conns
    assert PEER not in director.state.peers  # state.disconnected ran
