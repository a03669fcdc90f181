"""``python -m pyfaas bench``: how quick PyFaaS is on this machine.

Owns the benchmark: it starts a local Director and N Workers (or targets an
existing Director with ``--config``), then measures synchronous no-op
latency (p50/p99, calls/s), asynchronous throughput of no-op calls, the
round trip of a 1 MiB argument returned back, cluster start time to first
result, and the resident memory of the Director and Workers. In the same
run it measures the two-hop raw-socket floor (client -> stdlib relay ->
echo server, see :mod:`pyfaas.tools.bench_floor`) with the same frame sizes, in
blocks taking turns with PyFaaS's so that both see the same machine, and
prints each PyFaaS figure beside it as a ratio. With ``--monitoring`` the
local Director runs with its monitoring endpoint on, and a thread scrapes
``/metrics`` every second for the whole run (what that costs the calls).
Only 127.0.0.1 is used.
"""

import json
import os
import shutil
import subprocess
import sys
import time

from . import bench_floor
from ..client.client import Client
from ..errors import PyFaaSConfigError, PyFaaSError
from .local_cluster import LocalCluster

MIB = 1024 * 1024


def _noop():
    return None


def _noop1(_):
    return None


def _echo(data):
    return data


def _pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


BLOCKS = 10  # the floor and PyFaaS take turns, so both see the same machine
SCRAPE_S = 1.0  # --monitoring: /metrics is fetched this often


# The scraper runs as a process of its own, as Prometheus would: in the
# benchmark's process it would slow the client being timed. It fetches
# /metrics every SCRAPE_S seconds until its stdin closes, then prints
# {"scrapes", "failures", "max_ms"}.
_SCRAPER = r"""
import http.client, json, select, sys, time
port, period = int(sys.argv[1]), float(sys.argv[2])
times, failures = [], 0
while not select.select([sys.stdin], [], [], period)[0]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        response.read()
        ok = response.status == 200
    except OSError:
        ok = False
    finally:
        conn.close()
    if ok:
        times.append(time.perf_counter() - start)
    else:
        failures += 1
print(json.dumps({"scrapes": len(times), "failures": failures,
                  "max_ms": max(times) * 1e3 if times else None}))
"""


class Scraper:
    """A process that GETs ``/metrics`` from 127.0.0.1:``port`` every
    SCRAPE_S seconds until :meth:`stop`."""

    def __init__(self, port):
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SCRAPER, str(port), str(SCRAPE_S)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._result = None

    def stop(self):
        """Stop it (by closing its stdin; by pid if it does not go);
        return ``{"scrapes", "failures", "max_ms"}``. Idempotent."""
        if self._result is None:
            try:
                out, _ = self._proc.communicate(b"", timeout=15)
                self._result = json.loads(out)
            except (subprocess.TimeoutExpired, ValueError):
                self._proc.kill()
                self._proc.wait()
                self._result = {"scrapes": 0, "failures": 0, "max_ms": None}
        return self._result


def _figures(small, big):
    return {"sync_p50_us": _pct(small, 0.5) * 1e6,
            "sync_p99_us": _pct(small, 0.99) * 1e6,
            "sync_calls_per_s": len(small) / sum(small),
            "mib_p50_ms": _pct(big, 0.5) * 1e3,
            "mib_per_s": 1.0 / _pct(big, 0.5)}


BENCH_FUNCTIONS = (("bench_noop", _noop), ("bench_noop1", _noop1),
                   ("bench_echo", _echo))


def measure(client, floor, calls, async_calls, mib_rounds):
    """PyFaaS and the two-hop floor, taking turns in BLOCKS blocks.

    Registers the benchmark's functions and unregisters them at the end.
    Returns ``(pyfaas figures, floor figures)``.
    """
    for name, fn in BENCH_FUNCTIONS:
        client.register(fn, name=name)
    try:
        return _measure(client, floor, calls, async_calls, mib_rounds)
    finally:
        for name, _ in BENCH_FUNCTIONS:
            try:
                client.unregister(name)
            except PyFaaSError:
                pass


