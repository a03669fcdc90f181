"""Real processes: floods of bytes and of sockets leave the cluster serving.

- Arguments in flight to a Worker stay within its byte budget
  (``max_inflight_bytes``): a flood of 1 MiB calls gets overloaded errors,
  and the Worker's memory stays bounded.
- Sockets that connect and never say anything only ever crowd out each
  other: with a Director out of file descriptors (``ulimit -n 64``, set
  with ``resource.setrlimit`` in its process), with ``max_connections``
  taken, or with 1,000 of them at a common default limit (1,024), a
  legitimate client is served within a second, and the Director neither
  spins nor floods its log.

Every process is started by the test's cluster and stopped by pid; every
socket the test opens is closed at its end.
"""

import contextlib
import os
import socket
import time

import pytest

from helpers import HOST
from pyfaas.errors import PyFaaSOverloadedError

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024


def echo_size(data):
    import time
    time.sleep(0.01)
    return len(data)


def whoami():
    return os.getpid()


def _status(pid, field):
    """A ``/proc/PID/status`` figure in kB (VmRSS, VmHWM)."""
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


def _cpu_s(pid):
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def idle_sockets(port, count):
    """``count`` connections to the Director that never send a byte."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.settimeout(5)
            sock.connect((HOST, port))
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _served_in(cl):
    """Seconds a brand-new client takes to connect, ping and call."""
    start = time.monotonic()
    with cl.client(timeout=10) as client:
        client.ping()
        assert client.call("whoami") in cl.workers["worker1"].worker_pids() \
            + [cl.workers["worker1"].pid]
    return time.monotonic() - start


def test_a_flood_of_large_arguments_stays_within_the_worker_budget(
        fresh_cluster):
    cl = fresh_cluster(workers=1, max_threads=2,
                       max_inflight_bytes=32 * MIB)
    client = cl.client()
    client.register(echo_size)
    pid = cl.workers["worker1"].pid
    before = _status(pid, "VmRSS")
    arg = b"x" * MIB
    futures = [client.exec_async("echo_size", [arg]) for _ in range(300)]
    done = refused = 0
    for future in futures:
        try:
            assert future.result(timeout=30) == MIB
            done += 1
        except PyFaaSOverloadedError as exc:
            assert "max_inflight_bytes" in str(exc)
            refused += 1
    grown_mib = (_status(pid, "VmHWM") - before) / 1024.0
    print("worker RSS grew by %.0f MiB under 300 MiB of arguments (32 MiB "
          "budget); %d done, %d refused" % (grown_mib, done, refused))
    assert done >= 32 and refused
    assert grown_mib < 32 + 64
    assert client.call("echo_size", b"ok") == 2


def test_out_of_file_descriptors_the_director_neither_spins_nor_refuses(
        fresh_cluster):
    cl = fresh_cluster(start=False)
    cl.start_director(open_files=64)
    cl.start_worker()
    cl.wait_for_workers(1)
    with cl.client() as client:
        client.register(whoami)
    director = cl.director.pid
    with idle_sockets(cl.port, 150):
        cpu = _cpu_s(director)
        took = _served_in(cl)
        time.sleep(1.0)  # (a measurement window, not a wait)
        busy = _cpu_s(director) - cpu - took
    log = os.path.join(cl.workdir, "logs", "director.log")
    print("ulimit -n 64, 150 idle sockets: served in %.3f s; director CPU "
          "%.2f s in the next second; log %d bytes" % (took, busy,
                                                      os.path.getsize(log)))
    assert took < 1.0
    assert busy < 0.3
    assert os.path.getsize(log) < 100000


def test_idle_unauthenticated_sockets_never_crowd_out_real_clients(
        fresh_cluster):
    cl = fresh_cluster(start=False)
    cl.start_director(max_connections=120)
    cl.start_worker()
    cl.wait_for_workers(1)
    with cl.client() as client:
        client.register(whoami)
    clients = []
    try:
        with idle_sockets(cl.port, 130):
            for _ in range(30):
                client = cl.client(timeout=5)
                client.ping()
                clients.append(client)
            assert len(clients) == 30
    finally:
        for client in clients:
            client.close()


def test_a_client_is_served_within_a_second_past_1000_idle_sockets(
        fresh_cluster):
    cl = fresh_cluster(start=False)
    cl.start_director(open_files=1024)
    cl.start_worker()
    cl.wait_for_workers(1)
    with cl.client() as client:
        client.register(whoami)
    with idle_sockets(cl.port, 1000):
        took = _served_in(cl)
    print("1000 idle sockets: a new client served in %.3f s" % took)
    assert took < 1.0
