"""The Worker's threads: they take turns reading and run what they read.

Owns :class:`LeaderPool`: ``size`` + 1 threads, the turn of reading, the
slots that bound how many calls run at once, and the backlog of calls read
while every slot was busy. No sockets: the pool is given a function that
reads the next call. It does not know what a call is (a job is a function
and its arguments), nor time limits (:mod:`pyfaas.worker.calls`).
"""

import collections
import threading
import time

_STOP = object()


class LeaderPool:
    """``size`` + 1 threads that take turns as the reader (leader/follower).

    One thread at a time, the leader, calls ``next_job()``, which reads
    frames, handles the ones that are not calls, and returns the next call
    as ``(fn, args, quick)`` (or None once the Worker stops).

    - A ``quick`` call (its function's last run was short) with a slot
      free is run by the leader itself, which then reads on: no other
      thread is woken, so a stream of quick calls costs no thread switch.
      If such a call runs longer than expected, :meth:`demote_stuck`
      (called by the Worker's watchdog) hands the lead to a waiting thread.
    - Any other call with a slot free: the leader hands the lead to a
      waiting thread, then runs the call.
    - With every slot busy the call waits in a backlog, taken by the next
      thread that finishes one, and the leader reads on. The extra thread
      means somebody always reads, so cancels and control frames are never
      stuck behind slow calls.
    """

    def __init__(self, size, next_job):
        self.size = size
        self._next_job = next_job
        # _lock guards all state below; _turn (on the same lock) is waited
        # on for the lead. (`with self._lock` where nothing waits: a
        # Condition's own `with` runs Python code, on every call.)
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)
        self._leader = None       # the thread reading, if any
        self._inline_since = None  # the leader is running a quick call
        self._free = size
        self._backlog = collections.deque()
        self._stopping = False
        self._threads = [threading.Thread(target=self._loop, daemon=True,
                                          name="pyfaas-exec-%d" % i)
                         for i in range(size + 1)]
        for thread in self._threads:
            thread.start()

    def _loop(self):
        me = threading.current_thread()
        turn = self._turn
        while True:
            with turn:
                while self._leader is not None and not self._stopping:
                    turn.wait()
                if self._stopping:
                    return
                self._leader = me
            job = self._lead(me)
            if job is _STOP:
                return
            while job is not None:  # not the leader now: others read
                fn, args, _ = job
                fn(*args)  # fn (Worker._run) catches everything itself
                with turn:
                    if self._backlog:
                        job = self._backlog.popleft()
                    else:
                        job = None
                        self._free += 1

    def _lead(self, me):
        """Read and run quick calls while leading; return the job to run
        after giving up the lead (None: none), or _STOP."""
        turn, lock = self._turn, self._lock
        while True:
            try:
                job = self._next_job()
            except BaseException:  # a bug: never leave the pool deaf
                with lock:
                    self._leader = None
                    turn.notify()
                raise
            with lock:
                if job is None:
                    self._stopping = True
                    self._leader = None
                    turn.notify_all()
                    return _STOP
                if not self._free:
                    self._backlog.append(job)
                    continue
                self._free -= 1
                if not job[2]:
                    self._leader = None
                    turn.notify()
                    return job
                self._inline_since = time.monotonic()
            fn, args, _ = job
            fn(*args)
            with lock:
                leading = self._leader is me  # else demoted while running
                if leading:
                    self._inline_since = None
                if self._backlog:  # its slot goes to a waiting call
                    if leading:
                        self._leader = None
                        turn.notify()
                    return self._backlog.popleft()
                self._free += 1
                if not leading:
                    return None

    def demote_stuck(self, limit):
        """Hand the lead on if the leader has run one quick call for more
        than ``limit`` seconds; return True if it did."""
        with self._turn:
            since = self._inline_since
            if since is None or time.monotonic() - since <= limit:
                return False
            self._inline_since = None
            self._leader = None
            self._turn.notify()
            return True

    def backlog(self):
        """Calls read but not started (every slot was busy)."""
        return len(self._backlog)

    def take_backlog(self):
        """Take the calls read but not started (they will not run here)."""
        with self._lock:
            jobs = list(self._backlog)
            self._backlog.clear()
        return jobs

    def join(self, timeout):
        """Wait up to ``timeout`` seconds for every thread to end (they do
        once ``next_job()`` returned None and their calls returned);
        return True if they all did."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

