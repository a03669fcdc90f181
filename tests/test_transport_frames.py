"""``Connection.recv_frame`` over a real loopback TCP connection.

Its quick path returns a chunk that is exactly one whole frame without the
decoder; everything else goes through the decoder. Whatever the chunking,
the frames that come out must be the frames that went in, in order, and an
EOF or a frame over the limit must end the connection with a typed error.
"""

import socket
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfaas.config import ClientConfig
from pyfaas.wire import protocol as p
from pyfaas.errors import PyFaaSNetworkError, PyFaaSProtocolError
from pyfaas.net.connection import Connection, block_with_send_timeout

from helpers import encode_frame

pytestmark = pytest.mark.timeout(120)


def _pair():
    """``(connection, sending socket)``: a Connection as after its
    handshake, reading from a TCP socket on 127.0.0.1 we write to."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    ours = socket.create_connection(srv.getsockname())
    theirs, _ = srv.accept()
    srv.close()
    for s in (ours, theirs):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    config = ClientConfig(path="test", director_ip_addr="127.0.0.1",
                          director_port=1, receive_timeout_s=10.0,
                          max_frame_bytes=1 << 20, log_level="")
    conn = Connection(config, p.ROLE_CLIENT, 10.0)
    conn._sock = ours
    conn._blocking = block_with_send_timeout(ours, 10.0)
    assert conn._blocking
    conn._decoder.max_frame_size = 1 << 20
    conn._decoder.preallocate = True
    return conn, theirs


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
def test_frames_come_out_as_they_went_in_whatever_the_chunks(frames, cuts):
    conn, theirs = _pair()
    data = _wire(frames)
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(data[pos:pos + cut])
        pos += cut
    chunks.append(data[pos:])

    def write():
        for chunk in chunks:
            if chunk:
                theirs.sendall(chunk)
        theirs.shutdown(socket.SHUT_WR)  # a frame lost: EOF, not a hang

    writer = threading.Thread(target=write)
    writer.start()
    try:
        got = [conn.recv_frame(time.monotonic() + 10) for _ in frames]
    finally:
        writer.join(10)
        conn.close()
        theirs.close()
    assert got == frames


def test_one_frame_at_a_time_and_a_split_frame():
    conn, theirs = _pair()
    try:
        for i in range(50):
            frame = p.Frame(p.OK, i, b"", b"r%d" % i, p.FLAG_PICKLED)
            theirs.sendall(_wire([frame]))
            assert conn.recv_frame(time.monotonic() + 10) == frame
        # A frame in two parts, the second sent while the reader waits.
        frame = p.Frame(p.OK, 77, b'{"a":1}', b"x" * 500, 0)
        wire = _wire([frame])
        timer = threading.Timer(0.2, theirs.sendall, (wire[10:],))
        theirs.sendall(wire[:10])
        timer.start()
        assert conn.recv_frame() == frame
        timer.join()
    finally:
        conn.close()
        theirs.close()


def test_eof_is_a_network_error():
    conn, theirs = _pair()
    theirs.close()
    with pytest.raises(PyFaaSNetworkError, match="closed the connection"):
        conn.recv_frame()
    assert conn.closed


def test_a_frame_over_the_limit_is_a_protocol_error():
    conn, theirs = _pair()
    try:
        conn._decoder.max_frame_size = 100
        theirs.sendall(_wire([p.Frame(p.OK, 1, b"", b"y" * 200, 0)]))
        with pytest.raises(PyFaaSProtocolError):
            conn.recv_frame()
        assert conn.closed
    finally:
        theirs.close()


def test_large_frames_between_small_ones_and_a_near_deadline():
    conn, theirs = _pair()
    conn.max_frame_size = conn._decoder.max_frame_size = 8 << 20
    frames = [p.Frame(p.OK, 1, b"", b"a", 0),
              p.Frame(p.OK, 2, b'{"m":1}', bytes(range(256)) * 20000, 0),
              p.Frame(p.OK, 3, b"", b"b", 0)]
    writer = threading.Thread(target=theirs.sendall, args=(_wire(frames),))
    writer.start()
    try:
        got = [conn.recv_frame(time.monotonic() + 10) for _ in frames]
        assert got == frames
        # A deadline under a second away polls instead: nothing comes, so
        # the read gives up in time and the connection stays usable.
        start = time.monotonic()
        assert conn.recv_frame(start + 0.2, close_on_timeout=False) is None
        assert time.monotonic() - start < 2 and not conn.closed
        theirs.sendall(_wire(frames[:1]))
        assert conn.recv_frame(time.monotonic() + 0.5) == frames[0]
    finally:
        writer.join(10)
        conn.close()
        theirs.close()
