"""The Director's calls: a client's request relayed to one Worker and back.

Owns :class:`Calls`: routing CALL and CALL_MANY to a Worker, CANCEL, and
the relay of every request answered by one Worker (calls, and the
WORKER_INFO, CACHE_DUMP and KILL_WORKER requests of
:mod:`pyfaas.director.queries`): the Worker's reply goes back to the
client under the client's request id; a lost Worker fails the request
with ``worker_lost``, or runs a call again elsewhere when the call allows
re-runs (``retries``, or a function registered as idempotent). Arguments
and results stay opaque bytes.

Admission: a call is refused as ``overloaded`` past ``max_pending_calls``
requests or ``max_pending_bytes`` argument bytes in flight, and when every
Worker that could run it has its own byte budget (``max_inflight_bytes``)
full. A call a Worker hands back unstarted (``not_started``: its threads
are stuck) goes to another Worker; that is not a re-run.

Deaths (see :mod:`pyfaas.director.deaths`): each call keeps the deaths of
the Workers lost while it ran. A call that killed ``max_call_crashes``
Workers fails with ``poison_call`` and is not sent again; a call with
re-runs left and no Worker to run on waits for a supervised Worker to come
back; a failed call's error waits for the causes of its deaths.
"""

import logging

from ..wire import protocol as p
from .cluster import COUNTED_BYTES, FRAME_OVERHEAD, counted
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
        config: the :class:`~pyfaas.config.DirectorConfig` (its
            ``max_pending_calls``, ``max_pending_bytes`` and
            ``max_call_crashes``).
        deaths: the state's :class:`~pyfaas.director.deaths.Deaths`.
        grace: the state's :class:`~pyfaas.director.grace.Grace`.
        clock: ``time.monotonic`` or a test's fake.
    """

    def __init__(self, cluster, outbox, name, config, deaths, grace, clock):
        self.cluster = cluster
        self.outbox = outbox
        self.name = name
        self.max_pending = config.max_pending_calls
        self.max_bytes = config.max_pending_bytes
        self.max_crashes = config.max_call_crashes
        self.deaths = deaths
        self.grace = grace
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
            self._overloaded(peer, frame.request_id)
            return
        func = route.func
        payload = frame.payload
        size = len(payload)
        if size >= COUNTED_BYTES or func.id in cluster.cached_by_func:
            worker = self._place(peer, frame, route, size)
            if worker is None:
                return  # (answered)
            size = counted(size)
        else:  # the usual small call: not counted in bytes
            worker = cluster.choose_worker(route.candidates)
            size = 0
        cluster.routed += 1
        worker.routed += 1
        pend = self.forward(peer, frame, worker, "call", func.label,
                            route.call_meta, p.CALL, size,
                            worker.tallies[func.id])
        if route.retries:
            pend.retries = route.retries
            pend.resend = (func.id, route.call_meta, payload, frame.flags)

    def _place(self, peer, frame, route, size):
        """The Worker for a call with large arguments or a cached result:
        within the byte budgets and frame limits, or None once the client
        was answered why not."""
        cluster = self.cluster
        func, payload = route.func, frame.payload
        if size >= COUNTED_BYTES and cluster.pending_bytes and \
                cluster.pending_bytes + size > self.max_bytes:
            self._overloaded(peer, frame.request_id)
            return None
        if func.id in cluster.cached_by_func or \
                size + FRAME_OVERHEAD > route.min_frame:
            worker = cluster.pick_worker(func, payload, route.candidates)
            if worker is None:
                self._too_large(peer, frame.request_id, func, size)
                return None
        else:
            worker = cluster.choose_worker(route.candidates)
        if size >= COUNTED_BYTES and worker.inflight_bytes and \
                worker.inflight_bytes + size > worker.max_inflight:
            worker, code = cluster.place(func, payload, route.candidates)
            if worker is None:
                self._no_room(peer, frame.request_id, func, size, code)
        return worker

    def _overloaded(self, peer, rid):
        cluster = self.cluster
        if len(cluster.pending) >= self.max_pending:
            why = "%d requests in flight (max_pending_calls)" % len(
                cluster.pending)
        else:
            why = "%d bytes of arguments in flight (max_pending_bytes)" % (
                cluster.pending_bytes)
        self.outbox.error(peer.id, rid, "overloaded", "director %s has %s; "
                          "retry later" % (self.name, why))

    def _too_large(self, peer, rid, func, size):
        self.outbox.error(peer.id, rid, "serialization",
                          "arguments of %d bytes are over the frame limit "
                          "of every worker holding %r (their "
                          "max_frame_bytes)" % (size, func.name))

    def _no_room(self, peer, rid, func, size, code):
        if code == "serialization":
            self._too_large(peer, rid, func, size)
            return
        self.outbox.error(peer.id, rid, "overloaded",
                          "every worker holding %r has its budget of "
                          "argument bytes in flight full (max_inflight_bytes"
                          "); retry later" % func.name)

    def _route(self, peer, frame, meta):
        """The Route for a call's decoded meta, or None once the caller got
        an error saying why there is none."""
        cluster = self.cluster
        target = meta.get("f")
        func = cluster.resolve(target)
        candidates = cluster.eligible(func.id) if func is not None else None
        if not candidates and self.grace.hold(
                peer, frame if frame.meta_raw else p.Frame(
                    p.CALL, frame.request_id, p.encode_meta(meta),
                    frame.payload, frame.flags), self.call, func is None):
            return None  # handled again when a Worker comes
        if func is None:
            self.outbox.error(peer.id, frame.request_id, "not_registered",
                              "function %r is not registered" % (target,))
            return None
        if not cluster.workers:
            self.outbox.error(peer.id, frame.request_id, "no_workers",
                              "no worker is registered with director %s"
                              % self.name)
            return None
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

    def forward(self, peer, frame, worker, kind, label, meta, type_, size=0,
                tally=NO_TALLY):
        """Send a client's request on to ``worker`` under a new request id;
        its answer comes back through :meth:`reply` or :meth:`lost`.
        ``size``: the argument bytes it holds in flight; ``tally``: a
        call's (see :mod:`pyfaas.director.tallies`)."""
        cluster = self.cluster
        pend = Pending(cluster.new_rid(), peer.id, frame.request_id,
                       worker.id, kind, label, self, self.clock(), None, size,
                       tally)
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

    def handed_back(self, pend, worker, frame, meta):
        """A Worker handed back a call it did not start (ERROR
        ``not_started``, with its meta and arguments): send it to another
        Worker, or hold it until one can take it. False if it cannot be
        (the client then gets the Worker's error)."""
        client = self.cluster.peers.get(pend.client_peer)
        call = meta.get("call")
        if client is None or pend.kind != "call" or \
                not isinstance(call, dict):
            return False
        pend.resend = (call.get("f"), p.encode_meta(call), frame.payload,
                       frame.flags)
        pend.retries += 1  # (not a re-run: it never started)
        why = "worker %s did not start it: %s" % (
            worker.id, meta.get("message", "it could not"))
        if self._retry(pend, client, why):
            return True
        client.pending.discard(pend.rid)
        again = p.Frame(p.CALL, pend.client_rid, pend.resend[1], frame.payload,
                        frame.flags)
        if not self.grace.hold(client, again, self.call):
            self.outbox.error(client.id, pend.client_rid, "overloaded",
                              "no other worker can take the call of %s now "
                              "(%s); retry later" % (pend.label, why))
        return True

    def lost(self, pend, worker_id, reason):
        """The Worker was lost first: run the call elsewhere if it may run
        again, else tell the client (see the module docstring)."""
        client = self.cluster.peers.get(pend.client_peer)
        if client is None:
            return
        pend.deaths += (self.deaths.death_of(worker_id, reason),)
        self._settle(pend, client, None)

    def _settle(self, pend, client, held):
        """Re-run a call whose Worker was lost, hold it, or fail it.
        ``held``: its :class:`~pyfaas.director.deaths.Held` if it was
        held: it may wait on until its deadline."""
        deaths = self.deaths
        patient = held is None or self.clock() < held.deadline
        deadline = held.deadline if held is not None else None
        if len(pend.deaths) < self.max_crashes and pend.retries > 0:
            last = pend.deaths[-1]
            if self._retry(pend, client, "worker %s was lost (%s)" % (
                    last.worker_id, last.describe())):
                return
            if patient and self.grace.expecting():
                deaths.hold(pend, True, deadline)
                return
        elif patient and any(d.awaited for d in pend.deaths):
            deaths.hold(pend, False, deadline)
            return
        self._fail(pend, client)

    def settle_held(self, patient=True):
        """Look again at the calls held on Worker deaths (a Worker came
        back, time passed; ``patient`` False: none waits any more)."""
        for held in self.deaths.take():
            client = self.cluster.peers.get(held.pend.client_peer)
            if client is not None:
                if not patient:
                    held.deadline = 0.0
                self._settle(held.pend, client, held)

    def _fail(self, pend, client):
        """Answer a call lost for good: ``poison_call`` once it killed
        max_call_crashes Workers, else ``worker_lost``."""
        client.pending.discard(pend.rid)
        deaths = pend.deaths
        last = deaths[-1]
        if len(deaths) >= self.max_crashes:
            self.outbox.error(
                client.id, pend.client_rid, "poison_call",
                "the call of %s killed %d workers (%s); it is not sent "
                "again (max_call_crashes = %d)" % (
                    pend.label, len(deaths), ", ".join(
                        "%s: %s" % (d.worker_id, d.describe())
                        for d in deaths), self.max_crashes),
                worker_id=last.worker_id, cause=last.cause,
                deaths=[[d.worker_id, d.cause] for d in deaths])
            return
        if last.cause:
            message = "worker %s died (%s) while running %s" % (
                last.worker_id, last.cause, pend.label)
        else:
            message = "worker %s was lost while running %s (%s)" % (
                last.worker_id, pend.label, last.reason)
        self.outbox.error(client.id, pend.client_rid, "worker_lost", message,
                          worker_id=last.worker_id, cause=last.cause)

    def _retry(self, pend, client, why):
        """Run a call again on another Worker (one re-run); False if none
        can take it."""
        cluster = self.cluster
        func_id, meta, payload, flags = pend.resend
        candidates = cluster.eligible(func_id)
        if not candidates or func_id not in cluster.functions:
            return False
        worker, _ = cluster.place(cluster.functions[func_id], payload,
                                  candidates)
        if worker is None:
            return False
        again = Pending(cluster.new_rid(), client.id, pend.client_rid,
                        worker.id, pend.kind, pend.label, self, self.clock(),
                        None, counted(len(payload)),
                        worker.tallies[func_id])
        again.retries = pend.retries - 1
        again.resend = pend.resend if again.retries else None
        again.deaths = pend.deaths
        worker.routed += 1
        cluster.routed += 1
        client.pending.discard(pend.rid)
        cluster.track(again, worker, client)
        log.info("call of %s sent to worker %s: %s", pend.label, worker.id,
                 why)
        self.outbox.send(worker.peer_id, p.CALL, again.rid, meta, payload,
                         flags)
        return True

    def cancel(self, peer, frame):
        """CANCEL of a call: forget it and tell its Worker (or drop it if
        it is held). Returns True if the request was found."""
        cluster = self.cluster
        rid = frame.request_id
        for prid in list(peer.pending):
            pend = cluster.pending.get(prid)
            if pend is not None and pend.client_rid == rid:
                cluster.untrack(prid)
                peer.pending.discard(prid)
                pend.tally.cancelled += 1
                worker = cluster.workers.get(pend.worker_id)
                if worker is not None:
                    self.outbox.send(worker.peer_id, p.CANCEL, prid)
                return True
        pend = self.deaths.cancel(peer.id, rid)
        if pend is not None:
            peer.pending.discard(pend.rid)
            return True
        return self.grace.cancel(peer.id, rid)
