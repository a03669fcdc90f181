"""Real processes: bytes that are not a well-behaved PyFaaS peer, sent to the Director.

Each test opens a raw socket to the shared cluster's Director, misbehaves,
checks what comes back (decoded with ``pyfaas.wire.decoder.FrameDecoder``) and
that the connection is closed, and then makes a normal call that must
succeed: one bad peer never stops the Director.
"""

import socket

import pytest

from helpers import (decode_frames, raw_connect, read_frame, read_until_eof,
                     wait_until, encode_frame)
from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder

pytestmark = pytest.mark.timeout(60)


def double(x):
    return 2 * x


@pytest.fixture
def healthy(cluster, client):
    """Registers ``double``; after the test, checks the cluster still serves."""
    client.register(double, name="wire_double")
    workers = sorted(client.worker_ids())
    yield client
    assert client.call("wire_double", 21) == 42
    assert sorted(client.worker_ids()) == workers
    # A brand-new connection is accepted and handshaken, too.
    with cluster.client() as other:
        assert other.call("wire_double", 4) == 8


def _error_then_eof(sock, code):
    data = read_until_eof(sock)
    frames = decode_frames(data)
    assert frames, "no ERROR frame before the close (got %r)" % data[:100]
    assert frames[-1].type == p.ERROR, frames
    meta = frames[-1].meta()
    assert meta["code"] == code, meta
    assert meta["message"]
    return meta


def _handshake(cluster):
    sock = raw_connect(cluster.port)
    sock.sendall(p.encode_preamble(p.ROLE_CLIENT))
    decoder = FrameDecoder()
    hello = read_frame(sock, decoder)
    assert hello.type == p.HELLO
    assert decoder.buffered == 0
    return sock


def test_garbage_bytes(cluster, healthy):
    with raw_connect(cluster.port) as sock:
        sock.sendall(b"\x00\xffthis is not pyfaas\r\n" * 10)
        _error_then_eof(sock, "protocol")


def test_http_get(cluster, healthy):
    with raw_connect(cluster.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _error_then_eof(sock, "protocol")


def test_garbage_one_byte_at_a_time(cluster, healthy):
    with raw_connect(cluster.port) as sock:
        sock.sendall(b"P")
        sock.sendall(b"Y")
        sock.sendall(b"X")   # magic goes wrong at the third byte
        _error_then_eof(sock, "protocol")


def test_wrong_protocol_version(cluster, healthy):
    with raw_connect(cluster.port) as sock:
        sock.sendall(p.PREAMBLE.pack(p.MAGIC, p.PROTOCOL_VERSION + 98,
                                     p.ROLE_CLIENT, 0))
        meta = _error_then_eof(sock, "version")
        assert str(p.PROTOCOL_VERSION + 98) in meta["message"]


def test_unknown_role(cluster, healthy):
    with raw_connect(cluster.port) as sock:
        sock.sendall(p.PREAMBLE.pack(p.MAGIC, p.PROTOCOL_VERSION, 9, 0))
        _error_then_eof(sock, "protocol")


def test_huge_length_prefix_closes_the_connection(cluster, healthy):
    with _handshake(cluster) as sock:
        sock.sendall(b"\xff\xff\xff\xff")
        _error_then_eof(sock, "frame_too_large")


def test_length_under_the_minimum(cluster, healthy):
    with _handshake(cluster) as sock:
        sock.sendall(b"\x00\x00\x00\x03abc")
        _error_then_eof(sock, "protocol")


def test_large_frame_before_the_handshake_is_refused(cluster, healthy):
    with raw_connect(cluster.port) as sock:
        # No preamble yet: the decoder wants 8 bytes of magic first, so a
        # big length prefix is garbage here.
        sock.sendall(b"\x00\x10\x00\x00" + b"\x00" * 64)
        _error_then_eof(sock, "protocol")


def test_truncated_frame_then_close(cluster, healthy):
    sock = _handshake(cluster)
    frame = encode_frame(p.PING, 1, {"x": "y" * 100})
    sock.sendall(frame[:len(frame) // 2])
    sock.close()


def test_truncated_frame_then_half_close(cluster, healthy):
    with _handshake(cluster) as sock:
        frame = encode_frame(p.PING, 1)
        sock.sendall(frame[:5])
        sock.shutdown(socket.SHUT_WR)
        read_until_eof(sock)   # the Director closes its side too


def test_frame_of_an_unknown_type(cluster, healthy):
    with _handshake(cluster) as sock:
        sock.sendall(encode_frame(0x7F, 5, {}))
        meta = _error_then_eof(sock, "protocol")
        assert "client" in meta["message"]


def test_meta_that_is_not_json(cluster, healthy):
    with _handshake(cluster) as sock:
        sock.sendall(encode_frame(p.CALL, 5, b"{not json", b"x",
                                    p.FLAG_PICKLED))
        _error_then_eof(sock, "protocol")


def test_worker_role_must_register_first(cluster, healthy):
    with raw_connect(cluster.port) as sock:
        sock.sendall(p.encode_preamble(p.ROLE_WORKER))
        decoder = FrameDecoder()
        assert read_frame(sock, decoder).type == p.HELLO
        sock.sendall(encode_frame(p.HEARTBEAT, 0, {"inflight": 0}))
        _error_then_eof(sock, "protocol")


def test_many_bad_peers_at_once(cluster, healthy):
    socks = [raw_connect(cluster.port) for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"garbage!")
        for sock in socks:
            read_until_eof(sock)
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: healthy.ping()["workers"] == 2, 5, "workers lost")
