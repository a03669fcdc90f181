"""A slow link for the netns test bed: a TCP relay that delays and trickles.

Run on a host of the test bed (see netns_bed.py), where the kernel may lack
netem::

    python netns_relay.py LISTEN_ADDR:PORT TARGET_ADDR:PORT DELAY_S RATE

Every connection accepted on LISTEN is relayed to TARGET, both ways. Each
chunk read is forwarded no earlier than DELAY_S seconds after it arrived,
and each direction sends at most RATE bytes per second. A direction holds
at most WINDOW bytes: beyond that it stops reading, so a sender is slowed
down as by a real slow link instead of filling the relay's memory. An end
of stream is passed on (shutdown of the write side); an error closes both
sockets. Prints one line once it listens; stops at SIGTERM.
"""

import queue
import socket
import sys
import threading
import time

CHUNK = 8 * 1024
WINDOW = 32         # chunks held per direction


def address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


class Direction:
    """Bytes from ``src`` to ``dst``, delayed and paced."""

    def __init__(self, src, dst, delay, rate, on_error):
        self.src, self.dst = src, dst
        self.delay, self.rate = delay, rate
        self.on_error = on_error
        self.chunks = queue.Queue(WINDOW)
        threading.Thread(target=self.read, daemon=True).start()
        threading.Thread(target=self.write, daemon=True).start()

    def read(self):
        try:
            while True:
                data = self.src.recv(CHUNK)
                self.chunks.put((time.monotonic(), data))
                if not data:
                    return
        except OSError:
            self.chunks.put((time.monotonic(), None))

    def write(self):
        free = time.monotonic()   # when the link can take the next byte
        try:
            while True:
                arrived, data = self.chunks.get()
                if data is None:
                    break
                now = time.monotonic()
                start = max(arrived + self.delay, free, now)
                if start > now:
                    time.sleep(start - now)
                if not data:
                    self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
                free = start + len(data) / self.rate
        except OSError:
            pass
        self.on_error()


def relay(client, target, delay, rate):
    try:
        upstream = socket.create_connection(target, timeout=5)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close_both():
        for sock in (client, upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    Direction(client, upstream, delay, rate, close_both)
    Direction(upstream, client, delay, rate, close_both)


def main(argv):
    listen, target = address(argv[1]), address(argv[2])
    delay, rate = float(argv[3]), float(argv[4])
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(16)
    print("relay listening on %s:%d" % listen, flush=True)
    while True:
        client, _ = server.accept()
        relay(client, target, delay, rate)


if __name__ == "__main__":
    main(sys.argv)
