"""The status document: what the Director knows of its cluster, as one dict.

Owns :class:`Monitor`, the part of the state that builds the status
document (:meth:`Monitor.document`): the one place where that dict is
made. ``python -m pyfaas status --json`` prints it (fetched with a STATUS
request), the monitoring endpoint serves it as ``/api/status``, renders
``/metrics`` from it and its dashboard draws it. It also keeps the
history of calls per second (:meth:`Monitor.sample`, once a second) and
answers STATUS. Pure: the counting is done where things happen (see
:mod:`pyfaas.director.tallies`); the Director process's own CPU and memory
come from a function the loop passes in. Nothing here runs per call.
"""

import json
import math
import time
from collections import deque

from ..serialization import signature_text
from ..stats import percentile
from ..wire import protocol as p
from .cluster import USABLE
from .tables import _json
from .tallies import BUCKETS

# A Worker's "state" in the document: taking calls, stopping (no new
# calls), or every thread held by a call past its time limit (no new calls).
WORKER_STATES = ("serving", "draining", "stuck")

HISTORY = 300      # seconds of calls-per-second history kept
LOAD_FIELDS = {    # heartbeat meta key -> status field (see heartbeat_load)
    "busy": "busy_threads", "rss": "rss_bytes", "cpu": "cpu_seconds",
    "hits": "cache_hits", "misses": "cache_misses"}
MESSAGE_CHARS = 300  # of an error message shown in recent errors


def heartbeat_load(meta):
    """The figures a Worker's heartbeat carries, checked: ``{status field:
    number}`` for each LOAD_FIELDS key that holds a number >= 0."""
    load = {}
    for key, field in LOAD_FIELDS.items():
        value = meta.get(key)
        if (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and value >= 0):
            load[field] = value
    return load


