"""The monitoring endpoint in one process: its Prometheus text, parsed
with prometheus_client's parser, and its HTTP server (routes, read-only,
the token rule), fed status documents of a pure DirectorState.

The real cluster behind it (counters that move, a Worker killed, load) is
tests/test_integration_monitoring.py.
"""

import base64
import dataclasses
import http.client
import json
import re
import socket

import pytest

from pyfaas.director.monitoring.metrics import CONTENT_TYPE, render
from pyfaas.director.monitoring.server import MonitoringServer, token_matches
from pyfaas.errors import PyFaaSConfigError
from pyfaas.wire import protocol as p

from helpers import wait_until
from test_director_state import (Sim, call, connect_worker, director_config,
                                 make_cluster, routed)

parser = pytest.importorskip(
    "prometheus_client.parser",
    reason="prometheus_client is a test dependency (pip install '.[test]')")

TOKEN = b"0123456789abcdef0123456789abcdef"


def families(text):
    """``{family name: {(sample name, frozenset of labels): value}}``."""
    found = {}
    for fam in parser.text_string_to_metric_families(text):
        samples = found.setdefault(fam.name, {})
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def busy_state():
    """A state with two Workers, calls answered, one error, one eviction."""
    sim, client, workers = make_cluster(n_workers=2)
    for _ in range(4):
        call(sim, client)
    out = sim.output()
    sim.now[0] += 0.002
    for peer, frames in routed(out).items():
        for frame in frames:
            sim.send(peer, p.OK, None, b"r", rid=frame.request_id)
    call(sim, client)
    for peer, frames in routed(sim.output()).items():
        sim.send(peer, p.ERROR, {"code": "execution", "message": "x"},
                 rid=frames[0].request_id)
    for peer in workers:
        sim.send(peer, p.HEARTBEAT, {"busy": 0, "rss": 1000, "cpu": 0.5,
                                     "hits": 1, "misses": 3}, rid=0)
    extra, _ = connect_worker(sim, "w3")
    sim.state.disconnected(extra, "connection closed")
    return sim


def test_metrics_parse_with_the_values_of_the_document():
    sim = busy_state()
    doc = sim.state.status_document()

    fams = families(render(doc))

    calls = fams["pyfaas_calls"]   # (the parser drops _total from names)
    ok = sum(v for (name, labels), v in calls.items()
             if ("outcome", "ok") in labels)
    errors = sum(v for (name, labels), v in calls.items()
                 if ("outcome", "error") in labels)
    assert (ok, errors) == (4, 1)
    assert {dict(labels)["worker"] for _, labels in calls} == {"w1", "w2"}
    hist = fams["pyfaas_call_duration_seconds"]
    assert hist[("pyfaas_call_duration_seconds_count",
                 frozenset({("function", "square")}))] == 5
    buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in hist.items()
                     if n.endswith("_bucket"))
    assert buckets[-1] == (float("inf"), 5)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert fams["pyfaas_worker_evictions"][
        ("pyfaas_worker_evictions_total",
         frozenset({("reason", "disconnected")}))] == 1
    assert fams["pyfaas_workers"][
        ("pyfaas_workers", frozenset({("state", "serving")}))] == 2
    assert fams["pyfaas_cache_hits"][
        ("pyfaas_cache_hits_total", frozenset({("worker", "w1")}))] == 1
    assert fams["pyfaas_worker_resident_memory_bytes"][
        ("pyfaas_worker_resident_memory_bytes",
         frozenset({("worker", "w2")}))] == 1000
    for name in ("pyfaas_calls_in_flight", "pyfaas_pending_bytes",
                 "pyfaas_client_errors", "pyfaas_workflows",
                 "pyfaas_connections", "pyfaas_worker_restarts",
                 "pyfaas_worker_busy_threads", "pyfaas_worker_cpu_seconds",
                 "pyfaas_cache_misses", "process_start_time_seconds"):
        assert name in fams, name


def test_every_family_has_help_and_a_conventional_type():
    text = render(busy_state().state.status_document())
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
    helps = [line.split(" ")[2] for line in text.splitlines()
             if line.startswith("# HELP ")]
    assert sorted(helps) == sorted(types)
    for name, kind in types.items():
        assert kind in ("counter", "gauge", "histogram"), name
        assert name.endswith("_total") == (kind == "counter"), name
        assert name.startswith(("pyfaas_", "process_")), name


def test_label_values_are_escaped():
    sim, client, _ = make_cluster(n_workers=1, deployed=False)
    name = 'odd "name" \\ with\nnewline'
    sim.send(client, p.DEPLOY, {"name": name, "params": []}, b"code")
    out = sim.output()
    for peer, frames in out.items():
        for frame in frames:
            if frame.type == p.DEPLOY:
                sim.send(peer, p.OK, {}, rid=frame.request_id)
    sim.output()
    text = render(sim.state.status_document())
    fams = families(text)
    labels = {dict(l).get("function")
              for (_, l) in fams["pyfaas_call_duration_seconds"]}
    assert labels == {name}


# ----- the HTTP server -------------------------------------------------------

