"""The Director's calls: a client's request relayed to one Worker and back.

Owns :class:`Calls`: routing CALL and CALL_MANY to a Worker, CANCEL, and
the relay of every request answered by one Worker (calls, and the
WORKER_INFO, CACHE_DUMP and KILL_WORKER requests of
:mod:`pyfaas.director.queries`): the Worker's reply goes back to the
client under the client's request id; a lost Worker fails the request
with ``worker_lost``, or runs a call again elsewhere when the call allows
re-runs (``retries``, or a function registered as idempotent). Arguments
and results stay opaque bytes.
"""

import logging

from ..wire import protocol as p
from .cluster import FRAME_OVERHEAD
from .tables import Pending, Route
from .tallies import NO_TALLY

log = logging.getLogger(__name__)

# Re-runs of a call of a function registered as idempotent whose Worker is
# lost (a call's own ``retries`` may ask for more).
IDEMPOTENT_RETRIES = 2


def refuse_if_draining(cluster, outbox, name, peer, frame):
    """Answer ``shutting_down`` while the Director stops; True if it did."""
    if cluster.draining:
        outbox.error(peer.id, frame.request_id, "shutting_down",
                     "director %s is shutting down; retry on another "
                     "director or later" % name)
    return cluster.draining


class Calls:
    """Calls and other requests relayed to one Worker.

    Args:
        cluster: the state's :class:`~pyfaas.director.cluster.Cluster`.
        outbox: where frames go.
        name: ``"host:port"`` of the Director, for messages.
        max_pending: requests in flight allowed before new calls are
            refused as overloaded (``max_pending_calls``).
        clock: ``time.monotonic`` or a test's fake.
    """

    def __init__(self, cluster, outbox, name, max_pending, clock):
        self.cluster = cluster
        self.outbox = outbox
        self.name = name
        self.max_pending = max_pending
        self.clock = clock

    def call_many(self, peer, frame):
        """CALL_MANY: several calls in one frame, each routed and answered
        alone."""
        meta = frame.meta()
        rids, sizes = meta.pop("rids", None), meta.pop("sizes", None)
        ok = (isinstance(rids, list) and isinstance(sizes, list)
              and len(rids) == len(sizes) and rids
              and all(isinstance(x, int) and not isinstance(x, bool)
                      and x >= 0 for x in rids + sizes)
              and sum(sizes) == len(frame.payload))
        if not ok:
            self.outbox.error(peer.id, frame.request_id, "protocol",
                              "CALL_MANY needs 'rids' and 'sizes' lists that "
                              "match its payload")
            self.outbox.close(peer.id, "malformed CALL_MANY")
            return
        view = memoryview(frame.payload)
        pos = 0
        route = None  # one for the whole batch: routing calls changes no
        # route (only Workers' and functions' events do)
        for rid, size in zip(rids, sizes):
            one = p.Frame(p.CALL, rid, b"", view[pos:pos + size], frame.flags)
            pos += size
            if self.cluster.draining and refuse_if_draining(
                    self.cluster, self.outbox, self.name, peer, one):
                continue
            if route is None:
                route = self._route(peer, one, meta)
                if route is None:
                    continue  # this call was answered with the error
            self.call(peer, one, route)

    def call(self, peer, frame, route=None):
        """CALL: send it to a Worker (``route``: already found, for
        CALL_MANY)."""
        cluster = self.cluster
        if route is None:
            if cluster.draining and refuse_if_draining(
                    cluster, self.outbox, self.name, peer, frame):
                return
            route = cluster.routes.get(frame.meta_raw)
            if route is None:
                route = self._route(peer, frame, frame.meta())
                if route is None:
                    return
                cluster.routes.keep(frame.meta_raw, route)
        if len(cluster.pending) >= self.max_pending:
            self.outbox.error(peer.id, frame.request_id, "overloaded",
                              "director %s has %d requests in flight "
                              "(max_pending_calls); retry later"
                              % (self.name, len(cluster.pending)))
            return
        func = route.func
        payload = frame.payload
        if func.id in cluster.cached_by_func or \
                len(payload) + FRAME_OVERHEAD > route.min_frame:
            worker = cluster.pick_worker(func, payload, route.candidates)
            if worker is None:
                self.outbox.error(peer.id, frame.request_id, "serialization",
                                  "arguments of %d bytes are over the frame "
                                  "limit of every worker holding %r (their "
                                  "max_frame_bytes)" % (len(payload),
                                                        func.name))
                return
        else:
            worker = cluster.choose_worker(route.candidates)
        cluster.routed += 1
        worker.routed += 1
        pend = self.forward(peer, frame, worker, "call", func.label,
                            route.call_meta, p.CALL, worker.tallies[func.id])
        if route.retries:
            pend.retries = route.retries
            pend.resend = (func.id, route.call_meta, payload, frame.flags)

    def _route(self, peer, frame, meta):
        """The Route for a call's decoded meta, or None once the caller got
        an error saying why there is none."""
        cluster = self.cluster
        target = meta.get("f")
        func = cluster.resolve(target)
        if func is None:
            self.outbox.error(peer.id, frame.request_id, "not_registered",
                              "function %r is not registered" % (target,))
            return None
        if not cluster.workers:
            self.outbox.error(peer.id, frame.request_id, "no_workers",
                              "no worker is registered with director %s"
                              % self.name)
            return None
        candidates = cluster.eligible(func.id)
        if not candidates:
            why = "; ".join("%s: %s" % (w.id, w.functions.get(func.id))
                            for w in cluster.workers.values())
            self.outbox.error(peer.id, frame.request_id, "no_workers",
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

    def forward(self, peer, frame, worker, kind, label, meta, type_,
                tally=NO_TALLY):
        """Send a client's request on to ``worker`` under a new request id;
        its answer comes back through :meth:`reply` or :meth:`lost`
        (``tally``: a call's, see :mod:`pyfaas.director.tallies`)."""
        cluster = self.cluster
        pend = Pending(cluster.new_rid(), peer.id, frame.request_id,
                       worker.id, kind, label, self, self.clock(), tally,
                       len(frame.payload))
        cluster.track(pend, worker, peer)
        self.outbox.send(worker.peer_id, type_, pend.rid, meta, frame.payload,
                         frame.flags)
        return pend

    def reply(self, pend, worker, frame):
        """The Worker answered: pass it on to the client as it is."""
        client = self.cluster.peers.get(pend.client_peer)
        if client is not None:
            client.pending.discard(pend.rid)
            self.outbox.send(client.id, frame.type, pend.client_rid,
                             frame.meta_raw, frame.payload, frame.flags)

    def lost(self, pend, worker_id, reason):
        """The Worker was lost first: run the call elsewhere if it may run
        again, else tell the client."""
        client = self.cluster.peers.get(pend.client_peer)
        if client is None:
            return
        if pend.retries > 0 and self._retry(pend, client, worker_id, reason):
            return
        client.pending.discard(pend.rid)
        self.outbox.error(client.id, pend.client_rid, "worker_lost",
                          "worker %s was lost while running %s (%s)"
                          % (worker_id, pend.label, reason),
                          worker_id=worker_id)

    def _retry(self, pend, client, lost_worker, reason):
        """Re-run a lost call on another Worker; False if none can take it."""
        cluster = self.cluster
        func_id, meta, payload, flags = pend.resend
        candidates = cluster.eligible(func_id)
        if not candidates or func_id not in cluster.functions:
            return False
        worker = cluster.pick_worker(cluster.functions[func_id], payload,
                                     candidates)
        if worker is None:
            return False
        again = Pending(cluster.new_rid(), client.id, pend.client_rid,
                        worker.id, pend.kind, pend.label, self, self.clock(),
                        worker.tallies[func_id], pend.size)
        again.retries = pend.retries - 1
        again.resend = pend.resend
        worker.routed += 1
        cluster.routed += 1
        client.pending.discard(pend.rid)
        cluster.track(again, worker, client)
        log.info("call of %s re-run on worker %s: worker %s was lost (%s)",
                 pend.label, worker.id, lost_worker, reason)
        self.outbox.send(worker.peer_id, p.CALL, again.rid, meta, payload,
                         flags)
        return True

    def cancel(self, peer, frame):
        """CANCEL of a call: forget it and tell its Worker. Returns True if
        the request was found."""
        cluster = self.cluster
        for rid in list(peer.pending):
            pend = cluster.pending.get(rid)
            if pend is not None and pend.client_rid == frame.request_id:
                del cluster.pending[rid]
                peer.pending.discard(rid)
                pend.tally.cancelled += 1
                worker = cluster.workers.get(pend.worker_id)
                if worker is not None:
                    worker.inflight.discard(rid)
                    self.outbox.send(worker.peer_id, p.CANCEL, rid)
                return True
        return False
