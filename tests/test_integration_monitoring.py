"""The monitoring endpoint of a real Director, with real Workers.

A Director started with ``[monitoring] enabled = true`` (port 0: it prints
the one it got) and Workers as subprocesses on 127.0.0.1. ``/metrics`` is
parsed with prometheus_client's parser. Covered: counters that move as
calls are made, a Worker killed showing as an eviction, ``status --json``
being the ``/api/status`` document, ``status --watch``, the token rule off
loopback, and the endpoint answering while the Director is under full
call load. Every process is stopped by pid by the fixtures; each test has
a hard time bound.
"""

import http.client
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from helpers import interruptible, process_of, wait_until
from pyfaas.client.client import Client
from pyfaas.security import new_token
from pyfaas.tools.local_cluster import write_toml

parser = pytest.importorskip(
    "prometheus_client.parser",
    reason="prometheus_client is a test dependency (pip install '.[test]')")

pytestmark = pytest.mark.timeout(120)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MONITORING = {"monitoring": {"enabled": True, "port": 0}}
PUBLISH_S = 5.0   # the Director publishes a document every second


def noop(x=None):
    return x


def get(port, path, headers=None, timeout=10.0):
    """``(status, body bytes)`` of one GET to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def metrics(port, headers=None):
    """``{sample name: {frozenset of labels: value}}`` of /metrics."""
    status, body = get(port, "/metrics", headers)
    assert status == 200, body
    found = {}
    for fam in parser.text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            found.setdefault(s.name, {})[frozenset(s.labels.items())] = \
                s.value
    return found


def total(found, name, **labels):
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for ls, v in found.get(name, {}).items() if want <= ls)


def run_cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "pyfaas"] + list(args),
                          cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def test_counters_move_with_calls_and_a_killed_worker_is_an_eviction(
        fresh_cluster):
    c = fresh_cluster(workers=2, director_extra=MONITORING)
    port = c.monitoring_port
    client = c.client()
    client.register(noop, name="mon_noop")
    assert total(metrics(port), "pyfaas_calls_total") == 0

    for x in range(10):
        client.call("mon_noop", x)
    found = wait_until(
        lambda: (lambda m: m if total(m, "pyfaas_calls_total", outcome="ok")
                 == 10 else None)(metrics(port)),
        PUBLISH_S, "10 ok calls in /metrics")
    assert total(found, "pyfaas_calls_total", function="mon_noop") == 10
    assert total(found, "pyfaas_call_duration_seconds_count",
                 function="mon_noop") == 10
    assert total(found, "pyfaas_workers", state="serving") == 2
    assert total(found, "process_resident_memory_bytes") > 0
    wait_until(lambda: total(metrics(port),
                             "pyfaas_worker_resident_memory_bytes") > 0,
               PUBLISH_S, "the Workers' memory, from their heartbeats")

    victim = client.worker_ids()[0]
    process_of(c, victim, client).signal(signal.SIGKILL)
    found = wait_until(
        lambda: (lambda m: m if total(m, "pyfaas_worker_evictions_total")
                 >= 1 else None)(metrics(port)),
        PUBLISH_S + 5, "an eviction in /metrics")
    assert total(found, "pyfaas_worker_evictions_total",
                 reason="disconnected") == 1
    assert total(found, "pyfaas_workers", state="serving") == 1
    status, body = get(port, "/api/status")
    doc = json.loads(body)
    assert [e["worker_id"] for e in doc["recent_evictions"]] == [victim]
    assert victim not in [w["worker_id"] for w in doc["workers"]]
    assert [f["calls"] for f in doc["functions"]] == [10]   # kept
    assert client.call("mon_noop", 1) == 1


def test_status_json_is_the_api_status_document(fresh_cluster):
    c = fresh_cluster(workers=2, director_extra=MONITORING)
    client = c.client()
    fid = client.register(noop, name="mon_same")
    client.call("mon_same", 1)

    done = run_cli("status", "--config", c.client_config(timeout=10),
                   "--json")
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    # (the endpoint's document is at most a second old: wait for the call)
    api = wait_until(lambda: (lambda d: d if d["functions"] and
                              d["functions"][0]["calls"] else None)(
        json.loads(get(c.monitoring_port, "/api/status")[1])), PUBLISH_S)

    assert set(cli) == set(api)
    for part in ("director", "calls", "evictions", "workflows"):
        assert set(cli[part]) == set(api[part]), part
    assert set(cli["workers"][0]) == set(api["workers"][0])
    assert set(cli["functions"][0]) == set(api["functions"][0])
    assert sorted(w["worker_id"] for w in cli["workers"]) == \
        sorted(w["worker_id"] for w in api["workers"])
    assert [f["func_id"] for f in cli["functions"]] == [fid] == \
        [f["func_id"] for f in api["functions"]]
    assert cli["functions"][0]["calls"] == api["functions"][0]["calls"] == 1


def test_status_watch_redraws_in_place_until_interrupted(fresh_cluster):
    c = fresh_cluster(workers=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyfaas", "status", "--config",
         c.client_config(timeout=10), "--watch", "0.2"],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, preexec_fn=interruptible)
    try:
        seen = b""
        deadline = time.monotonic() + 20
        while seen.count(b"\x1b[H\x1b[2J") < 3 and \
                time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                seen += os.read(proc.stdout.fileno(), 65536)
        assert seen.count(b"\x1b[H\x1b[2J") >= 3, seen[-2000:]
        assert b"WORKERS" in seen and b"every 0.2 s" in seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_off_loopback_the_endpoint_wants_the_token(fresh_cluster):
    token = new_token()
    c = fresh_cluster(workers=1, token=token, director_extra={
        "monitoring": {"enabled": True, "port": 0, "address": "0.0.0.0"}})
    port = c.monitoring_port   # (bound on every address; we use loopback)
    assert get(port, "/metrics")[0] == 401
    assert get(port, "/api/status")[0] == 401
    assert get(port, "/", {"Authorization": "Bearer " + "0" * 64})[0] == 401
    bearer = {"Authorization": "Bearer " + token}
    wait_until(lambda: total(metrics(port, bearer), "pyfaas_workers",
                             state="serving") == 1, PUBLISH_S)


def test_a_director_refuses_monitoring_off_loopback_without_a_token(
        tmp_path):
    from pyfaas.tools.local_cluster import director_sections
    sections = director_sections(str(tmp_path))
    sections["monitoring"] = {"enabled": True, "address": "0.0.0.0",
                              "port": 0}
    path = write_toml(str(tmp_path / "director.toml"), sections)
    env = dict(os.environ)
    env.pop("PYFAAS_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "pyfaas", "director", path],
                          cwd=REPO, stdin=subprocess.DEVNULL, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[monitoring] address" in lines[0], \
        done.stderr


def test_the_endpoint_answers_while_the_director_is_under_full_load(
        fresh_cluster):
    c = fresh_cluster(workers=2, director_extra=MONITORING)
    port = c.monitoring_port
    c.client().register(noop, name="mon_load")
    stop = threading.Event()
    failures = []

    def load():
        try:
            with Client("127.0.0.1", c.port, 30) as client:
                while not stop.is_set():
                    for _ in client.map("mon_load", range(500)):
                        pass
        except Exception as exc:  # reported by the test, not lost
            failures.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: total(metrics(port), "pyfaas_calls_total") > 0,
                   PUBLISH_S, "calls under load")
        times, seen = [], []
        deadline = time.monotonic() + 8   # bounded: 10 scrapes or 8 s
        while len(times) < 10 and time.monotonic() < deadline:
            start = time.monotonic()
            found = metrics(port)
            times.append(time.monotonic() - start)
            seen.append(total(found, "pyfaas_calls_total"))
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures
    assert len(times) >= 5 and max(times) < 2.0, times
    assert seen[-1] > seen[0], seen   # documents kept coming under load
