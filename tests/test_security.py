"""Real processes: the cluster token handshake, and peers that misbehave
before they are authenticated (protected mode and TLS: test_security_modes.py).

A module-scoped token cluster (``secure``, handshake deadline 1 s) serves the
authentication tests; raw sockets drive the handshake by hand with
``pyfaas.wire.protocol`` and ``pyfaas.security``. A tripwire pickle (unpickling
it creates a file) is sent where nothing may be unpickled: the file must
never appear. Every test ends with a normal call that must succeed.
"""

import os
import pickle
import socket
import time

import pytest

from fault_helpers import director_says
from helpers import (HOST, decode_frames, raw_connect, read_frame,
                     read_until_eof, succeeds, wait_until, encode_frame)
from pyfaas import Client
from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder
from pyfaas import security
from pyfaas.wire import auth
from pyfaas.errors import (PyFaaSAuthenticationError, PyFaaSNetworkError,
                           PyFaaSTokenMissingError, PyFaaSTokenRejectedError)
from pyfaas.tools.local_cluster import Process, worker_sections, write_toml

pytestmark = pytest.mark.timeout(60)

TOKEN = security.new_token()
WRONG_TOKEN = security.new_token()
HANDSHAKE_TIMEOUT_S = 1.0
EXIT_WAIT_S = 15.0


# ----- functions that run on the Workers -------------------------------------

def whoami():
    return os.getpid()


def echo_size(blob):
    return len(blob)


class Tripwire:
    """Unpickling this creates the file ``path`` (it calls open(path, "w"))."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# ----- fixtures --------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_token_in_this_process(monkeypatch):
    """Clients made here never pick up a token from the test's environment."""
    monkeypatch.delenv(security.TOKEN_ENV, raising=False)


@pytest.fixture(scope="module")
def secure(module_cluster_factory):
    """Director + 1 Worker with a cluster token; handshake deadline 1 s."""
    cl = module_cluster_factory(
        workers=1, token=TOKEN,
        director_extra={"security": {"handshake_timeout_s":
                                     HANDSHAKE_TIMEOUT_S}})
    with cl.client() as client:
        client.register(whoami, name="who")
    return cl


@pytest.fixture(scope="module")
def plain(module_cluster_factory):
    """Director + 1 Worker without a token (allowed on loopback)."""
    cl = module_cluster_factory(workers=1)
    with cl.client() as client:
        client.register(whoami, name="who")
    return cl


def _still_serves(cl):
    """The final check of every test: a brand-new client makes a call."""
    with cl.client() as fresh:
        pids = {proc.pid for proc in cl.workers.values() if proc.alive()}
        assert fresh.call("who") in pids
    assert cl.director.alive()


@pytest.fixture
def tripwire(tmp_path):
    """``(path, payload)``: a pickle that would create ``path`` if unpickled.

    The pickle is tried once on another path first, so the test knows the
    tripwire really fires when unpickled.
    """
    armed = tmp_path / "armed"
    pickle.loads(pickle.dumps(Tripwire(str(armed)))).close()
    assert armed.exists(), "the tripwire pickle does not work"
    path = tmp_path / "unpickled-here"
    payload = pickle.dumps(Tripwire(str(path)))
    assert len(payload) < p.HANDSHAKE_MAX_FRAME_SIZE
    return path, payload


# ----- raw handshakes --------------------------------------------------------

def _hello(port, role=p.ROLE_CLIENT):
    """A raw socket past the preamble and HELLO: (sock, decoder, meta)."""
    sock = raw_connect(port)
    sock.sendall(p.encode_preamble(role))
    decoder = FrameDecoder()
    hello = read_frame(sock, decoder)
    assert hello.type == p.HELLO, hello
    return sock, decoder, hello.meta()


def _auth_frame(token, hello_meta, role="client"):
    """The AUTH frame a peer holding ``token`` sends after that HELLO."""
    director_nonce = bytes.fromhex(hello_meta["nonce"])
    nonce = auth.new_nonce()
    mac = auth.peer_proof(token.encode(), role, director_nonce, nonce)
    frame = encode_frame(p.AUTH, 0, {"nonce": nonce.hex(), "mac": mac.hex()})
    return frame, director_nonce, nonce


