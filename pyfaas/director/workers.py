"""The Director's side of its Workers.

A mixin of :class:`pyfaas.director.state.DirectorState`: a Worker's
registration (its id, the functions it holds, the cached results it kept),
the functions it announces, its heartbeats (and its graceful stop), its
replies to the requests it was sent, and its eviction, which fails or
re-runs the calls it had. Pure, like the state it extends.
"""

import json
import logging

from ..wire import protocol as p
from .tables import Function, Worker
from ..ids import function_id

log = logging.getLogger(__name__)


class WorkerEvents:
    """Worker message handlers and eviction; mixed into DirectorState."""

    def _on_register_worker(self, peer, frame):
        if peer.worker_id is not None:
            self.error(peer.id, frame.request_id, "protocol",
                       "worker already registered as %s" % peer.worker_id)
            return
        meta = frame.meta()
        wanted = str(meta.get("worker_id") or "worker")
        worker_id, n = wanted, 1
        while worker_id in self.workers:
            n += 1
            worker_id = "%s-%d" % (wanted, n)
        worker = Worker(worker_id, peer.id, peer.addr, meta, self.clock())
        self._reroute()
        self.workers[worker_id] = worker
        peer.worker_id = worker_id
        want, stale = [], []
        for fid, name in meta.get("functions", []):
            current = self.by_name.get(name)
            if current == fid:
                worker.functions[fid] = "ok"
            elif current is None and fid not in want \
                    and fid not in self.unregistered:
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
                    self._remember_key(worker, key, fid)
                elif fid in want:  # kept until the function is announced
                    worker.held_keys.setdefault(fid, []).append(key)
        self.send(peer.id, p.WELCOME, frame.request_id,
                  {"worker_id": worker_id, "want": want})
        for fid in stale:  # after WELCOME: the Worker reads from there on
            self.send(peer.id, p.UNDEPLOY, 0, {"func_id": fid})
        for func in self.functions.values():
            if func.id not in worker.functions:
                self._deploy_to(worker, func, None)
        log.info("worker %s joined from %s:%s (pid %s, %d functions held)",
                 worker_id, peer.addr[0], peer.addr[1], worker.pid,
                 len(worker.functions))

    def _on_announce(self, peer, frame):
        meta = frame.meta()
        name = meta.get("name")
        fid = function_id(frame.payload, name if isinstance(name, str) else "")
        worker = self.workers[peer.worker_id]
        self._reroute()
        if not isinstance(name, str) or self.by_name.get(name, fid) != fid:
            worker.held_keys.pop(meta.get("func_id"), None)
            self.send(peer.id, p.UNDEPLOY, 0, {"func_id": meta.get("func_id")})
            return
        extra = {k: v for k, v in meta.items()
                 if k not in ("func_id", "name", "params")}
        if fid not in self.functions:
            self._add_function(Function(fid, name, meta.get("params"),
                                        frame.payload, extra))
            log.info("function %s (%s) restored from worker %s", name, fid,
                     worker.id)
        worker.functions[fid] = "ok"
        for key in worker.held_keys.pop(meta.get("func_id"), ()):
            self._remember_key(worker, key, fid)
        for other in self.workers.values():
            if fid not in other.functions:
                self._deploy_to(other, self.functions[fid], None)

    def _on_heartbeat(self, peer, frame):
        # last_seen was refreshed in received(). A stopping Worker says it
        # is draining: route nothing more to it, and confirm.
        if frame.request_id and frame.meta().get("draining"):
            worker = self.workers.get(peer.worker_id)
            if worker is not None and not worker.draining:
                worker.draining = True
                self._reroute()
                log.info("worker %s is stopping: no new calls for it",
                         worker.id)
            self.send(peer.id, p.OK, frame.request_id)

    def _on_worker_reply(self, peer, frame):
        pend = self.pending.get(frame.request_id)
        worker = self.workers.get(peer.worker_id)
        if pend is None or worker is None or pend.worker_id != worker.id:
            log.debug("dropped late or misdirected reply %d from worker %s",
                      frame.request_id, peer.worker_id)
            return
        del self.pending[frame.request_id]
        worker.inflight.discard(pend.rid)
        kind = pend.kind
        if frame.type == p.ERROR:
            if self.statistics_enabled:
                worker.errors += 1
        elif frame.meta_raw and kind in ("call", "step"):
            self._note_cache(worker, frame.meta())
        if kind == "step":
            self._step_reply(pend, frame.type, frame.meta()
                             if frame.type == p.ERROR else None, frame.payload)
            return
        if pend.gather is not None:
            meta = frame.meta() if frame.type == p.ERROR else None
            self._gathered(pend.gather, worker.id, frame.type, meta,
                           frame.payload, pend)
            return
        if pend.kind == "deploy-sync":
            self._deploy_result(worker, pend.label,
                                frame.type,
                                frame.meta() if frame.type == p.ERROR else None)
            return
        client = self.peers.get(pend.client_peer)
        if client is not None:
            client.pending.discard(pend.rid)
            if frame.type == p.ERROR and self.statistics_enabled:
                self.request_errors += 1
            self.send(client.id, frame.type, pend.client_rid, frame.meta_raw,
                      frame.payload, frame.flags)

    def _deploy_result(self, worker, func_id, type_, meta):
        if func_id not in worker.functions:
            return
        self._reroute()
        if type_ == p.OK:
            worker.functions[func_id] = "ok"
        else:
            why = (meta or {}).get("message", "unknown error")
            worker.functions[func_id] = "failed: " + why
            log.warning("worker %s could not load function %s: %s",
                        worker.id, func_id, why)

    def _evict(self, worker_id, reason):
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        self._reroute()
        log.warning("worker %s (%s:%s) removed: %s; %d call(s) in flight lost",
                    worker_id, worker.addr[0], worker.addr[1], reason,
                    len(worker.inflight))
        for key in list(worker.cache_keys):
            self._forget_key(key)
        for rid in sorted(worker.inflight):
            pend = self.pending.pop(rid, None)
            if pend is None:
                continue
            lost = {"code": "worker_lost", "worker_id": worker_id,
                    "message": "worker %s was lost: %s" % (worker_id, reason)}
            if pend.kind == "step":
                self._step_reply(pend, p.ERROR, lost, b"")
                continue
            if pend.gather is not None:
                self._gathered(pend.gather, worker_id, p.ERROR, {
                    "code": "worker_lost",
                    "message": "worker %s was lost: %s" % (worker_id, reason)},
                    b"", pend)
                continue
            client = self.peers.get(pend.client_peer)
            if client is None:
                continue
            if pend.retries > 0 and self._retry(pend, worker_id, reason):
                continue
            client.pending.discard(rid)
            self.error(client.id, pend.client_rid, "worker_lost",
                       "worker %s was lost while running %s (%s)"
                       % (worker_id, pend.label, reason), worker_id=worker_id)
