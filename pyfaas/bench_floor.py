"""The two-hop raw-socket floor that ``pyfaas bench`` compares against.

Owns a bare stdlib relay (one ``selectors`` loop forwarding bytes both ways,
like the Director but without any protocol) and an echo server that answers
each length-prefixed frame with the same bytes, plus the client that times
round trips through them. Run as ``python -m pyfaas.bench_floor echo`` or
``relay UPSTREAM_PORT``; each prints ``PORT <n>`` once it listens. Only
127.0.0.1 is used.
"""

import selectors
import socket
import struct
import sys
import time

HOST = "127.0.0.1"
LEN = struct.Struct("!I")


def _listen():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, 0))
    srv.listen(8)
    print("PORT %d" % srv.getsockname()[1], flush=True)
    return srv


def recv_exact(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise ConnectionError("closed")
        got += k
    return buf


def echo_server():
    srv = _listen()
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = recv_exact(conn, 4)
            body = recv_exact(conn, LEN.unpack(head)[0])
            conn.sendall(bytes(head) + bytes(body))
    except (ConnectionError, OSError):
        pass


def relay_server(upstream_port):
    srv = _listen()
    down, _ = srv.accept()
    up = socket.create_connection((HOST, upstream_port))
    for s in (down, up):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
    sel = selectors.DefaultSelector()
    peer = {down: up, up: down}
    out = {down: bytearray(), up: bytearray()}
    sel.register(down, selectors.EVENT_READ)
    sel.register(up, selectors.EVENT_READ)
    while True:
        for key, mask in sel.select():
            sock = key.fileobj
            if mask & selectors.EVENT_READ:
                try:
                    data = sock.recv(262144)
                except BlockingIOError:
                    data = None
                if data == b"":
                    return
                if data:
                    dst = peer[sock]
                    buf = out[dst]
                    buf += data
                    try:
                        sent = dst.send(buf)
                        del buf[:sent]
                    except BlockingIOError:
                        pass
                    if buf:
                        sel.modify(dst, selectors.EVENT_READ
                                   | selectors.EVENT_WRITE)
            if mask & selectors.EVENT_WRITE:
                buf = out[sock]
                try:
                    sent = sock.send(buf)
                    del buf[:sent]
                except BlockingIOError:
                    pass
                if not buf:
                    sel.modify(sock, selectors.EVENT_READ)


def round_trips(port, size, count):
    """Time ``count`` round trips of a ``size``-byte frame; return seconds each."""
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    frame = LEN.pack(size) + b"x" * size
    times = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(frame)
            head = recv_exact(sock, 4)
            recv_exact(sock, LEN.unpack(head)[0])
            times.append(time.perf_counter() - start)
    finally:
        sock.close()
    return times


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo_server()
    elif sys.argv[1] == "relay":
        relay_server(int(sys.argv[2]))