def _authenticated(port, token=TOKEN):
    """A raw client socket past the whole handshake: (sock, decoder)."""
    sock, decoder, hello = _hello(port)
    assert hello["auth"] == auth.SCHEME, hello
    frame, _, _ = _auth_frame(token, hello)
    sock.sendall(frame)
    reply = read_frame(sock, decoder)
    assert reply.type == p.AUTH, reply
    return sock, decoder


def _error_then_eof(sock, code, timeout=5.0):
    data = read_until_eof(sock, timeout)
    frames = decode_frames(data)
    assert frames and frames[-1].type == p.ERROR, (
        "no ERROR frame before the close (got %r)" % data[:200])
    meta = frames[-1].meta()
    assert meta["code"] == code, meta
    return meta


# ----- tokens: clients -------------------------------------------------------

def test_client_with_the_right_token_is_served(secure):
    with Client(HOST, secure.port, 10, token=TOKEN) as client:
        assert client.ping()["workers"] == 1
        client.register(echo_size, name="echo_size")
        assert client.call("echo_size", b"abc") == 3
    _still_serves(secure)


def test_client_without_a_token_gets_token_missing(secure):
    with Client(HOST, secure.port, 10) as client:
        with pytest.raises(PyFaaSTokenMissingError) as info:
            client.ping()
    message = str(info.value)
    assert not isinstance(info.value, PyFaaSTokenRejectedError)
    assert "requires a cluster token" in message, message
    assert "%s:%d" % (HOST, secure.port) in message
    assert security.TOKEN_ENV in message and "token_file" in message
    _still_serves(secure)


def test_client_with_a_wrong_token_gets_token_rejected(secure):
    refused_before = secure.director.output().count(b"wrong cluster token")
    with Client(HOST, secure.port, 10, token=WRONG_TOKEN) as client:
        with pytest.raises(PyFaaSTokenRejectedError) as info:
            client.ping()
    message = str(info.value)
    assert not isinstance(info.value, PyFaaSTokenMissingError)
    assert "refused the cluster token" in message, message
    assert "requires a cluster token" not in message

    # The Director names the refused peer's address.
    wait_until(lambda: secure.director.output().count(b"wrong cluster token")
               > refused_before, 5, "no refusal logged by the director")
    director_says(secure, r"refused client 127\.0\.0\.1:\d+: wrong cluster "
                           r"token")
    _still_serves(secure)


def test_client_with_a_token_refuses_a_director_without_one(plain):
    with Client(HOST, plain.port, 10, token=TOKEN) as client:
        with pytest.raises(PyFaaSAuthenticationError) as info:
            client.ping()
    assert type(info.value) is PyFaaSAuthenticationError
    assert "does not ask for a cluster token" in str(info.value)
    _still_serves(plain)


# ----- tokens: Workers -------------------------------------------------------

def test_worker_with_a_wrong_token_exits_2_with_one_line(secure):
    name, path = secure.worker_config(name="wrongtoken")
    env = dict(secure.env, **{security.TOKEN_ENV: WRONG_TOKEN})
    proc = secure.track(Process(name, ["worker", path], secure.workdir, env))

    assert proc.wait(EXIT_WAIT_S) == 2
    out = proc.output().decode(errors="replace")
    errors = [line for line in out.splitlines()
              if line.startswith("pyfaas: error:")]
    assert len(errors) == 1, out
    assert path in errors[0] and "refused the cluster token" in errors[0], out
    assert "Traceback" not in out, out
    assert len(secure.client().worker_ids()) == 1
    _still_serves(secure)