def _timed(fn, count):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _measure(client, floor, calls, async_calls, mib_rounds):
    blob = os.urandom(MIB)
    for _ in range(min(200, calls)):  # warm both up
        client.call("bench_noop")
    floor.round_trips(64, min(200, calls))
    client.call("bench_echo", blob)
    floor.round_trips(MIB, 1)
    ours, theirs = {"small": [], "big": []}, {"small": [], "big": []}
    for block in range(BLOCKS):
        share = calls // BLOCKS + (block < calls % BLOCKS)
        theirs["small"] += floor.round_trips(64, share)
        ours["small"] += _timed(lambda: client.call("bench_noop"), share)
        share = mib_rounds // BLOCKS + (block < mib_rounds % BLOCKS)
        theirs["big"] += floor.round_trips(MIB, share)
        big = _timed(lambda: client.call("bench_echo", blob), share)
        ours["big"] += big
    start = time.perf_counter()
    for _ in client.map("bench_noop1", range(async_calls)):
        pass
    async_s = time.perf_counter() - start
    assert client.call("bench_echo", blob) == blob
    figures = _figures(ours["small"], ours["big"])
    figures.update(async_calls=async_calls,
                   async_calls_per_s=async_calls / async_s)
    return figures, _figures(theirs["small"], theirs["big"])


def pin_to_cpu(cpu):
    """Run this process, and every process it starts from now on, on
    ``cpu`` only.

    Raises:
        PyFaaSConfigError: not possible here (not Linux, or no such CPU).
    """
    if not hasattr(os, "sched_setaffinity"):
        raise PyFaaSConfigError("bench --cpu: this system cannot pin "
                                "processes to a CPU (Linux only)")
    allowed = sorted(os.sched_getaffinity(0))
    if cpu not in allowed:
        raise PyFaaSConfigError("bench --cpu: expected one of the CPUs this "
                                "process may use (%s), got %d"
                                % (", ".join(map(str, allowed)), cpu))
    os.sched_setaffinity(0, {cpu})


def run_bench(workers=2, calls=2000, async_calls=10000, mib_rounds=30,
              config=None, as_json=False, out=sys.stdout, cpu=None,
              monitoring=False):
    """Run the benchmark and print a report; return the figures as a dict.

    ``cpu``: run everything on that CPU only (see :func:`pin_to_cpu`).
    ``monitoring``: the local Director serves its monitoring endpoint, and
    ``/metrics`` is scraped every second during the run.

    Raises:
        PyFaaSConfigError: ``monitoring`` with ``config`` (an existing
            cluster's endpoint is its own business), or ``cpu`` not usable.
    """
    if monitoring and config is not None:
        raise PyFaaSConfigError("bench --monitoring: only with the local "
                                "cluster the benchmark starts (not --config)")
    if cpu is None:
        return _run(workers, calls, async_calls, mib_rounds, config, as_json,
                    out, None, monitoring)
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") \
        else None
    pin_to_cpu(cpu)
    try:
        return _run(workers, calls, async_calls, mib_rounds, config, as_json,
                    out, cpu, monitoring)
    finally:  # a library caller gets its CPUs back
        os.sched_setaffinity(0, allowed)


