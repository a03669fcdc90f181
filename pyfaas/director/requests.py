"""The Director's answers to client requests.

A mixin of :class:`pyfaas.director.state.DirectorState`: one method per
client message type (register, unregister, list, call, cancel, workers,
worker info, kill, ping, statistics, cache dump) and the completion of
requests fanned out to every Worker. Pure like the state it extends: it
queues frames, never touches a socket, never unpickles.

Cluster-wide cache hits: a Worker that stores a result says so in its reply
(meta ``cached``: the key, ``evicted``: keys it dropped). The Director keeps
``key -> worker`` for those, and routes a later call with the same key (a
digest of the function id and the argument bytes, which it can compute
without unpickling) to that Worker, whatever the strategy would have picked.
It only computes the key for functions that have cached results.
"""

import json
import logging
import time

from ..wire import protocol as p
from ..ids import cache_key, function_id
from .tables import Function, Gather, Pending, Route, _json
from ..stats import aggregate

log = logging.getLogger(__name__)

# Re-runs of a call of a function registered as idempotent whose Worker is
# lost (a call's own ``retries`` may ask for more).
IDEMPOTENT_RETRIES = 2
# Room for a frame's header and meta when comparing a payload with a limit.
FRAME_OVERHEAD = 4096


class ClientRequests:
    """Client request handlers; mixed into DirectorState."""

    # ----- functions -----------------------------------------------------

    def _on_deploy(self, peer, frame):
        meta = frame.meta()
        name = meta.get("name")
        if not isinstance(name, str) or not name or not frame.payload:
            self.error(peer.id, frame.request_id, "registration",
                       "a DEPLOY needs a function name and its code")
            return
        fid = function_id(frame.payload, name)
        self.unregistered.discard(fid)
        old_id = self.by_name.get(name)
        replaces = old_id if old_id not in (None, fid) else None
        old = self.functions.get(replaces) if replaces else None
        if replaces:
            self._remove_function(replaces)
        func = self.functions.get(fid)
        if func is None or func.name != name:
            extra = {k: v for k, v in meta.items()
                     if k not in ("name", "params")}
            func = Function(fid, name, meta.get("params"), frame.payload, extra)
        self._add_function(func)
        gather = Gather(peer.id, frame.request_id, "deploy",
                        {"func_id": fid, "name": name, "old": old,
                         "replaced": replaces})
        for worker in self.workers.values():
            self._deploy_to(worker, func, gather, replaces=replaces)
        self._finish_if_done(gather)

    def _on_undeploy(self, peer, frame):
        target = frame.meta().get("f")
        func = self.resolve(target)
        if func is None:
            self.error(peer.id, frame.request_id, "unregistration",
                       "function %r is not registered" % (target,))
            return
        self._remove_function(func.id)  # (drops the routes)
        if len(self.unregistered) < 100000:
            self.unregistered.add(func.id)
        for worker in self.workers.values():
            if worker.functions.pop(func.id, None) is not None:
                self.send(worker.peer_id, p.UNDEPLOY, 0, {"func_id": func.id})
        log.info("function %s (%s) unregistered", func.name, func.id)
        self.send(peer.id, p.OK, frame.request_id,
                  {"func_id": func.id, "name": func.name})

    def _on_list(self, peer, frame):
        listing = {}
        for func in self.functions.values():
            holders = [w.id for w in self.workers.values()
                       if w.functions.get(func.id) in ("ok", "sent")]
            extra = {k: v for k, v in func.extra.items() if k != "source"}
            listing[func.id] = dict(extra, name=func.name,
                                    params=func.params,
                                    registered_at=func.registered_at,
                                    workers=holders)
        self.send(peer.id, p.OK, frame.request_id, None, _json(listing))

    # ----- calls -----------------------------------------------------------

    def _eligible(self, func_id):
        return [w for w in self.workers.values()
                if w.functions.get(func_id) in ("ok", "sent")
                and not w.draining]

    def choose_worker(self, candidates):
        """Pick one of ``candidates`` (a non-empty list) by the strategy."""
        if self.strategy == "Random":
            return self.rng.choice(candidates)
        if self.strategy == "Least-Loaded":
            return min(candidates, key=lambda w: len(w.inflight))
        self._rr += 1
        return candidates[self._rr % len(candidates)]

    def _pick_worker(self, func, payload, candidates):
        """The Worker holding this call's cached result, else by strategy.

        Only Workers whose frame limit takes the payload count; None if no
        candidate does.
        """
        size = len(payload) + FRAME_OVERHEAD
        for w in candidates:
            if w.max_frame < size:
                candidates = [w for w in candidates if w.max_frame >= size]
                if not candidates:
                    return None
                break
        if func.id in self.cached_by_func:
            owner = self.cache_owner.get(cache_key(func.id, payload))
            if owner is not None:
                worker = self.workers.get(owner[0])
                if worker is not None and worker in candidates:
                    return worker
        return self.choose_worker(candidates)

    def _refuse_if_draining(self, peer, frame):
        if self.draining:
            self.error(peer.id, frame.request_id, "shutting_down",
                       "director %s is shutting down; retry on another "
                       "director or later" % self.name)
        return self.draining

    def _on_call_many(self, peer, frame):
        """Several calls in one frame: each is routed and answered alone."""
        meta = frame.meta()
        rids, sizes = meta.pop("rids", None), meta.pop("sizes", None)
        ok = (isinstance(rids, list) and isinstance(sizes, list)
              and len(rids) == len(sizes) and rids
              and all(isinstance(x, int) and not isinstance(x, bool)
                      and x >= 0 for x in rids + sizes)
              and sum(sizes) == len(frame.payload))
        if not ok:
            self.error(peer.id, frame.request_id, "protocol",
                       "CALL_MANY needs 'rids' and 'sizes' lists that match "
                       "its payload")
            self.close(peer.id, "malformed CALL_MANY")
            return
        view = memoryview(frame.payload)
        pos = 0
        route = None  # one for the whole batch: routing calls changes no
        # route (only Workers' and functions' events do)
        for rid, size in zip(rids, sizes):
            one = p.Frame(p.CALL, rid, b"", view[pos:pos + size], frame.flags)
            pos += size
            if self.draining and self._refuse_if_draining(peer, one):
                continue
            if route is None:
                route = self._route(peer, one, meta)
                if route is None:
                    continue  # this call was answered with the error
            self._on_call(peer, one, route)

    def _on_call(self, peer, frame, route=None):
        """Route a CALL (``route``: already found, for CALL_MANY)."""
        if route is None:
            if self.draining and self._refuse_if_draining(peer, frame):
                return
            route = self._routes.get(frame.meta_raw)
            if route is None:
                route = self._route(peer, frame, frame.meta())
                if route is None:
                    return
                self._routes.keep(frame.meta_raw, route)
        if len(self.pending) >= self.max_pending:
            self.error(peer.id, frame.request_id, "overloaded",
                       "director %s has %d requests in flight (max_pending_"
                       "calls); retry later" % (self.name, len(self.pending)))
            return
        func = route.func
        payload = frame.payload
        if func.id in self.cached_by_func or \
                len(payload) + FRAME_OVERHEAD > route.min_frame:
            worker = self._pick_worker(func, payload, route.candidates)
            if worker is None:
                self.error(peer.id, frame.request_id, "serialization",
                           "arguments of %d bytes are over the frame limit of "
                           "every worker holding %r (their max_frame_bytes)"
                           % (len(payload), func.name))
                return
        else:
            worker = self.choose_worker(route.candidates)
        if self.statistics_enabled:
            self.requests += 1
            worker.routed += 1
        pend = self._forward(peer, frame, worker, "call", func.label,
                             route.call_meta, p.CALL)
        if route.retries:
            pend.retries = route.retries
            pend.resend = (func.id, route.call_meta, payload, frame.flags)

    def _route(self, peer, frame, meta):
        """The Route for a call's decoded meta, or None once the caller got
        an error saying why there is none."""
        target = meta.get("f")
        func = self.resolve(target)
        if func is None:
            self.error(peer.id, frame.request_id, "not_registered",
                       "function %r is not registered" % (target,))
            return None
        if not self.workers:
            self.error(peer.id, frame.request_id, "no_workers",
                       "no worker is registered with director %s" % self.name)
            return None
        candidates = self._eligible(func.id)
        if not candidates:
            why = "; ".join("%s: %s" % (w.id, w.functions.get(func.id))
                            for w in self.workers.values())
            self.error(peer.id, frame.request_id, "no_workers",
                       "no worker can run %r (%s)" % (func.name, why))
            return None
        call_meta = p.encode_meta(dict(meta, f=func.id)) if len(meta) > 1 \
            else func.call_meta
        retries = meta.get("retries", 0)
        if not isinstance(retries, int) or isinstance(retries, bool):
            retries = 0
        if func.extra.get("idempotent"):
            retries = max(retries, IDEMPOTENT_RETRIES)
        return Route(func, candidates, call_meta,
                     min(retries, 100) if retries > 0 else 0)

    def _retry(self, pend, lost_worker, reason):
        """Re-run a lost call on another Worker; False if none can take it."""
        func_id, meta, payload, flags = pend.resend
        client = self.peers.get(pend.client_peer)
        candidates = self._eligible(func_id)
        if client is None or not candidates or func_id not in self.functions:
            return False
        worker = self._pick_worker(self.functions[func_id], payload,
                                   candidates)
        if worker is None:
            return False
        rid = self._new_rid()
        again = Pending(rid, client.id, pend.client_rid, worker.id, pend.kind,
                        pend.label, None, self.clock())
        again.retries = pend.retries - 1
        again.resend = pend.resend
        if self.statistics_enabled:
            worker.routed += 1
            self.requests += 1
        self.pending[rid] = again
        worker.inflight.add(rid)
        client.pending.discard(pend.rid)
        client.pending.add(rid)
        log.info("call of %s re-run on worker %s: worker %s was lost (%s)",
                 pend.label, worker.id, lost_worker, reason)
        self.send(worker.peer_id, p.CALL, rid, meta, payload, flags)
        return True

    def _forward(self, peer, frame, worker, kind, label, meta, type_):
        rid = self._new_rid()
        pend = self.pending[rid] = Pending(rid, peer.id, frame.request_id,
                                           worker.id, kind, label, None,
                                           self.clock())
        worker.inflight.add(rid)
        peer.pending.add(rid)
        self.send(worker.peer_id, type_, rid, meta, frame.payload, frame.flags)
        return pend

    def _on_cancel(self, peer, frame):
        if self._cancel_run(peer, frame.request_id):
            return
        for rid in list(peer.pending):
            pend = self.pending.get(rid)
            if pend is not None and pend.client_rid == frame.request_id:
                del self.pending[rid]
                peer.pending.discard(rid)
                worker = self.workers.get(pend.worker_id)
                if worker is not None:
                    worker.inflight.discard(rid)
                    self.send(worker.peer_id, p.CANCEL, rid)
                return

    # ----- cache ownership (see the module docstring) -------------------------

    def _note_cache(self, worker, meta):
        key, func_id = meta.get("cached"), meta.get("func_id")
        if isinstance(key, str) and func_id in self.functions:
            self._remember_key(worker, key, func_id)
        for old in meta.get("evicted", ()):
            if self.cache_owner.get(old, (None,))[0] == worker.id:
                self._forget_key(old)

    def _remember_key(self, worker, key, func_id):
        if key in self.cache_owner:
            self._forget_key(key)
        self.cache_owner[key] = (worker.id, func_id)
        self.cached_by_func.setdefault(func_id, set()).add(key)
        worker.cache_keys.add(key)

    def _forget_key(self, key):
        owner = self.cache_owner.pop(key, None)
        if owner is None:
            return
        worker_id, func_id = owner
        keys = self.cached_by_func.get(func_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.cached_by_func[func_id]
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.cache_keys.discard(key)

    # ----- workers ---------------------------------------------------------

    def _worker_for(self, peer, frame, code):
        wid = frame.meta().get("worker_id")
        worker = self.workers.get(wid) if isinstance(wid, str) else None
        if worker is None:
            self.error(peer.id, frame.request_id, code,
                       "no worker with id %r (live workers: %s)" % (
                           wid, ", ".join(self.workers) or "none"))
        return worker

    def _on_worker_info(self, peer, frame):
        worker = self._worker_for(peer, frame, "unknown_worker")
        if worker is not None:
            self._forward(peer, frame, worker, "info", "worker info", None,
                          p.WORKER_INFO)

    def _on_cache_dump(self, peer, frame):
        worker = self._worker_for(peer, frame, "cache_dump")
        if worker is not None:
            self._forward(peer, frame, worker, "cache", "cache dump", None,
                          p.CACHE_DUMP)

    def _on_kill_worker(self, peer, frame):
        worker = self._worker_for(peer, frame, "unknown_worker")
        if worker is not None:
            self._forward(peer, frame, worker, "kill", "kill", None,
                          p.KILL_WORKER)

    def _on_workers(self, peer, frame):
        now = self.clock()
        rows = [{"worker_id": w.id, "addr": "%s:%s" % w.addr[:2], "pid": w.pid,
                 "max_threads": w.max_threads, "joined_at": w.joined_at,
                 "started_at": w.info.get("started_at"),
                 "inflight": len(w.inflight), "draining": w.draining,
                 "last_heartbeat_age_s": round(now - w.last_seen, 3),
                 "functions": sorted(f for f, s in w.functions.items()
                                     if s in ("ok", "sent"))}
                for w in self.workers.values()]
        self.send(peer.id, p.OK, frame.request_id, None, _json(rows))

    def _on_ping(self, peer, frame):
        self.send(peer.id, p.OK, frame.request_id, {
            "director": self.name, "protocol": p.PROTOCOL_VERSION,
            "workers": len(self.workers), "functions": len(self.functions),
            "uptime_s": round(time.time() - self.started, 3)})

    # ----- statistics --------------------------------------------------------

    def _on_stats(self, peer, frame):
        if not self.statistics_enabled:
            self.error(peer.id, frame.request_id, "statistics",
                       "statistics are disabled on director %s ([statistics] "
                       "enabled = false in its config)" % self.name)
            return
        target = frame.meta().get("f")
        func = None
        if target is not None:
            func = self.resolve(target)
            if func is None:
                self.error(peer.id, frame.request_id, "statistics",
                           "function %r is not registered" % (target,))
                return
        gather = Gather(peer.id, frame.request_id, "stats",
                        {"func_id": func.id if func else None})
        for worker in self.workers.values():
            rid = self._new_rid()
            self._track(rid, worker, gather, "stats")
            self.send(worker.peer_id, p.STATS, rid,
                      {"func_id": func.id if func else None})
        self._finish_if_done(gather)

    def director_figures(self):
        """The Director's own statistics (JSON-ready)."""
        return {"requests_routed": self.requests,
                "errors": self.request_errors,
                "queue_depth": len(self.pending),
                "routed_per_worker": {w.id: w.routed
                                      for w in self.workers.values()},
                "errors_per_worker": {w.id: w.errors
                                      for w in self.workers.values()},
                "uptime_s": round(time.time() - self.started, 3)}

    def _finish_stats(self, gather):
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
            self.error(gather.client_peer, gather.client_rid, "statistics",
                       "statistics are disabled on every worker (%s: "
                       "[statistics] enabled = false)" % ", ".join(disabled))
            return
        functions = aggregate(per_worker)
        for figures in per_worker.values():
            for fig in figures.values():
                fig.pop("recent_s", None)
        self.send(gather.client_peer, p.OK, gather.client_rid, None, _json({
            "functions": functions, "per_worker": per_worker,
            "workers_disabled": disabled, "workers_failed": failed,
            "director": self.director_figures()}))

    # ----- fan-out completion ------------------------------------------------

    def _gathered(self, gather, worker_id, type_, meta, payload, pend):
        gather.waiting.discard(worker_id)
        gather.results[worker_id] = (type_, meta, payload)
        if gather.kind == "deploy":
            worker = self.workers.get(worker_id)
            if worker is not None:
                self._deploy_result(worker, pend.label, type_, meta)
        self._finish_if_done(gather)

    def _finish_if_done(self, gather):
        if not gather.waiting:
            getattr(self, "_finish_" + gather.kind)(gather)

    def _finish_deploy(self, gather):
        ctx = gather.context
        ok = [w for w, r in gather.results.items() if r[0] == p.OK]
        failed = {w: (r[1] or {}).get("message", "error")
                  for w, r in gather.results.items() if r[0] != p.OK}
        if failed and not ok:
            # Useless everywhere: undo, and keep the previous version if any
            # (unless a newer registration of the name came meanwhile).
            if self.by_name.get(ctx["name"]) == ctx["func_id"]:
                self._remove_function(ctx["func_id"])
                if ctx["old"] is not None:
                    self._add_function(ctx["old"])
            self.error(gather.client_peer, gather.client_rid, "registration",
                       "function %r could not be loaded on any worker: %s" % (
                           ctx["name"], "; ".join(
                               "%s: %s" % kv for kv in failed.items())))
            return
        if ctx["replaced"]:
            self._reroute()
            for wid in ok:  # those Workers dropped the old code for the new
                worker = self.workers.get(wid)
                if worker is not None:
                    worker.functions.pop(ctx["replaced"], None)
        log.info("function %s (%s) registered on %d worker(s)%s", ctx["name"],
                 ctx["func_id"], len(ok),
                 ", replacing " + ctx["replaced"] if ctx["replaced"] else "")
        self.send(gather.client_peer, p.OK, gather.client_rid, {
            "func_id": ctx["func_id"], "name": ctx["name"],
            "replaced": ctx["replaced"], "workers": sorted(ok),
            "failed": failed})