def test_worker_with_the_right_token_in_a_token_file_registers(secure,
                                                               tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    name = "filetoken"
    sections = worker_sections(secure.workdir, name, secure.port,
                               heartbeat_ms=200)
    sections["security"] = {"token_file": str(token_file)}
    path = write_toml(os.path.join(secure.workdir, name + ".toml"), sections)
    # No $PYFAAS_TOKEN: the token can only come from the file.
    proc = secure.track(Process(name, ["worker", path], secure.workdir,
                                {}))
    try:
        client = secure.client()
        wait_until(lambda: proc.pid in [w["pid"] for w in client.workers()],
                   10, lambda: "worker never registered: %s"
                   % proc.output().decode(errors="replace"))
        assert proc.pid in {client.call("who") for _ in range(4)}
    finally:
        assert proc.stop() == 0
    wait_until(lambda: len(secure.client().worker_ids()) == 1, 5,
               "stopped worker still listed")
    _still_serves(secure)


def test_worker_with_a_token_refuses_a_director_without_one(plain):
    name, path = plain.worker_config(name="tokenworker")
    env = dict(plain.env, **{security.TOKEN_ENV: TOKEN})
    proc = plain.track(Process(name, ["worker", path], plain.workdir, env))

    assert proc.wait(EXIT_WAIT_S) == 2
    out = proc.output().decode(errors="replace")
    errors = [line for line in out.splitlines()
              if line.startswith("pyfaas: error:")]
    assert len(errors) == 1, out
    assert path in errors[0], out
    assert "does not ask for a cluster token" in errors[0], out
    assert "Traceback" not in out, out
    _still_serves(plain)


# ----- the handshake on the wire ---------------------------------------------

def test_replayed_handshake_is_rejected(secure):
    # A successful exchange, recorded.
    sock, decoder, hello = _hello(secure.port)
    recorded, director_nonce, nonce = _auth_frame(TOKEN, hello)
    sock.sendall(recorded)
    reply = read_frame(sock, decoder)
    assert reply.type == p.AUTH
    expected = auth.director_proof(TOKEN.encode(), "client",
                                       director_nonce, nonce)
    assert bytes.fromhex(reply.meta()["mac"]) == expected
    sock.sendall(encode_frame(p.PING, 7))
    assert read_frame(sock, decoder).type == p.OK
    sock.close()

    # The same bytes on a new connection: the Director's nonce is new.
    with raw_connect(secure.port) as replay:
        replay.sendall(p.encode_preamble(p.ROLE_CLIENT))
        decoder = FrameDecoder()
        hello2 = read_frame(replay, decoder)
        assert hello2.meta()["nonce"] != hello["nonce"]
        replay.sendall(recorded)
        port = replay.getsockname()[1]
        meta = _error_then_eof(replay, "auth_rejected")
    assert "refused the cluster token" in meta["message"]
    director_says(secure, r"refused client 127\.0\.0\.1:%d: wrong cluster "
                           r"token" % port)
    _still_serves(secure)


def test_only_tiny_frames_before_authentication(secure):
    # Just over the limit, announced right after the preamble: only the
    # length prefix and header are sent, never the body.
    sock, decoder, _ = _hello(secure.port)
    with sock:
        sock.sendall(p.HEADER.pack(p.HANDSHAKE_MAX_FRAME_SIZE + 1, p.AUTH, 0,
                                   0, 0))
        meta = _error_then_eof(sock, "frame_too_large")
    assert str(p.HANDSHAKE_MAX_FRAME_SIZE) in meta["message"]

    # The same size is fine once the peer is authenticated.
    sock, decoder = _authenticated(secure.port)
    with sock:
        big_meta = {"pad": "x" * (p.HANDSHAKE_MAX_FRAME_SIZE + 100)}
        sock.sendall(encode_frame(p.PING, 3, big_meta))
        reply = read_frame(sock, decoder)
        assert (reply.type, reply.request_id) == (p.OK, 3)
    _still_serves(secure)


def test_silent_connection_is_closed_at_the_handshake_deadline(secure):
    with raw_connect(secure.port) as sock:
        start = time.monotonic()
        data = read_until_eof(sock, timeout=HANDSHAKE_TIMEOUT_S + 5)
        elapsed = time.monotonic() - start
    assert data == b""
    assert HANDSHAKE_TIMEOUT_S - 0.1 <= elapsed < HANDSHAKE_TIMEOUT_S + 2.5
    director_says(secure, r"did not finish the handshake within 1\.0 s")
    _still_serves(secure)


def test_trickling_connection_is_closed_at_the_handshake_deadline(secure):
    """Slowloris: one byte every 0.3 s of a valid preamble and AUTH frame."""
    frame, _, _ = _auth_frame(TOKEN, {"nonce": "00" * auth.NONCE_BYTES})
    stream = p.encode_preamble(p.ROLE_CLIENT) + frame
    sent = 0
    with raw_connect(secure.port) as sock:
        start = time.monotonic()
        closed = False
        while not closed and time.monotonic() - start < \
                HANDSHAKE_TIMEOUT_S + 5:
            try:
                sock.sendall(stream[sent:sent + 1])
            except OSError:  # reset: closed while we were sending
                break
            sent += 1
            # The pause between bytes is a wait for the close itself.
            sock.settimeout(0.3)
            try:
                closed = sock.recv(65536) == b""
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
        elapsed = time.monotonic() - start
    assert elapsed < HANDSHAKE_TIMEOUT_S + 2.5, "still open after %.1f s" \
        % elapsed
    assert sent < len(stream)
    _still_serves(secure)


def test_max_connections_caps_open_connections(fresh_cluster):
    # 1 Worker holds one connection; 5 idle clients fill the cap of 6.
    cl = fresh_cluster(workers=1, director_extra={"network": {
        "max_connections": 6}})
    client = cl.client()
    client.register(whoami, name="who")
    client.close()
    idle = []

    def one_more_idle():
        # A connection that was still closing may hold a slot for a moment.
        sock = raw_connect(cl.port)
        sock.sendall(p.encode_preamble(p.ROLE_CLIENT))
        try:
            hello = read_frame(sock, FrameDecoder(), timeout=2)
        except (AssertionError, OSError):
            sock.close()
            return False
        assert hello.type == p.HELLO
        idle.append(sock)
        return len(idle) == 5

    try:
        wait_until(one_more_idle, 10, "could not open 5 idle connections")
        with raw_connect(cl.port) as sixth:
            start = time.monotonic()
            assert read_until_eof(sixth, timeout=5) == b""
            assert time.monotonic() - start < 2.0
        with pytest.raises(PyFaaSNetworkError):
            Client(HOST, cl.port, 5).ping()
        director_says(cl, r"refused 127\.0\.0\.1:\d+: 6 connections open "
                           r"\(max_connections\)")
    finally:
        for sock in idle:
            sock.close()

    with cl.client() as fresh:
        wait_until(succeeds(fresh.ping), 5, "the cap was never released")
    _still_serves(cl)


def test_unknown_message_type_after_authentication(secure):
    sock, decoder = _authenticated(secure.port)
    with sock:
        sock.sendall(encode_frame(0x7F, 9, {}))
        meta = _error_then_eof(sock, "protocol")
    assert "client" in meta["message"]
    _still_serves(secure)


# ----- the tripwire ----------------------------------------------------------

def test_tripwire_as_garbage_before_the_preamble(secure, tripwire):
    path, payload = tripwire
    with raw_connect(secure.port) as sock:
        sock.sendall(payload)
        _error_then_eof(sock, "protocol")
    _still_serves(secure)
    assert not path.exists(), "bytes sent before the preamble were unpickled"


@pytest.mark.parametrize("role,type_", [
    (p.ROLE_CLIENT, p.DEPLOY), (p.ROLE_CLIENT, p.CALL),
    (p.ROLE_WORKER, p.ANNOUNCE)], ids=["DEPLOY", "CALL", "worker-ANNOUNCE"])
def test_tripwire_in_a_frame_before_authentication(secure, tripwire, role,
                                                   type_):
    path, payload = tripwire
    sock, decoder, hello = _hello(secure.port, role)
    with sock:
        sock.sendall(encode_frame(type_, 1, {"f": "who", "name": "x"},
                                    payload, p.FLAG_PICKLED))
        meta = _error_then_eof(sock, "protocol")
    assert p.TYPE_NAMES[type_] in meta["message"], meta
    _still_serves(secure)
    assert not path.exists(), "someone unpickled a frame sent before AUTH"


def test_tripwire_called_on_an_unregistered_function(secure, tripwire):
    path, payload = tripwire
    sock, decoder = _authenticated(secure.port)
    with sock:
        sock.sendall(encode_frame(p.CALL, 5, {"f": "no_such_function"},
                                    payload, p.FLAG_PICKLED))
        reply = read_frame(sock, decoder)
        assert (reply.type, reply.request_id) == (p.ERROR, 5)
        assert reply.meta()["code"] == "not_registered"
        # The connection stays usable.
        sock.sendall(encode_frame(p.PING, 6))
        assert read_frame(sock, decoder).type == p.OK
    _still_serves(secure)
    assert not path.exists(), "the director unpickled call arguments"


