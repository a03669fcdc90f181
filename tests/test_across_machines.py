"""Across machines: Director, Workers and clients on hosts of their own.

Each test builds its own network of hosts in Linux network namespaces
(netns_bed.py): host a runs the Director, b and c Workers, d the clients
(netns_agent.py, driven from here), r a slow relay (netns_relay.py).
Partitions set a host's link down, so packets are dropped without RST or
FIN, as when a machine vanishes. The test process opens no socket to the
hosts and every address used is inside the bed.

Skipped, with the reason, where the machine cannot make namespaces (not
root, no ``ip``); with ``PYFAAS_REQUIRE_NETNS=1`` (set by .ci/run) that is
a failure instead. Heartbeats are 300 ms, checked every 100 ms by the
Director, so a silent Worker is evicted 0.9 s after its last heartbeat; a
Worker leaves a silent Director after 3 s (the floor of its rule); an idle
connection whose peer vanished is closed by the kernel's keepalive after
about 15 s (net/keepalive.py), the longest test here. The
last test checks that every bed of the module left nothing behind and
that the module took less than MODULE_BUDGET_S.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from netns_bed import SUBNET, TestBed, namespaces, unavailable
from pyfaas import security
from pyfaas.tools.local_cluster import (client_sections, director_sections,
                                        worker_sections, write_toml)

pytestmark = pytest.mark.timeout(90)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PORT = 40000            # each host has a network stack of its own
HEARTBEAT_MS = 300
CHECK_MS = 100
EVICT_S = 3 * HEARTBEAT_MS / 1000.0
DIRECTOR_SILENCE_S = 3.0    # worker/service.py: max(3 x 0.3 s, 3 s)
MODULE_BUDGET_S = 90.0
_beds = []              # every bed made by this module, checked at the end
_started = [None]       # when the first test of the module began


@pytest.fixture(scope="module", autouse=True)
def netns_available():
    why = unavailable()
    if why is not None:
        if os.environ.get("PYFAAS_REQUIRE_NETNS"):
            pytest.fail("PYFAAS_REQUIRE_NETNS is set, but the netns test "
                        "bed cannot run here: %s" % why)
        pytest.skip("multi-host tests need network namespaces: %s" % why)


@pytest.fixture
def make_bed(tmp_path):
    """``make_bed(hosts)``: a TestBed removed at the end of the test."""
    if _started[0] is None:
        _started[0] = time.monotonic()
    made = []

    def make(hosts=("a", "b", "c", "d")):
        bed = TestBed(str(tmp_path), hosts)
        made.append(bed)
        _beds.append(bed)
        return bed
    yield make
    for bed in made:
        bed.close()
        assert bed.leftovers() == []


class Cluster:
    """Writes the configs of one cluster on a bed and starts its parts.

    Args:
        bed: the TestBed.
        token: give every part a cluster token (in a token file).
        tls: ``(cert, key)`` for the Director; the others verify it.
    """

    def __init__(self, bed, token=True, tls=None):
        self.bed = bed
        self.dir = bed.workdir
        self.tls = tls
        self.token_file = ""
        if token:
            self.token_file = os.path.join(self.dir, "token")
            with open(self.token_file, "w") as fh:
                fh.write(security.new_token() + "\n")

    def _security(self, director=False):
        sec = {"token_file": self.token_file}
        if self.tls and director:
            sec.update(tls_cert_file=self.tls[0], tls_key_file=self.tls[1])
        elif self.tls:
            sec.update(tls=True, tls_ca_file=self.tls[0])
        return sec

    def director_config(self, name="director", bind="0.0.0.0", token=True):
        sections = director_sections(self.dir, PORT, log_level="info",
                                     heartbeat_ms=HEARTBEAT_MS,
                                     director_ip_addr=bind,
                                     shutdown_grace_s=1.0)
        sections["workers"]["heartbeat_check_interval_ms"] = CHECK_MS
        sections["security"] = self._security(director=True)
        if not token:
            sections["security"]["token_file"] = ""
        return write_toml(os.path.join(self.dir, name + ".toml"), sections)

    def director(self, host="a", timeout=10.0):
        """Start the Director on ``host``; return it once it listens."""
        proc = self.bed.pyfaas(host, "director",
                               ["director", self.director_config()])
        deadline = time.monotonic() + timeout
        while "PyFaaS director listening on" not in proc.output():
            assert proc.alive() and time.monotonic() < deadline, \
                "the director did not start:\n" + proc.output()[-3000:]
            time.sleep(0.02)
        return proc

    def worker(self, host, director_addr):
        name = "worker-" + host
        sections = worker_sections(self.dir, name, PORT,
                                   heartbeat_ms=HEARTBEAT_MS)
        sections["network"]["director_ip_addr"] = director_addr
        sections["security"] = self._security()
        path = write_toml(os.path.join(self.dir, name + ".toml"), sections)
        return self.bed.pyfaas(host, name, ["worker", path])

    def client_config(self, name, director_addr, timeout=10.0, token=True):
        sections = client_sections(PORT, timeout)
        sections["network"]["director_ip_addr"] = director_addr
        sections["security"] = self._security()
        if not token:
            sections["security"]["token_file"] = ""
        return write_toml(os.path.join(self.dir, name + ".toml"), sections)


def start(bed, workers=("b", "c"), token=True, tls=None, timeout=10.0):
    """Director on a, Workers on ``workers``, an agent on d; returns
    ``(cluster, agent, client config)`` once the Workers are registered."""
    cluster = Cluster(bed, token, tls)
    cluster.director("a")
    for host in workers:
        cluster.worker(host, bed.ip("a"))
    agent = bed.agent("d")
    config = cluster.client_config("client", bed.ip("a"), timeout)
    agent("wait_for_workers", config, count=len(workers), timeout=15)
    return cluster, agent, config


def hosts_of(agent, config, bed):
    """``{host name: worker}`` of the Workers the Director lists."""
    by_ip = {bed.ip(h): h for h in bed.hosts}
    return {by_ip[w["addr"].rsplit(":", 1)[0]]: w
            for w in agent("workers", config)}


def outcome(answer):
    """``(value or error class name, seconds it took)`` of an answer."""
    what = answer["value"] if answer["ok"] else answer["error"]
    return what, answer["t1"] - answer["t0"]


def keepalive_everywhere(bed, host, seen):
    """True once each connection of ``host`` showed a keepalive timer
    (``seen``: what earlier looks found, by connection)."""
    lines = bed.sockets(host, PORT)
    for line in lines:
        ends = tuple(line.split()[2:4])
        seen[ends] = seen.get(ends) or "timer:(keepalive" in line
    return lines and all(seen[tuple(line.split()[2:4])] for line in lines)


def wait_until(predicate, timeout, message):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


# ----- one cluster across four hosts -----------------------------------------

def test_a_director_on_all_addresses_with_a_token_serves_other_hosts(make_bed):
    bed = make_bed()
    cluster, agent, config = start(bed)
    agent("register", config, names=["where", "add", "multiply", "divide"])
    assert sorted(agent("call", config, name="where") for _ in range(4)) == \
        ["b", "b", "c", "c"]
    # The Director sees each Worker from its own host's address.
    assert sorted(hosts_of(agent, config, bed)) == ["b", "c"]
    assert agent("chain", config, path=os.path.join(ROOT, "examples",
                                                    "chain.json")) == 106.6
    status = bed.run("d", [sys.executable, "-m", "pyfaas", "status",
                           "--config", config, "--json"])
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert sorted(w["addr"].rsplit(":", 1)[0] for w in shown["workers"]) == \
        [bed.ip("b"), bed.ip("c")]
    assert {f["name"] for f in shown["functions"]} >= {"add", "divide"}

    # Without the token, a client from another host is turned away.
    no_token = cluster.client_config("no-token", bed.ip("a"), token=False)
    answer = agent.result(agent.start("ping", no_token))
    assert answer["error"] == "PyFaaSTokenMissingError", answer
    # Every connection, at both ends, has keepalive (net/keepalive.py):
    # ss shows its timer whenever no retransmission timer runs instead.
    seen = {}
    for host in "abcd":
        wait_until(lambda: keepalive_everywhere(bed, host, seen), 5,
                   "no keepalive: %s" % bed.sockets(host, PORT))
    # Protected mode: the same bind without a token is refused at start.
    refused = bed.run("a", [sys.executable, "-m", "pyfaas", "director",
                            cluster.director_config("open", token=False)])
    assert refused.returncode == 2, refused
    assert "refusing to listen on 0.0.0.0 without a cluster token" in \
        refused.stderr
    assert agent("call", config, name="add", args=[1, 2]) == 15


# ----- TLS checked against an address, and a name ----------------------------

@pytest.fixture
def certificate(tmp_path):
    """``make(ip) -> (cert, key)``: a self-signed certificate for ``ip``
    and DNS:director.pyfaas.test, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a "
                    "certificate for the TLS test")

    def make(ip):
        cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
        done = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", key, "-out", cert, "-days", "2", "-subj",
             "/CN=director.pyfaas.test", "-addext",
             "subjectAltName=IP:%s,DNS:director.pyfaas.test" % ip],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, timeout=60)
        if done.returncode != 0:
            pytest.skip("openssl could not make a certificate: %s"
                        % done.stderr.decode(errors="replace"))
        return cert, key
    return make


