"""The Director's side of workflows (``pyfaas_chain_exec``).

Owns :class:`Workflows`. It validates a workflow sent by a client (the
same rules as the client, against the Director's registry), then runs it:
every step whose predecessors are done is sent at once, as a CALL to a
Worker picked like any call (cache-aware, then by the strategy), so
independent branches run at the same time across Workers and inside each
Worker's pool. Step outputs stay opaque pickled bytes: a step's arguments
are shipped as JSON plus the referenced outputs' bytes, and the Worker
substitutes them (see :mod:`pyfaas.workflow`).

The first step that fails ends the run with one ``chained_execution`` error
naming the workflow id and the step; steps still running are cancelled and
no later step starts. A step a Worker hands back unstarted (its threads
are stuck) is sent again. In the start-up window
(:mod:`pyfaas.director.grace`) a workflow naming a function no Worker holds
waits for it.
"""

import logging

from .. import workflow as wfl
from ..wire import protocol as p
from .calls import refuse_if_draining
from .cluster import counted
from .tables import Pending

log = logging.getLogger(__name__)


class Workflows:
    """Running workflows.

    Args: as :class:`~pyfaas.director.calls.Calls`'s (``config``: its
    ``max_pending_calls``, ``max_pending_bytes``, and ``max_frame_bytes``,
    the largest reply), without ``deaths``.
    """

    def __init__(self, cluster, outbox, name, config, grace, clock):
        self.cluster = cluster
        self.outbox = outbox
        self.name = name
        self.max_pending = config.max_pending_calls
        self.max_bytes = config.max_pending_bytes
        self.max_frame = config.max_frame_bytes
        self.grace = grace
        self.clock = clock

    def chain(self, peer, frame):
        """CHAIN: validate a workflow and start its first steps."""
        cluster = self.cluster
        rid = frame.request_id
        if refuse_if_draining(cluster, self.outbox, self.name, peer, frame):
            return
        wf, problems = wfl.parse(bytes(frame.payload))
        if not problems:
            registry = {name: cluster.functions[fid].params
                        for name, fid in cluster.by_name.items()}
            unknown = any(step not in registry
                          for step in wf.get("functions", {}))
            if (unknown or not cluster.workers) and self.grace.hold(
                    peer, frame, self.chain, unknown):
                return  # handled again when a Worker comes
            problems = wfl.validate(wf, registry)
        if problems:
            wf_id = wf.get("id") if isinstance(wf, dict) else None
            self.outbox.error(peer.id, rid, "workflow_validation",
                              "workflow %r is invalid (%d problem(s)):\n  - %s"
                              % (wf_id, len(problems), "\n  - ".join(problems)),
                              problems=problems)
            return
        if not cluster.workers:
            self.outbox.error(peer.id, rid, "no_workers",
                              "no worker is registered with director %s"
                              % self.name)
            return
        if len(cluster.pending) >= self.max_pending or \
                cluster.pending_bytes >= self.max_bytes:
            self.outbox.error(peer.id, rid, "overloaded",
                              "director %s has %d requests, %d bytes of "
                              "arguments in flight (max_pending_calls, "
                              "max_pending_bytes); retry later"
                              % (self.name, len(cluster.pending),
                                 cluster.pending_bytes))
            return
        run = wfl.Run(wf)
        most = frame.meta().get("max")
        run.max_reply = min(self.max_frame, most) if isinstance(most, int) \
            and not isinstance(most, bool) and most > 0 else self.max_frame
        run.client_peer = peer.id
        run.client_rid = rid
        run.pending = set()
        cluster.runs[(peer.id, rid)] = run
        log.info("workflow %s started (%d steps)", run.id, len(run.steps))
        self._launch_ready(run)

    def _launch_ready(self, run):
        cluster = self.cluster
        for step in run.ready():
            func = cluster.resolve(step)
            candidates = cluster.eligible(func.id) if func else []
            if not candidates:
                why = ("function %r is no longer registered" % step
                       if func is None else "no worker can run %r" % step)
                self._fail_run(run, step, {"code": "no_workers",
                                           "message": why})
                return
            fields, parts = run.step_payload(step)
            payload = b"".join(parts)
            worker, code = cluster.place(func, payload, candidates)
            if worker is None:
                self._fail_run(run, step, {
                    "code": code,
                    "message": "arguments of %d bytes are over the frame "
                    "limit of every worker holding %r" % (len(payload), step)
                    if code == "serialization" else "every worker holding "
                    "%r has its budget of argument bytes in flight full "
                    "(max_inflight_bytes)" % step})
                return
            meta = {"f": func.id, "wf": run.id, "step": step,
                    "cache": bool(run.steps[step]["cache_result"])}
            meta.update(fields)
            pend = Pending(cluster.new_rid(), run.client_peer, run.client_rid,
                           worker.id, "step", step, self, self.clock(), run,
                           counted(len(payload)), worker.tallies[func.id])
            cluster.track(pend, worker,
                          cluster.peers.get(run.client_peer))
            worker.routed += 1
            cluster.routed += 1
            run.pending.add(pend.rid)
            self.outbox.send(worker.peer_id, p.CALL, pend.rid, meta, payload,
                             p.FLAG_PICKLED)

    def handed_back(self, pend, worker, frame, meta):
        """The Worker did not start the step (its threads are stuck): it
        is sent again, to a Worker that can take it."""
        run = pend.context
        if run.failed is not None:
            return False
        run.pending.discard(pend.rid)
        client = self.cluster.peers.get(run.client_peer)
        if client is not None:
            client.pending.discard(pend.rid)
        run.started.discard(pend.label)
        self._launch_ready(run)
        return True

    def reply(self, pend, worker, frame):
        """A step's Worker answered."""
        self._step_done(pend, frame.type, frame.meta()
                        if frame.type == p.ERROR else None, frame.payload)

    def lost(self, pend, worker_id, reason):
        """A step's Worker was lost: the workflow fails."""
        self._step_done(pend, p.ERROR, {
            "code": "worker_lost", "worker_id": worker_id,
            "message": "worker %s was lost: %s" % (worker_id, reason)}, b"")

    def _step_done(self, pend, type_, meta, payload):
        run = pend.context
        run.pending.discard(pend.rid)
        client = self.cluster.peers.get(run.client_peer)
        if client is not None:
            client.pending.discard(pend.rid)
        if run.failed is not None:
            return
        if type_ != p.OK:
            self._fail_run(run, pend.label, meta or {})
            return
        run.done(pend.label, payload)
        if run.finished:
            self.cluster.runs.pop((run.client_peer, run.client_rid), None)
            self._cancel_steps(run)
            self._answer(run)
            return
        self._launch_ready(run)

    def _answer(self, run):
        finals = run.finals
        outputs = [run.outputs[f] for f in finals]
        total = sum(len(o) for o in outputs)
        if total + 4096 > run.max_reply:
            self.cluster.counts.workflows["failed"] += 1
            self.outbox.error(run.client_peer, run.client_rid, "serialization",
                              "the outputs of workflow %r's final steps are %d "
                              "bytes together; frames to this client are "
                              "limited to %d bytes (max_frame_bytes)"
                              % (run.id, total, run.max_reply))
            return
        self.cluster.counts.workflows["ok"] += 1
        meta = {"finals": finals, "workflow_id": run.id}
        if len(finals) > 1:
            meta["sizes"] = [len(o) for o in outputs]
        log.info("workflow %s finished", run.id)
        self.outbox.send(run.client_peer, p.OK, run.client_rid, meta,
                         b"".join(outputs), p.FLAG_PICKLED)

    def _fail_run(self, run, step, meta):
        run.failed = step
        self.cluster.counts.workflows["failed"] += 1
        self.cluster.runs.pop((run.client_peer, run.client_rid), None)
        self._cancel_steps(run)
        cause = meta.get("code", "execution")
        what = meta.get("message", "failed")
        log.info("workflow %s failed at step %s: %s", run.id, step, what)
        self.outbox.error(run.client_peer, run.client_rid, "chained_execution",
                          "workflow %r failed at step %r: %s"
                          % (run.id, step, what),
                          workflow_id=run.id, step=step, cause=cause,
                          type=meta.get("type", ""),
                          remote_message=meta.get("remote_message", ""),
                          traceback=meta.get("traceback", ""),
                          worker_id=meta.get("worker_id"))

    def _cancel_steps(self, run):
        cluster = self.cluster
        client = cluster.peers.get(run.client_peer)
        for rid in list(run.pending):
            pend = cluster.untrack(rid)
            if client is not None:
                client.pending.discard(rid)
            if pend is None:
                continue
            pend.tally.cancelled += 1
            worker = cluster.workers.get(pend.worker_id)
            if worker is not None:
                self.outbox.send(worker.peer_id, p.CANCEL, rid)
        run.pending.clear()

    def cancel(self, peer, client_rid):
        """Drop a client's workflow run (timeout or disconnect); True if
        found."""
        run = self.cluster.runs.pop((peer.id, client_rid), None)
        if run is None:
            return False
        run.failed = "(cancelled)"
        self.cluster.counts.workflows["cancelled"] += 1
        self._cancel_steps(run)
        log.info("workflow %s cancelled by its client", run.id)
        return True
