"""The Director's brain: every decision, and no I/O.

Owns :class:`DirectorState`, a pure object. The event loop
(:mod:`pyfaas.director.loop`) feeds it events (``connected``, ``received``,
``disconnected``, ``tick``, ``expire_handshakes``) and then takes what it
wants done (``take_output``: frames to send per peer id, peers to close),
and writes it. Nothing here touches a socket or unpickles anything:
function code, arguments and results are opaque payload bytes; what it
routes on is in frame meta (JSON).

It is made of explicit parts sharing one :class:`~.cluster.Cluster` (the
tables) and one :class:`~.outbox.Outbox` (the output):
:class:`~.handshake.Handshake`, :class:`~.workers.WorkerEvents`,
:class:`~.functions.Functions`, :class:`~.calls.Calls`,
:class:`~.queries.Queries`, :class:`~.workflows.Workflows` and
:class:`~.monitor.Monitor` (the status document), with
:class:`~.deaths.Deaths` (calls waiting on Workers that died) and
:class:`~.grace.Grace` (requests held in the start-up window). This module
wires them together, dispatches each frame to the part that answers it,
and has the held requests looked at again when a Worker registers or
announces a function, at each tick, and when the Director stops; a
request sent to a Worker carries its owner (the part, or the
:class:`~.tables.Gather`, that is told how it ended), so every request
ends exactly once: by its Worker's reply, the loss of its Worker, the
client's CANCEL or the client leaving.
"""

import logging
import random
import time

from ..wire import protocol as p
from .admission import Throttle
from .calls import Calls
from .cluster import Cluster
from .deaths import Deaths
from .functions import Functions
from .grace import Grace
from .handshake import Handshake
from .monitor import Monitor
from .outbox import Outbox
from .queries import Queries
from .tables import Peer
from .workers import WorkerEvents
from .workflows import Workflows

log = logging.getLogger(__name__)