def server(token=None, **settings):
    cfg = director_config(monitoring_enabled=True,
                          monitoring_address="127.0.0.1", monitoring_port=0)
    return MonitoringServer(dataclasses.replace(cfg, **settings), token)


@pytest.fixture
def endpoint():
    """A started server on 127.0.0.1 with a document published."""
    mon = server()
    mon.publish(busy_state().state.status_document())
    mon.start()
    try:
        yield mon
    finally:
        mon.close()


def get(mon, path, method="GET", headers=None, host="127.0.0.1"):
    conn = http.client.HTTPConnection(host, mon.address[1], timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_routes_serve_the_published_document(endpoint):
    status, headers, body = get(endpoint, "/metrics")
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPE
    assert families(body.decode())["pyfaas_calls"]
    status, headers, body = get(endpoint, "/api/status")
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert sorted(w["worker_id"] for w in doc["workers"]) == ["w1", "w2"]
    status, headers, body = get(endpoint, "/")
    assert status == 200 and b"api/status" in body
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    links = re.findall(rb'(?:src|href)\s*=\s*"([^"]*)"|url\(([^)]*)\)', body)
    assert links == [(b"data:,", b"")]   # nothing fetched from elsewhere
    assert get(endpoint, "/nothing")[0] == 404


def test_a_new_document_replaces_the_old(endpoint):
    sim = Sim()
    endpoint.publish(sim.state.status_document())
    doc = json.loads(get(endpoint, "/api/status")[2])
    assert doc["workers"] == []


def test_nothing_but_get_and_head(endpoint):
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers, _ = get(endpoint, "/api/status", method)
        assert status == 405 and headers["Allow"] == "GET, HEAD", method
    status, _, body = get(endpoint, "/metrics", "HEAD")
    assert status == 200 and body == b""


def test_a_silent_connection_does_not_hold_up_the_others(endpoint):
    with socket.create_connection(("127.0.0.1", endpoint.address[1])):
        assert get(endpoint, "/metrics")[0] == 200


def test_no_document_yet_is_503():
    mon = server()
    mon.start()
    try:
        assert get(mon, "/metrics")[0] == 503
        assert get(mon, "/")[0] == 200
    finally:
        mon.close()
        mon.close()   # idempotent


def test_off_loopback_every_request_needs_the_token():
    mon = server(monitoring_address="0.0.0.0", token=TOKEN)
    mon.publish(Sim().state.status_document())
    mon.start()
    try:
        status, headers, _ = get(mon, "/metrics")
        assert status == 401 and headers["WWW-Authenticate"].startswith(
            "Basic ")
        assert get(mon, "/", headers={"Authorization": "Bearer nope"})[0] \
            == 401
        assert get(mon, "/api/status", headers={
            "Authorization": "Bearer " + TOKEN.decode()})[0] == 200
        basic = base64.b64encode(b"anyone:" + TOKEN).decode()
        assert get(mon, "/", headers={"Authorization": "Basic " + basic})[0] \
            == 200
        assert get(mon, "/metrics", "POST", headers={
            "Authorization": "Bearer " + TOKEN.decode()})[0] == 405
    finally:
        mon.close()


def test_off_loopback_without_a_token_is_refused_unless_insecure():
    with pytest.raises(PyFaaSConfigError, match=r"\[monitoring\] address: "
                       r"refusing .* 0\.0\.0\.0"):
        server(monitoring_address="0.0.0.0")
    mon = server(monitoring_address="0.0.0.0", allow_insecure=True)
    try:
        assert mon.token is None
    finally:
        mon.close()


def test_a_port_in_use_is_one_line_naming_the_section():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PyFaaSConfigError) as caught:
            server(monitoring_port=taken.getsockname()[1])
    message = str(caught.value)
    assert "[monitoring]" in message and "\n" not in message


@pytest.mark.parametrize("header, ok", [
    ("Bearer " + TOKEN.decode(), True),
    ("bearer  " + TOKEN.decode() + " ", True),
    ("Basic " + base64.b64encode(b":" + TOKEN).decode(), True),
    ("Basic " + base64.b64encode(b"user:" + TOKEN + b"x").decode(), False),
    ("Basic !!notbase64", False),
    ("Token " + TOKEN.decode(), False),
    ("", False),
    (None, False),
])
def test_token_matches(header, ok):
    assert token_matches(header, TOKEN) is ok


# ----- the benchmark's scraper (python -m pyfaas bench --monitoring) ---------

def test_the_bench_scraper_fetches_metrics_until_stopped(endpoint):
    from pyfaas.tools.bench import Scraper
    scraper = Scraper(endpoint.address[1])
    try:
        wait_until(lambda: endpoint.snapshot()._metrics is not None, 10,
                   "a scrape of /metrics")
    finally:
        result = scraper.stop()
    assert result["scrapes"] >= 1 and result["failures"] == 0
    assert scraper.stop() is result   # idempotent


def test_bench_monitoring_is_for_the_local_cluster_only(capsys):
    from pyfaas.tools.cli import main
    assert main(["bench", "--monitoring", "--config", "client.toml"]) == 2
    assert "only with the local cluster" in capsys.readouterr().err
