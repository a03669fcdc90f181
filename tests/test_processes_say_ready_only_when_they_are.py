"""A Director and a Worker say they are ready only when they are.

A Worker prints that it waits for its Director, and its greeting and
"ready" only once it has registered (pointed at a port where nobody
listens yet, it says nothing of the kind while it retries); a Director
prints its greeting once it listens.
"""

import socket

import pytest

from helpers import reserve_port, wait_until
from pyfaas.tools.local_cluster import Process, director_sections, write_toml

pytestmark = pytest.mark.timeout(60)


def test_a_worker_is_ready_only_once_registered(fresh_cluster):
    cluster = fresh_cluster(start=False)
    port = reserve_port()
    worker = cluster.start_worker(port=port)
    wait_until(lambda: b"waiting for the director at 127.0.0.1:%d" % port
               in worker.output(), 10, worker.output)
    # It retries against a port with nobody behind it: not ready, no
    # greeting, however long we look.
    wait_until(lambda: worker.output().count(b"not available") >= 3, 10,
               worker.output)
    assert b"ready" not in worker.output()
    assert b"(local cluster)" not in worker.output()  # its greeting_msg

    cluster.start_director(port=port)
    wait_until(lambda: b"ready: registered with the director at "
               b"127.0.0.1:%d" % port in worker.output(), 15, worker.output)
    out = worker.output()
    assert out.index(b"waiting for the director") < out.index(
        b"(local cluster)") < out.index(b"ready: registered")


def test_a_director_greets_once_it_listens(fresh_cluster, tmp_path):
    cluster = fresh_cluster(start=False)  # stops what the test tracks
    port = reserve_port()
    path = write_toml(str(tmp_path / "director.toml"),
                      director_sections(str(tmp_path), port))
    director = cluster.track(Process("director", ["director", path],
                                     str(tmp_path)))
    wait_until(lambda: b"PyFaaS director (local cluster)" in
               director.output(), 15, director.output)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # accepted: it listened before it greeted
