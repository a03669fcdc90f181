"""A Director and Workers run as local subprocesses on 127.0.0.1.

Owns writing their TOML files into a working directory, starting them with
``python -m pyfaas``, waiting until they serve, and stopping every process it
started, by pid, always. Used by ``python -m pyfaas demo``, the benchmark and
the integration tests. It only ever binds and connects to 127.0.0.1.

Its Workers run without a supervisor unless asked (``supervise=True``), so
that a Worker's process is the one started (tests signal it and compare
pids); its Director has no start-up grace unless asked
(``startup_grace_ms``), so that a call of an unknown function fails at once.
A supervised Worker's Process also stops the Worker processes its
supervisor started (:meth:`Process.worker_pids`).
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from ..client.client import Client
from ..errors import PyFaaSError, PyFaaSTimeoutError

HOST = "127.0.0.1"
_LISTENING = re.compile(rb"PyFaaS director listening on [\d.]+:(\d+)")
_MONITORING = re.compile(rb"PyFaaS director monitoring on http://[^:]+:(\d+)/")


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"%s"' % str(value).replace("\\", "\\\\").replace('"', '\\"')


def write_toml(path, sections):
    """Write ``{section: {key: value}}`` as a TOML file."""
    lines = []
    for section, keys in sections.items():
        lines.append("[%s]" % section)
        lines.extend("%s = %s" % (k, _toml_value(v)) for k, v in keys.items())
        lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


def director_sections(workdir, port=0, strategy="Round-Robin", log_level="info",
                      heartbeat_ms=200, statistics=True, startup_grace_ms=0,
                      **network):
    net = {"director_ip_addr": HOST, "director_port": port}
    net.update(network)
    return {
        "network": net,
        "logging": {"log_level": log_level,
                    "log_directory": os.path.join(workdir, "logs"),
                    "log_filename": "director.log"},
        "statistics": {"enabled": statistics},
        "workers": {"heartbeat_check_interval_ms": heartbeat_ms,
                    "expected_heartbeat_interval_ms": heartbeat_ms,
                    "worker_selection_strategy": strategy,
                    "startup_grace_ms": startup_grace_ms},
        "misc": {"greeting_msg": "PyFaaS director (local cluster)"},
    }


def worker_sections(workdir, name, port, log_level="info", heartbeat_ms=200,
                    statistics=True, persistence=False, cache_size=16,
                    supervise=False, **behavior):
    beh = {"dump_file": os.path.join(workdir, name + ".dump"),
           "shutdown_persistence": persistence, "supervise": supervise}
    beh.update(behavior)
    return {
        "network": {"director_ip_addr": HOST, "director_port": port,
                    "heartbeat_interval_ms": heartbeat_ms},
        "statistics": {"enabled": statistics},
        "logging": {"log_level": log_level,
                    "log_directory": os.path.join(workdir, "logs"),
                    "log_filename": name + ".log"},
        "behavior": beh,
        "behavior.caching": {"policy": "LRU", "max_size": cache_size},
        "misc": {"greeting_msg": "PyFaaS worker %s (local cluster)" % name},
    }


def client_sections(port, timeout=20.0):
    return {"network": {"director_ip_addr": HOST, "director_port": port,
                        "receive_timeout_s": timeout},
            "misc": {"log_level": ""}}


def _merge(sections, extra):
    for section, keys in extra.items():
        sections.setdefault(section, {}).update(keys)


_SUPERVISED = re.compile(rb"started worker pid (\d+)")


def _is_ours(pid):
    """True if ``pid`` runs (and, where /proc tells, runs pyfaas)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return b"pyfaas" in fh.read()
    except OSError:
        return True


def _limit_open_files(count):
    """A function for ``preexec_fn``: at most ``count`` file descriptors."""
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
    return limit


class Process:
    """A started ``python -m pyfaas`` process and its output file.

    ``open_files``: its limit of file descriptors (``ulimit -n``), or None
    for this process's own.
    """

    def __init__(self, name, args, workdir, env=None, open_files=None):
        self.name = name
        self.output_path = os.path.join(workdir, name + ".out")
        self._out = open(self.output_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "pyfaas"] + list(args), stdout=self._out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
            preexec_fn=_limit_open_files(open_files) if open_files else None)
        self.pid = self.popen.pid

    def output(self):
        with open(self.output_path, "rb") as fh:
            return fh.read()

    def alive(self):
        return self.popen.poll() is None

    def worker_pids(self):
        """Pids of the Worker processes a supervisor started, in order
        (empty for any other process)."""
        return [int(m) for m in _SUPERVISED.findall(self.output())]

    def _stop_orphans(self, timeout):
        """A supervisor's Workers stop with it; kill any still running after
        ``timeout`` (its supervisor was killed, say)."""
        pids = set(self.worker_pids())
        deadline = time.monotonic() + timeout
        while pids:
            pids = {pid for pid in pids if _is_ours(pid)}
            if pids and time.monotonic() > deadline:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.01)

    def signal(self, signum):
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout):
        return self.popen.wait(timeout)

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after ``timeout``; return the exit code."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGCONT)  # a stopped one must wake
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout)
            except ProcessLookupError:
                pass
        self._stop_orphans(timeout)
        self._out.close()
        return self.popen.returncode