class Monitor:
    """Builds the status document and answers STATUS.

    Args:
        cluster: the state's :class:`~pyfaas.director.cluster.Cluster`.
        outbox: where frames go.
        name: ``"host:port"`` of the Director.
        clock: ``time.monotonic`` or a test's fake.
        process: a function returning the Director process's figures
            (``pid``, ``cpu_seconds``, ``rss_bytes``), or None (tests).
    """

    def __init__(self, cluster, outbox, name, clock, process=None):
        self.cluster = cluster
        self.outbox = outbox
        self.name = name
        self.clock = clock
        self.process = process
        self.started = time.time()
        self.history = deque(maxlen=HISTORY + 1)  # (time, routed, errors)
        self._signatures = {}     # func_id -> signature text

    def sample(self):
        """Once a second: fold the call tallies, note the counters for the
        calls-per-second history."""
        counts = self.cluster.counts
        for worker in self.cluster.workers.values():
            counts.fold(worker)
        self.history.append((time.time(), self.cluster.routed,
                             self.outbox.client_errors))

    def status(self, peer, frame):
        """STATUS: the status document (JSON payload)."""
        self.outbox.send(peer.id, p.OK, frame.request_id, None,
                         _json(self.document()))

    # ----- the document ------------------------------------------------------

    def document(self):
        """The status document: a new JSON-ready dict that shares nothing
        with the state (see docs/monitoring.md for its fields)."""
        cluster = self.cluster
        counts = cluster.counts
        for worker in cluster.workers.values():
            counts.fold(worker)
        wall = time.time()
        now = self.clock()
        workers = [self._worker(w, now, wall)
                   for w in cluster.workers.values()]
        functions = [self._function(f) for f in cluster.functions.values()]
        in_flight = sum(1 for pend in cluster.pending.values()
                        if pend.kind in ("call", "step"))
        process = dict(self.process()) if self.process else {}
        process.setdefault("start_time", self.started)
        return {
            "director": {
                "director": self.name, "protocol": p.PROTOCOL_VERSION,
                "uptime_s": round(wall - self.started, 3),
                "workers": len(workers), "functions": len(functions),
                "draining": cluster.draining, "time": wall},
            "process": process,
            "calls": {"routed": cluster.routed, "in_flight": in_flight,
                      "pending_bytes": cluster.pending_bytes,
                      "requests_in_flight": len(cluster.pending),
                      "client_errors": self.outbox.client_errors},
            "workers": workers,
            "functions": functions,
            "latency_buckets_s": list(BUCKETS),
            "evictions": dict(counts.evictions),
            "workflows": dict(counts.workflows),
            "client_errors": dict(sorted(counts.client_errors.items())),
            "connections": self._connections(),
            "history": self._history(),
            "recent_errors": [self._error(e) for e in counts.recent_errors],
            "recent_evictions": [dict(e) for e in counts.recent_evictions],
        }

    def _worker(self, w, now, wall):
        calls = errors = lost = cancelled = 0
        by_function = {}
        for func_id, t in w.tallies.items():
            by_function[func_id] = {"calls": t.count, "errors": t.errors,
                                    "lost": t.lost,
                                    "cancelled": t.cancelled}
            calls += t.count
            errors += t.errors
            lost += t.lost
            cancelled += t.cancelled
        recent = sorted(w.recent)
        load = w.load
        hits = load.get("cache_hits")
        looked = (hits or 0) + load.get("cache_misses", 0)
        started = w.info.get("started_at")
        if not isinstance(started, (int, float)) or isinstance(started, bool):
            started = None
        row = {
            "worker_id": w.id, "addr": "%s:%s" % w.addr[:2], "pid": w.pid,
            "host": _text(w.info.get("host")),
            "max_threads": w.max_threads, "joined_at": w.joined_at,
            "started_at": started,
            "uptime_s": round(wall - (started or w.joined_at), 1),
            "state": "draining" if w.draining else
            "stuck" if w.wedged else "serving",
            "draining": w.draining, "inflight": len(w.inflight),
            "stuck": w.stuck, "wedged": w.wedged,
            "last_heartbeat_age_s": round(now - w.last_seen, 3),
            "functions": sorted(f for f, s in w.functions.items()
                                if s in USABLE),
            "routed": w.routed, "calls": calls, "errors": errors,
            "lost": lost, "cancelled": cancelled,
            "p50_s": percentile(recent, 0.50),
            "p95_s": percentile(recent, 0.95),
            "restarts": w.restarts, "supervised": w.supervised,
            "last_cause": w.last_cause,
            "busy_threads": None, "rss_bytes": None, "cpu_seconds": None,
            "cache_hits": None, "cache_misses": None,
            "cache_hit_ratio": hits / looked if looked else None,
            "by_function": by_function}
        row.update(load)
        return row

    def _function(self, func):
        """A function's figures over every Worker, those gone included."""
        counts = self.cluster.counts
        tallies = [w.tallies[func.id] for w in self.cluster.workers.values()
                   if func.id in w.tallies]
        retired = counts.retired.get(func.id)
        if retired is not None:
            tallies.append(retired)
        count = sum(t.count for t in tallies)
        total = sum(t.sum for t in tallies)
        buckets = [sum(col) for col in zip(*(t.buckets for t in tallies))] \
            or [0] * len(BUCKETS)
        recent = sorted(counts.by_function.get(func.id, ()))
        holders = sum(1 for w in self.cluster.workers.values()
                      if w.functions.get(func.id) in USABLE)
        return {
            "func_id": func.id, "name": func.name,
            "signature": self._signature(func),
            "registered_at": func.registered_at, "workers": holders,
            "calls": count, "errors": sum(t.errors for t in tallies),
            "lost": sum(t.lost for t in tallies),
            "cancelled": sum(t.cancelled for t in tallies),
            "mean_s": total / count if count else None,
            "p50_s": percentile(recent, 0.50),
            "p95_s": percentile(recent, 0.95),
            "latency_sum_s": total, "latency_buckets": buckets}

    def _signature(self, func):
        text = self._signatures.get(func.id)
        if text is None and func.params is not None:
            if len(self._signatures) > 4 * len(self.cluster.functions) + 64:
                self._signatures.clear()   # (drop those of functions gone)
            try:  # a client's description of its function: may be bad
                text = signature_text(func.params)
            except (TypeError, ValueError, KeyError, IndexError):
                text = "(...)"
            self._signatures[func.id] = text
        return text

    def _connections(self):
        """Connections by state: handshake, client, worker, closing."""
        found = dict.fromkeys(("handshake", "client", "worker", "closing"), 0)
        for peer in self.cluster.peers.values():
            if peer.closing:
                found["closing"] += 1
            elif not peer.ready:
                found["handshake"] += 1
            elif peer.role == p.ROLE_WORKER:
                found["worker"] += 1
            else:
                found["client"] += 1
        return found

    def _history(self):
        """``[[time, calls per second, errors per second], ...]`` (calls
        sent to Workers; ERROR replies to clients), oldest first."""
        out = []
        samples = list(self.history)
        for (t0, r0, e0), (t1, r1, e1) in zip(samples, samples[1:]):
            span = t1 - t0
            if span > 0:
                out.append([round(t1, 3), round((r1 - r0) / span, 2),
                            round((e1 - e0) / span, 2)])
        return out

    def _error(self, entry):
        wall, code, message, func_id, worker_id = entry
        if code is None:  # a Worker's ERROR reply: its meta, decoded now
            try:
                meta = json.loads(message.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                meta = {}
            if not isinstance(meta, dict):
                meta = {}
            code = _text(meta.get("code")) or "execution"
            message = _text(meta.get("message")) or ""
        func = self.cluster.functions.get(func_id)
        return {"time": wall, "code": code,
                "message": message[:MESSAGE_CHARS],
                "function": func.name if func is not None else func_id,
                "worker_id": worker_id}


def _text(value):
    return value if isinstance(value, str) else None

