"""A client's multiplexed connection to the Director.

Owns one :class:`pyfaas.transport.Connection` (opened lazily, reopened after
a failure), the table of requests in flight on it, matched by request id,
and the reader thread that completes them. Many threads may send at once;
only the reader thread reads, so a caller that gives up (timeout, cancel)
never leaves a half-read frame behind: its late reply is simply dropped.
Frames sent together (:meth:`Channel.send_batch`) go out in one write.
"""

import itertools
import threading
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout

from . import protocol as p
from .errors import (PyFaaSError, PyFaaSNetworkError, PyFaaSProtocolError,
                     PyFaaSSerializationError, PyFaaSTimeoutError)
from .transport import Connection, error_from_meta


class ReplyFuture(Future):
    """A Future completed with the reply Frame of one request."""

    def deliver(self, frame):
        try:
            self.set_result(frame)
        except InvalidStateError:
            pass  # cancelled meanwhile

    def fail(self, exc):
        try:
            self.set_exception(exc)
        except InvalidStateError:
            pass


class Channel:
    """Requests and replies over one connection, from many threads.

    Args:
        host, port: the Director.
        timeout: default seconds to wait for a reply (and to connect).
        max_frame_size: the largest frame accepted from the Director.
        hint: where the user can change ``timeout``, for messages.
    """

    def __init__(self, host, port, timeout, max_frame_size, hint="",
                 token=None, tls=None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_frame_size = max_frame_size
        self.hint = hint
        self.token = token
        self.tls = tls
        self._conn = None
        self._lock = threading.Lock()
        self._pending = {}
        self._rids = itertools.count(1)
        self._readers = set()     # reader threads (callbacks run on them)
        self.closed = False

    def close(self):
        """Close the connection; requests in flight fail. Idempotent."""
        self.closed = True
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def current(self):
        """The open connection, or None (never connects)."""
        conn = self._conn
        return conn if conn is not None and not conn.closed else None

    def connection(self):
        """The open connection, connecting (and starting the reader) if needed."""
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        with self._lock:
            if self.closed:
                raise PyFaaSNetworkError("client for %s:%s is closed"
                                         % (self.host, self.port))
            conn = self._conn
            if conn is None or conn.closed:
                conn = Connection(self.host, self.port, p.ROLE_CLIENT,
                                  self.timeout, self.max_frame_size, self.hint,
                                  self.token, self.tls)
                conn.connect()
                self._conn = conn
                reader = threading.Thread(target=self._reader, args=(conn,),
                                          name="pyfaas-client-reader",
                                          daemon=True)
                self._readers.add(reader)
                reader.start()
            return conn

    def _reader(self, conn):
        pending = self._pending
        error = None
        try:
            while True:
                frame = conn.recv_frame()
                if frame.request_id == 0 and frame.type == p.ERROR:
                    # About the connection itself (e.g. a frame too large):
                    # the Director closes it; every request on it fails so.
                    error = error_from_meta(frame.meta())
                    break
                entry = pending.pop((conn, frame.request_id), None)
                if entry is not None:
                    entry.deliver(frame)
        except PyFaaSError as exc:
            error = exc
        except p.ProtocolError as exc:  # a reply with bad meta
            error = PyFaaSProtocolError("director %s sent a bad frame: %s"
                                        % (conn.name, exc))
        conn.close()
        self._readers.discard(threading.current_thread())
        if self.closed:
            error = PyFaaSNetworkError("client for %s:%s was closed"
                                       % (self.host, self.port))
        for key in [k for k in list(pending) if k[0] is conn]:
            entry = pending.pop(key, None)
            if entry is None:
                continue
            if isinstance(error, PyFaaSNetworkError) or error is None:
                entry.fail(PyFaaSNetworkError(
                    "connection to director %s lost before the answer "
                    "arrived: %s" % (conn.name, error)))
            else:
                entry.fail(error)

    def send(self, type_, meta=None, payload=b"", flags=0, future=None):
        """Send one request; return ``(conn, rid, future)``.

        ``future`` (default: a new :class:`ReplyFuture`) receives the reply
        through its ``deliver(frame)`` / ``fail(exc)`` methods.
        """
        return self.send_batch([(type_, meta, payload, flags, future)])[0]

    def send_batch(self, requests):
        """Send several requests in one write; return ``[(conn, rid, future)]``.

        Args:
            requests: ``(type, meta, payload, flags, future or None)`` tuples.
        """
        conn = self.connection()
        parts, sent = [], []
        pending = self._pending
        limit = (conn.hello or {}).get("max_frame") or self.max_frame_size
        for type_, meta, payload, flags, future in requests:
            rid = next(self._rids)
            try:
                frame = p.frame_parts(type_, rid, meta, payload, flags)
            except ValueError as exc:  # meta over 64 KiB
                frame, why = None, str(exc)
            else:
                size = len(frame[0]) - 4 + len(payload)
                why = None if size <= limit else (
                    "request of %d bytes is over the director's frame limit"
                    " of %d bytes (max_frame_bytes)" % (size, limit))
            if why is not None:
                for conn_, rid_, _ in sent:
                    pending.pop((conn_, rid_), None)
                raise PyFaaSSerializationError(why + "; nothing was sent")
            future = future if future is not None else ReplyFuture()
            pending[(conn, rid)] = future
            parts.extend(frame)
            sent.append((conn, rid, future))
        try:
            conn.send(parts)
        except PyFaaSError:
            for conn_, rid, _ in sent:
                pending.pop((conn_, rid), None)
            raise
        return sent

    def send_many(self, meta, payloads, flags, futures):
        """Send calls of one function with the same options as ONE frame.

        A CALL_MANY frame carries the calls' request ids and argument sizes
        in its meta and their argument bytes one after the other; the
        Director routes each as a CALL and each is answered on its own.
        Falls back to one CALL frame each when the batch would not fit a
        frame comfortably.

        Returns:
            list: ``(conn, rid, future)`` per call, in order.
        """
        conn = self.connection()
        limit = (conn.hello or {}).get("max_frame") or self.max_frame_size
        total = sum(len(x) for x in payloads)
        if len(payloads) < 2 or total + 16 * len(payloads) + 4096 > limit // 2:
            return self.send_batch([(p.CALL, meta, x, flags, f)
                                    for x, f in zip(payloads, futures)])
        rids = [next(self._rids) for _ in payloads]
        many = dict(meta, rids=rids, sizes=[len(x) for x in payloads])
        pending = self._pending
        for rid, future in zip(rids, futures):
            pending[(conn, rid)] = future
        try:
            conn.send(p.frame_parts(p.CALL_MANY, rids[0], many,
                                    b"".join(payloads), flags))
        except (PyFaaSError, ValueError) as exc:
            for rid in rids:
                pending.pop((conn, rid), None)
            if isinstance(exc, ValueError):  # meta over 64 KiB
                raise PyFaaSSerializationError(str(exc))
            raise
        return [(conn, rid, f) for rid, f in zip(rids, futures)]

    def refuse_in_reader(self):
        """Raise if called on a reader thread (from a future's callback):
        a blocking call there would wait for a reply only it can read."""
        if threading.current_thread() in self._readers:
            raise PyFaaSError(
                "a blocking PyFaaS call was made from a future's done-"
                "callback, which runs on the client's reader thread: it would"
                " wait for itself; nothing was sent. Make the call from "
                "another thread, or use exec_async/submit in the callback")

    def forget(self, conn, rid, tell_director=True):
        """Stop waiting for ``rid``; ask the Director to cancel it."""
        self._pending.pop((conn, rid), None)
        if tell_director:
            try:
                conn.send(p.frame_parts(p.CANCEL, rid))
            except PyFaaSError:
                pass

    def wait(self, conn, rid, future, timeout=None):
        """The reply frame of a request sent with :meth:`send`.

        Raises:
            PyFaaSTimeoutError: no reply within ``timeout`` (default: the
                channel's); the request is then cancelled.
            PyFaaSNetworkError: the connection broke first.
        """
        wait = self.timeout if timeout is None else timeout
        if not future.done() and threading.current_thread() in self._readers:
            self.forget(conn, rid)
            self.refuse_in_reader()
        try:
            return future.result(wait)
        except FutureTimeout:
            if future.done():
                raise  # the answer itself is a timeout error (Python 3.11+
                # makes futures' TimeoutError the built-in one)
            self.forget(conn, rid)
            raise PyFaaSTimeoutError(
                "director %s did not answer within %.1f s%s"
                % (conn.name, wait, self.hint if timeout is None else ""))