class DirectorState:
    """Routing state of one Director.

    Args:
        config: the :class:`~pyfaas.config.DirectorConfig` (strategy,
            heartbeats, statistics, limits, handshake timeout).
        name: ``"host:port"`` the Director listens on, used in messages.
        token: the cluster token (bytes) or None for no authentication.
        rng: a ``random.Random`` (tests pass a seeded one).
        clock: ``time.monotonic`` (tests pass a fake clock).
        process: a function returning the Director process's figures for
            the status document (see :class:`~.monitor.Monitor`), or None.
    """

    def __init__(self, config, name="director", token=None, rng=None,
                 clock=time.monotonic, process=None):
        self.config = config
        self.name = name
        self.clock = clock
        cluster = self.cluster = Cluster(config.worker_selection_strategy,
                                         rng or random.Random())
        outbox = self.outbox = Outbox(cluster.peers, cluster.counts)
        self.peers = cluster.peers
        self.handshake = Handshake(cluster.peers, outbox, name, token,
                                   config.max_frame_bytes,
                                   config.handshake_timeout_s, clock)
        self.functions = Functions(cluster, outbox, clock)
        self._unready_log = Throttle(5.0, clock)  # a peer can cause it at will
        self.deaths = Deaths(clock)
        self.grace = Grace(clock, config.startup_grace_ms / 1000.0,
                           config.max_pending_calls, config.max_pending_bytes,
                           self.deaths.wait_s, self._expecting)
        self.workers = WorkerEvents(cluster, outbox, self.functions,
                                    self.deaths,
                                    config.expected_heartbeat_interval_ms,
                                    clock)
        self.calls = Calls(cluster, outbox, name, config, self.deaths,
                           self.grace, clock)
        self.queries = Queries(cluster, outbox, self.calls, name,
                               config.statistics_enabled, clock)
        self.workflows = Workflows(cluster, outbox, name, config, self.grace,
                                   clock)
        self.monitor = Monitor(cluster, outbox, name, clock, process)
        self._handlers = {
            p.ROLE_CLIENT: {
                p.DEPLOY: self.functions.deploy,
                p.UNDEPLOY: self.functions.undeploy,
                p.LIST: self.functions.list,
                p.CALL: self.calls.call,
                p.CALL_MANY: self.calls.call_many,
                p.CANCEL: self._cancel,
                p.WORKERS: self.queries.workers,
                p.WORKER_INFO: self.queries.worker_info,
                p.KILL_WORKER: self.queries.kill_worker,
                p.PING: self.queries.ping,
                p.STATS: self.queries.stats,
                p.CACHE_DUMP: self.queries.cache_dump,
                p.STATUS: self.monitor.status,
                p.CHAIN: self.workflows.chain,
            },
            p.ROLE_WORKER: {
                p.REGISTER_WORKER: self._register,
                p.ANNOUNCE: self._announce,
                p.HEARTBEAT: self.workers.heartbeat,
                p.OK: self.workers.reply,
                p.ERROR: self.workers.reply,
            },
        }

    # ----- events from the loop ----------------------------------------------

    def connected(self, peer_id, addr):
        """A new connection from ``addr``."""
        peer = self.peers[peer_id] = Peer(peer_id, addr)
        self.handshake.start(peer)

    def received(self, peer_id, event):
        """Handle one decoded Preamble or Frame from ``peer_id``."""
        peer = self.peers[peer_id]
        handlers = peer.handlers
        if handlers is not None:  # a ready client or a registered Worker
            worker = peer.worker
            if worker is not None:
                now = worker.last_seen = self.clock()
                if worker.beat_every:
                    self.workers.heard(worker, now)
            handler = handlers.get(event.type)
            if handler is None:
                self._unexpected(peer, event)
            else:
                handler(peer, event)
            return
        if peer.closing:
            return  # (asked to close: what follows is not handled)
        if isinstance(event, p.Preamble):
            self.handshake.preamble(peer, event)
            return
        if not peer.ready:
            if event.type == p.AUTH and peer.nonce is not None:
                self.handshake.auth(peer, event)
            else:
                self._unexpected(peer, event)
            return
        if peer.role == p.ROLE_WORKER and event.type != p.REGISTER_WORKER:
            self._unexpected(peer, event)  # a Worker registers first
            return
        handler = self._handlers[peer.role].get(event.type)
        if handler is None:
            self._unexpected(peer, event)
            return
        handler(peer, event)
        if not peer.closing and (peer.role == p.ROLE_CLIENT
                                 or peer.worker_id is not None):
            peer.handlers = self._handlers[peer.role]
            peer.worker = self.cluster.workers.get(peer.worker_id)

    def disconnected(self, peer_id, reason="connection closed"):
        """The connection is gone: its Worker is evicted, or its client's
        requests are dropped (their Workers told to cancel calls)."""
        cluster = self.cluster
        peer = self.peers.pop(peer_id, None)
        self.outbox.forget(peer_id)
        if peer is None:
            return
        if not peer.ready:
            # Often a client or Worker that found it lacks the token.
            quiet = self._unready_log.ready()
            if quiet is not None:
                log.warning("peer %s:%s left before finishing the handshake "
                            "(%s)%s", peer.addr[0], peer.addr[1], reason,
                            "; %d more since the last such line" % quiet
                            if quiet else "")
        if peer.worker_id is not None:
            # (Evicted already, its id may be registered again by a new
            # connection, which stays.)
            self.workers.evict(peer.worker_id, reason, peer_id)
        for key in [k for k in cluster.runs if k[0] == peer_id]:
            run = cluster.runs.pop(key)
            run.failed = "(client left)"
            cluster.counts.workflows["cancelled"] += 1
        self.deaths.forget_peer(peer_id)
        self.grace.forget_peer(peer_id)
        dropped = len(peer.pending)
        for rid in peer.pending:
            pend = cluster.untrack(rid)
            if pend is not None:
                pend.tally.cancelled += 1
            worker = cluster.workers.get(pend.worker_id) if pend else None
            if worker is not None and pend.kind in ("call", "step"):
                self.outbox.send(worker.peer_id, p.CANCEL, rid)
        if dropped:
            log.info("client %s:%s left with %d request(s) pending; dropped",
                     peer.addr[0], peer.addr[1], dropped)

    def tick(self):
        """Evict Workers that stopped heartbeating; look again at the
        requests held on dead Workers and in the start-up window. Call
        periodically."""
        self.workers.check()
        if self.deaths.tick():
            self.calls.settle_held()
        if self.grace.due():
            self._replay_grace()

    def sample(self):
        """Fold the call counts and note the calls-per-second history.
        Call once a second."""
        self.monitor.sample()

    def expire_handshakes(self):
        """Close connections that did not finish the handshake in time."""
        self.handshake.expire()

    def touch(self, peer_id):
        """Bytes arrived from ``peer_id``: a Worker sending a large frame is
        alive even while its heartbeats wait behind that frame (and is told
        that we are, for the same reason)."""
        peer = self.peers.get(peer_id)
        if peer is not None and peer.worker_id is not None:
            worker = self.cluster.workers.get(peer.worker_id)
            if worker is not None:
                now = worker.last_seen = self.clock()
                if worker.beat_every:  # it is alive: so are we
                    self.workers.heard(worker, now)

    def forgive_pause(self):
        """The Director itself stalled (paused, swapped out): heartbeats that
        arrived meanwhile are still unread, so no Worker is judged by them."""
        now = self.clock()
        for worker in self.cluster.workers.values():
            worker.last_seen = now

    def drain(self):
        """The Director is stopping: new calls and workflows are refused
        (those held too), and held calls wait no more."""
        self.cluster.draining = True
        self._replay_grace()
        self.calls.settle_held(patient=False)

    # ----- questions from the loop -------------------------------------------

    def take_output(self):
        """``(frames, closing)``: frames to send per peer id (lists of byte
        pieces, the caller's to keep) and peers to close once their frames
        are written (peer id -> reason)."""
        return self.outbox.take()

    def error(self, peer_id, rid, code, message):
        """Queue an ERROR frame for a peer (the loop's own complaints: bad
        bytes, plain TCP on a TLS port)."""
        self.outbox.error(peer_id, rid, code, message)

    def close(self, peer_id, reason):
        """Close a peer once its queued frames are written."""
        self.outbox.close(peer_id, reason)

    def status_document(self):
        """The status document (a new dict, the caller's to keep): what
        STATUS answers and the monitoring endpoint serves."""
        return self.monitor.document()

    def client_work(self):
        """Requests of connected clients still waiting for an answer
        (registrations and statistics fanned out to Workers included)."""
        peers = self.peers
        return sum(1 for pend in self.cluster.pending.values()
                   if pend.client_peer in peers) + len(self.cluster.runs)

    # ----- helpers -----------------------------------------------------------

    def _register(self, peer, frame):
        self.workers.register(peer, frame)
        self._resume()

    def _announce(self, peer, frame):
        self.workers.announce(peer, frame)
        self._resume()

    def _resume(self):
        """A Worker came, or brought a function: held requests may go."""
        if self.deaths.held:
            self.calls.settle_held()
        if self.grace.held:
            self._replay_grace()

    def _replay_grace(self):
        peers, grace = self.peers, self.grace
        for peer_id, frame, handler, deadline in grace.take():
            peer = peers.get(peer_id)
            if peer is not None:
                grace.replaying = deadline  # (held again: same deadline)
                try:
                    handler(peer, frame)
                finally:
                    grace.replaying = None

    def _expecting(self):
        """True while a Worker is expected back: a supervised one died, or
        recycles itself, or has every thread stuck."""
        return self.deaths.expecting() or any(
            w.supervised and (w.wedged or w.recycling)
            for w in self.cluster.workers.values())

    def _cancel(self, peer, frame):
        """CANCEL: of a workflow, or of a request relayed to a Worker."""
        if not self.workflows.cancel(peer, frame.request_id):
            self.calls.cancel(peer, frame)

    def _unexpected(self, peer, event):
        self.outbox.error(peer.id, event.request_id, "protocol",
                          "unexpected %s frame from a %s" % (
                              p.TYPE_NAMES.get(event.type, hex(event.type)),
                              p.ROLE_NAMES.get(peer.role, "peer")))
        self.outbox.close(peer.id, "protocol error: unexpected message type "
                          "%d" % event.type)
