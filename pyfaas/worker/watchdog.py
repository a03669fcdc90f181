"""The Worker's watchdog thread: time limits, stuck threads, graceful stop.

Owns :class:`Watchdog`: a thread that, every WATCHDOG_PERIOD_S, hands the
reading on when the reading thread is stuck in a call taken for quick
(:meth:`pyfaas.worker.pool.LeaderPool.demote_stuck`), answers the calls
that outlived their time limit (their threads run on), and drives a
graceful stop: the stop request (:meth:`Watchdog.request_stop`, safe from
a signal handler) and the draining of the connection it was made on.

Stuck threads: the Director hears at once (a heartbeat) how many calls
still run past their time limit. Once they hold every thread the Worker is
wedged: the Director routes around it, and the calls read but not started
are handed back to it (ERROR ``not_started``, with the call's meta and
arguments, for another Worker to run). A supervised Worker then recycles
itself: it stops gracefully, with ``recycle_reason`` set, and its
supervisor starts it again (the stuck threads end with the process). One
that is not supervised waits for a stuck call to return.

It is given what it works with: the :class:`~pyfaas.worker.core.
WorkerCore` (the timeout reply), the :class:`~pyfaas.worker.calls.
CallTable` (which calls are late, how many run), the :class:`~pyfaas.
worker.replies.Replies` (to answer them), the :class:`~pyfaas.worker.pool.
LeaderPool`, and the Event that says a stop is under way; the Worker
tells it which connection is current. It does not read frames, run calls
or reconnect (:mod:`pyfaas.worker.service`).
"""

import logging
import threading
import time

from ..wire import protocol as p
from ..errors import PyFaaSError

log = logging.getLogger(__name__)

WATCHDOG_PERIOD_S = 0.025
DRAIN_RID = 2 ** 63       # request id of the "draining" heartbeat
STOP_GRACE_S = 10.0


class Watchdog:
    """The watchdog of one Worker (see the module docstring).

    Args:
        core: the Worker's WorkerCore.
        calls: its CallTable.
        replies: its Replies.
        pool: its LeaderPool.
        stopping: a ``threading.Event``; the watchdog sets it when a stop
            was requested, and drains the connection while it is set.
        recycle: True to stop (for a restart) once every thread is stuck.
    """

    def __init__(self, core, calls, replies, pool, stopping, recycle=False):
        self._core = core
        self._calls = calls
        self._replies = replies
        self._pool = pool
        self._stopping = stopping
        self._recycle = recycle
        self.recycle_reason = None  # set when it stopped to be restarted
        self._stuck_told = 0      # stuck calls the Director was told of
        self._requested = False
        self._closed = threading.Event()
        self._thread = None
        # The connection being served, and its draining (see _drain_step).
        self._conn = None
        self._drain_deadline = None
        self._drain_acked = False

    def start(self):
        """Start the thread (again after :meth:`close`)."""
        self._closed.clear()
        self._thread = threading.Thread(target=self._loop,
                                        name="pyfaas-watchdog", daemon=True)
        self._thread.start()

    def close(self, timeout=2.0):
        """End the thread (waiting up to ``timeout`` s). Idempotent."""
        self._closed.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def request_stop(self):
        """Ask for a graceful stop; return at once.

        Safe from a signal handler: it only sets an attribute (no lock:
        the interrupted thread may hold any of them). Within
        WATCHDOG_PERIOD_S the watchdog thread sets the stopping event and
        drains: it tells the Director to send no new calls, lets the
        running ones finish (up to STOP_GRACE_S), and shuts the reading
        side of the connection, which ends it.
        """
        self._requested = True

    def connected(self, conn):
        """``conn`` is now the Director connection being served."""
        self._drain_deadline = None
        self._drain_acked = False
        self._stuck_told = 0      # (a new Director knows nothing)
        self._conn = conn

    def disconnected(self):
        """No Director connection is being served."""
        self._conn = None

    def drain_acknowledged(self):
        """The Director answered the draining heartbeat: no new calls."""
        self._drain_acked = True

    def _loop(self):
        while not self._closed.wait(WATCHDOG_PERIOD_S):
            if self._pool.demote_stuck(WATCHDOG_PERIOD_S):
                log.info("a call expected to be quick is still running: "
                         "another thread reads meanwhile")
            if self._requested and not self._stopping.is_set():
                self._stopping.set()
            if self._stopping.is_set():
                self._drain_step()
            self._answer_late_calls()
            self._check_stuck()

    def _answer_late_calls(self):
        for slot in self._calls.expire(time.monotonic()):
            conn, rid = slot.key
            type_, meta, payload, flags = self._core.timeout_reply(
                rid, slot.func_id, slot.limit)
            self._replies.send(conn, p.frame_parts(type_, rid, meta, payload,
                                                   flags))

    def _check_stuck(self):
        """Tell the Director of stuck calls; once they hold every thread,
        hand back the calls waiting for one, and recycle if supervised."""
        stuck = self._calls.stuck_now
        if stuck != self._stuck_told and self._conn is not None:
            self._stuck_told = stuck
            if stuck >= self._pool.size and not self._recycle:
                log.warning("all %d thread(s) are stuck in calls past their "
                            "time limit: calls go back to the director until"
                            " one returns (a supervised Worker restarts "
                            "itself)", self._pool.size)
            try:
                self._conn.send(p.frame_parts(p.HEARTBEAT, 0, {
                    "inflight": self._calls.inflight, "stuck": stuck}))
            except PyFaaSError:
                pass  # the reader notices the broken connection
        if stuck < self._pool.size:
            return
        for job in self._pool.take_backlog():
            self._hand_back(*job[1][:2])
        if self._recycle and self.recycle_reason is None:
            self.recycle_reason = ("%d call(s) stuck past their time limit "
                                   "hold all %d thread(s)"
                                   % (stuck, self._pool.size))
            log.warning("%s; stopping to be started again by the "
                        "supervisor", self.recycle_reason)
            self._requested = True

    def _hand_back(self, conn, frame):
        """Give a call that will not start here back to the Director."""
        calls, core = self._calls, self._core
        calls.cancel((conn, frame.request_id))
        calls.finish()
        meta = {"code": "not_started", "worker_id": core.worker_id,
                "message": "every thread of worker %s is stuck in a call past "
                "its time limit" % core.worker_id}
        try:
            meta["call"] = frame.meta()
            parts = p.frame_parts(p.ERROR, frame.request_id, meta,
                                  frame.payload, frame.flags)
        except (p.ProtocolError, ValueError):
            del meta["call"]  # (the Director answers the caller)
            parts = p.frame_parts(p.ERROR, frame.request_id, meta)
        self._replies.send(conn, parts)

    def _drain_step(self):
        """One step of a graceful stop."""
        conn = self._conn
        if conn is None:
            return
        now = time.monotonic()
        calls = self._calls
        if self._drain_deadline is None:
            self._drain_deadline = now + STOP_GRACE_S
            log.info("stopping: asking the director for no new calls; %d "
                     "running", calls.inflight)
            try:
                meta = {"inflight": calls.inflight, "draining": True}
                if self.recycle_reason is not None:
                    meta["recycle"] = True  # (the supervisor restarts it)
                conn.send(p.frame_parts(p.HEARTBEAT, DRAIN_RID, meta))
            except PyFaaSError:
                conn.shutdown_read()
            return
        done = self._drain_acked and not calls.inflight and \
            self._replies.idle()
        if done or now > self._drain_deadline:
            if not done:
                log.warning("stopping with %d call(s) still running",
                            calls.inflight)
            conn.shutdown_read()