def test_tls_by_address_and_by_name_and_a_name_not_in_the_certificate(
        make_bed, certificate):
    bed = make_bed(("a", "b", "d"))
    other = bed.add_address("a", 11)          # a's, not in the certificate
    bed.hosts_file("d", {"director.pyfaas.test": bed.ip("a"),
                         "alias.pyfaas.test": bed.ip("a")})
    cluster, agent, by_ip = start(bed, workers=("b",),
                                  tls=certificate(bed.ip("a")))
    by_name = cluster.client_config("by-name", "director.pyfaas.test")
    agent("register", by_ip, names=["where"])
    assert agent("call", by_ip, name="where") == "b"
    assert agent("call", by_name, name="where") == "b"
    for wrong in (other, "alias.pyfaas.test"):
        config = cluster.client_config("wrong", wrong)
        answer = agent.result(agent.start("ping", config))
        assert "PyFaaSNetworkError" in answer["kinds"], answer
        message = answer["message"]
        assert "TLS handshake with director %s:%d failed" % (wrong, PORT) \
            in message, message
        assert "certificate does not name %s" % wrong in message, message
        assert "subjectAltName" in message, message
        agent("close", config)
    assert agent("call", by_name, name="where") == "b"


# ----- partitions ------------------------------------------------------------

def test_a_cut_off_worker_is_lost_in_three_heartbeats_and_comes_back(make_bed):
    bed = make_bed()
    cluster, agent, config = start(bed)
    agent("register", config, names=["where", "nap"])
    workers = hosts_of(agent, config, bed)
    # Round-Robin: two of the four calls run on b, two on c.
    naps = [agent.start("call", config, name="nap", args=[2.5])
            for _ in range(4)]
    wait_until(lambda: all(w["inflight"] == 2 for w in
                           agent("workers", config)), 5, "calls not running")
    cut = time.monotonic()
    bed.partition("b")
    results = [agent.result(rid) for rid in naps]
    lost = [a["t1"] - cut for a in results if not a["ok"]]
    assert sorted(outcome(a)[0] for a in results) == \
        ["PyFaaSWorkerLostError"] * 2 + ["c"] * 2, results
    assert max(lost) < EVICT_S + CHECK_MS / 1000.0 + 0.3, lost
    # Meanwhile c serves every call.
    assert [agent("call", config, name="where") for _ in range(4)] == \
        ["c"] * 4
    healed = time.monotonic()
    bed.heal("b")
    back = wait_until(lambda: hosts_of(agent, config, bed).get("b"), 10,
                      "the Worker on b did not register again")
    again = time.monotonic() - healed
    # The same process, under the same id: it was never restarted.
    assert (back["pid"], back["worker_id"]) == \
        (workers["b"]["pid"], workers["b"]["worker_id"])
    assert again < 3.0, again
    print("worker lost after %.2f s; registered again %.2f s after the link "
          "came back" % (max(lost), again))
    assert sorted(agent("call", config, name="where") for _ in range(4)) == \
        ["b", "b", "c", "c"]


