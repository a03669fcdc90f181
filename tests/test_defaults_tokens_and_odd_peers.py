"""Real processes: API defaults and corners the other suites leave out.

The functional API without a config path, the console script, start-up
greetings, the client-wide receive timeout, keyword arguments named like
the function parameter, token files in the configs, a Worker without a
token, a frame left half-sent after authentication, TLS bytes on a plain
port, and a retried call whose first Worker comes back late. Every cluster
test ends with a normal call that must succeed.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fault_helpers import director_says, env_without_token
from helpers import (HOST, process_of, raw_connect, read_until_eof,
                     reserve_port, wait_until, encode_frame)
from pyfaas import Client, security
from pyfaas.client import api
from pyfaas.wire import protocol as p
from pyfaas.client.client import DEFAULT_PORT, DEFAULT_TIMEOUT_S
from pyfaas.config import load_director_config
from pyfaas.errors import (PyFaaSConfigError, PyFaaSNetworkError,
                           PyFaaSTimeoutError, PyFaaSTokenMissingError)
from pyfaas.tools.local_cluster import Process, client_sections, write_toml

pytestmark = pytest.mark.timeout(60)

TOKEN = security.new_token()


def whoami():
    return os.getpid()


def greet(name, greeting="hello"):
    return "%s %s" % (greeting, name)


def slow(seconds):
    time.sleep(seconds)
    return seconds


def slow_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


@pytest.fixture(autouse=True)
def no_token_in_this_process(monkeypatch):
    monkeypatch.delenv(security.TOKEN_ENV, raising=False)


# ----- the functional API and the client ---------------------------------------

def test_pyfaas_config_without_a_path_uses_the_environment_or_defaults(
        monkeypatch, tmp_path):
    monkeypatch.delenv("PYFAAS_CONFIG", raising=False)
    try:
        client = api.pyfaas_config()
        assert (client.host, client.port, client.timeout) == (
            "127.0.0.1", DEFAULT_PORT, DEFAULT_TIMEOUT_S)
        path = write_toml(str(tmp_path / "client.toml"),
                          client_sections(40123, timeout=7.5))
        monkeypatch.setenv("PYFAAS_CONFIG", path)
        client = api.pyfaas_config()
        assert (client.port, client.timeout) == (40123, 7.5)
    finally:
        api.pyfaas_close()


def test_unreachable_director_is_a_connection_error_naming_it():
    port = reserve_port()
    with Client(HOST, port, 2.0) as client:
        with pytest.raises(ConnectionError) as info:
            client.ping()
    assert isinstance(info.value, PyFaaSNetworkError)
    assert "%s:%d" % (HOST, port) in str(info.value)


def test_console_script_runs():
    script = Path(sys.executable).parent / "pyfaas"
    if not script.exists():
        pytest.skip("the package is not installed in this interpreter's "
                    "environment (no %s)" % script)
    out = subprocess.run([str(script), "--help"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0
    assert "director" in out.stdout and "worker" in out.stdout


def test_greetings_are_printed_at_start(cluster):
    assert b"PyFaaS director (local cluster)" in cluster.director.output()
    for proc in cluster.workers.values():
        wait_until(lambda: b"PyFaaS worker" in proc.output(), 5,
                   "a Worker did not print its greeting")


def test_keyword_named_name_reaches_the_function(client):
    client.register(greet)
    assert client.call("greet", name="ada") == "hello ada"
    assert client.submit("greet", name="bob", greeting="hi").result(10) == \
        "hi bob"


def test_receive_timeout_applies_without_an_explicit_timeout(cluster):
    with Client(HOST, cluster.port, 0.5, config_path="client.toml") as client:
        client.register(slow)
        start = time.monotonic()
        with pytest.raises(PyFaaSTimeoutError) as info:
            client.call("slow", 3)
        assert time.monotonic() - start < 2.0
        assert "receive_timeout_s in client.toml" in str(info.value)
        assert client.call("slow", 0) == 0


def test_functional_wrappers(cluster, tmp_path):
    api.pyfaas_config(cluster.client_config())
    try:
        api.pyfaas_register(greet)
        assert list(api.pyfaas_map("greet", ["a", "b"])) == ["hello a",
                                                              "hello b"]
        fut = api.pyfaas_exec_async("greet", ["c"])
        assert fut.result(10) == "hello c"
        stats = api.pyfaas_get_stats("greet")
        assert list(stats["functions"].values())[0]["calls"] >= 3
        wid = api.pyfaas_get_worker_ids()[0]
        assert api.pyfaas_get_cache_dump(wid)["worker_id"] == wid
    finally:
        api.pyfaas_close()


def test_functional_kill_worker(fresh_cluster):
    cl = fresh_cluster(workers=2)
    api.pyfaas_config(cl.client_config())
    try:
        victim = api.pyfaas_get_worker_ids()[0]
        with cl.client() as client:
            proc = process_of(cl, victim, client)
        api.pyfaas_kill_worker(victim)
        assert proc.wait(15) == 0
        wait_until(lambda: victim not in api.pyfaas_get_worker_ids(), 5)
        api.pyfaas_register(whoami)
        assert api.pyfaas_exec("whoami") != proc.pid
    finally:
        api.pyfaas_close()


# ----- tokens in config files ----------------------------------------------------

def _token_file(tmp_path, token=TOKEN):
    path = tmp_path / "token"
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    return str(path)


def test_token_files_in_director_worker_and_client_configs(fresh_cluster,
                                                           tmp_path):
    token_file = _token_file(tmp_path)
    cl = fresh_cluster(workers=1, start=False,
                       director_extra={"security": {"token_file": token_file}},
                       worker_extra={"security": {"token_file": token_file}})
    cl.token = TOKEN  # for the cluster's own clients; processes read the file
    cl.start(workers=1, heartbeat_ms=200)
    with Client(HOST, cl.port, 5) as anonymous:
        with pytest.raises(PyFaaSTokenMissingError):
            anonymous.ping()
    sections = client_sections(cl.port)
    sections["security"] = {"token_file": token_file}
    path = write_toml(str(tmp_path / "client.toml"), sections)
    with Client.from_config(path) as client:
        client.register(whoami)
        assert client.call("whoami") in {w.pid for w in cl.workers.values()}


def test_a_worker_without_a_token_exits_2_naming_its_config(fresh_cluster,
                                                           tmp_path):
    cl = fresh_cluster(workers=1, token=TOKEN)
    name, path = cl.worker_config("tokenless")
    proc = cl.track(Process(name, ["worker", path], cl.workdir,
                            env_without_token()))
    assert proc.wait(20) == 2
    out = proc.output().decode(errors="replace")
    assert path in out and "requires a cluster token" in out, out
    assert "Traceback" not in out
    with cl.client() as client:
        client.register(whoami)
        assert client.call("whoami")


def test_token_problems_are_config_errors(tmp_path):
    short = _token_file(tmp_path, "too-short")
    with pytest.raises(PyFaaSConfigError) as info:
        security.load_token(short, "d.toml")
    assert "d.toml: [security] token_file" in str(info.value)
    assert "at least %d" % security.MIN_TOKEN_LENGTH in str(info.value)
    with pytest.raises(PyFaaSConfigError) as info:
        security.load_token(str(tmp_path / "missing"), "d.toml")
    assert "cannot read" in str(info.value)


def test_allow_insecure_is_accepted_by_the_config(tmp_path):
    from pyfaas.tools.local_cluster import director_sections
    sections = director_sections(str(tmp_path))
    sections["security"] = {"allow_insecure": True}
    cfg = load_director_config(write_toml(str(tmp_path / "d.toml"), sections))
    assert cfg.allow_insecure is True and cfg.token_file == ""


# ----- the wire after authentication -----------------------------------------------

def test_half_sent_frame_then_silence_is_closed(fresh_cluster):
    cl = fresh_cluster(workers=1,
                       director_extra={"network": {"frame_timeout_s": 1.0}})
    sock = raw_connect(cl.port)
    try:
        sock.sendall(p.encode_preamble(p.ROLE_CLIENT))
        frame = encode_frame(p.PING, 1)
        sock.sendall(frame[:7])  # part of a frame, then nothing
        start = time.monotonic()
        read_until_eof(sock, timeout=10)
        assert time.monotonic() - start < 5
    finally:
        sock.close()
    director_says(cl, r"sent part of a frame, then nothing")
    with cl.client() as client:
        client.register(whoami)
        assert client.call("whoami")


def test_tls_bytes_on_a_plain_port_close_only_that_connection(cluster,
                                                              client):
    sock = raw_connect(cluster.port)
    try:
        # The start of a TLS ClientHello record.
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        read_until_eof(sock, timeout=5)
    finally:
        sock.close()
    client.register(whoami)
    assert client.call("whoami")


# ----- a retried call whose first Worker comes back ----------------------------------

def test_retried_call_has_one_outcome_when_the_frozen_worker_returns(
        fresh_cluster):
    cl = fresh_cluster(workers=2)
    with cl.client() as client:
        client.register(slow_pid)
        fut = client.exec_async("slow_pid", [1.0], retries=1)
        wait_until(lambda: any(w["inflight"] for w in client.workers()), 10)
        busy = next(w["worker_id"] for w in client.workers() if w["inflight"])
        frozen = process_of(cl, busy, client)
        frozen.signal(signal.SIGSTOP)
        try:
            pid = fut.result(15)  # re-run on the other Worker
        finally:
            frozen.signal(signal.SIGCONT)
        assert pid != frozen.pid
        # The frozen Worker's late result has nowhere to go: the future
        # already holds the only outcome, and the cluster serves on.
        wait_until(lambda: len(client.worker_ids()) == 2, 15,
                   "the thawed Worker did not register again")
        assert fut.result(0) == pid
        assert client.call("slow_pid", 0) in {w.pid for w in
                                             cl.workers.values()}


# ----- nothing left behind ---------------------------------------------------------

def test_executor_unregisters_its_functions_at_shutdown(cluster, client):
    before = set(client.list())
    with pyfaas_executor(cluster) as ex:
        assert ex.submit(greet, "x").result(10) == "hello x"
        assert list(ex.map(greet, ["a", "b"])) == ["hello a", "hello b"]
        assert len(set(client.list()) - before) == 1
    assert set(client.list()) == before


def pyfaas_executor(cluster):
    from pyfaas import Executor
    return Executor(director="%s:%d" % (HOST, cluster.port))


def test_bench_against_a_cluster_leaves_no_functions(cluster, client):
    before = set(client.list())
    out = subprocess.run(
        [sys.executable, "-m", "pyfaas", "bench", "--calls", "20",
         "--async-calls", "100", "--mib-rounds", "2", "--json", "--config",
         cluster.client_config()], capture_output=True, text=True,
        timeout=120)
    assert out.returncode == 0, out.stderr
    assert set(client.list()) == before
