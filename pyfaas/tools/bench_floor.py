"""The two-hop raw-socket floor that ``pyfaas bench`` compares against.

Owns a bare stdlib relay (one ``selectors`` loop forwarding bytes both ways,
like the Director but without any protocol) and an echo server that answers
each length-prefixed frame with the same bytes, plus the client that times
round trips through them (:class:`Floor`). Run as ``python -m
pyfaas.tools.bench_floor echo`` or ``relay UPSTREAM_PORT``; each prints ``PORT
<n>`` once it listens. Only 127.0.0.1 is used.
"""

import selectors
import socket
import struct
import subprocess
import sys
import time

from ..net.listener import listening_socket

HOST = "127.0.0.1"
LEN = struct.Struct("!I")
# What the relay receives at once: 64 KiB, like the Director. (A 256 KiB
# receive makes glibc mmap, mremap and munmap a buffer every time: three
# more system calls per frame, which made an earlier floor slower.)
RECV_CHUNK = 64 * 1024


def _listen():
    srv = listening_socket(HOST, 0, backlog=8)
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
                    data = sock.recv(RECV_CHUNK)
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


class Floor:
    """A running echo server and relay, and a client socket through them.

    ``round_trips(size, count)`` times round trips of ``size``-byte frames;
    ``close()`` stops both processes (by their pids).
    """

    def __init__(self):
        self._procs = []
        self._sock = None
        try:
            echo_port = self._start("echo")
            relay_port = self._start("relay", str(echo_port))
            self._sock = socket.create_connection((HOST, relay_port))
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            self.close()
            raise

    def _start(self, *args):
        proc = subprocess.Popen([sys.executable, "-m", "pyfaas.tools.bench_floor"]
                                + list(args), stdout=subprocess.PIPE)
        self._procs.append(proc)
        return int(proc.stdout.readline().split()[1])

    def round_trips(self, size, count):
        """Seconds each of ``count`` round trips of a ``size``-byte frame."""
        sock = self._sock
        frame = LEN.pack(size) + b"x" * size
        times = []
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(frame)
            head = recv_exact(sock, 4)
            recv_exact(sock, LEN.unpack(head)[0])
            times.append(time.perf_counter() - start)
        return times

    def close(self):
        if self._sock is not None:
            self._sock.close()
        for proc in self._procs:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        self._procs = []


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo_server()
    elif sys.argv[1] == "relay":
        relay_server(int(sys.argv[2]))