def _run(workers, calls, async_calls, mib_rounds, config, as_json, out, cpu,
         monitoring):
    calls, mib_rounds = max(calls, BLOCKS), max(mib_rounds, 1)
    figures = {"workers": workers, "python": sys.version.split()[0],
               "cpus": os.cpu_count(), "pinned_cpu": cpu}
    floor = cluster = scraper = None
    finished = False
    try:
        if config is not None:
            client = Client.from_config(config)
        else:
            cluster = LocalCluster(director_extra={
                "monitoring": {"enabled": True, "port": 0}} if monitoring
                else None)
            start = time.perf_counter()
            cluster.start_director(log_level="warning", heartbeat_ms=1000)
            for _ in range(workers):
                cluster.start_worker(log_level="warning", heartbeat_ms=1000)
            client = cluster.client()
            client.wait_for_workers(workers, timeout=30)
            client.register(_noop, name="bench_noop")
            client.call("bench_noop")
            figures["start_to_first_result_s"] = time.perf_counter() - start
            figures["rss_mb"] = {"director": _rss_mb(cluster.director.pid)}
            if cpu is not None:  # the processes started since are pinned too
                figures["director_cpus"] = sorted(
                    os.sched_getaffinity(cluster.director.pid))
            for name, proc in cluster.workers.items():
                figures["rss_mb"][name] = _rss_mb(proc.pid)
            figures["rss_mb"]["total"] = sum(
                v for v in figures["rss_mb"].values() if v)
        with client:
            floor = bench_floor.Floor()
            if monitoring:
                scraper = Scraper(cluster.monitoring_port)
            figures["pyfaas"], figures["floor"] = measure(
                client, floor, calls, async_calls, mib_rounds)
            if scraper is not None:
                figures["monitoring"] = scraper.stop()
        finished = True
    finally:
        if scraper is not None:
            scraper.stop()
        if floor is not None:
            floor.close()
        if cluster is not None:
            try:
                cluster.stop()
            finally:
                if finished:
                    shutil.rmtree(cluster.workdir, ignore_errors=True)
                else:  # its configs and logs say what went wrong
                    print("bench: the local cluster's files are kept in %s"
                          % cluster.workdir, file=sys.stderr)
    if as_json:
        print(json.dumps(figures, indent=2), file=out)
    else:
        print(render(figures), file=out)
    return figures


def render(f):
    """The figures as a readable report."""
    fl, py = f["floor"], f["pyfaas"]
    pinned = f.get("pinned_cpu")
    lines = ["PyFaaS benchmark: %d worker(s), Python %s, %d CPU(s)%s"
             % (f["workers"], f["python"], f["cpus"],
                "" if pinned is None else
                ", everything on CPU %d (--cpu)" % pinned), "",
             "%-34s %12s %12s %8s" % ("figure", "pyfaas", "2-hop floor",
                                      "ratio")]

    def row(label, ours, floor, fmt, better_high=False):
        ratio = (floor / ours if better_high else ours / floor) \
            if ours and floor else None
        lines.append("%-34s %12s %12s %8s" % (
            label, fmt % ours, "" if floor is None else fmt % floor,
            "" if ratio is None else "%.2fx" % ratio))

    row("sync no-op call p50 (us)", py["sync_p50_us"], fl["sync_p50_us"],
        "%.0f")
    row("sync no-op call p99 (us)", py["sync_p99_us"], fl["sync_p99_us"],
        "%.0f")
    row("sync calls/s", py["sync_calls_per_s"], fl["sync_calls_per_s"],
        "%.0f", True)
    row("async no-op calls/s (%d calls)" % py["async_calls"],
        py["async_calls_per_s"], fl["sync_calls_per_s"], "%.0f", True)
    row("1 MiB round trip p50 (ms)", py["mib_p50_ms"], fl["mib_p50_ms"],
        "%.2f")
    row("1 MiB round trip (MiB/s)", py["mib_per_s"], fl["mib_per_s"], "%.0f",
        True)
    if "start_to_first_result_s" in f:
        lines.append("")
        lines.append("cluster start to first result: %.3f s"
                     % f["start_to_first_result_s"])
        lines.append("resident memory (MB): " + ", ".join(
            "%s %.1f" % (k, v) for k, v in f["rss_mb"].items() if v))
    mon = f.get("monitoring")
    if mon:
        lines.append("monitoring endpoint on, /metrics scraped every %.0f s:"
                     " %d scrape(s), %d failed, slowest %s" % (
                         SCRAPE_S, mon["scrapes"], mon["failures"],
                         "-" if mon["max_ms"] is None
                         else "%.1f ms" % mon["max_ms"]))
    lines.append("")
    lines.append("ratios: pyfaas / floor for times, floor / pyfaas for rates "
                 "(1.00x = as quick as the bare relay; the async row compares"
                 " with the floor's synchronous rate)")
    return "\n".join(lines)
