"""The Director's brain: peers, Workers, functions and in-flight requests.

A pure object. The event loop (``director.py``) feeds it events
(``connected``, ``received``, ``disconnected``, ``tick``) and then takes the
frames it wants sent, per peer id, and the peers it wants closed
(``take_output``). It owns routing, worker selection, liveness (heartbeats)
and the in-flight table that makes every call end with exactly one reply. It
does no I/O and never unpickles: function code, arguments and results are
opaque payload bytes; what it routes on is in frame meta (JSON).

Liveness rule: a Worker is evicted when nothing (heartbeat or any other frame)
has arrived from it for more than ``HEARTBEAT_MISSES`` expected heartbeat
intervals, and at once when its connection closes. Its in-flight calls then
fail with a ``worker_lost`` error naming it.
"""

import json
import logging
import random
import time

from . import protocol as p
from .serialization import function_id

log = logging.getLogger(__name__)

HEARTBEAT_MISSES = 3


def _json(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


class Peer:
    """One connection. ``role`` is None until the preamble arrives."""

    __slots__ = ("id", "addr", "role", "ready", "worker_id", "pending")

    def __init__(self, peer_id, addr):
        self.id = peer_id
        self.addr = addr
        self.role = None
        self.ready = False        # handshake done: full frame size allowed
        self.worker_id = None
        self.pending = set()      # director request ids this client awaits


class Worker:
    """A registered Worker."""

    __slots__ = ("id", "peer_id", "addr", "pid", "max_threads", "joined_at",
                 "last_seen", "functions", "inflight", "routed", "errors",
                 "info")

    def __init__(self, worker_id, peer_id, addr, meta, now):
        self.id = worker_id
        self.peer_id = peer_id
        self.addr = addr
        self.pid = meta.get("pid")
        self.max_threads = meta.get("max_threads")
        self.joined_at = time.time()
        self.last_seen = now
        self.functions = {}       # func_id -> "sent" | "ok" | "failed: why"
        self.inflight = set()     # director request ids
        self.routed = 0
        self.errors = 0
        self.info = meta


class Function:
    """A registered function: its code stays opaque bytes."""

    __slots__ = ("id", "name", "params", "code", "registered_at", "deploy_meta",
                 "call_meta", "extra")

    def __init__(self, func_id, name, params, code, extra=None):
        self.id = func_id
        self.name = name
        self.params = params
        self.code = code
        self.registered_at = time.time()
        self.extra = extra or {}
        self.deploy_meta = _json(dict(self.extra, func_id=func_id, name=name,
                                      params=params))
        self.call_meta = _json({"f": func_id})


class Pending:
    """A request forwarded to a Worker, waiting for its reply."""

    __slots__ = ("rid", "client_peer", "client_rid", "worker_id", "kind",
                 "label", "gather", "started")

    def __init__(self, rid, client_peer, client_rid, worker_id, kind, label,
                 gather=None, started=0.0):
        self.rid = rid
        self.client_peer = client_peer   # None: the Director itself asked
        self.client_rid = client_rid
        self.worker_id = worker_id
        self.kind = kind
        self.label = label
        self.gather = gather
        self.started = started


class Gather:
    """A client request fanned out to several Workers."""

    __slots__ = ("client_peer", "client_rid", "kind", "waiting", "results",
                 "context")

    def __init__(self, client_peer, client_rid, kind, context):
        self.client_peer = client_peer
        self.client_rid = client_rid
        self.kind = kind
        self.waiting = set()
        self.results = {}         # worker_id -> (frame type, meta dict, payload)
        self.context = context


class DirectorState:
    """Routing state of one Director.

    Args:
        name: "host:port" of the Director, used in messages.
        strategy: "Random", "Round-Robin" or "Least-Loaded".
        expected_heartbeat_ms: the Workers' promised heartbeat interval.
        statistics_enabled: keep the Director's own figures.
        max_pending: in-flight requests allowed before new calls are refused.
        rng: a ``random.Random`` (tests pass a seeded one).
    """

    def __init__(self, name="director", strategy="Round-Robin",
                 expected_heartbeat_ms=2000, statistics_enabled=True,
                 max_pending=10000, rng=None, clock=time.monotonic):
        self.name = name
        self.strategy = strategy
        self.evict_after = HEARTBEAT_MISSES * expected_heartbeat_ms / 1000.0
        self.statistics_enabled = statistics_enabled
        self.max_pending = max_pending
        self.rng = rng or random.Random()
        self.clock = clock
        self.started = time.time()
        self.peers = {}
        self.workers = {}          # worker_id -> Worker, in join order
        self.functions = {}        # func_id -> Function
        self.by_name = {}          # name -> func_id
        self.pending = {}          # director rid -> Pending
        self._next_rid = 1
        self._rr = 0
        self.outbox = {}
        self.closing = {}
        self.requests = 0
        self.request_errors = 0

    # ----- output -------------------------------------------------------

    def send(self, peer_id, type_, rid=0, meta=None, payload=b"", flags=0):
        """Queue one frame for ``peer_id``."""
        if peer_id in self.peers:
            self.outbox.setdefault(peer_id, []).extend(
                p.frame_parts(type_, rid, meta, payload, flags))

    def error(self, peer_id, rid, code, message, **extra):
        """Queue an ERROR frame."""
        extra.update(code=code, message=message)
        if peer_id in self.peers and self.peers[peer_id].role == p.ROLE_CLIENT:
            self.request_errors += 1
        self.send(peer_id, p.ERROR, rid, extra)

    def close(self, peer_id, reason):
        """Ask the loop to close ``peer_id`` once its output is flushed."""
        if peer_id in self.peers:
            self.closing[peer_id] = reason

    def take_output(self):
        """Return ``(outbox, closing)`` and start empty ones."""
        out, closing = self.outbox, self.closing
        self.outbox, self.closing = {}, {}
        return out, closing

    # ----- connection events ---------------------------------------------

    def connected(self, peer_id, addr):
        self.peers[peer_id] = Peer(peer_id, addr)

    def disconnected(self, peer_id, reason="connection closed"):
        peer = self.peers.pop(peer_id, None)
        self.outbox.pop(peer_id, None)
        self.closing.pop(peer_id, None)
        if peer is None:
            return
        if peer.worker_id is not None:
            self._evict(peer.worker_id, reason)
        for rid in peer.pending:
            pend = self.pending.pop(rid, None)
            if pend is not None and pend.worker_id in self.workers:
                self.workers[pend.worker_id].inflight.discard(rid)
                if pend.kind == "call":
                    self.send(self.workers[pend.worker_id].peer_id, p.CANCEL, rid)
        if peer.pending:
            log.info("client %s left with %d request(s) pending; dropped",
                     peer.addr, len(peer.pending))

    def received(self, peer_id, event):
        """Handle one decoded Preamble or Frame from ``peer_id``."""
        peer = self.peers[peer_id]
        if isinstance(event, p.Preamble):
            self._on_preamble(peer, event)
            return
        if peer.worker_id is not None:
            worker = self.workers.get(peer.worker_id)
            if worker is not None:
                worker.last_seen = self.clock()
        handler = self._handlers.get((peer.role, event.type))
        if peer.role == p.ROLE_WORKER and peer.worker_id is None and (
                event.type != p.REGISTER_WORKER):
            handler = None  # a Worker must register before anything else
        if handler is None or not peer.ready:
            self.error(peer_id, event.request_id, "protocol",
                       "unexpected %s frame from a %s" % (
                           p.TYPE_NAMES.get(event.type, hex(event.type)),
                           p.ROLE_NAMES.get(peer.role, "peer")))
            self.close(peer_id, "protocol error: unexpected message type %d"
                       % event.type)
            return
        handler(self, peer, event)

    def tick(self):
        """Evict Workers that stopped heartbeating. Call periodically."""
        now = self.clock()
        for worker in list(self.workers.values()):
            silent = now - worker.last_seen
            if silent > self.evict_after:
                reason = "no heartbeat for %.1f s" % silent
                self.close(worker.peer_id, reason)
                self._evict(worker.id, reason)

    # ----- handshake ------------------------------------------------------

    def _on_preamble(self, peer, pre):
        if pre.version != p.PROTOCOL_VERSION:
            self.error(peer.id, 0, "version",
                       "director %s speaks PyFaaS protocol version %d; this "
                       "peer sent version %d. Install matching PyFaaS versions."
                       % (self.name, p.PROTOCOL_VERSION, pre.version))
            self.close(peer.id, "protocol version %d" % pre.version)
            return
        if pre.role not in p.ROLE_NAMES:
            self.error(peer.id, 0, "protocol", "unknown role %d" % pre.role)
            self.close(peer.id, "unknown role %d" % pre.role)
            return
        peer.role = pre.role
        peer.ready = True
        self.send(peer.id, p.HELLO, 0, {"protocol": p.PROTOCOL_VERSION,
                                        "auth": "none", "director": self.name})

    # ----- worker side -----------------------------------------------------

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
        self.workers[worker_id] = worker
        peer.worker_id = worker_id
        want = []
        for fid, name in meta.get("functions", []):
            current = self.by_name.get(name)
            if current == fid:
                worker.functions[fid] = "ok"
            elif current is None and fid not in want:
                want.append(fid)  # the Director lost it (restart): ask for it
            else:
                self.send(peer.id, p.UNDEPLOY, 0, {"func_id": fid})
        self.send(peer.id, p.WELCOME, frame.request_id,
                  {"worker_id": worker_id, "want": want})
        for func in self.functions.values():
            if func.id not in worker.functions:
                self._deploy_to(worker, func, None)
        log.info("worker %s joined from %s (pid %s, %d functions held)",
                 worker_id, peer.addr, worker.pid, len(worker.functions))

    def _on_announce(self, peer, frame):
        meta = frame.meta()
        name = meta.get("name")
        fid = function_id(frame.payload)
        worker = self.workers[peer.worker_id]
        if not isinstance(name, str) or self.by_name.get(name, fid) != fid:
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
        for other in self.workers.values():
            if fid not in other.functions:
                self._deploy_to(other, self.functions[fid], None)

    def _on_heartbeat(self, peer, frame):
        pass  # last_seen was refreshed in received()

    def _on_worker_reply(self, peer, frame):
        pend = self.pending.pop(frame.request_id, None)
        worker = self.workers.get(peer.worker_id)
        if pend is None or worker is None or pend.worker_id != worker.id:
            log.debug("dropped late reply %d from worker %s",
                      frame.request_id, peer.worker_id)
            return
        worker.inflight.discard(pend.rid)
        if frame.type == p.ERROR:
            worker.errors += 1
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
            if frame.type == p.ERROR:
                self.request_errors += 1
            self.outbox.setdefault(client.id, []).extend(p.frame_parts(
                frame.type, pend.client_rid, frame.meta_raw, frame.payload,
                frame.flags))

    def _deploy_result(self, worker, func_id, type_, meta):
        if func_id not in worker.functions:
            return
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
        log.warning("worker %s (%s) removed: %s; %d call(s) in flight lost",
                    worker_id, worker.addr, reason, len(worker.inflight))
        for rid in sorted(worker.inflight):
            pend = self.pending.pop(rid, None)
            if pend is None:
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
            client.pending.discard(rid)
            self.error(client.id, pend.client_rid, "worker_lost",
                       "worker %s was lost while running %s (%s)"
                       % (worker_id, pend.label, reason), worker_id=worker_id)

    # ----- function registry -------------------------------------------------

    def _add_function(self, func):
        self.functions[func.id] = func
        self.by_name[func.name] = func.id

    def _remove_function(self, func_id):
        func = self.functions.pop(func_id, None)
        if func is not None and self.by_name.get(func.name) == func_id:
            del self.by_name[func.name]
        return func

    def resolve(self, name_or_id):
        """The Function for a name or an id, or None."""
        if not isinstance(name_or_id, str):
            return None
        func = self.functions.get(name_or_id)
        if func is None:
            fid = self.by_name.get(name_or_id)
            func = self.functions.get(fid) if fid else None
        return func

    def _deploy_to(self, worker, func, gather, replaces=None):
        rid = self._new_rid()
        meta = func.deploy_meta
        if replaces:
            meta = _json({"func_id": func.id, "name": func.name,
                          "params": func.params, "replaces": replaces})
        worker.functions[func.id] = "sent"
        kind = "deploy" if gather is not None else "deploy-sync"
        pend = Pending(rid, gather and gather.client_peer, 0, worker.id, kind,
                       func.id, gather, self.clock())
        self.pending[rid] = pend
        worker.inflight.add(rid)
        if gather is not None:
            gather.waiting.add(worker.id)
        self.send(worker.peer_id, p.DEPLOY, rid, meta, func.code)

    def _new_rid(self):
        rid = self._next_rid
        self._next_rid += 1
        return rid

    # ----- client requests ---------------------------------------------------

    def _on_deploy(self, peer, frame):
        meta = frame.meta()
        name = meta.get("name")
        if not isinstance(name, str) or not name or not frame.payload:
            self.error(peer.id, frame.request_id, "registration",
                       "a DEPLOY needs a function name and its code")
            return
        fid = function_id(frame.payload)
        old_id = self.by_name.get(name)
        old = self.functions.get(old_id) if old_id else None
        if old_id is not None and old_id != fid:
            self._remove_function(old_id)
        extra = {k: v for k, v in meta.items() if k not in ("name", "params")}
        func = self.functions.get(fid)
        if func is None or func.name != name:
            func = Function(fid, name, meta.get("params"), frame.payload, extra)
        self._add_function(func)
        gather = Gather(peer.id, frame.request_id, "deploy",
                        {"func_id": fid, "name": name, "old": old,
                         "replaced": old_id if old_id != fid else None})
        replaces = old_id if old_id != fid else None
        for worker in self.workers.values():
            worker.functions.pop(replaces, None)
            self._deploy_to(worker, func, gather, replaces=replaces)
        self._finish_if_done(gather)

    def _on_undeploy(self, peer, frame):
        target = frame.meta().get("f")
        func = self.resolve(target)
        if func is None:
            self.error(peer.id, frame.request_id, "unregistration",
                       "function %r is not registered" % (target,))
            return
        self._remove_function(func.id)
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
            listing[func.id] = dict(func.extra, name=func.name,
                                    params=func.params,
                                    registered_at=func.registered_at,
                                    workers=holders)
        self.send(peer.id, p.OK, frame.request_id, None, _json(listing))

    def _eligible(self, func_id):
        return [w for w in self.workers.values()
                if w.functions.get(func_id) in ("ok", "sent")]

    def choose_worker(self, candidates):
        """Pick one of ``candidates`` (a non-empty list) by the strategy."""
        if self.strategy == "Random":
            return self.rng.choice(candidates)
        if self.strategy == "Least-Loaded":
            return min(candidates, key=lambda w: len(w.inflight))
        self._rr += 1
        return candidates[self._rr % len(candidates)]

    def _on_call(self, peer, frame):
        meta = frame.meta()
        target = meta.get("f")
        func = self.resolve(target)
        if func is None:
            self.error(peer.id, frame.request_id, "not_registered",
                       "function %r is not registered" % (target,))
            return
        if not self.workers:
            self.error(peer.id, frame.request_id, "no_workers",
                       "no worker is registered with director %s" % self.name)
            return
        candidates = self._eligible(func.id)
        if not candidates:
            why = "; ".join("%s: %s" % (w.id, w.functions.get(func.id))
                            for w in self.workers.values())
            self.error(peer.id, frame.request_id, "no_workers",
                       "no worker can run %r (%s)" % (func.name, why))
            return
        if len(self.pending) >= self.max_pending:
            self.error(peer.id, frame.request_id, "overloaded",
                       "director %s has %d requests in flight (max_pending_"
                       "calls); retry later" % (self.name, len(self.pending)))
            return
        worker = self.choose_worker(candidates)
        if len(meta) > 1:
            meta["f"] = func.id
            call_meta = meta
        else:
            call_meta = func.call_meta
        self.requests += 1
        self._forward(peer, frame, worker, "call", repr(func.name),
                      call_meta, p.CALL)

    def _forward(self, peer, frame, worker, kind, label, meta, type_):
        rid = self._new_rid()
        self.pending[rid] = Pending(rid, peer.id, frame.request_id, worker.id,
                                    kind, label, None, self.clock())
        worker.inflight.add(rid)
        worker.routed += 1
        peer.pending.add(rid)
        self.send(worker.peer_id, type_, rid, meta, frame.payload, frame.flags)

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

    def _on_kill_worker(self, peer, frame):
        worker = self._worker_for(peer, frame, "unknown_worker")
        if worker is not None:
            self._forward(peer, frame, worker, "kill", "kill", None,
                          p.KILL_WORKER)

    def _on_workers(self, peer, frame):
        now = self.clock()
        rows = [{"worker_id": w.id, "addr": "%s:%s" % w.addr[:2], "pid": w.pid,
                 "max_threads": w.max_threads, "joined_at": w.joined_at,
                 "inflight": len(w.inflight),
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

    # ----- fan-out requests ------------------------------------------------

    def _gathered(self, gather, worker_id, type_, meta, payload, pend):
        gather.waiting.discard(worker_id)
        gather.results[worker_id] = (type_, meta, payload)
        if gather.kind == "deploy":
            worker = self.workers.get(worker_id)
            if worker is not None:
                self._deploy_result(worker, pend.label, type_, meta)
        self._finish_if_done(gather)

    def _finish_if_done(self, gather):
        if gather.waiting:
            return
        finish = self._finishers[gather.kind]
        finish(self, gather)

    def _finish_deploy(self, gather):
        ctx = gather.context
        ok = [w for w, r in gather.results.items() if r[0] == p.OK]
        failed = {w: (r[1] or {}).get("message", "error")
                  for w, r in gather.results.items() if r[0] != p.OK}
        if failed and not ok:
            # Useless everywhere: undo, and keep the previous version if any.
            self._remove_function(ctx["func_id"])
            if ctx["old"] is not None:
                self._add_function(ctx["old"])
            self.error(gather.client_peer, gather.client_rid, "registration",
                       "function %r could not be loaded on any worker: %s" % (
                           ctx["name"], "; ".join(
                               "%s: %s" % kv for kv in failed.items())))
            return
        log.info("function %s (%s) registered on %d worker(s)%s", ctx["name"],
                 ctx["func_id"], len(ok),
                 ", replacing " + ctx["replaced"] if ctx["replaced"] else "")
        self.send(gather.client_peer, p.OK, gather.client_rid, {
            "func_id": ctx["func_id"], "name": ctx["name"],
            "replaced": ctx["replaced"], "workers": sorted(ok),
            "failed": failed})

    _finishers = {"deploy": _finish_deploy}

    _handlers = {
        (p.ROLE_WORKER, p.REGISTER_WORKER): _on_register_worker,
        (p.ROLE_WORKER, p.ANNOUNCE): _on_announce,
        (p.ROLE_WORKER, p.HEARTBEAT): _on_heartbeat,
        (p.ROLE_WORKER, p.OK): _on_worker_reply,
        (p.ROLE_WORKER, p.ERROR): _on_worker_reply,
        (p.ROLE_CLIENT, p.DEPLOY): _on_deploy,
        (p.ROLE_CLIENT, p.UNDEPLOY): _on_undeploy,
        (p.ROLE_CLIENT, p.LIST): _on_list,
        (p.ROLE_CLIENT, p.CALL): _on_call,
        (p.ROLE_CLIENT, p.WORKERS): _on_workers,
        (p.ROLE_CLIENT, p.WORKER_INFO): _on_worker_info,
        (p.ROLE_CLIENT, p.KILL_WORKER): _on_kill_worker,
        (p.ROLE_CLIENT, p.PING): _on_ping,
    }
