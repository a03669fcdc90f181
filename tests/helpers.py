"""Helpers shared by the real-process tests: waiting on conditions, ports, raw sockets.

Nothing here sleeps "to let things settle": every wait is on a condition and
has a deadline. Nothing here starts or stops processes (conftest.py does).
"""

import signal
import socket
import time

from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder
from pyfaas.errors import PyFaaSError

HOST = "127.0.0.1"
POLL_S = 0.02


def wait_until(predicate, timeout, message=None, interval=POLL_S):
    """Call ``predicate`` until it returns a true value; return that value.

    Args:
        predicate: a callable taking no arguments.
        timeout: seconds before giving up.
        message: what was awaited, for the failure message (or a callable
            returning it, evaluated only on failure).

    Raises:
        AssertionError: the predicate stayed false for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError("condition not met within %.1f s: %s"
                                 % (timeout, what or predicate))
        time.sleep(interval)


def succeeds(fn, *args, **kwargs):
    """A predicate: ``fn(*args, **kwargs)`` ran without a PyFaaSError."""
    def predicate():
        try:
            fn(*args, **kwargs)
        except PyFaaSError:
            return False
        return True
    return predicate


def interruptible():
    """A ``preexec_fn`` that gives a child the default SIGINT handling, so
    that SIGINT raises KeyboardInterrupt in it. (A test run started in the
    background of a shell ignores SIGINT, and a Python child inherits that:
    it would never see the Ctrl-C the test sends.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def reserve_port():
    """A port that was free a moment ago on 127.0.0.1 (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def process_of(cluster, worker_id, client):
    """The LocalCluster Process running the Worker ``worker_id``."""
    pid = client.worker_info(worker_id)["identity"]["pid"]
    for proc in cluster.workers.values():
        if proc.pid == pid:
            return proc
    raise AssertionError("no process of this cluster has pid %s (worker %s)"
                         % (pid, worker_id))


def worker_pids(cluster):
    """Pids of the cluster's Worker processes that are still running."""
    return {proc.pid for proc in cluster.workers.values() if proc.alive()}


def total_requests(client):
    """Sum of the calls every live Worker says it received."""
    return sum(client.worker_info(wid)["network"]["requests"]
               for wid in client.worker_ids())


def raw_connect(port, timeout=5.0):
    """A plain blocking TCP socket to the Director (no handshake)."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_until_eof(sock, timeout=5.0):
    """Read what the peer sends until it closes the connection.

    Returns:
        bytes: everything received before EOF (or before a reset).

    Raises:
        AssertionError: the connection was still open after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the director kept the connection open for "
                                 "%.1f s (received %r)"
                                 % (timeout, b"".join(chunks)[:200]))
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return b"".join(chunks)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def read_frame(sock, decoder, timeout=5.0):
    """Read from ``sock`` until ``decoder`` yields one frame; return it."""
    deadline = time.monotonic() + timeout
    while True:
        event = decoder.next_event()
        if event is not p.NEED_DATA:
            return event
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no whole frame within %.1f s" % timeout)
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            raise AssertionError("connection closed before a whole frame "
                                 "(%d bytes buffered)" % decoder.buffered)
        decoder.feed(data)


def encode_frame(type_, request_id=0, meta=None, payload=b"", flags=0):
    """One frame as one bytes object, for raw sockets."""
    return b"".join(p.frame_parts(type_, request_id, meta, payload, flags))


def decode_frames(data):
    """Every whole frame in ``data`` (bytes sent by the Director)."""
    decoder = FrameDecoder()
    if data:  # (feeding b"" would say the stream ended)
        decoder.feed(data)
    frames = []
    while True:
        event = decoder.next_event()
        if event is p.NEED_DATA:
            return frames
        frames.append(event)
