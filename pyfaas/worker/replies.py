"""The Worker's replies: one queue, written by whichever thread queued first.

Owns :class:`Replies`, the one way a Worker's reply frames (results,
errors, timeouts, answers to control requests) are queued and written. A
reply is queued as encoded frame parts (:func:`pyfaas.wire.protocol.
frame_parts`) with the connection it answers on. The thread that queues
while nobody is writing becomes the writer: it writes everything queued,
one ``send`` per run of frames for one connection, until the queue is
empty. Replies that complete while a write is under way thus leave
together with the next write; no thread waits on the socket while holding
another's reply, and there is no writer thread.

It does not own the connections (only calls their ``send`` and reads their
``closed``) nor what the frames say. Frames that are not replies
(registration, heartbeats) are sent by :mod:`pyfaas.worker.service`
directly.
"""

import logging
import threading

from ..errors import PyFaaSError

log = logging.getLogger(__name__)


class Replies:
    """The reply queue of one Worker (see the module docstring).

    A connection is anything with ``send(parts)`` (raising PyFaaSError when
    it fails) and a ``closed`` flag: a :class:`pyfaas.net.connection.
    Connection`.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._queue = []          # (connection, frame parts), in order
        self._writing = False     # a thread is writing what it took

    def send(self, conn, parts):
        """Queue one encoded reply frame for ``conn``; write the queue
        unless another thread is writing it (that thread then does).

        A reply for a connection that is closed by the time it is written
        is dropped (the Director went away: its callers were told the calls
        were lost); a failed send is logged. Neither stops later replies.
        """
        with self._lock:
            if self._writing:
                self._queue.append((conn, parts))
                return
            self._writing = True  # (then the queue is empty: see below)
        try:
            self._deliver(conn, parts)
            while True:
                with self._lock:
                    batch = self._queue
                    if not batch:
                        self._writing = False  # only with the queue empty
                        return
                    self._queue = []
                self._write(batch)
        except BaseException:  # a bug: what is queued goes with the next
            with self._lock:
                self._writing = False
            raise

    def idle(self):
        """True when nothing is queued or being written."""
        with self._lock:
            return not self._writing and not self._queue

    @classmethod
    def _write(cls, batch):
        """Write queued ``(conn, parts)``: one send per run of one connection."""
        i = 0
        while i < len(batch):
            conn = batch[i][0]
            parts = []
            while i < len(batch) and batch[i][0] is conn:
                parts.extend(batch[i][1])
                i += 1
            cls._deliver(conn, parts)

    @staticmethod
    def _deliver(conn, parts):
        if not conn.closed:
            try:
                conn.send(parts)
            except PyFaaSError as exc:
                log.warning("could not send reply frame(s): %s", exc)
