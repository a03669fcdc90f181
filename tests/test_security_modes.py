"""Real processes: protected mode, the demo's token, and TLS.

The Director must refuse a non-loopback address without a token before it
binds anything (the 0.0.0.0 address below only ever appears in a config it
refuses). A module-scoped TLS cluster (self-signed certificate for
127.0.0.1 made with the openssl command; skipped without it) serves calls
to clients that trust the certificate and refuses the others. Every test
that uses a cluster ends with a normal call that must succeed.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from fault_helpers import ROOT, director_says, env_without_token
from helpers import HOST, raw_connect, read_until_eof
from pyfaas import Client
from pyfaas import security
from pyfaas.errors import PyFaaSNetworkError, PyFaaSProtocolError
from pyfaas.tools.local_cluster import director_sections, write_toml

pytestmark = pytest.mark.timeout(60)

TOKEN = security.new_token()
HANDSHAKE_TIMEOUT_S = 1.0


def whoami():
    return os.getpid()


def echo_size(blob):
    return len(blob)


@pytest.fixture(autouse=True)
def no_token_in_this_process(monkeypatch):
    """Clients made here never pick up a token from the test's environment."""
    monkeypatch.delenv(security.TOKEN_ENV, raising=False)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate and key for 127.0.0.1, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a "
                    "self-signed certificate for the TLS tests")
    where = tmp_path_factory.mktemp("tls")
    cert, key = str(where / "cert.pem"), str(where / "key.pem")
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, timeout=60)
    if result.returncode != 0:
        pytest.skip("openssl could not make a certificate (too old for "
                    "-addext?): %s" % result.stderr.decode(errors="replace"))
    return cert, key


@pytest.fixture(scope="module")
def tls_cluster(module_cluster_factory, tls_files):
    """Director (TLS, token, handshake deadline 1 s) + 1 Worker that verifies
    it with the cert."""
    cl = module_cluster_factory(
        workers=1, token=TOKEN, tls=tls_files,
        director_extra={"security": {"handshake_timeout_s":
                                     HANDSHAKE_TIMEOUT_S}})
    with cl.client() as client:
        client.register(whoami, name="who")
        client.register(echo_size, name="echo_size")
    return cl


def _still_serves(cl):
    """The final check of every test: a brand-new client makes a call."""
    with cl.client() as fresh:
        pids = {proc.pid for proc in cl.workers.values() if proc.alive()}
        assert fresh.call("who") in pids
    assert cl.director.alive()


# ----- protected mode and the demo -------------------------------------------

def _run_to_exit(args, workdir, env, timeout=30.0):
    """Run ``python -m pyfaas ARGS``; return (code, stdout, stderr).

    A Director that starts listening is killed at once, by its pid.
    """
    out_path = os.path.join(workdir, "run.out")
    err_path = os.path.join(workdir, "run.err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pyfaas"] + list(args),
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, env=env, cwd=str(ROOT))
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            with open(out_path, "rb") as fh:
                if b"listening" in fh.read():
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    with open(out_path, "rb") as out, open(err_path, "rb") as err:
        return (proc.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))


def test_protected_mode_refuses_a_public_address_without_a_token(tmp_path):
    sections = director_sections(str(tmp_path))
    sections["network"]["director_ip_addr"] = "0.0.0.0"
    path = write_toml(str(tmp_path / "public.toml"), sections)

    code, out, err = _run_to_exit(["director", path], str(tmp_path),
                                  env_without_token())

    assert "listening" not in out, "the director started on 0.0.0.0!"
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert path in line and "director_ip_addr" in line, line
    assert "token_file" in line and "allow_insecure" in line, line
    assert "Traceback" not in out + err


def test_loopback_without_a_token_runs_and_warns(fresh_cluster):
    cl = fresh_cluster(workers=1)
    with cl.client() as client:
        client.register(whoami, name="who")
    director_says(cl, r"WARNING.*no cluster token")
    _still_serves(cl)


def test_demo_runs_with_a_generated_token(tmp_path):
    # Its own session, so a hung demo's cluster can be stopped with it.
    proc = subprocess.Popen([sys.executable, "-m", "pyfaas", "demo"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env_without_token(),
                            cwd=str(ROOT), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=50)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this test made
            proc.communicate()
    out, err = out.decode(), err.decode()
    assert proc.returncode == 0, (out, err)
    assert "authenticated with a random cluster token" in out, out
    assert "add(5, 6, c=56) = 67" in out, out


# ----- TLS ------------------------------------------------------------------

def test_tls_cluster_serves_calls_and_a_3_mb_argument(tls_cluster, tls_files):
    with tls_cluster.client() as client:
        assert client.ping()["workers"] == 1
        blob = os.urandom(3 * 1024 * 1024)
        assert client.call("echo_size", blob) == len(blob)
        assert [client.call("echo_size", b"x" * i) for i in range(5)] == \
            list(range(5))
    _still_serves(tls_cluster)


def test_plain_client_against_the_tls_port_is_told_to_use_tls(tls_cluster):
    with Client(HOST, tls_cluster.port, 10, token=TOKEN) as client:
        start = time.monotonic()
        with pytest.raises(PyFaaSProtocolError) as info:
            client.ping()
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "director %s:%d" % (HOST, tls_cluster.port) in message, message
    assert "requires TLS" in message and "tls = true" in message, message
    director_says(tls_cluster, r"peer 127\.0\.0\.1:\d+ speaks plain TCP to a "
                                r"TLS director")
    _still_serves(tls_cluster)


def test_tls_client_that_does_not_trust_the_certificate(tls_cluster):
    # tls_ca_file "" means the system's CAs, which never signed this cert.
    with Client(HOST, tls_cluster.port, 10, token=TOKEN, tls=True) as client:
        with pytest.raises(PyFaaSNetworkError) as info:
            client.ping()
    assert "certificate" in str(info.value).lower(), str(info.value)
    _still_serves(tls_cluster)


def test_stalled_tls_handshake_is_closed_at_the_deadline(tls_cluster):
    with raw_connect(tls_cluster.port) as sock:
        start = time.monotonic()
        # Half a TLS record header, then silence.
        sock.sendall(b"\x16\x03")
        read_until_eof(sock, timeout=HANDSHAKE_TIMEOUT_S + 5)
        elapsed = time.monotonic() - start
    assert HANDSHAKE_TIMEOUT_S - 0.1 <= elapsed < HANDSHAKE_TIMEOUT_S + 2.5
    _still_serves(tls_cluster)
