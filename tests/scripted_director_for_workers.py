"""A scripted Director for tests of one Worker running in the test process.

:class:`ScriptedDirector` listens on 127.0.0.1 (a free port) and plays the
Director's side of a Worker's connection: :meth:`ScriptedDirector.accept`
reads the preamble, sends HELLO (with the frame limit the test chooses),
reads REGISTER_WORKER and sends WELCOME; the :class:`Link` it returns sends
frames the test writes and reads the Worker's frames. The Worker is the
real one, built with its public constructor from a TOML file and served by
``serve_forever`` in a thread (:func:`serving_worker`), so these tests see
exactly the bytes a Director would.

Functions deployed to the Worker are pickled by value, so they cannot close
over the test's objects; :func:`gate` gives them named events to wait on,
looked up when they run (the Worker runs in this process).

Every wait has a deadline; nothing sleeps to let things settle.
"""

import contextlib
import os
import socket
import threading
import time

from pyfaas import serialization as ser
from pyfaas.config import load_worker_config
from pyfaas.ids import function_id
from pyfaas.tools.local_cluster import worker_sections, write_toml
from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder
from pyfaas.worker import Worker

HOST = "127.0.0.1"
DIRECTOR_MAX_FRAME = 1024 * 1024

_gates = {}
_gates_lock = threading.Lock()


def gate(name):
    """The ``threading.Event`` called ``name`` (made on first use).

    A deployed function reaches it with ``import scripted_director_for_workers`` in its
    body: the Worker runs it in this process.
    """
    with _gates_lock:
        return _gates.setdefault(name, threading.Event())


def gated(name, result=None):
    """A function to deploy: waits (10 s at most) until gate ``name``
    opens, then opens gate ``name + ".done"`` and returns ``result``."""
    import scripted_director_for_workers as scripted_director
    scripted_director.gate(name + ".started").set()
    scripted_director.gate(name).wait(10)
    scripted_director.gate(name + ".done").set()
    return result


def echo(value):
    return value


def blob(n):
    return b"x" * n


class Link:
    """The Director's end of one Worker connection (after WELCOME)."""

    def __init__(self, sock, decoder, register):
        self.sock = sock
        self.decoder = decoder
        self.register = register     # the REGISTER_WORKER meta
        self.heartbeats = []         # HEARTBEAT frames with request id 0
        self._rid = 0

    def send(self, type_, rid=0, meta=None, payload=b"", flags=0):
        self.sock.sendall(b"".join(p.frame_parts(type_, rid, meta, payload,
                                                 flags)))

    def new_rid(self):
        self._rid += 1
        return self._rid

    def recv(self, timeout=5.0):
        """The Worker's next frame other than a periodic heartbeat."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.decoder.next_event()
            if event is p.CLOSED:
                raise AssertionError("the worker closed the connection")
            if event is not p.NEED_DATA:
                if isinstance(event, p.Frame) and event.type == p.HEARTBEAT \
                        and event.request_id == 0:
                    self.heartbeats.append(event)
                    continue
                return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no frame from the worker within %.1f s"
                                     % timeout)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.decoder.feed(data)

    def closed_by_worker(self, timeout=5.0):
        """True once the Worker closed the connection (frames before the
        end are returned by recv, not here: there must be none left)."""
        try:
            frame = self.recv(timeout)
        except AssertionError as exc:
            if "closed the connection" in str(exc):
                return True
            raise
        raise AssertionError("expected the end of the connection, got %r"
                             % frame)

    def request(self, type_, meta=None, payload=b"", flags=0, timeout=5.0):
        """Send a request; return the Worker's reply (the next frame, which
        must answer it)."""
        rid = self.new_rid()
        self.send(type_, rid, meta, payload, flags)
        reply = self.recv(timeout)
        assert reply.request_id == rid, (reply, rid)
        return reply

    def deploy(self, fn, name=None):
        """Deploy ``fn``; return its function id."""
        name = name or fn.__name__
        code = ser.dumps_function(fn)
        fid = function_id(code, name)
        reply = self.request(p.DEPLOY, {"func_id": fid, "name": name,
                                        "params": None}, code)
        assert reply.type == p.OK, reply.meta()
        return fid

    def call(self, fid, *args, rid=None, **options):
        """Send a CALL of ``fid`` (its meta: ``f`` and ``options``); return
        its request id."""
        rid = self.new_rid() if rid is None else rid
        self.send(p.CALL, rid, dict(options, f=fid),
                  ser.dumps((args, {})), p.FLAG_PICKLED)
        return rid

    def replies(self, rids, timeout=10.0):
        """The Worker's replies to ``rids`` (each exactly once), by rid."""
        deadline = time.monotonic() + timeout
        got = {}
        while len(got) < len(rids):
            frame = self.recv(deadline - time.monotonic())
            assert frame.request_id in rids, frame
            assert frame.request_id not in got, "two replies to %r" % frame
            got[frame.request_id] = frame
        return got

    def worker_info(self):
        return ser.from_json(self.request(p.WORKER_INFO).payload)

    def close(self):
        self.sock.close()