def test_a_cut_off_director_is_noticed_and_everyone_reconnects(make_bed):
    bed = make_bed()
    cluster, agent, config = start(bed, timeout=2.0)
    agent("register", config, names=["where", "nap"])
    workers = hosts_of(agent, config, bed)
    running = agent.start("call", config, name="nap", args=[8])
    wait_until(lambda: any(w["inflight"] for w in agent("workers", config)),
               5, "the call did not start")
    cut = time.monotonic()
    bed.partition("a")
    during = agent.result(agent.start("call", config, name="where"))
    # Both calls fail with a typed error at the client's timeout (2 s).
    for answer in (agent.result(running), during):
        what, took = outcome(answer)
        assert what == "PyFaaSTimeoutError" and 2.0 <= took < 2.5, answer
    # The Workers notice the silence and leave their connections.
    for host in "bc":
        wait_until(lambda: not bed.sockets(host, PORT), 6,
                   "the Worker on %s kept its connection" % host)
    noticed = time.monotonic() - cut
    # (its last answer came at most one heartbeat before the cut)
    assert DIRECTOR_SILENCE_S - HEARTBEAT_MS / 1000.0 <= noticed < \
        DIRECTOR_SILENCE_S + 1.0, noticed
    for host in "bc":
        assert "sent nothing for" in bed.named("worker-" + host).output()
    healed = time.monotonic()
    bed.heal("a")
    # The same client object: its connection lived on, and its next
    # request goes through once TCP sends again (its retransmission timer
    # has backed off meanwhile: up to a few seconds here).
    def served():
        answer = agent.result(agent.start("call", config, name="where",
                                          timeout=8.0))
        # (typed errors only: it may come before the Workers are back)
        assert answer["ok"] or answer["error"] == "PyFaaSNoWorkersError", \
            answer
        return answer["ok"]
    wait_until(served, 15, "no call went through")
    resumed = time.monotonic() - healed
    wait_until(lambda: len(agent("workers", config)) == 2, 10,
               "the Workers did not register again")
    again = time.monotonic() - healed
    assert again < 8.0, again
    print("workers left the silent director %.2f s after the cut; after the "
          "link came back, the client resumed in %.2f s, all were back in "
          "%.2f s" % (noticed, resumed, again))
    back = hosts_of(agent, config, bed)
    assert {h: w["pid"] for h, w in back.items()} == \
        {h: w["pid"] for h, w in workers.items()}
    assert sorted(agent("call", config, name="where") for _ in range(4)) == \
        ["b", "b", "c", "c"]


