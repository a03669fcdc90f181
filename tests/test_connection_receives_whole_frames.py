"""A Connection to a scripted Director over real loopback TCP.

Built with its public constructor and ``connect()``: the handshake is the
real one (HELLO, and the token proofs both ways). Whatever the chunking,
the frames that come out of ``recv_frame`` are the frames that went in, in
order; what ``send`` is given arrives whole and in order; an EOF, a frame
over the limit or a refused token ends the connection with a typed error.
"""

import socket
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfaas.wire import protocol as p
from pyfaas.errors import (PyFaaSAuthenticationError, PyFaaSNetworkError,
                           PyFaaSProtocolError, PyFaaSTimeoutError,
                           PyFaaSTokenRejectedError)
from pyfaas.net.connection import Connection

from helpers import encode_frame
from scripted_director import ScriptedDirector

pytestmark = pytest.mark.timeout(120)

TOKEN = b"t" * 32


@pytest.fixture(scope="module")
def director():
    with ScriptedDirector() as d:
        yield d


def _connect(director, max_frame_bytes=1 << 20, token=None, timeout=10.0):
    """``(connection, the Director's end of it)``, handshake done."""
    conn = Connection(director.client_config(timeout, max_frame_bytes),
                      p.ROLE_CLIENT, timeout, token)
    conn.connect()
    return conn, director.peer()


def _wire(frames):
    return b"".join(encode_frame(f.type, f.request_id, f.meta_raw,
                                 f.payload, f.flags) for f in frames)


