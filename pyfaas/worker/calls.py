"""The calls a Worker has read and not answered yet.

Owns :class:`CallTable`: the Worker's count of calls received and in
flight, the calls that outlived their time limit ("stuck": counted since
the start, and those whose thread still runs), the time of the last call, the calls still waiting for a thread (which a CANCEL may stop),
and the calls with a time limit that the watchdog watches (:class:`Slot`).
A call is keyed by ``(connection, request id)``: a restarted Director
numbers its requests from 1 again.

Pure state behind one lock: no sockets, no threads of its own. It does not
run calls (:mod:`pyfaas.worker.core`), send replies
(:mod:`pyfaas.worker.replies`) or decide when a call is late
(:mod:`pyfaas.worker.watchdog` asks :meth:`CallTable.expire`).
"""

import threading
import time


class Slot:
    """A running call with a time limit (see :meth:`CallTable.watch`)."""

    __slots__ = ("key", "func_id", "limit", "start", "deadline", "finished",
                 "timed_out")

    def __init__(self, key, func_id, limit):
        self.key = key              # (connection, request id)
        self.func_id = func_id
        self.limit = limit          # seconds
        self.start = time.monotonic()
        self.deadline = self.start + limit
        self.finished = False       # answered: by its result or a timeout
        self.timed_out = False      # answered by the watchdog


class CallTable:
    """Calls read and not answered yet, and the Worker's call counts.

    A call goes through :meth:`received` (when its CALL frame is read),
    :meth:`start` (when a thread takes it) and :meth:`finish` (when its
    reply is queued, or it was dropped). The counts are read without a
    lock (ints: a read is never torn).

    Attributes:
        requests: calls received since the Worker started.
        stuck: calls answered with a timeout while their thread ran on.
        last_request_at: ``time.time()`` of the last call received.
    """

    def __init__(self):
        # for _answered, stuck, _watched and _stuck_now
        self._lock = threading.Lock()
        self.requests = 0
        self._answered = 0
        self.stuck = 0
        self.last_request_at = None
        self._waiting = set()      # received, not started: cancellable
        self._watched = {}         # key -> Slot
        self._stuck_now = set()    # Slots answered late, thread still running

    @property
    def stuck_now(self):
        """Calls answered with a timeout whose thread still runs them."""
        return len(self._stuck_now)

    @property
    def inflight(self):
        """Calls received and not answered."""
        answered = self._answered  # first: it never passes requests
        return self.requests - answered

    def received(self, key):
        """Count a call just read; a CANCEL stops it until it starts.

        Called by the thread reading the connection, one at a time: the
        only writer of ``requests`` needs no lock (this runs per call).
        """
        self.requests += 1
        self._waiting.add(key)
        self.last_request_at = time.time()

    def cancel(self, key):
        """A CANCEL: the call will not run if it has not started."""
        self._waiting.discard(key)

    def start(self, key):
        """A thread takes the call: True if it should run, False if it was
        cancelled (it still goes through :meth:`finish`).

        Whichever of this and :meth:`cancel` takes the key out of the
        waiting set first wins (one set operation each: atomic).
        """
        try:
            self._waiting.remove(key)
        except KeyError:
            return False
        return True

    def finish(self, slot=None):
        """The call was answered or dropped (``slot``: its Slot, if watched).

        A call the watchdog answered was counted as answered then.
        """
        with self._lock:
            if slot is None or not slot.timed_out:
                self._answered += 1

    def watch(self, key, func_id, limit):
        """Watch a call that may run ``limit`` seconds; return its Slot."""
        slot = Slot(key, func_id, limit)
        with self._lock:
            self._watched[key] = slot
        return slot

    def unwatch(self, slot):
        """The watched call returned; True if it was answered with a
        timeout meanwhile (its result is then to be dropped)."""
        with self._lock:
            self._watched.pop(slot.key, None)
            late, slot.finished = slot.finished, True
            if late:
                self._stuck_now.discard(slot)
        return late

    def expire(self, now):
        """The watched calls past their deadline at ``now``
        (``time.monotonic()``), each now counted as answered and stuck."""
        if not self._watched:  # (no lock: an empty dict is the usual case)
            return []
        with self._lock:
            expired = [s for s in self._watched.values()
                       if not s.finished and now > s.deadline]
            for slot in expired:
                slot.finished = slot.timed_out = True
                del self._watched[slot.key]
                self._answered += 1  # its caller is told
                self.stuck += 1
                self._stuck_now.add(slot)
        return expired

    def figures(self):
        """The counts for ``pyfaas_get_worker_info`` (its network section);
        ``stuck_now`` lists the calls whose thread is still stuck."""
        now = time.monotonic()
        with self._lock:
            stuck = [{"func_id": s.func_id, "running_s": round(now - s.start,
                                                               3)}
                     for s in self._stuck_now]
        return {"requests": self.requests, "inflight": self.inflight,
                "stuck_calls": self.stuck, "stuck_now": stuck,
                "last_request_time": self.last_request_at}