KEEPALIVE_S = 15.0      # net/keepalive.py: 5 s idle, then 2 probes 5 s apart


def test_a_client_cut_off_past_keepalive_is_dropped_and_connects_again(
        make_bed):
    bed = make_bed(("a", "b", "d"))
    cluster, agent, config = start(bed, workers=("b",))
    agent("register", config, names=["where"])
    assert agent("call", config, name="where") == "b"

    def client_connections():
        return [line for line in bed.sockets("a", PORT)
                if " %s:" % bed.ip("d") in line]
    # Idle: the last reply acknowledged (keepalive does not probe while
    # data waits for its ACK: see docs/across-machines.md).
    wait_until(lambda: all("keepalive" in line
                           for line in client_connections()), 5,
               "the client's connection did not go idle")
    cut = time.monotonic()
    bed.partition("d")
    # Nothing is sent on an idle connection: only keepalive reveals that
    # its peer is gone, at both ends.
    wait_until(lambda: not client_connections(), KEEPALIVE_S + 8,
               "the director kept the connection of a vanished client")
    dropped = time.monotonic() - cut
    wait_until(lambda: not bed.sockets("d", PORT), 8,
               "the client kept its connection to a vanished director")
    assert KEEPALIVE_S - 1.0 < dropped < KEEPALIVE_S + 3.0, dropped
    bed.heal("d")
    # The same client object connects again by itself.
    assert agent("call", config, name="where") == "b"
    print("the director dropped a vanished idle client after %.1f s"
          % dropped)


# ----- a slow link -----------------------------------------------------------

RATE = 1.5e6            # bytes per second, each way
DELAY_S = 0.05          # each way
BIG = 5 * 1000 * 1000   # 3.3 s each way: longer than any liveness limit


