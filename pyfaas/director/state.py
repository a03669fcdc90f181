"""The Director's brain: peers, Workers, functions and in-flight requests.

A pure object. The event loop (``director.py``) feeds it events
(``connected``, ``received``, ``disconnected``, ``tick``) and then takes the
frames it wants sent, per peer id, and the peers it wants closed
(``take_output``). It owns routing, worker selection, liveness (heartbeats)
and the in-flight table that makes every call end with exactly one reply. It
does no I/O and never unpickles: function code, arguments and results are
opaque payload bytes; what it routes on is in frame meta (JSON). Its
mixins answer the handshake (``director_handshake``), Workers
(``director_workers``), client requests (``director_requests``) and
workflows (``director_workflows``).

Liveness rule: a Worker is evicted when nothing (heartbeat or any other frame)
has arrived from it for more than ``HEARTBEAT_MISSES`` expected heartbeat
intervals, and at once when its connection closes. Its in-flight calls then
fail with a ``worker_lost`` error naming it.
"""

import json
import logging
import random
import time

from ..memo import Memo
from ..wire import protocol as p
from .handshake import Handshake
from .requests import ClientRequests
from .tables import Peer, Pending, _json
from .workers import WorkerEvents
from .workflows import WorkflowRequests

log = logging.getLogger(__name__)

HEARTBEAT_MISSES = 3


