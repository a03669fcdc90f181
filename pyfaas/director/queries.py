"""The Director's answers about the cluster and its Workers.

Owns :class:`Queries`: WORKERS and PING (answered by the Director itself),
WORKER_INFO, CACHE_DUMP and KILL_WORKER (relayed to the Worker named, see
:mod:`pyfaas.director.calls`), and STATS (fanned out to every Worker and
summed, with the Director's own figures added).
"""

import json
import time

from ..stats import aggregate
from ..wire import protocol as p
from .cluster import USABLE
from .tables import Gather, Pending, _json


class Queries:
    """Cluster-wide questions.

    Args:
        cluster: the state's :class:`~pyfaas.director.cluster.Cluster`.
        outbox: where frames go.
        calls: the :class:`~pyfaas.director.calls.Calls` that relays a
            request to one Worker.
        name: ``"host:port"`` of the Director, for messages.
        statistics_enabled: ``[statistics] enabled`` of the Director.
        clock: ``time.monotonic`` or a test's fake.
    """

    def __init__(self, cluster, outbox, calls, name, statistics_enabled,
                 clock):
        self.cluster = cluster
        self.outbox = outbox
        self.calls = calls
        self.name = name
        self.statistics_enabled = statistics_enabled
        self.clock = clock
        self.started = time.time()

    def workers(self, peer, frame):
        """WORKERS: the live Workers as the Director sees them."""
        now = self.clock()
        rows = [{"worker_id": w.id, "addr": "%s:%s" % w.addr[:2], "pid": w.pid,
                 "max_threads": w.max_threads, "joined_at": w.joined_at,
                 "started_at": w.info.get("started_at"),
                 "inflight": len(w.inflight), "draining": w.draining,
                 "inflight_bytes": w.inflight_bytes, "stuck": w.stuck,
                 "wedged": w.wedged, "supervised": w.supervised,
                 "restarts": w.restarts, "last_cause": w.last_cause,
                 "last_heartbeat_age_s": round(now - w.last_seen, 3),
                 "functions": sorted(f for f, s in w.functions.items()
                                     if s in USABLE)}
                for w in self.cluster.workers.values()]
        self.outbox.send(peer.id, p.OK, frame.request_id, None, _json(rows))

    def ping(self, peer, frame):
        """PING: liveness and a one-line summary."""
        self.outbox.send(peer.id, p.OK, frame.request_id, {
            "director": self.name, "protocol": p.PROTOCOL_VERSION,
            "workers": len(self.cluster.workers),
            "functions": len(self.cluster.functions),
            "uptime_s": round(time.time() - self.started, 3)})

    # ----- one Worker ----------------------------------------------------------

    def worker_info(self, peer, frame):
        self._relay(peer, frame, "unknown_worker", "info", "worker info",
                    p.WORKER_INFO)

    def cache_dump(self, peer, frame):
        self._relay(peer, frame, "cache_dump", "cache", "cache dump",
                    p.CACHE_DUMP)

    def kill_worker(self, peer, frame):
        self._relay(peer, frame, "unknown_worker", "kill", "kill",
                    p.KILL_WORKER)

    def _relay(self, peer, frame, code, kind, label, type_):
        """Relay a request to the Worker its meta names, or answer ``code``
        when there is no such Worker."""
        workers = self.cluster.workers
        wid = frame.meta().get("worker_id")
        worker = workers.get(wid) if isinstance(wid, str) else None
        if worker is None:
            self.outbox.error(peer.id, frame.request_id, code,
                              "no worker with id %r (live workers: %s)" % (
                                  wid, ", ".join(workers) or "none"))
            return
        self.calls.forward(peer, frame, worker, kind, label, None, type_)

    # ----- statistics ------------------------------------------------------------

    def stats(self, peer, frame):
        """STATS: every Worker's figures, summed per function."""
        cluster = self.cluster
        if not self.statistics_enabled:
            self.outbox.error(peer.id, frame.request_id, "statistics",
                              "statistics are disabled on director %s "
                              "([statistics] enabled = false in its config)"
                              % self.name)
            return
        target = frame.meta().get("f")
        func = None
        if target is not None:
            func = cluster.resolve(target)
            if func is None:
                self.outbox.error(peer.id, frame.request_id, "statistics",
                                  "function %r is not registered" % (target,))
                return
        func_id = func.id if func else None
        gather = Gather(peer.id, frame.request_id, "stats",
                        {"func_id": func_id}, self._gathered)
        for worker in cluster.workers.values():
            pend = Pending(cluster.new_rid(), peer.id, 0, worker.id, "stats",
                           "", gather, self.clock())
            cluster.track(pend, worker)
            gather.waiting.add(worker.id)
            self.outbox.send(worker.peer_id, p.STATS, pend.rid,
                             {"func_id": func_id})
        gather.finish_if_done()

    def figures(self):
        """The Director's own statistics (JSON-ready)."""
        cluster = self.cluster
        return {"requests_routed": cluster.routed,
                "errors": self.outbox.client_errors,
                "queue_depth": len(cluster.pending),
                "pending_bytes": cluster.pending_bytes,
                "routed_per_worker": {w.id: w.routed
                                      for w in cluster.workers.values()},
                "errors_per_worker": {w.id: w.errors
                                      for w in cluster.workers.values()},
                "uptime_s": round(time.time() - self.started, 3)}

    def _gathered(self, gather):
        per_worker, disabled, failed = {}, [], {}
        for wid, (type_, meta, payload) in gather.results.items():
            if type_ != p.OK:
                failed[wid] = (meta or {}).get("message", "error")
                continue
            reply = json.loads(bytes(payload).decode("utf-8"))
            if reply.get("enabled"):
                per_worker[wid] = reply.get("functions", {})
            else:
                disabled.append(wid)
        if disabled and not per_worker:
            self.outbox.error(gather.client_peer, gather.client_rid,
                              "statistics", "statistics are disabled on every "
                              "worker (%s: [statistics] enabled = false)"
                              % ", ".join(disabled))
            return
        functions = aggregate(per_worker)
        for figures in per_worker.values():
            for fig in figures.values():
                fig.pop("recent_s", None)
        self.outbox.send(gather.client_peer, p.OK, gather.client_rid, None,
                         _json({"functions": functions,
                                "per_worker": per_worker,
                                "workers_disabled": disabled,
                                "workers_failed": failed,
                                "director": self.figures()}))
