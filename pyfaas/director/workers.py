"""The Director's side of its Workers.

Owns :class:`WorkerEvents`: a Worker's registration (its id, the functions
it holds, the cached results it kept, and, when supervised, how many times
it was restarted and why), the functions it announces, its heartbeats (its
calls stuck past their time limit, and its graceful stop), its replies to
the requests it was sent (handed to each request's owner), and its
eviction, which ends every request it had (each owner decides: a call may
run again elsewhere) and is recorded as a death
(:mod:`pyfaas.director.deaths`).

Liveness rule: a Worker is evicted when nothing (heartbeat or any other
frame) has arrived from it for more than ``HEARTBEAT_MISSES`` expected
heartbeat intervals, and at once when its connection closes. The other
way round, a Worker that announced its heartbeat interval at registration
is sent a HEARTBEAT whenever something arrives from it, at most every half
interval (:meth:`WorkerEvents.heard`), so that it can tell a silent
Director (cut off, frozen) from a quiet one and reconnect.
"""

import json
import logging
import time

from ..ids import function_id
from ..wire import protocol as p
from .monitor import heartbeat_load
from .tables import Function, Worker
from .tallies import NO_TALLY

log = logging.getLogger(__name__)

HEARTBEAT_MISSES = 3


class WorkerEvents:
    """Worker messages and eviction.

    Args:
        cluster: the state's :class:`~pyfaas.director.cluster.Cluster`.
        outbox: where frames go.
        functions: the :class:`~pyfaas.director.functions.Functions` that
            deploys code to a Worker.
        deaths: the :class:`~pyfaas.director.deaths.Deaths` told of every
            eviction and registration.
        expected_heartbeat_ms: the Workers' promised heartbeat interval.
        clock: ``time.monotonic`` or a test's fake.
    """

    def __init__(self, cluster, outbox, functions, deaths,
                 expected_heartbeat_ms, clock):
        self.cluster = cluster
        self.outbox = outbox
        self.functions = functions
        self.deaths = deaths
        self.evict_after = HEARTBEAT_MISSES * expected_heartbeat_ms / 1000.0
        self.clock = clock

    def register(self, peer, frame):
        """REGISTER_WORKER: a Worker joins, with what it holds."""
        cluster = self.cluster
        if peer.worker_id is not None:
            self.outbox.error(peer.id, frame.request_id, "protocol",
                              "worker already registered as %s"
                              % peer.worker_id)
            return
        meta = frame.meta()
        wanted = str(meta.get("worker_id") or "worker")
        worker_id, n = wanted, 1
        while worker_id in cluster.workers:
            n += 1
            worker_id = "%s-%d" % (wanted, n)
        worker = Worker(worker_id, peer.id, peer.addr, meta, self.clock())
        rejoined = cluster.counts.joined(worker_id)
        if not worker.supervised:  # (a supervisor counts its restarts)
            worker.restarts = rejoined
        cluster.reroute()
        cluster.workers[worker_id] = worker
        peer.worker_id = worker_id
        self.deaths.returned(worker)
        want, stale = [], []
        for fid, name in meta.get("functions", []):
            current = cluster.by_name.get(name)
            if current == fid:
                worker.functions[fid] = "ok"
            elif current is None and fid not in want \
                    and fid not in cluster.unregistered:
                want.append(fid)  # the Director lost it (restart): ask for it
            else:
                stale.append(fid)
        if frame.payload:
            try:
                held = json.loads(bytes(frame.payload).decode("utf-8"))
                keys = [(str(k), str(f)) for k, f in held.get("cache_keys", [])]
            except (ValueError, TypeError, UnicodeDecodeError, AttributeError):
                keys = []  # a Worker's cache list is a routing hint only
            for key, fid in keys:
                if worker.functions.get(fid) == "ok":
                    cluster.remember_key(worker, key, fid)
                elif fid in want:  # kept until the function is announced
                    worker.held_keys.setdefault(fid, []).append(key)
        welcome = {"worker_id": worker_id, "want": want}
        if worker.beat_every:  # it asked: say that we answer
            welcome["heartbeat_ms"] = meta["heartbeat_ms"]
        self.outbox.send(peer.id, p.WELCOME, frame.request_id, welcome)
        for fid in stale:  # after WELCOME: the Worker reads from there on
            self.outbox.send(peer.id, p.UNDEPLOY, 0, {"func_id": fid})
        for func in cluster.functions.values():
            if func.id not in worker.functions:
                self.functions.deploy_to(worker, func, None)
        log.info("worker %s joined from %s:%s (pid %s, %d functions held%s)",
                 worker_id, peer.addr[0], peer.addr[1], worker.pid,
                 len(worker.functions), "; restarted %d time(s), last: %s" % (
                     worker.restarts, worker.last_cause)
                 if worker.restarts else "")

    def announce(self, peer, frame):
        """ANNOUNCE: a function the Director asked for (it lost it)."""
        cluster = self.cluster
        meta = frame.meta()
        name = meta.get("name")
        fid = function_id(frame.payload, name if isinstance(name, str) else "")
        worker = cluster.workers[peer.worker_id]
        cluster.reroute()
        if not isinstance(name, str) or cluster.by_name.get(name, fid) != fid:
            worker.held_keys.pop(meta.get("func_id"), None)
            self.outbox.send(peer.id, p.UNDEPLOY, 0,
                             {"func_id": meta.get("func_id")})
            return
        extra = {k: v for k, v in meta.items()
                 if k not in ("func_id", "name", "params")}
        if fid not in cluster.functions:
            cluster.add_function(Function(fid, name, meta.get("params"),
                                          frame.payload, extra))
            log.info("function %s (%s) restored from worker %s", name, fid,
                     worker.id)
        worker.functions[fid] = "ok"
        for key in worker.held_keys.pop(meta.get("func_id"), ()):
            cluster.remember_key(worker, key, fid)
        for other in cluster.workers.values():
            if fid not in other.functions:
                self.functions.deploy_to(other, cluster.functions[fid], None)

    def heartbeat(self, peer, frame):
        """HEARTBEAT: alive (``last_seen`` was set when it arrived), with
        its calls stuck past their time limit (a Worker whose threads are
        all stuck takes no call) and its figures (memory, CPU, busy
        threads, cache lookups: kept for the status document). A stopping
        Worker says it is draining: route nothing more to it, and
        confirm."""
        meta = frame.meta()
        stuck = meta.get("stuck")
        worker = self.cluster.workers.get(peer.worker_id)
        if worker is not None:
            worker.load.update(heartbeat_load(meta))
        if worker is not None and isinstance(stuck, int) and \
                stuck != worker.stuck and \
                self.cluster.update_load(worker, stuck):
            if worker.wedged:
                log.warning("worker %s has all its %d thread(s) stuck in "
                            "calls past their time limit: no new calls for "
                            "it", worker.id, worker.max_threads)
            else:
                log.info("worker %s has a free thread again", worker.id)
        if frame.request_id and meta.get("draining"):
            if worker is not None and not worker.draining:
                worker.draining = True
                worker.recycling = meta.get("recycle") is True
                self.cluster.reroute()
                log.info("worker %s is stopping%s: no new calls for it",
                         worker.id, " to be restarted" if worker.recycling
                         else "")
            self.outbox.send(peer.id, p.OK, frame.request_id)

    def heard(self, worker, now):
        """Something arrived from ``worker`` (which asked for heartbeats):
        send it one unless it had one within the last half interval."""
        if now - worker.beat_at >= worker.beat_every:
            worker.beat_at = now
            self.outbox.send(worker.peer_id, p.HEARTBEAT, 0)

    def reply(self, peer, frame):
        """OK or ERROR from a Worker: the end of one of its requests."""
        cluster = self.cluster
        pend = cluster.pending.get(frame.request_id)
        worker = cluster.workers.get(peer.worker_id)
        if pend is None or worker is None or pend.worker_id != worker.id:
            log.debug("dropped late or misdirected reply %d from worker %s",
                      frame.request_id, peer.worker_id)
            return
        del cluster.pending[frame.request_id]
        worker.inflight.discard(pend.rid)
        if pend.size:
            cluster.pending_bytes -= pend.size
            worker.inflight_bytes -= pend.size
        if frame.type == p.ERROR:
            worker.errors += 1
            if b'"not_started"' in frame.meta_raw and \
                    self._handed_back(pend, worker, frame):
                return
            tally = pend.tally
            tally.errors += 1
            if tally is not NO_TALLY:
                cluster.counts.call_error(frame.meta_raw, tally.func_id,
                                          worker.id, time.time())
        elif frame.meta_raw and pend.kind in ("call", "step"):
            cluster.note_cache(worker, frame.meta())
        # The latency (last_seen was set as this frame arrived); a request
        # that is not a call or a step has NO_TALLY.
        pend.tally.append(worker.last_seen - pend.started)
        pend.owner.reply(pend, worker, frame)

    @staticmethod
    def _handed_back(pend, worker, frame):
        """A call the Worker did not start (its threads are stuck) goes to
        its owner to be sent elsewhere, if the owner does that."""
        meta = frame.meta()
        handed_back = getattr(pend.owner, "handed_back", None)
        return meta.get("code") == "not_started" and handed_back is not None \
            and handed_back(pend, worker, frame, meta)

    def check(self):
        """Evict Workers that stopped heartbeating. Call periodically."""
        now = self.clock()
        for worker in list(self.cluster.workers.values()):
            silent = now - worker.last_seen
            if silent > self.evict_after:
                reason = "no heartbeat for %.1f s" % silent
                self.outbox.close(worker.peer_id, reason)
                self.evict(worker.id, reason)

    def evict(self, worker_id, reason, peer_id=None):
        """The Worker is gone: every request it had ends (its owner says
        how), and nothing is routed to it any more. ``peer_id``: only if
        that connection is the one it registered on.

        The connection it registered on no longer speaks for it (it is
        being closed): its frames are not the Worker's any more, so a new
        registration under the same id is never taken for it.
        """
        cluster = self.cluster
        worker = cluster.workers.get(worker_id)
        if worker is None or peer_id is not None and \
                worker.peer_id != peer_id:
            return
        del cluster.workers[worker_id]
        peer = cluster.peers.get(worker.peer_id)
        if peer is not None:
            peer.worker_id = peer.worker = peer.handlers = None
        cluster.reroute()
        log.warning("worker %s (%s:%s) removed: %s; %d call(s) in flight lost",
                    worker_id, worker.addr[0], worker.addr[1], reason,
                    len(worker.inflight))
        for key in list(worker.cache_keys):
            cluster.forget_key(key)
        cluster.counts.evicted(worker, reason, time.time())
        if worker.inflight or worker.supervised:
            self.deaths.died(worker, reason)
        for rid in sorted(worker.inflight):
            pend = cluster.untrack(rid)
            if pend is not None:
                pend.tally.lost += 1
                pend.owner.lost(pend, worker_id, reason)
        cluster.counts.retire(worker)
