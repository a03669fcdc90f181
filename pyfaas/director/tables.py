"""Records the Director keeps: peers, Workers, functions, pending requests.

Plain data holders used by every part of :mod:`pyfaas.director`; no
behaviour beyond construction, except :class:`Gather`, which collects the
replies of a request fanned out to every Worker.
"""

import json
import time
from collections import deque

from ..wire.protocol import ERROR
from .tallies import NO_TALLY, WINDOW, Tallies


def _json(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


class Peer:
    """One connection. ``role`` is None until the preamble arrives."""

    __slots__ = ("id", "addr", "role", "ready", "worker_id", "worker",
                 "pending", "nonce", "deadline", "closing", "handlers")

    def __init__(self, peer_id, addr):
        self.id = peer_id
        self.addr = addr
        self.role = None
        self.ready = False        # handshake done: full frame size allowed
        self.worker_id = None
        self.worker = None        # its Worker record, once registered
        self.pending = set()      # director request ids this client awaits
        self.nonce = None         # our challenge, while authentication runs
        self.deadline = 0.0       # the handshake must finish before this
        self.closing = False      # asked to be closed
        self.handlers = None      # message type -> handler, once all is set


def _count(value, default):
    """``value`` if it is a positive int (not a bool), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) \
        and value > 0 else default


class Worker:
    """A registered Worker.

    Besides what it said at registration: ``stuck``, its calls still
    running past their time limit (from its heartbeats; ``wedged`` once
    they hold every thread: it takes no call), ``inflight_bytes``, the
    argument bytes of its requests in flight, kept within ``max_inflight``,
    and for the status document its calls' tallies and latest latencies
    and its last heartbeat's figures (``load``).
    """

    __slots__ = ("id", "peer_id", "addr", "pid", "max_threads", "joined_at",
                 "last_seen", "functions", "inflight", "routed", "errors",
                 "info", "cache_keys", "held_keys", "draining", "max_frame",
                 "stuck", "wedged", "inflight_bytes", "max_inflight",
                 "supervised", "restarts", "last_cause", "recycling", "room",
                 "tallies", "recent", "load", "beat_every", "beat_at")

    def __init__(self, worker_id, peer_id, addr, meta, now):
        self.id = worker_id
        self.peer_id = peer_id
        self.addr = addr
        self.pid = meta.get("pid")
        self.max_threads = _count(meta.get("max_threads"), 1)
        self.joined_at = time.time()
        self.last_seen = now
        self.functions = {}       # func_id -> "sent" | "ok" | "failed: why"
        self.inflight = set()     # director request ids
        self.routed = 0
        self.errors = 0
        self.info = meta
        self.cache_keys = set()   # keys of results it cached (as it told us)
        self.held_keys = {}       # func_id -> restored keys, until announced
        self.draining = False     # stopping: no new calls
        self.recycling = False    # stopping to be restarted at once
        self.max_frame = _count(meta.get("max_frame"), 2 ** 32 - 1)
        self.stuck = 0
        self.room = self.max_threads  # threads not stuck
        self.wedged = False
        self.inflight_bytes = 0
        self.max_inflight = _count(meta.get("max_inflight_bytes"), 2 ** 63)
        self.supervised = meta.get("supervised") is True
        self.restarts = _count(meta.get("restarts"), 0)
        cause = meta.get("last_cause")
        self.last_cause = cause if isinstance(cause, str) else None
        self.tallies = Tallies()  # func_id -> Tally of its calls here
        self.recent = deque(maxlen=WINDOW)  # latest call latencies here
        self.load = {}            # its last heartbeat's figures (checked)
        # A Worker that announces its heartbeat interval hears from us at
        # most every half of it while we hear from it (0: it did not ask).
        self.beat_every = _count(meta.get("heartbeat_ms"), 0) / 2000.0
        self.beat_at = now


class Function:
    """A registered function: its code stays opaque bytes."""

    __slots__ = ("id", "name", "label", "params", "code", "registered_at",
                 "deploy_meta", "call_meta", "extra")

    def __init__(self, func_id, name, params, code, extra=None):
        self.id = func_id
        self.name = name
        self.label = repr(name)   # how messages name it
        self.params = params
        self.code = code
        self.registered_at = time.time()
        self.extra = extra or {}
        self.deploy_meta = _json(dict(self.extra, func_id=func_id, name=name,
                                      params=params))
        self.call_meta = _json({"f": func_id})


class Pending:
    """A request forwarded to a Worker, waiting for its reply.

    ``owner`` is told how it ended: ``owner.reply(pend, worker, frame)``
    when the Worker answers, ``owner.lost(pend, worker_id, reason)`` when
    the Worker is lost first (a :class:`Gather`, or the part of the state
    that sent it). ``size``: the argument bytes it holds in flight (see
    :meth:`pyfaas.director.cluster.Cluster.track`); ``deaths``: the
    :class:`pyfaas.director.deaths.Death` of each Worker lost while it ran;
    ``tally``: a call's or a step's :class:`~pyfaas.director.tallies.Tally`
    (NO_TALLY for other requests).
    """

    __slots__ = ("rid", "client_peer", "client_rid", "worker_id", "kind",
                 "label", "owner", "started", "retries", "resend", "context",
                 "size", "deaths", "tally")

    def __init__(self, rid, client_peer, client_rid, worker_id, kind, label,
                 owner, started=0.0, context=None, size=0, tally=NO_TALLY):
        self.rid = rid
        self.client_peer = client_peer   # None: the Director itself asked
        self.client_rid = client_rid
        self.worker_id = worker_id
        self.kind = kind          # call, step, deploy, deploy-sync, stats, ...
        self.label = label
        self.owner = owner
        self.started = started
        self.retries = 0          # re-runs allowed if its Worker is lost
        self.resend = None        # (func_id, meta, payload, flags) to re-run
        self.context = context    # for the owner (a step: its workflow Run)
        self.size = size
        self.deaths = ()
        self.tally = tally


class Route:
    """Where calls with one CALL meta may go.

    Kept per meta bytes (a :class:`pyfaas.memo.Memo`) so that the next
    call with the same meta skips resolving the function and listing its
    Workers; dropped as soon as anything a route depends on changes
    (:meth:`pyfaas.director.cluster.Cluster.reroute`).
    """

    __slots__ = ("func", "candidates", "min_frame", "call_meta", "retries")

    def __init__(self, func, candidates, call_meta, retries):
        self.func = func
        self.candidates = candidates   # eligible Workers, non-empty
        self.min_frame = min(w.max_frame for w in candidates)
        self.call_meta = call_meta     # what the Worker gets (bytes or dict)
        self.retries = retries         # re-runs allowed if a Worker is lost


class Gather:
    """A client request fanned out to several Workers (DEPLOY, STATS).

    It owns the Pending entry of each Worker's request; once none is
    missing, ``done(gather)`` answers the client. ``each(gather, worker_id,
    type, meta)`` (optional) sees every reply as it comes.
    """

    __slots__ = ("client_peer", "client_rid", "kind", "waiting", "results",
                 "context", "done", "each")

    def __init__(self, client_peer, client_rid, kind, context, done,
                 each=None):
        self.client_peer = client_peer
        self.client_rid = client_rid
        self.kind = kind
        self.waiting = set()
        self.results = {}     # worker_id -> (frame type, meta dict, payload)
        self.context = context
        self.done = done
        self.each = each

    def reply(self, pend, worker, frame):
        meta = frame.meta() if frame.type == ERROR else None
        self._add(worker.id, frame.type, meta, frame.payload)

    def lost(self, pend, worker_id, reason):
        self._add(worker_id, ERROR, {
            "code": "worker_lost",
            "message": "worker %s was lost: %s" % (worker_id, reason)}, b"")

    def _add(self, worker_id, type_, meta, payload):
        self.waiting.discard(worker_id)
        self.results[worker_id] = (type_, meta, payload)
        if self.each is not None:
            self.each(self, worker_id, type_, meta)
        self.finish_if_done()

    def finish_if_done(self):
        """Answer the client if no Worker's reply is missing."""
        if not self.waiting:
            self.done(self)
