"""The Worker's thread pool and its record of a call with a time limit.

Owns :class:`ThreadPool` (a fixed set of threads taking jobs from one
queue) and :class:`Slot` (what the watchdog needs to answer a call that
outlived its limit). No sockets.
"""

import queue
import threading
import time


class ThreadPool:
    """A fixed set of threads taking ``(fn, args)`` jobs from one queue.

    Smaller than ``concurrent.futures.ThreadPoolExecutor`` on the hot path
    (no Future per call: the replies travel by frame, not by future), and
    started at once, so the first calls find their threads ready.
    """

    def __init__(self, size):
        self._jobs = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, daemon=True,
                                          name="pyfaas-exec-%d" % i)
                         for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn, *args):
        self._jobs.put((fn, args))

    def _loop(self):
        get = self._jobs.get
        while True:
            job = get()
            if job is None:
                return
            fn, args = job
            fn(*args)  # fn (Worker._run) catches everything itself

    def shutdown(self):
        """Let every thread end once the jobs queued before are done."""
        for _ in self._threads:
            self._jobs.put(None)


class Slot:
    """A running call with a time limit."""

    __slots__ = ("rid", "conn", "func_id", "limit", "start", "deadline",
                 "finished", "timed_out")

    def __init__(self, rid, conn, func_id, limit):
        self.rid = rid
        self.conn = conn
        self.func_id = func_id
        self.limit = limit
        self.start = time.monotonic()
        self.deadline = self.start + limit
        self.finished = False
        self.timed_out = False
