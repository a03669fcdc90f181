"""Fixtures for the real-process tests: local clusters that are always stopped.

``cluster``: one Director and two Workers (Round-Robin, 200 ms heartbeats)
shared by every test of a module, for ordinary operations that change
nothing a later test relies on. ``fresh_cluster``: a factory of clusters
for one test, for tests that kill, restart or signal processes. Every
process started here is stopped by its pid at teardown, even when the test
failed, and teardown checks that none is left running.
"""

import pytest

from pyfaas.tools.local_cluster import LocalCluster

HEARTBEAT_MS = 200


def pytest_configure(config):
    # Without pytest-timeout the marker would only warn; keep it quiet.
    config.addinivalue_line(
        "markers", "timeout(seconds): hard time bound (pytest-timeout)")


class TrackedCluster(LocalCluster):
    """A LocalCluster whose teardown also checks that nothing it started
    (restarted Directors, Processes a test handed to :meth:`track`) is left
    running."""

    def track(self, proc):
        """Have a Process started by the test stopped with this cluster."""
        self.started.append(proc)
        return proc

    @property
    def all_processes(self):
        return self.started

    def leftovers(self):
        return ["%s (pid %d)" % (proc.name, proc.pid)
                for proc in self.started if proc.alive()]


def _stop(cluster):
    cluster.stop()
    left = cluster.leftovers()
    assert not left, "processes still running after stop(): %s" % left


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Director and 2 Workers, Round-Robin, heartbeat 200 ms, per module."""
    c = TrackedCluster(str(tmp_path_factory.mktemp("cluster")))
    try:
        c.start(workers=2, strategy="Round-Robin", heartbeat_ms=HEARTBEAT_MS)
        yield c
    finally:
        _stop(c)


@pytest.fixture
def client(cluster):
    """A Client connected to the module's shared cluster."""
    c = cluster.client()
    try:
        yield c
    finally:
        c.close()


def _cluster_factory(tmp_path_factory, made):
    def make(workers=2, strategy="Round-Robin", start=True, token=None,
             tls=None, director_extra=None, worker_extra=None, **options):
        c = TrackedCluster(str(tmp_path_factory.mktemp("fresh")), token=token,
                           tls=tls, director_extra=director_extra,
                           worker_extra=worker_extra)
        made.append(c)
        if start:
            options.setdefault("heartbeat_ms", HEARTBEAT_MS)
            c.start(workers=workers, strategy=strategy, **options)
        return c
    return make


def _stop_all(made):
    problems = []
    for c in made:
        try:
            _stop(c)
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, problems


@pytest.fixture
def fresh_cluster(tmp_path_factory):
    """Factory of clusters owned by one test: ``fresh_cluster(workers=1, ...)``.

    Args (of the factory):
        workers: Workers to start and wait for (0 is allowed).
        strategy: the Director's worker selection strategy.
        start: False returns the cluster with nothing started (the test
            starts the Director and Workers itself).
        token, tls: as LocalCluster's (a cluster token; TLS cert and key).
        director_extra, worker_extra: extra config sections (see
            TrackedCluster).
        **options: passed to each Worker's config (e.g. ``max_threads``).

    Every cluster made is stopped at teardown.
    """
    made = []
    try:
        yield _cluster_factory(tmp_path_factory, made)
    finally:
        _stop_all(made)


@pytest.fixture(scope="module")
def module_cluster_factory(tmp_path_factory):
    """Like ``fresh_cluster``, for clusters shared by the tests of a module."""
    made = []
    try:
        yield _cluster_factory(tmp_path_factory, made)
    finally:
        _stop_all(made)