class ScriptedDirector:
    """A listening socket that Workers connect to (see the module docstring)."""

    def __init__(self):
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind((HOST, 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.links = []

    def accept(self, max_frame=DIRECTOR_MAX_FRAME, timeout=10.0,
               answers_heartbeats=False):
        """Take the next Worker connection through the handshake and
        registration; return its :class:`Link`. ``answers_heartbeats``:
        WELCOME says so, as a Director does for a Worker that asks (the
        test then plays that part, or stays silent)."""
        self.server.settimeout(timeout)
        sock, _ = self.server.accept()
        decoder = FrameDecoder(expect_preamble=True)
        link = Link(sock, decoder, None)
        self.links.append(link)
        pre = link.recv(timeout)
        assert isinstance(pre, p.Preamble) and pre.role == p.ROLE_WORKER, pre
        link.send(p.HELLO, 0, {"protocol": p.PROTOCOL_VERSION,
                               "director": "scripted", "auth": "none",
                               "max_frame": max_frame})
        register = link.recv(timeout)
        assert register.type == p.REGISTER_WORKER, register
        link.register = register.meta()
        welcome = {"worker_id": link.register["worker_id"], "want": []}
        if answers_heartbeats:
            welcome["heartbeat_ms"] = link.register["heartbeat_ms"]
        link.send(p.WELCOME, 0, welcome)
        return link

    def close(self):
        self.server.close()
        for link in self.links:
            link.close()


def worker_config(workdir, port, name="w1", **behavior):
    """A WorkerConfig for a Worker of a ScriptedDirector on ``port``
    (``behavior``: keys of its ``[behavior]`` section)."""
    path = write_toml(os.path.join(workdir, name + ".toml"),
                      worker_sections(workdir, name, port, heartbeat_ms=1000,
                                      **behavior))
    return load_worker_config(path)


class ServedWorker:
    """A Worker serving in a thread of this process."""

    def __init__(self, config):
        self.worker = Worker(config)
        self.errors = []
        self.thread = threading.Thread(target=self._serve, daemon=True,
                                       name="test-serve-forever")
        self.thread.start()

    def _serve(self):
        try:
            self.worker.serve_forever()
        except BaseException as exc:  # reported by the test's teardown
            self.errors.append(exc)

    def stopped(self, timeout):
        """True once ``serve_forever`` has returned."""
        self.thread.join(timeout)
        return not self.thread.is_alive()


@contextlib.contextmanager
def serving_worker(workdir, **behavior):
    """A ScriptedDirector and a Worker connected to it; yields
    ``(director, link, served)``. The Worker is always stopped: asked to,
    then its Director goes away, and ``serve_forever`` must return."""
    director = ScriptedDirector()
    served = None
    try:
        served = ServedWorker(worker_config(workdir, director.port,
                                            **behavior))
        link = director.accept()
        yield director, link, served
    finally:
        with _gates_lock:  # no call of the test's is left waiting
            for event in _gates.values():
                event.set()
            _gates.clear()
        if served is not None:
            served.worker.stop()
        director.close()
        if served is not None:
            assert served.stopped(10), "serve_forever did not return"
            assert not served.errors, served.errors