def test_a_slow_link_carries_large_frames_whole_and_timeouts_fire_on_time(
        make_bed):
    bed = make_bed(("a", "b", "d", "r"))
    relay = bed.start("r", "relay", [
        sys.executable, os.path.join(HERE, "netns_relay.py"),
        "%s:%d" % (bed.ip("r"), PORT), "%s:%d" % (bed.ip("a"), PORT),
        str(DELAY_S), str(RATE)])
    wait_until(lambda: "relay listening" in relay.output(), 10,
               "the relay did not start: " + relay.output())
    cluster = Cluster(bed)
    director = cluster.director("a")
    cluster.worker("b", bed.ip("r"))          # b reaches a through r only
    agent = bed.agent("d")
    config = cluster.client_config("client", bed.ip("a"), timeout=20.0)
    agent("wait_for_workers", config, count=1, timeout=15)
    agent("register", config, names=["where", "nap", "echo", "digest"])
    (before,) = agent("workers", config)

    # 5 MB to the Worker and back, each way longer than the Director's
    # 0.9 s eviction limit and the Worker's 3 s: the bytes arriving keep
    # both sides sure of each other.
    echoed = agent.result(agent.start("echo", config, size=BIG), 60)
    assert echoed["ok"] and echoed["value"]["same"], echoed
    assert echoed["value"]["size"] == BIG
    took = echoed["t1"] - echoed["t0"]
    assert took > 2 * BIG / RATE * 0.9, took   # the link was really slow
    (after,) = agent("workers", config)
    assert (after["worker_id"], after["pid"]) == \
        (before["worker_id"], before["pid"])
    assert "removed" not in director.output()

    # A call's timeout fires on time: the Worker's own limit ...
    answer = agent.result(agent.start("call", config, name="nap", args=[5],
                                      timeout=1.0))
    what, took = outcome(answer)
    assert what == "PyFaaSTimeoutError" and 1.0 <= took < 1.6, answer
    # ... and the client's, while the argument is still on its way.
    answer = agent.result(agent.start("digest", config, size=BIG // 2,
                                      timeout=1.0))
    what, took = outcome(answer)
    assert what == "PyFaaSTimeoutError" and 1.0 <= took < 1.6, answer
    print("5 MB echoed in %.1f s over %.1f MB/s" % (
        echoed["t1"] - echoed["t0"], RATE / 1e6))
    assert agent("call", config, name="where") == "b"


# ----- the bed itself --------------------------------------------------------

def test_the_bed_keeps_traffic_inside_and_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError, match="a test failed"):
        with TestBed(str(tmp_path), ("a", "b")) as bed:
            _beds.append(bed)
            for host in bed.hosts:
                # Only the bed's subnet, through its own link: no default
                # route, so no address outside the bed can be reached.
                assert bed.links(host) == ["eth0", "lo"]
                assert bed.routes(host) == [(SUBNET, "eth0")]
            # Each leaves a child behind when stopped, as a Worker's
            # process pool might: only its namespace still knows it.
            sleepers = [bed.start(h, "sleeper-" + h, [
                sys.executable, "-c", "import subprocess, time; "
                "subprocess.Popen(['sleep', '60']); "
                "print('ready', flush=True); time.sleep(60)"])
                for h in bed.hosts]
            for sleeper in sleepers:
                wait_until(lambda: "ready" in sleeper.output(), 10,
                           "the sleeper did not start")
            bed.hosts_file("a", {"somewhere.pyfaas.test": bed.ip("b")})
            bed.partition("b")
            raise RuntimeError("a test failed")
    assert bed.leftovers() == []
    assert all(not s.alive() for s in sleepers)
    assert len(bed.strays) >= 2  # the children, found and killed
    assert not set(bed.made) & namespaces()


def test_every_bed_of_this_module_is_gone_and_the_module_was_quick():
    left = [what for bed in _beds for what in bed.leftovers()]
    assert left == [], left
    assert not [name for name in namespaces()
                if any(name.startswith(bed.prefix) for bed in _beds)]
    if _started[0] is not None:
        took = time.monotonic() - _started[0]
        assert took < MODULE_BUDGET_S, took
