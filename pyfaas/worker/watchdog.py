"""The Worker's watchdog thread: time limits, stuck quick calls, graceful stop.

Owns :class:`Watchdog`, a mixin of :class:`pyfaas.worker.service.Worker` (it uses
the Worker's connection, pool, slots and reply queue): every
WATCHDOG_PERIOD_S it hands the reading on when the reading thread is stuck
in a call taken for quick, answers calls that outlived their time limit,
and drives a graceful stop (:meth:`Watchdog.stop`).
"""

import logging
import time

from ..wire import protocol as p
from ..errors import PyFaaSError

log = logging.getLogger("pyfaas.worker.service")

WATCHDOG_PERIOD_S = 0.025
DRAIN_RID = 2 ** 63       # request id of the "draining" heartbeat
STOP_GRACE_S = 10.0


class Watchdog:
    """The watchdog half of a Worker (see the module docstring)."""

    def stop(self):
        """Ask the Worker to stop gracefully; :meth:`serve_forever` returns.

        Safe from a signal handler: it only sets an attribute (no lock: the
        interrupted thread may hold any of them). Within WATCHDOG_PERIOD_S
        the watchdog thread sets the stop event and drains: it tells the
        Director to send no new calls, lets the running ones finish (up to
        STOP_GRACE_S), and closes the connection.
        """
        self._stop_requested = True

    def _drain_step(self):
        """One step of a graceful stop; called by the watchdog thread."""
        conn = self._conn
        if conn is None:
            return
        now = time.monotonic()
        if self._drain_deadline is None:
            self._drain_deadline = now + STOP_GRACE_S
            log.info("stopping: asking the director for no new calls; %d "
                     "running", self.core.inflight)
            try:
                conn.send(p.frame_parts(p.HEARTBEAT, DRAIN_RID, {
                    "inflight": self.core.inflight, "draining": True}))
            except PyFaaSError:
                conn.shutdown_read()
            return
        with self._out_lock:
            replying = self._writing or bool(self._out)
        done = self._drain_acked and not self.core.inflight and not replying
        if done or now > self._drain_deadline:
            if not done:
                log.warning("stopping with %d call(s) still running",
                            self.core.inflight)
            conn.shutdown_read()

    def _watchdog_loop(self):
        """Answer calls that outlive their timeout; their threads run on."""
        while not self._closed.wait(WATCHDOG_PERIOD_S):
            if self.pool.demote_stuck(WATCHDOG_PERIOD_S):
                log.info("a call expected to be quick is still running: "
                         "another thread reads meanwhile")
            if self._stop_requested and not self._stop.is_set():
                self._stop.set()
            if self._stop.is_set():
                self._drain_step()
            if not self._slots:
                continue
            now = time.monotonic()
            with self._count_lock:
                expired = [s for s in self._slots.values()
                           if not s.finished and now > s.deadline]
                for slot in expired:
                    slot.finished = slot.timed_out = True
                    self.core.inflight -= 1  # the slot is free for accounting
                    self._slots.pop((slot.conn, slot.rid), None)
            for slot in expired:
                func = self.core.functions.get(slot.func_id)
                name = func.name if func else slot.func_id
                if func is not None:
                    self.core.stats.record_timeout(func.id, func.name)
                self.core.stuck += 1
                log.warning("call %d of %s exceeded its %.1f s timeout; its "
                            "caller was told; the thread is still busy", slot.rid,
                            name, slot.limit)
                self._send(slot.conn, p.ERROR, slot.rid, {
                    "code": "timeout", "worker_id": self.worker_id,
                    "message": "function %r did not finish within %.1f s on "
                    "worker %s (the call's timeout or call_timeout_s)"
                    % (name, slot.limit, self.worker_id)})
