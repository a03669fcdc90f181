"""A Director played by the test: the second tier of the house style.

:class:`ScriptedDirector` listens on 127.0.0.1 (a free port) and answers the
handshake of every connection as ``pyfaas/director/handshake.py`` does
(preamble in, HELLO out with ``max_frame``; with a token, the AUTH exchange
of docs/protocol.md). What comes after is the test's:

- :meth:`ScriptedDirector.peer` hands over the next handshaken connection
  as a :class:`Peer`, to read frames from and write bytes to by hand;
- with an ``answer`` function, every connection is served on a thread of
  its own: each frame the peer sends is recorded in ``frames`` and given
  to ``answer(peer, frame)``, which replies with ``peer.send`` (or not).

:func:`functions` makes an ``answer`` that plays a Director with a few
functions run in this process. :meth:`ScriptedDirector.close` closes every
socket and joins every thread it started.
"""

import pickle
import queue
import select
import socket
import struct
import threading

from helpers import HOST, encode_frame, read_frame
from pyfaas import serialization as ser
from pyfaas.config import ClientConfig
from pyfaas.wire import auth
from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder

WAIT_S = 10.0


class Peer:
    """The Director's end of one connection, after the handshake."""

    def __init__(self, sock, preamble, decoder):
        self.sock = sock
        self.preamble = preamble
        self.decoder = decoder
        self._send_lock = threading.Lock()  # the test's thread sends too

    def recv(self, timeout=WAIT_S):
        """The next frame the peer sends."""
        return read_frame(self.sock, self.decoder, timeout)

    def send(self, type_, request_id=0, meta=None, payload=b"", flags=0):
        self.sendall(encode_frame(type_, request_id, meta, payload, flags))

    def sendall(self, data):
        with self._send_lock:
            self.sock.sendall(data)

    def close(self, reset=False):
        """Close our end: the peer sees the end of the stream, or with
        ``reset`` a connection reset (its next send fails at once)."""
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class ScriptedDirector:
    """Listens on 127.0.0.1 and answers handshakes (see the module docstring).

    Args:
        answer: ``answer(peer, frame)``, to serve every connection with; or
            None to hand connections to the test (:meth:`peer`).
        max_frame: the ``max_frame`` its HELLO announces (may be changed
            between connections).
        token: the cluster token (bytes): HELLO then asks for the proof.
    """

    def __init__(self, answer=None, max_frame=p.DEFAULT_MAX_FRAME_SIZE,
                 token=None):
        self.answer = answer
        self.max_frame = max_frame
        self.token = token
        self.frames = []          # every frame received, in order (served)
        self.connections = 0      # handshakes completed
        self._peers = []
        self._ready = queue.Queue()
        self._threads = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind((HOST, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._start(self._accept_loop)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def client_config(self, timeout=WAIT_S, max_frame_bytes=None):
        """A ClientConfig pointing at this Director."""
        return ClientConfig(
            path="the test's client config", director_ip_addr=HOST,
            director_port=self.port, receive_timeout_s=float(timeout),
            max_frame_bytes=max_frame_bytes or p.DEFAULT_MAX_FRAME_SIZE,
            log_level="")

    def peer(self, timeout=WAIT_S):
        """The next connection whose handshake is done."""
        return self._ready.get(timeout=timeout)

    def drop_connections(self, reset=False):
        """Close every connection (see :meth:`Peer.close`)."""
        with self._lock:
            peers, self._peers = self._peers, []
        for peer in peers:
            peer.close(reset)

    def received(self, *types):
        """The frames received so far (of these types, if given)."""
        with self._lock:
            return [f for f in self.frames if not types or f.type in types]

    def close(self):
        """Close the listener and every connection; join the threads."""
        self._wake_w.send(b"x")
        self._threads[0].join(WAIT_S)  # the accept loop: no new connections
        self.drop_connections()
        for thread in self._threads[1:]:
            thread.join(WAIT_S)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, "scripted director threads still running: %s" % alive

    # ----- on its own threads -----------------------------------------------

    def _start(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name="scripted-director")
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self):
        while True:
            ready, _, _ = select.select([self._listener, self._wake_r], [],
                                        [])
            if self._wake_r in ready:
                return
            sock, _ = self._listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._peers.append(Peer(sock, None, None))
            self._start(self._serve, sock)

    def _serve(self, sock):
        try:
            peer = self._handshake(sock)
            if peer is None:
                return
            with self._lock:
                self.connections += 1
                self._peers = [peer if x.sock is sock else x
                               for x in self._peers]
            if self.answer is None:
                self._ready.put(peer)
                return
            while True:
                try:
                    frame = peer.recv(timeout=3600)
                except (AssertionError, OSError):
                    return  # the end of the stream, or closed by us
                with self._lock:
                    self.frames.append(frame)
                self.answer(peer, frame)
        except OSError:
            return  # closed under us by drop_connections/close

    def _handshake(self, sock):
        """Preamble, HELLO (and AUTH); the Peer, or None if it went away."""
        decoder = FrameDecoder(p.HANDSHAKE_MAX_FRAME_SIZE,
                               expect_preamble=True)
        try:
            preamble = read_frame(sock, decoder, WAIT_S)
        except AssertionError:
            return None
        peer = Peer(sock, preamble, decoder)
        hello = {"protocol": p.PROTOCOL_VERSION,
                 "director": "%s:%d" % (HOST, self.port), "auth": "none",
                 "max_frame": self.max_frame}
        if self.token is not None:
            nonce = auth.new_nonce()
            hello.update(auth=auth.SCHEME, nonce=nonce.hex())
        peer.send(p.HELLO, 0, hello)
        if self.token is not None:
            role = p.ROLE_NAMES[preamble.role]
            meta = peer.recv().meta()
            theirs = bytes.fromhex(meta["nonce"])
            if not auth.check(auth.peer_proof(self.token, role, nonce,
                                              theirs),
                              bytes.fromhex(meta["mac"])):
                peer.send(p.ERROR, 0, {"code": "auth_rejected",
                                       "message": "wrong token"})
                peer.close()
                return None
            peer.send(p.AUTH, 0, {"mac": auth.director_proof(
                self.token, role, nonce, theirs).hex()})
        decoder.max_frame_size = p.DEFAULT_MAX_FRAME_SIZE
        return peer


NEVER = object()  # a function whose calls get no answer


class Held:
    """A function whose calls are answered only once the test calls
    :meth:`release` (from its own thread)."""

    def __init__(self, fn):
        self.fn = fn
        self._calls = []
        self._lock = threading.Lock()

    def hold(self, peer, rid, args, kwargs):
        with self._lock:
            self._calls.append((peer, rid, args, kwargs))

    @property
    def held(self):
        """How many calls wait for :meth:`release`."""
        with self._lock:
            return len(self._calls)

    def release(self):
        """Answer the calls held so far; return how many there were."""
        with self._lock:
            calls, self._calls = self._calls, []
        for peer, rid, args, kwargs in calls:
            peer.send(p.OK, rid, None, ser.dumps(self.fn(*args, **kwargs)),
                      p.FLAG_PICKLED)
        return len(calls)


def functions(**table):
    """An ``answer`` that plays a Director serving ``table`` (name ->
    callable run here, a :class:`Held` one, or NEVER): LIST, DEPLOY, PING,
    CALL, CALL_MANY and CHAIN (with the result of None) are answered;
    CANCEL and anything else get no answer.

    A DEPLOY is accepted under its name, and calls of it run the table's
    entry named as the end of it (an Executor's ``module.qualname#digest``
    runs ``qualname``); its code is never unpickled.
    """

    def result(peer, rid, meta, payload):
        fn = table.get(meta.get("f"))
        if fn is NEVER:
            return
        if fn is None:
            peer.send(p.ERROR, rid, {"code": "not_registered",
                                     "message": "no function %r"
                                     % meta.get("f")})
            return
        args, kwargs = pickle.loads(payload)
        if isinstance(fn, Held):
            fn.hold(peer, rid, args, kwargs)
            return
        peer.send(p.OK, rid, None, ser.dumps(fn(*args, **kwargs)),
                  p.FLAG_PICKLED)

    def answer(peer, frame):
        rid, meta = frame.request_id, frame.meta()
        if frame.type == p.LIST:
            listing = {name: {"name": name, "params": None}
                       for name in table}
            peer.send(p.OK, rid, None, ser.to_json(listing))
        elif frame.type == p.DEPLOY:
            short = meta["name"].split("#")[0].rsplit(".", 1)[-1]
            table.setdefault(meta["name"], table.get(short))
            peer.send(p.OK, rid, {"func_id": meta["name"],
                                  "name": meta["name"], "replaced": None,
                                  "workers": ["w1"], "failed": {}})
        elif frame.type == p.PING:
            peer.send(p.OK, rid, {"director": "scripted", "workers": 1})
        elif frame.type == p.CALL:
            result(peer, rid, meta, bytes(frame.payload))
        elif frame.type == p.CHAIN:
            peer.send(p.OK, rid, {"finals": ["last"]}, ser.dumps(None),
                      p.FLAG_PICKLED)
        elif frame.type == p.CALL_MANY:
            pos = 0
            for one, size in zip(meta["rids"], meta["sizes"]):
                result(peer, one, meta, bytes(frame.payload[pos:pos + size]))
                pos += size

    return answer