class DirectorState(Handshake, WorkerEvents, ClientRequests,
                    WorkflowRequests):
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
                 max_pending=10000, rng=None, clock=time.monotonic,
                 token=None, handshake_timeout=5.0):
        self.name = name
        self.strategy = strategy
        self.evict_after = HEARTBEAT_MISSES * expected_heartbeat_ms / 1000.0
        self.statistics_enabled = statistics_enabled
        self.max_pending = max_pending
        self.token = token
        self.max_frame = p.DEFAULT_MAX_FRAME_SIZE
        self.handshake_timeout = handshake_timeout
        self.rng = rng or random.Random()
        self.clock = clock
        self.started = time.time()
        self.peers = {}
        self.workers = {}          # worker_id -> Worker, in join order
        self.functions = {}        # func_id -> Function
        self.by_name = {}          # name -> func_id
        self.pending = {}          # director rid -> Pending
        self.runs = {}             # (client peer, client rid) -> workflow Run
        self.unregistered = set()  # ids unregistered here: never restored
        self.cache_owner = {}      # cache key -> (worker_id, func_id)
        self.cached_by_func = {}   # func_id -> set of cache keys
        self._next_rid = 1
        self._rr = 0
        self.outbox = {}
        self.closing = {}
        self.requests = 0
        self.request_errors = 0
        self.draining = False      # stopping: refuse new calls and workflows
        self._bound = {key: getattr(self, name)
                       for key, name in self._handlers.items()}
        self._by_role = {role: {type_: handler for (r, type_), handler
                                in self._bound.items() if r == role}
                         for role in (p.ROLE_CLIENT, p.ROLE_WORKER)}
        # CALL meta bytes -> Route; cleared by every change a Route depends
        # on (Workers joining, leaving or draining; functions added,
        # removed, deployed or failing to load): see _reroute.
        self._routes = Memo()

    # ----- output -------------------------------------------------------

    def send(self, peer_id, type_, rid=0, meta=None, payload=b"", flags=0):
        """Queue one frame for ``peer_id``."""
        if peer_id in self.peers:
            parts = p.frame_parts(type_, rid, meta, payload, flags)
            out = self.outbox.get(peer_id)
            if out is None:
                self.outbox[peer_id] = parts
            else:
                out += parts

    def error(self, peer_id, rid, code, message, **extra):
        """Queue an ERROR frame."""
        extra.update(code=code, message=message)
        if self.statistics_enabled and peer_id in self.peers and \
                self.peers[peer_id].role == p.ROLE_CLIENT:
            self.request_errors += 1
        self.send(peer_id, p.ERROR, rid, extra)

    def close(self, peer_id, reason):
        """Ask the loop to close ``peer_id`` once its output is flushed."""
        peer = self.peers.get(peer_id)
        if peer is not None and not peer.closing:
            peer.closing = True
            self.closing[peer_id] = reason

    def take_output(self):
        """Return ``(outbox, closing)`` and start empty ones: the frames to
        send (peer id -> list of byte pieces, theirs to keep) and the peers
        to close once their frames are written (peer id -> reason)."""
        out, closing = self.outbox, self.closing
        self.outbox = {}
        if closing:
            self.closing = {}
        return out, closing

    # ----- connection events ---------------------------------------------

    def connected(self, peer_id, addr):
        peer = Peer(peer_id, addr)
        peer.deadline = self.clock() + self.handshake_timeout
        self.peers[peer_id] = peer

    def disconnected(self, peer_id, reason="connection closed"):
        peer = self.peers.pop(peer_id, None)
        self.outbox.pop(peer_id, None)
        self.closing.pop(peer_id, None)
        if peer is None:
            return
        if not peer.ready:
            # Often a client or Worker that found it lacks the token.
            log.warning("peer %s:%s left before finishing the handshake (%s)",
                        peer.addr[0], peer.addr[1], reason)
        if peer.worker_id is not None:
            self._evict(peer.worker_id, reason)
        for key in [k for k in self.runs if k[0] == peer_id]:
            run = self.runs.pop(key)
            run.failed = "(client left)"
        dropped = len(peer.pending)
        for rid in peer.pending:
            pend = self.pending.pop(rid, None)
            worker = self.workers.get(pend.worker_id) if pend else None
            if worker is not None:
                worker.inflight.discard(rid)
                if pend.kind in ("call", "step"):
                    self.send(worker.peer_id, p.CANCEL, rid)
        if dropped:
            log.info("client %s:%s left with %d request(s) pending; dropped",
                     peer.addr[0], peer.addr[1], dropped)

    def received(self, peer_id, event):
        """Handle one decoded Preamble or Frame from ``peer_id``."""
        peer = self.peers[peer_id]
        handlers = peer.handlers
        if handlers is not None:  # a ready client or a registered Worker
            if peer.worker_id is not None:
                worker = self.workers.get(peer.worker_id)
                if worker is not None:
                    worker.last_seen = self.clock()
            handler = handlers.get(event.type)
            if handler is None:
                self._unexpected(peer, event)
            else:
                handler(peer, event)
            return
        if isinstance(event, p.Preamble):
            self._on_preamble(peer, event)
            return
        if peer.worker_id is not None:
            worker = self.workers.get(peer.worker_id)
            if worker is not None:
                worker.last_seen = self.clock()
        if not peer.ready:
            if event.type == p.AUTH and peer.nonce is not None:
                self._on_auth(peer, event)
                return
            handler = None
        else:
            handler = self._bound.get((peer.role, event.type))
        if peer.role == p.ROLE_WORKER and peer.worker_id is None and (
                event.type != p.REGISTER_WORKER):
            handler = None  # a Worker must register before anything else
        if handler is None:
            self._unexpected(peer, event)
            return
        handler(peer, event)
        if peer.ready and (peer.role == p.ROLE_CLIENT
                           or peer.worker_id is not None):
            peer.handlers = self._by_role[peer.role]

    def _reroute(self):
        """Something a Route depends on changed: every route is dropped (to
        be rebuilt at its next use), so none is stale and none keeps an
        unregistered function's code or a lost Worker alive."""
        self._routes.clear()

    def _unexpected(self, peer, event):
        self.error(peer.id, event.request_id, "protocol",
                   "unexpected %s frame from a %s" % (
                       p.TYPE_NAMES.get(event.type, hex(event.type)),
                       p.ROLE_NAMES.get(peer.role, "peer")))
        self.close(peer.id, "protocol error: unexpected message type %d"
                   % event.type)

    def client_work(self):
        """Requests of connected clients still waiting for an answer
        (registrations and statistics fanned out to Workers included)."""
        peers = self.peers
        return sum(1 for pend in self.pending.values()
                   if pend.client_peer in peers) + len(self.runs)

    def forgive_pause(self):
        """The Director itself stalled (paused, swapped out): heartbeats that
        arrived meanwhile are still unread, so no Worker is judged by them."""
        now = self.clock()
        for worker in self.workers.values():
            worker.last_seen = now

    def touch(self, peer_id):
        """Bytes arrived from ``peer_id``: a Worker sending a large frame is
        alive even while its heartbeats wait behind that frame."""
        peer = self.peers.get(peer_id)
        if peer is not None and peer.worker_id is not None:
            worker = self.workers.get(peer.worker_id)
            if worker is not None:
                worker.last_seen = self.clock()

    def tick(self):
        """Evict Workers that stopped heartbeating. Call periodically."""
        now = self.clock()
        for worker in list(self.workers.values()):
            silent = now - worker.last_seen
            if silent > self.evict_after:
                reason = "no heartbeat for %.1f s" % silent
                self.close(worker.peer_id, reason)
                self._evict(worker.id, reason)

    # ----- function registry -------------------------------------------------

    def _add_function(self, func):
        self._reroute()
        self.functions[func.id] = func
        self.by_name[func.name] = func.id

    def _remove_function(self, func_id):
        self._reroute()
        for key in list(self.cached_by_func.get(func_id, ())):
            self._forget_key(key)
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
        self._reroute()
        rid = self._new_rid()
        meta = func.deploy_meta
        if replaces:
            meta = _json(dict(json.loads(meta), replaces=replaces))
        if len(func.code) + 4096 > worker.max_frame:
            worker.functions[func.id] = (
                "failed: its code (%d bytes) is over this worker's frame "
                "limit" % len(func.code))
            if gather is not None:
                gather.results[worker.id] = (p.ERROR, {
                    "message": worker.functions[func.id][8:]}, b"")
            return
        worker.functions[func.id] = "sent"
        if gather is not None:
            self._track(rid, worker, gather, "deploy", func.id)
        else:  # the Director's own deployment to a joining Worker
            self.pending[rid] = Pending(rid, None, 0, worker.id, "deploy-sync",
                                        func.id, None, self.clock())
            worker.inflight.add(rid)
        self.send(worker.peer_id, p.DEPLOY, rid, meta, func.code)

    def _track(self, rid, worker, gather, kind, label=""):
        """Record a fan-out request sent to ``worker`` as part of ``gather``."""
        self.pending[rid] = Pending(rid, gather.client_peer, 0, worker.id,
                                    kind, label, gather, self.clock())
        worker.inflight.add(rid)
        gather.waiting.add(worker.id)

    def _new_rid(self):
        rid = self._next_rid
        self._next_rid += 1
        return rid

    # (role, message type) -> method name. Client requests are answered in
    # director_requests.py.
    _handlers = {
        (p.ROLE_WORKER, p.REGISTER_WORKER): "_on_register_worker",
        (p.ROLE_WORKER, p.ANNOUNCE): "_on_announce",
        (p.ROLE_WORKER, p.HEARTBEAT): "_on_heartbeat",
        (p.ROLE_WORKER, p.OK): "_on_worker_reply",
        (p.ROLE_WORKER, p.ERROR): "_on_worker_reply",
        (p.ROLE_CLIENT, p.DEPLOY): "_on_deploy",
        (p.ROLE_CLIENT, p.UNDEPLOY): "_on_undeploy",
        (p.ROLE_CLIENT, p.LIST): "_on_list",
        (p.ROLE_CLIENT, p.CALL): "_on_call",
        (p.ROLE_CLIENT, p.CALL_MANY): "_on_call_many",
        (p.ROLE_CLIENT, p.CANCEL): "_on_cancel",
        (p.ROLE_CLIENT, p.WORKERS): "_on_workers",
        (p.ROLE_CLIENT, p.WORKER_INFO): "_on_worker_info",
        (p.ROLE_CLIENT, p.KILL_WORKER): "_on_kill_worker",
        (p.ROLE_CLIENT, p.PING): "_on_ping",
        (p.ROLE_CLIENT, p.STATS): "_on_stats",
        (p.ROLE_CLIENT, p.CACHE_DUMP): "_on_cache_dump",
        (p.ROLE_CLIENT, p.CHAIN): "_on_chain",
    }