class LocalCluster:
    """Start and stop a Director and Workers on 127.0.0.1.

    Args:
        workdir: directory for configs, logs and outputs (default: a new
            temporary directory).
        env: extra environment variables for the processes.
        token: a cluster token for every process and client (passed to the
            processes as ``$PYFAAS_TOKEN``); None runs without one.
        tls: ``(cert_file, key_file)`` of a certificate for 127.0.0.1: the
            Director serves TLS and everyone verifies it with that file.
        director_extra, worker_extra: ``{section: {key: value}}`` merged
            into every Director / Worker config written, for keys the
            start options do not cover.
    """

    def __init__(self, workdir=None, env=None, token=None, tls=None,
                 director_extra=None, worker_extra=None):
        self.workdir = workdir or tempfile.mkdtemp(prefix="pyfaas-")
        self.token = token
        self.tls = tls
        self.director_extra = director_extra or {}
        self.worker_extra = worker_extra or {}
        self.started = []         # every Process started, restarted ones too
        self.env = dict(env or {})
        if token is not None:
            self.env["PYFAAS_TOKEN"] = token
        self.director = None
        self.port = None
        self.monitoring_port = None   # with [monitoring] enabled = true
        self.workers = {}
        self._clients = []
        self._n = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start_director(self, timeout=10.0, port=0, open_files=None,
                       **options):
        """Start the Director (``open_files``: its ``ulimit -n``); return
        its port once it listens."""
        sections = director_sections(self.workdir, port, **options)
        if self.tls:
            sections["security"] = {"tls_cert_file": self.tls[0],
                                    "tls_key_file": self.tls[1]}
        _merge(sections, self.director_extra)
        path = write_toml(os.path.join(self.workdir, "director.toml"),
                          sections)
        self.director = Process("director", ["director", path], self.workdir,
                                self.env, open_files)
        self.started.append(self.director)
        deadline = time.monotonic() + timeout
        while True:
            output = self.director.output()
            match = _LISTENING.search(output)
            if match:
                self.port = int(match.group(1))
                # (printed before the "listening" line)
                found = _MONITORING.search(output)
                self.monitoring_port = int(found.group(1)) if found else None
                return self.port
            if not self.director.alive() or time.monotonic() > deadline:
                raise PyFaaSError("director did not start: %s" % (
                    self.director.output().decode(errors="replace")[-2000:]))
            time.sleep(0.01)

    def worker_config(self, name=None, port=None, **options):
        """Write a Worker config; return ``(name, path)``."""
        if name is None:
            self._n += 1
            name = "worker%d" % self._n
        sections = worker_sections(self.workdir, name, port or self.port,
                                   **options)
        if self.tls:
            sections["security"] = {"tls": True, "tls_ca_file": self.tls[0]}
        _merge(sections, self.worker_extra)
        path = write_toml(os.path.join(self.workdir, name + ".toml"),
                          sections)
        return name, path

    def start_worker(self, name=None, port=None, **options):
        """Start one Worker process (it registers by itself); return it."""
        name, path = self.worker_config(name, port, **options)
        proc = Process(name, ["worker", path], self.workdir, self.env)
        self.workers[name] = proc
        self.started.append(proc)
        return proc

    def client_config(self, timeout=20.0):
        """Write a client config for this cluster; return its path."""
        sections = client_sections(self.port, timeout)
        if self.tls:
            sections["security"] = {"tls": True, "tls_ca_file": self.tls[0]}
        return write_toml(os.path.join(self.workdir, "client.toml"), sections)

    def client(self, timeout=20.0):
        """A new Client for this cluster (closed by :meth:`stop`)."""
        client = Client("127.0.0.1", self.port, timeout, token=self.token,
                        **self._tls_args())
        self._clients.append(client)
        return client

    def _tls_args(self):
        return {"tls": True, "tls_ca_file": self.tls[0]} if self.tls else {}

    def wait_for_workers(self, count, timeout=15.0):
        """Block until ``count`` Workers are registered; return their ids."""
        with Client("127.0.0.1", self.port, timeout, token=self.token,
                    **self._tls_args()) as client:
            return client.wait_for_workers(count, timeout)

    def start(self, workers=2, strategy="Round-Robin", timeout=15.0, **options):
        """Director plus ``workers`` Workers, all serving; returns self."""
        self.start_director(strategy=strategy)
        for _ in range(workers):
            self.start_worker(**options)
        if workers:
            try:
                self.wait_for_workers(workers, timeout)
            except PyFaaSTimeoutError:
                raise PyFaaSError("workers did not register: %s" % "\n".join(
                    w.output().decode(errors="replace")[-1000:]
                    for w in self.workers.values()))
        return self

    def stop(self):
        """Stop every process this cluster started, by pid. Idempotent."""
        for client in self._clients:
            client.close()
        self._clients = []
        codes = {}
        for name, proc in list(self.workers.items()):
            codes[name] = proc.stop()
        if self.director is not None:
            codes["director"] = self.director.stop()
        for proc in self.started:  # replaced Directors and Workers too
            proc.stop()
        return codes
