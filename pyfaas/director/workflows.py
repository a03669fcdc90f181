"""The Director's side of workflows (``pyfaas_chain_exec``).

A mixin of :class:`pyfaas.director.state.DirectorState`. It validates a
workflow sent by a client (the same rules as the client, against the
Director's registry), then runs it: every step whose predecessors are done
is sent at once, as a CALL to a Worker picked like any call (cache-aware,
then by the strategy), so independent branches run at the same time across
Workers and inside each Worker's pool. Step outputs stay opaque pickled
bytes: a step's arguments are shipped as JSON plus the referenced outputs'
bytes, and the Worker substitutes them (see :mod:`pyfaas.workflow`).

The first step that fails ends the run with one ``chained_execution`` error
naming the workflow id and the step; steps still running are cancelled and
no later step starts.
"""

import logging

from ..wire import protocol as p
from .. import workflow as wfl
from .tables import Pending

log = logging.getLogger(__name__)


class WorkflowRequests:
    """Workflow handlers; mixed into DirectorState."""

    def _on_chain(self, peer, frame):
        rid = frame.request_id
        if self._refuse_if_draining(peer, frame):
            return
        wf, problems = wfl.parse(bytes(frame.payload))
        if not problems:
            registry = {name: self.functions[fid].params
                        for name, fid in self.by_name.items()}
            problems = wfl.validate(wf, registry)
        if problems:
            wf_id = wf.get("id") if isinstance(wf, dict) else None
            self.error(peer.id, rid, "workflow_validation",
                       "workflow %r is invalid (%d problem(s)):\n  - %s" % (
                           wf_id, len(problems), "\n  - ".join(problems)),
                       problems=problems)
            return
        if not self.workers:
            self.error(peer.id, rid, "no_workers",
                       "no worker is registered with director %s" % self.name)
            return
        if len(self.pending) >= self.max_pending:
            self.error(peer.id, rid, "overloaded",
                       "director %s has %d requests in flight (max_pending_"
                       "calls); retry later" % (self.name, len(self.pending)))
            return
        run = wfl.Run(wf)
        most = frame.meta().get("max")
        run.max_reply = min(self.max_frame, most) if isinstance(most, int) \
            and not isinstance(most, bool) and most > 0 else self.max_frame
        run.client_peer = peer.id
        run.client_rid = rid
        run.pending = set()
        self.runs[(peer.id, rid)] = run
        log.info("workflow %s started (%d steps)", run.id, len(run.steps))
        self._launch_ready(run)

    def _launch_ready(self, run):
        for step in run.ready():
            func = self.resolve(step)
            candidates = self._eligible(func.id) if func else []
            if not candidates:
                why = ("function %r is no longer registered" % step
                       if func is None else "no worker can run %r" % step)
                self._fail_run(run, step, {"code": "no_workers",
                                           "message": why})
                return
            fields, parts = run.step_payload(step)
            payload = b"".join(parts)
            worker = self._pick_worker(func, payload, candidates)
            if worker is None:
                self._fail_run(run, step, {
                    "code": "serialization",
                    "message": "arguments of %d bytes are over the frame "
                    "limit of every worker holding %r" % (len(payload), step)})
                return
            meta = {"f": func.id, "wf": run.id, "step": step,
                    "cache": bool(run.steps[step]["cache_result"])}
            meta.update(fields)
            rid = self._new_rid()
            self.pending[rid] = Pending(rid, run.client_peer, run.client_rid,
                                        worker.id, "step", step, run,
                                        self.clock())
            worker.inflight.add(rid)
            if self.statistics_enabled:
                worker.routed += 1
                self.requests += 1
            run.pending.add(rid)
            client = self.peers.get(run.client_peer)
            if client is not None:
                client.pending.add(rid)
            self.send(worker.peer_id, p.CALL, rid, meta, payload,
                      p.FLAG_PICKLED)

    def _step_reply(self, pend, type_, meta, payload):
        run = pend.gather
        run.pending.discard(pend.rid)
        client = self.peers.get(run.client_peer)
        if client is not None:
            client.pending.discard(pend.rid)
        if run.failed is not None:
            return
        if type_ != p.OK:
            self._fail_run(run, pend.label, meta or {})
            return
        run.done(pend.label, payload)
        if run.finished:
            self.runs.pop((run.client_peer, run.client_rid), None)
            self._cancel_run_steps(run)
            finals = run.finals
            outputs = [run.outputs[f] for f in finals]
            total = sum(len(o) for o in outputs)
            if total + 4096 > run.max_reply:
                self.error(run.client_peer, run.client_rid, "serialization",
                           "the outputs of workflow %r's final steps are %d "
                           "bytes together; frames to this client are limited"
                           " to %d bytes (max_frame_bytes)"
                           % (run.id, total, run.max_reply))
                return
            meta = {"finals": finals, "workflow_id": run.id}
            if len(finals) > 1:
                meta["sizes"] = [len(o) for o in outputs]
            log.info("workflow %s finished", run.id)
            self.send(run.client_peer, p.OK, run.client_rid, meta,
                      b"".join(outputs), p.FLAG_PICKLED)
            return
        self._launch_ready(run)

    def _fail_run(self, run, step, meta):
        run.failed = step
        self.runs.pop((run.client_peer, run.client_rid), None)
        self._cancel_run_steps(run)
        cause = meta.get("code", "execution")
        what = meta.get("message", "failed")
        log.info("workflow %s failed at step %s: %s", run.id, step, what)
        self.error(run.client_peer, run.client_rid, "chained_execution",
                   "workflow %r failed at step %r: %s" % (run.id, step, what),
                   workflow_id=run.id, step=step, cause=cause,
                   type=meta.get("type", ""),
                   remote_message=meta.get("remote_message", ""),
                   traceback=meta.get("traceback", ""),
                   worker_id=meta.get("worker_id"))

    def _cancel_run_steps(self, run):
        client = self.peers.get(run.client_peer)
        for rid in list(run.pending):
            pend = self.pending.pop(rid, None)
            if client is not None:
                client.pending.discard(rid)
            if pend is None:
                continue
            worker = self.workers.get(pend.worker_id)
            if worker is not None:
                worker.inflight.discard(rid)
                self.send(worker.peer_id, p.CANCEL, rid)
        run.pending.clear()

    def _cancel_run(self, peer, client_rid):
        """Drop a client's workflow run (timeout or disconnect); True if found."""
        run = self.runs.pop((peer.id, client_rid), None)
        if run is None:
            return False
        run.failed = "(cancelled)"
        self._cancel_run_steps(run)
        log.info("workflow %s cancelled by its client", run.id)
        return True
