"""A Director connection's output over a real socket pair (pyfaas/director/conn.py).

Frames queued for a peer come out whole and in order, however much the
socket takes at a time; what it does not take waits for the next write; a
peer that is gone makes the write fail; the selector is asked to watch
writes exactly while output waits.
"""

import select
import socket
import threading
import time

import pytest

from pyfaas.director.conn import READ, WRITE, Conn
from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pair():
    """A Conn over one end of a socket pair (non-blocking, like the loop's),
    and our blocking end."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    conn = Conn(1, theirs, ("127.0.0.1", 1), FrameDecoder(), False)
    ours.settimeout(10)
    yield conn, ours
    ours.close()
    theirs.close()


def _frame(rid, size=1):
    return p.frame_parts(p.OK, rid, None, b"x" * size)


def _received(sock, count):
    """The (request id, payload size) of the next ``count`` frames."""
    decoder = FrameDecoder(2 ** 31)
    got = []
    while len(got) < count:
        data = sock.recv(1 << 20)
        assert data, "connection closed"
        decoder.feed(data)
        for event in iter(decoder.next_event, p.NEED_DATA):
            got.append((event.request_id, len(event.payload)))
    return got


def _fill(conn):
    """Write filler until the socket takes nothing more; return its size."""
    filler = b"\0" * 65536
    stuffed = 0
    while True:
        try:
            stuffed += conn.sock.send(filler)
        except BlockingIOError:
            return stuffed


def test_frames_queued_together_come_out_in_order(pair):
    conn, ours = pair
    conn.tls_handshake = True  # (nothing is written while it runs)
    conn.write(_frame(1))
    assert conn.out_bytes == len(_frame(1)[0])
    conn.tls_handshake = False
    conn.write(_frame(2, 100000) + _frame(3))  # a large one between small
    assert not conn.out and conn.out_bytes == 0
    assert _received(ours, 3) == [(1, 1), (2, 100000), (3, 1)]


def test_what_the_socket_does_not_take_waits_for_the_next_write(pair):
    conn, ours = pair
    stuffed = _fill(conn)
    conn.write(_frame(8, 1000))
    assert conn.out and conn.wanted() == READ | WRITE
    conn.write(_frame(9, 300000))  # more behind the unfinished write
    received = []
    reader = threading.Thread(target=lambda: (
        _read_exactly(ours, stuffed), received.extend(_received(ours, 2))))
    reader.start()
    deadline = time.monotonic() + 10
    while conn.out and time.monotonic() < deadline:  # as the loop would:
        select.select([], [conn.sock], [], 1.0)  # writable, then flush
        conn.flush()
    reader.join(10)
    assert received == [(8, 1000), (9, 300000)]
    assert conn.out_bytes == 0 and conn.wanted() == READ


def _read_exactly(sock, size):
    got = 0
    while got < size:
        got += len(sock.recv(min(1 << 20, size - got)))


def test_a_write_to_a_peer_that_is_gone_fails(pair):
    conn, ours = pair
    ours.close()
    with pytest.raises(OSError):
        for rid in range(20):  # the first writes may still be accepted
            conn.write(_frame(rid))


def test_a_closing_peer_is_watched_for_writes_only_while_output_waits(pair):
    conn, ours = pair
    conn.closing = "closed by the test"
    assert conn.wanted() == 0
    _fill(conn)
    conn.write(_frame(10))
    assert conn.wanted() == WRITE