_frames = st.lists(st.builds(
    p.Frame, st.sampled_from([p.OK, p.ERROR, p.CALL]),
    st.integers(min_value=0, max_value=2 ** 32 - 1),
    st.binary(max_size=40), st.binary(max_size=3000),
    st.sampled_from([0, p.FLAG_PICKLED])), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(frames=_frames, cuts=st.lists(st.integers(min_value=1,
                                                 max_value=5000),
                                     max_size=20))
def test_frames_come_out_as_they_went_in_whatever_the_chunks(
        director, frames, cuts):
    conn, peer = _connect(director)
    data = _wire(frames)
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(data[pos:pos + cut])
        pos += cut
    chunks.append(data[pos:])

    def write():
        for chunk in chunks:
            if chunk:
                peer.sendall(chunk)
        peer.sock.shutdown(socket.SHUT_WR)  # a frame lost: EOF, not a hang

    writer = threading.Thread(target=write)
    writer.start()
    try:
        got = [conn.recv_frame(time.monotonic() + 10) for _ in frames]
    finally:
        writer.join(10)
        conn.close()
        peer.close()
    assert got == frames


def test_connect_returns_the_directors_hello(director):
    director.max_frame = 123456
    try:
        conn, peer = _connect(director)
    finally:
        director.max_frame = p.DEFAULT_MAX_FRAME_SIZE
    try:
        assert conn.hello["max_frame"] == 123456
        assert conn.hello["director"] == "127.0.0.1:%d" % director.port
        assert peer.preamble.role == p.ROLE_CLIENT
        assert peer.preamble.version == p.PROTOCOL_VERSION
    finally:
        conn.close()
        peer.close()


def test_one_frame_at_a_time_and_a_split_frame(director):
    conn, peer = _connect(director)
    try:
        for i in range(50):
            frame = p.Frame(p.OK, i, b"", b"r%d" % i, p.FLAG_PICKLED)
            peer.sendall(_wire([frame]))
            assert conn.recv_frame(time.monotonic() + 10) == frame
        # A frame in two parts, the second sent while the reader waits.
        frame = p.Frame(p.OK, 77, b'{"a":1}', b"x" * 500, 0)
        wire = _wire([frame])
        timer = threading.Timer(0.2, peer.sendall, (wire[10:],))
        peer.sendall(wire[:10])
        timer.start()
        assert conn.recv_frame() == frame
        timer.join()
    finally:
        conn.close()
        peer.close()


def test_what_is_sent_arrives_whole_and_in_order(director):
    # Small frames go out together, a large payload from where it is:
    # either way the Director reads the same frames in the same order.
    conn, peer = _connect(director)
    frames = [p.Frame(p.CALL, i, b'{"f":"g"}', b"a" * i, p.FLAG_PICKLED)
              for i in range(1, 60)]
    frames.insert(30, p.Frame(p.CALL, 99, b"", bytes(range(256)) * 8192, 0))
    try:
        parts = []
        for f in frames:
            parts.extend(p.frame_parts(f.type, f.request_id, f.meta_raw,
                                       f.payload, f.flags))
        conn.send(parts)
        assert [peer.recv() for _ in frames] == frames
    finally:
        conn.close()
        peer.close()


def test_eof_is_a_network_error(director):
    conn, peer = _connect(director)
    peer.close()
    with pytest.raises(PyFaaSNetworkError, match="closed the connection"):
        conn.recv_frame()
    assert conn.closed
    with pytest.raises(PyFaaSNetworkError, match="is closed"):
        conn.send(p.frame_parts(p.PING, 1))


def test_a_frame_over_the_limit_is_a_protocol_error(director):
    conn, peer = _connect(director, max_frame_bytes=65536)
    try:
        peer.sendall(_wire([p.Frame(p.OK, 1, b"", b"y" * 70000, 0)]))
        with pytest.raises(PyFaaSProtocolError):
            conn.recv_frame()
        assert conn.closed
    finally:
        peer.close()


def test_large_frames_between_small_ones_and_a_near_deadline(director):
    conn, peer = _connect(director, max_frame_bytes=8 << 20)
    frames = [p.Frame(p.OK, 1, b"", b"a", 0),
              p.Frame(p.OK, 2, b'{"m":1}', bytes(range(256)) * 20000, 0),
              p.Frame(p.OK, 3, b"", b"b", 0)]
    writer = threading.Thread(target=peer.sendall, args=(_wire(frames),))
    writer.start()
    try:
        got = [conn.recv_frame(time.monotonic() + 10) for _ in frames]
        assert got == frames
        # A deadline under a second away polls instead: nothing comes, so
        # the read gives up in time and the connection stays usable.
        start = time.monotonic()
        assert conn.recv_frame(start + 0.2, close_on_timeout=False) is None
        assert time.monotonic() - start < 2 and not conn.closed
        peer.sendall(_wire(frames[:1]))
        assert conn.recv_frame(time.monotonic() + 0.5) == frames[0]
        # Past its deadline, a read closes the connection by default.
        with pytest.raises(PyFaaSTimeoutError):
            conn.recv_frame(time.monotonic() + 0.2)
        assert conn.closed
    finally:
        writer.join(10)
        conn.close()
        peer.close()


def test_the_token_is_proven_both_ways():
    with ScriptedDirector(token=TOKEN) as director:
        conn, peer = _connect(director, token=TOKEN)
        try:
            assert conn.hello["auth"] == "hmac-sha256"
            conn.send(p.frame_parts(p.PING, 5))
            assert peer.recv().request_id == 5  # past the handshake
        finally:
            conn.close()
            peer.close()


def test_a_wrong_token_is_refused_by_the_director():
    with ScriptedDirector(token=TOKEN) as director:
        conn = Connection(director.client_config(), p.ROLE_CLIENT, 10.0,
                          b"w" * 32)
        with pytest.raises(PyFaaSTokenRejectedError):
            conn.connect()
        assert conn.closed


def test_a_token_is_never_shown_to_a_director_that_asks_for_none(director):
    conn = Connection(director.client_config(), p.ROLE_CLIENT, 10.0, TOKEN)
    with pytest.raises(PyFaaSAuthenticationError, match="does not ask"):
        conn.connect()
    assert conn.closed
    director.peer().close()
