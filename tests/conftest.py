"""Fixtures for the real-process tests: local clusters that are always stopped.

``cluster``: one Director and two Workers (Round-Robin, 200 ms heartbeats)
shared by every test of a module, for ordinary operations that change
nothing a later test relies on. ``fresh_cluster``: a factory of clusters
for one test, for tests that kill, restart or signal processes. Every
process started here is stopped by its pid at teardown, even when the test
failed, and teardown checks that none is left running.
"""

import os
import time

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

from pyfaas.errors import PyFaaSError
from pyfaas.local_cluster import (_LISTENING, LocalCluster, Process,
                                  director_sections, write_toml)

HEARTBEAT_MS = 200


def pytest_configure(config):
    # Without pytest-timeout the marker would only warn; keep it quiet.
    config.addinivalue_line(
        "markers", "timeout(seconds): hard time bound (pytest-timeout)")


class TrackedCluster(LocalCluster):
    """A LocalCluster that remembers every Director it started.

    ``LocalCluster.start_director`` replaces ``self.director``; a test that
    restarts the Director must not be able to leak the first one.

    Args (besides LocalCluster's):
        director_extra, worker_extra: ``{section: {key: value}}`` merged
            into every Director / Worker config this cluster writes, for
            keys ``start_director`` / ``start_worker`` options cannot
            express (``[security] handshake_timeout_s``, a Worker's
            ``[network] max_frame_bytes``).
    """

    def __init__(self, *args, director_extra=None, worker_extra=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.all_processes = []
        self.director_extra = director_extra or {}
        self.worker_extra = worker_extra or {}

    def start_director(self, *args, **kwargs):
        try:
            if self.director_extra:
                return self._start_director_extra(*args, **kwargs)
            return super().start_director(*args, **kwargs)
        finally:
            if self.director is not None and \
                    self.director not in self.all_processes:
                self.all_processes.append(self.director)

    def _start_director_extra(self, timeout=10.0, port=0, **options):
        # LocalCluster.start_director with extra sections merged in.
        sections = director_sections(self.workdir, port, **options)
        if self.tls:
            sections["security"] = {"tls_cert_file": self.tls[0],
                                    "tls_key_file": self.tls[1]}
        _merge(sections, self.director_extra)
        path = write_toml(os.path.join(self.workdir, "director.toml"),
                          sections)
        self.director = Process("director", ["director", path], self.workdir,
                                self.env)
        deadline = time.monotonic() + timeout
        while True:
            match = _LISTENING.search(self.director.output())
            if match:
                self.port = int(match.group(1))
                return self.port
            if not self.director.alive() or time.monotonic() > deadline:
                raise PyFaaSError("director did not start: %s" % (
                    self.director.output().decode(errors="replace")[-2000:]))
            time.sleep(0.01)

    def worker_config(self, *args, **kwargs):
        name, path = super().worker_config(*args, **kwargs)
        if self.worker_extra:
            with open(path, "rb") as fh:
                sections = tomllib.load(fh)
            _merge(sections, self.worker_extra)
            # write_toml writes flat sections: "behavior.caching" is nested
            # by tomllib and must be flattened again.
            flat = {}
            for section, keys in sections.items():
                plain = {k: v for k, v in keys.items()
                         if not isinstance(v, dict)}
                flat[section] = plain
                for sub, subkeys in keys.items():
                    if isinstance(subkeys, dict):
                        flat["%s.%s" % (section, sub)] = subkeys
            write_toml(path, flat)
        return name, path

    def start_worker(self, *args, **kwargs):
        proc = super().start_worker(*args, **kwargs)
        self.all_processes.append(proc)
        return proc

    def track(self, proc):
        """Have a Process started by the test stopped with this cluster."""
        self.all_processes.append(proc)
        return proc

    def stop(self):
        codes = super().stop()
        for proc in self.all_processes:
            proc.stop()
        return codes

    def leftovers(self):
        return ["%s (pid %d)" % (proc.name, proc.pid)
                for proc in self.all_processes if proc.alive()]


def _merge(sections, extra):
    for section, keys in extra.items():
        sections.setdefault(section, {}).update(keys)


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
