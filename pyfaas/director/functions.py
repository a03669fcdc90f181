"""The Director's function registry: registering, unregistering, listing,
and deploying code to Workers.

Owns :class:`Functions`: the answers to DEPLOY, UNDEPLOY and LIST, the
DEPLOY frames sent to Workers (to all of them when a client registers a
function, to one that joins later), and what a Worker's answer to them
changes (its copy becomes usable, or failed). Function code stays opaque
bytes; its id is a digest of them (:func:`pyfaas.ids.function_id`).
"""

import json
import logging

from ..ids import function_id
from ..wire import protocol as p
from .cluster import USABLE
from .tables import Function, Gather, Pending, _json

log = logging.getLogger(__name__)


class Functions:
    """Registry requests and deployments.

    Args:
        cluster: the state's :class:`~pyfaas.director.cluster.Cluster`.
        outbox: where frames go.
        clock: ``time.monotonic`` or a test's fake.
    """

    def __init__(self, cluster, outbox, clock):
        self.cluster = cluster
        self.outbox = outbox
        self.clock = clock

    # ----- client requests ---------------------------------------------------

    def deploy(self, peer, frame):
        """DEPLOY: register a function and send it to every Worker."""
        cluster = self.cluster
        meta = frame.meta()
        name = meta.get("name")
        if not isinstance(name, str) or not name or not frame.payload:
            self.outbox.error(peer.id, frame.request_id, "registration",
                              "a DEPLOY needs a function name and its code")
            return
        fid = function_id(frame.payload, name)
        cluster.unregistered.discard(fid)
        old_id = cluster.by_name.get(name)
        replaces = old_id if old_id not in (None, fid) else None
        old = cluster.functions.get(replaces) if replaces else None
        if replaces:
            cluster.remove_function(replaces)
        func = cluster.functions.get(fid)
        if func is None or func.name != name:
            extra = {k: v for k, v in meta.items()
                     if k not in ("name", "params")}
            func = Function(fid, name, meta.get("params"), frame.payload, extra)
        cluster.add_function(func)
        gather = Gather(peer.id, frame.request_id, "deploy",
                        {"func_id": fid, "name": name, "old": old,
                         "replaced": replaces}, self._deployed,
                        self._deploy_answer)
        for worker in cluster.workers.values():
            self.deploy_to(worker, func, gather, replaces=replaces)
        gather.finish_if_done()

    def undeploy(self, peer, frame):
        """UNDEPLOY: forget a function here and on every Worker."""
        cluster = self.cluster
        target = frame.meta().get("f")
        func = cluster.resolve(target)
        if func is None:
            self.outbox.error(peer.id, frame.request_id, "unregistration",
                              "function %r is not registered" % (target,))
            return
        cluster.remove_function(func.id)  # (drops the routes)
        if len(cluster.unregistered) < 100000:
            cluster.unregistered.add(func.id)
        for worker in cluster.workers.values():
            if worker.functions.pop(func.id, None) is not None:
                self.outbox.send(worker.peer_id, p.UNDEPLOY, 0,
                                 {"func_id": func.id})
        log.info("function %s (%s) unregistered", func.name, func.id)
        self.outbox.send(peer.id, p.OK, frame.request_id,
                         {"func_id": func.id, "name": func.name})

    def list(self, peer, frame):
        """LIST: the registered functions and the Workers holding each."""
        listing = {}
        workers = self.cluster.workers.values()
        for func in self.cluster.functions.values():
            holders = [w.id for w in workers
                       if w.functions.get(func.id) in USABLE]
            extra = {k: v for k, v in func.extra.items() if k != "source"}
            listing[func.id] = dict(extra, name=func.name,
                                    params=func.params,
                                    registered_at=func.registered_at,
                                    workers=holders)
        self.outbox.send(peer.id, p.OK, frame.request_id, None, _json(listing))

    # ----- deployments -------------------------------------------------------

    def deploy_to(self, worker, func, gather, replaces=None):
        """Send ``func``'s code to ``worker``: for a client's registration
        (``gather`` collects the answers), or on the Director's own behalf
        (``gather`` None: a Worker that joined, or a restored function)."""
        cluster = self.cluster
        cluster.reroute()
        rid = cluster.new_rid()
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
            cluster.track(Pending(rid, gather.client_peer, 0, worker.id,
                                  "deploy", func.id, gather, self.clock()),
                          worker)
            gather.waiting.add(worker.id)
        else:
            cluster.track(Pending(rid, None, 0, worker.id, "deploy-sync",
                                  func.id, self, self.clock()), worker)
        self.outbox.send(worker.peer_id, p.DEPLOY, rid, meta, func.code)

    def reply(self, pend, worker, frame):
        """A Worker's answer to the Director's own deployment."""
        self.loaded(worker, pend.label, frame.type,
                    frame.meta() if frame.type == p.ERROR else None)

    def lost(self, pend, worker_id, reason):
        """The Worker is gone: so is its copy; nobody waits for it."""

    def loaded(self, worker, func_id, type_, meta):
        """A Worker answered a DEPLOY: its copy is usable, or failed."""
        if func_id not in worker.functions:
            return
        self.cluster.reroute()
        if type_ == p.OK:
            worker.functions[func_id] = "ok"
        else:
            why = (meta or {}).get("message", "unknown error")
            worker.functions[func_id] = "failed: " + why
            log.warning("worker %s could not load function %s: %s",
                        worker.id, func_id, why)

    def _deploy_answer(self, gather, worker_id, type_, meta):
        worker = self.cluster.workers.get(worker_id)
        if worker is not None:
            self.loaded(worker, gather.context["func_id"], type_, meta)

    def _deployed(self, gather):
        """Every Worker answered a client's DEPLOY: tell the client."""
        cluster = self.cluster
        ctx = gather.context
        ok = [w for w, r in gather.results.items() if r[0] == p.OK]
        failed = {w: (r[1] or {}).get("message", "error")
                  for w, r in gather.results.items() if r[0] != p.OK}
        if failed and not ok:
            # Useless everywhere: undo, and keep the previous version if any
            # (unless a newer registration of the name came meanwhile).
            if cluster.by_name.get(ctx["name"]) == ctx["func_id"]:
                cluster.remove_function(ctx["func_id"])
                if ctx["old"] is not None:
                    cluster.add_function(ctx["old"])
            self.outbox.error(
                gather.client_peer, gather.client_rid, "registration",
                "function %r could not be loaded on any worker: %s" % (
                    ctx["name"], "; ".join("%s: %s" % kv
                                           for kv in failed.items())))
            return
        if ctx["replaced"]:
            cluster.reroute()
            for wid in ok:  # those Workers dropped the old code for the new
                worker = cluster.workers.get(wid)
                if worker is not None:
                    worker.functions.pop(ctx["replaced"], None)
        log.info("function %s (%s) registered on %d worker(s)%s", ctx["name"],
                 ctx["func_id"], len(ok),
                 ", replacing " + ctx["replaced"] if ctx["replaced"] else "")
        self.outbox.send(gather.client_peer, p.OK, gather.client_rid, {
            "func_id": ctx["func_id"], "name": ctx["name"],
            "replaced": ctx["replaced"], "workers": sorted(ok),
            "failed": failed})
