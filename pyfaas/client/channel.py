"""A client's multiplexed connection to the Director.

Owns one :class:`pyfaas.net.connection.Connection` at a time (opened lazily,
reopened after a failure) with the table of requests in flight on it,
matched by request id, and who reads its replies (a :class:`Link`). Many
threads may send at once; one thread at a time reads (whoever holds the
read lock), and replies are matched to their requests whoever reads them:

- A thread waiting for its own reply (:meth:`Channel.request`) reads the
  socket itself when nobody else is, until its reply comes; the reply needs
  no hand-over between threads.
- A reader thread per connection reads when requests are pending and
  nobody else reads: the replies of futures (``submit``, ``map``), and
  those of callers that found another thread reading. It parks when
  nothing is pending.
- Before a request goes out on a connection left idle, what it holds is
  read without waiting, so the EOF of a Director that closed it is seen
  and the request goes out on a new connection instead.

A partial frame stays in the connection's decoder for the next reader, so
a caller that gives up (timeout, cancel) never leaves a half-read frame
behind: its late reply is simply dropped. Frames sent together
(:meth:`Channel.send_batch`) go out in one write.
"""

import itertools
import threading
import time
from concurrent.futures import Future, InvalidStateError

from ..wire import protocol as p
from ..errors import (PyFaaSError, PyFaaSNetworkError, PyFaaSProtocolError,
                     PyFaaSSerializationError, PyFaaSTimeoutError)
from ..errors import error_from_meta
from ..net.connection import Connection

IDLE_CHECK_S = 0.02  # a connection unused this long is checked before use


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


class Reply:
    """The reply to a request its sender waits for (:meth:`Channel.request`).

    Lighter than a Future (one lock, no condition, no callbacks): the hot
    path of every synchronous call. Completed once, by whoever reads it.
    """

    __slots__ = ("frame", "error", "_ready")

    def __init__(self):
        self.frame = None
        self.error = None
        self._ready = threading.Lock()
        self._ready.acquire()

    def deliver(self, frame):
        self.frame = frame
        self._ready.release()

    def fail(self, exc):
        self.error = exc
        self._ready.release()

    def wait(self, timeout):
        """True once completed; False if ``timeout`` seconds passed first."""
        return self._ready.acquire(True, max(0.0, timeout))


class Link:
    """One connection of a Channel and everything about reading it.

    Its requests in flight (request id -> Reply or future), its read lock
    (held by the thread reading it) and its reader thread's wake-up Event.
    Callers hold a Link as the handle of a request they sent.
    """

    def __init__(self, conn, max_frame_size):
        self.conn = conn
        self.name = conn.name
        # The largest request the Director takes (its HELLO says), and the
        # largest reply we take when it is below the Director's (results
        # over it must be refused by the Worker, not kill the connection):
        # None when ours is not smaller.
        director_max = (conn.hello or {}).get("max_frame")
        self.limit = director_max or max_frame_size
        self.reply_limit = None if max_frame_size >= (
            director_max or p.DEFAULT_MAX_FRAME_SIZE) else max_frame_size
        self.pending = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()


class Channel:
    """Requests and replies over one connection, from many threads.

    Args:
        config: the client's :class:`~pyfaas.config.ClientConfig` (the
            Director's address, ``receive_timeout_s``: the default wait for
            a reply and for connecting, ``max_frame_bytes``).
        token: the cluster token (bytes) or None.
        tls: an ``ssl.SSLContext`` to connect with, or None.
    """

    def __init__(self, config, token=None, tls=None):
        self.config = config
        self.host = config.director_ip_addr
        self.port = config.director_port
        self.timeout = config.receive_timeout_s
        self.max_frame_size = config.max_frame_bytes
        self.hint = " (receive_timeout_s in %s)" % config.path
        self.token = token
        self.tls = tls
        self.link = None          # the Link of the open connection, if any
        self._lock = threading.Lock()
        self._rids = itertools.count(1)
        self._readers = set()     # threads (idents) dispatching replies:
        # callbacks run on them, so a blocking call there is refused
        self._last_reply = 0.0    # time.monotonic() of the last reply read
        self.closed = False

    def close(self):
        """Close the connection; requests in flight fail. Idempotent."""
        self.closed = True
        with self._lock:
            link, self.link = self.link, None
        if link is not None:
            self._lost(link, None)

    def current(self):
        """The open connection, or None (never connects)."""
        link = self.link
        return link.conn if link is not None and not link.conn.closed \
            else None

    def reply_limit(self):
        """The largest reply to ask for in a request's ``max``, or None
        (see :class:`Link`), on the connection the next request goes out
        on: connects if needed, and first checks one left idle (a Director
        restarted meanwhile may take larger frames than the last one)."""
        return self._open(sending=True).reply_limit

    def _open(self, sending=False):
        """The Link of the open connection, connecting if needed.

        ``sending``: a request is about to be sent on it. An idle connection
        is nobody's to read, so a Director that closed it (restarted, say)
        would go unnoticed until a request was lost on it: one that has had
        nothing pending and no reply for IDLE_CHECK_S is read first, without
        waiting (see :meth:`_read_idle`).
        """
        link = self.link
        if link is not None and not link.conn.closed:
            if not sending or link.pending or \
                    time.monotonic() - self._last_reply < IDLE_CHECK_S:
                return link
            self._read_idle(link)
            if not link.conn.closed:
                return link
        with self._lock:
            if self.closed:
                raise PyFaaSNetworkError("client for %s:%s is closed"
                                         % (self.host, self.port))
            link = self.link
            if link is not None and not link.conn.closed:
                return link
            if link is not None:  # closed by a failed send: its reader
                self._lost(link, None)  # may be parked; let it end
            conn = Connection(self.config, p.ROLE_CLIENT, self.timeout,
                              self.token, self.tls)
            conn.connect()
            link = self.link = Link(conn, self.max_frame_size)
            reader = threading.Thread(target=self._reader, args=(link,),
                                      name="pyfaas-client-reader",
                                      daemon=True)
            reader.start()
            return link

    def _read_idle(self, link):
        """Read what an idle connection holds, without waiting: late replies
        of requests given up on, or the EOF of a Director that closed it."""
        if not link.lock.acquire(False):
            return  # someone reads it: they will see an EOF
        try:
            while True:
                frame = link.conn.recv_frame(time.monotonic(),
                                             close_on_timeout=False)
                if frame is None:
                    break
                self._dispatch(link, frame)
        except (PyFaaSError, p.ProtocolError) as exc:
            self._lost(link, exc)
        finally:
            link.lock.release()
            if link.pending:  # a request sent meanwhile: its reader
                link.wake.set()
        self._last_reply = time.monotonic()

    def _reader(self, link):
        pending, lock, wake, conn = link.pending, link.lock, link.wake, \
            link.conn
        me = threading.get_ident()
        self._readers.add(me)  # before anything it reads can run a callback
        try:
            while not conn.closed:
                wake.wait()
                wake.clear()
                # A thread reading for itself wakes us when it stops.
                while pending and not conn.closed and lock.acquire(False):
                    try:
                        while pending:
                            self._dispatch(link, conn.recv_frame())
                    finally:
                        lock.release()
        except (PyFaaSError, p.ProtocolError) as exc:
            self._lost(link, exc)
        finally:
            self._readers.discard(me)
            self._lost(link, None)

    def _dispatch(self, link, frame):
        """Complete the request ``frame`` answers (on the reading thread)."""
        if frame.request_id == 0 and frame.type == p.ERROR:
            # About the connection itself (e.g. a frame too large): the
            # Director closes it; every request on it fails so.
            raise error_from_meta(frame.meta())
        self._last_reply = time.monotonic()
        entry = link.pending.pop(frame.request_id, None)
        if entry is not None:
            entry.deliver(frame)

    def _lost(self, link, error):
        """``link`` is done (``error`` says why): close it, fail its requests,
        and let its reader thread end."""
        link.conn.close()
        if isinstance(error, p.ProtocolError):  # a reply with bad meta
            error = PyFaaSProtocolError("director %s sent a bad frame: %s"
                                        % (link.name, error))
        if self.closed:
            error = PyFaaSNetworkError("client for %s:%s was closed"
                                       % (self.host, self.port))
        pending = link.pending
        for rid in list(pending):
            entry = pending.pop(rid, None)
            if entry is None:
                continue
            if isinstance(error, PyFaaSNetworkError) or error is None:
                entry.fail(PyFaaSNetworkError(
                    "connection to director %s lost before the answer "
                    "arrived: %s" % (link.name, error)))
            else:
                entry.fail(error)
        link.wake.set()

    def send_batch(self, requests):
        """Send several requests in one write; return ``[(link, rid, future)]``.

        Each ``future`` (default: a new :class:`ReplyFuture`) receives its
        reply through ``deliver(frame)`` / ``fail(exc)`` from whichever
        thread reads it; the reader thread is woken.

        Args:
            requests: ``(type, meta, payload, flags, future or None)`` tuples.
        """
        link = self._open(sending=True)
        conn, pending = link.conn, link.pending
        parts, sent = [], []
        for type_, meta, payload, flags, future in requests:
            rid = next(self._rids)
            frame, why = self._encode(link, type_, rid, meta, payload, flags)
            if why is not None:
                for _, rid_, _ in sent:
                    pending.pop(rid_, None)
                raise PyFaaSSerializationError(why + "; nothing was sent")
            if future is None:
                future = ReplyFuture()
            pending[rid] = future
            parts.extend(frame)
            sent.append((link, rid, future))
        try:
            conn.send(parts)
        except PyFaaSError:
            for _, rid, _ in sent:
                pending.pop(rid, None)
            raise
        link.wake.set()
        return sent

    @staticmethod
    def _encode(link, type_, rid, meta, payload, flags):
        """``(frame parts, None)``, or ``(None, why it cannot be sent)``."""
        try:
            frame = p.frame_parts(type_, rid, meta, payload, flags)
        except ValueError as exc:  # meta over 64 KiB
            return None, str(exc)
        limit = link.limit
        size = sum(map(len, frame)) - 4
        if size > limit:
            return None, ("request of %d bytes is over the director's frame "
                          "limit of %d bytes (max_frame_bytes)"
                          % (size, limit))
        return frame, None

    def send_many(self, meta, payloads, flags, futures):
        """Send calls of one function with the same options as ONE frame.

        A CALL_MANY frame carries the calls' request ids and argument sizes
        in its meta and their argument bytes one after the other; the
        Director routes each as a CALL and each is answered on its own.
        Falls back to one CALL frame each when the batch would not fit a
        frame comfortably.

        Returns:
            list: ``(link, rid, future)`` per call, in order.
        """
        link = self._open(sending=True)
        conn = link.conn
        limit = link.limit
        total = sum(len(x) for x in payloads)
        if len(payloads) < 2 or total + 16 * len(payloads) + 4096 > limit // 2:
            return self.send_batch([(p.CALL, meta, x, flags, f)
                                    for x, f in zip(payloads, futures)])
        rids = [next(self._rids) for _ in payloads]
        many = dict(meta, rids=rids, sizes=[len(x) for x in payloads])
        pending = link.pending
        for rid, future in zip(rids, futures):
            pending[rid] = future
        try:
            conn.send(p.frame_parts(p.CALL_MANY, rids[0], many,
                                    b"".join(payloads), flags))
        except (PyFaaSError, ValueError) as exc:
            for rid in rids:
                pending.pop(rid, None)
            if isinstance(exc, ValueError):  # meta over 64 KiB
                raise PyFaaSSerializationError(str(exc))
            raise
        link.wake.set()
        return [(link, rid, f) for rid, f in zip(rids, futures)]

    def refuse_in_reader(self):
        """Raise if called on a thread that is reading replies (from a
        future's callback): a blocking call there would wait for a reply
        only that thread can read."""
        if threading.get_ident() in self._readers:
            raise PyFaaSError(
                "a blocking PyFaaS call was made from a future's done-"
                "callback, which runs on the thread reading the client's "
                "connection: it would wait for itself; nothing was sent. "
                "Make the call from another thread, or use exec_async/submit"
                " in the callback")

    def forget(self, link, rid, tell_director=True):
        """Stop waiting for ``rid``; ask the Director to cancel it."""
        link.pending.pop(rid, None)
        if tell_director:
            try:
                link.conn.send(p.frame_parts(p.CANCEL, rid))
            except PyFaaSError:
                pass

    def request(self, type_, meta=None, payload=b"", flags=0, timeout=None):
        """Send one request and return its reply frame: the hot path of
        every synchronous call.

        The caller reads the connection itself when no other thread does
        (see the module docstring) and takes its own reply as it comes;
        otherwise it waits for whoever reads to hand the reply over.

        Raises:
            PyFaaSSerializationError: the request cannot be sent (too large,
                meta over 64 KiB); nothing was sent.
            PyFaaSTimeoutError: no reply within ``timeout`` (default: the
                channel's); the request is then cancelled.
            PyFaaSNetworkError: the connection broke first.
        """
        link = self.link
        if link is None or link.conn.closed or not link.pending and \
                time.monotonic() - self._last_reply >= IDLE_CHECK_S:
            link = self._open(sending=True)  # (the checks, inlined: see it)
        conn, pending = link.conn, link.pending
        rid = next(self._rids)
        frame, why = self._encode(link, type_, rid, meta, payload, flags)
        if why is not None:
            raise PyFaaSSerializationError(why + "; nothing was sent")
        reply = pending[rid] = Reply()
        try:
            conn.send(frame)
        except PyFaaSError:
            pending.pop(rid, None)
            raise
        wait = self.timeout if timeout is None else timeout
        # (callers refused a thread that reads replies before sending)
        if reply.frame is None and reply.error is None and \
                link.lock.acquire(False):
            # Read, anyone's replies, until ours comes (returned as it is:
            # nothing to hand over) or fails, or the deadline passes.
            deadline = time.monotonic() + wait
            me = threading.get_ident()
            self._readers.add(me)
            try:
                while reply.frame is None and reply.error is None:
                    got = conn.recv_frame(deadline, close_on_timeout=False)
                    if got is None:
                        break  # the deadline passed: we time out below
                    if got.request_id == rid:
                        self._last_reply = time.monotonic()
                        if pending.pop(rid, None) is not None:
                            return got
                        continue  # failed meanwhile: reply.error says how
                    self._dispatch(link, got)
            except (PyFaaSError, p.ProtocolError) as exc:
                self._lost(link, exc)
            finally:
                self._readers.discard(me)
                link.lock.release()
                if pending:  # others still wait: the reader takes over
                    link.wake.set()
            wait = deadline - time.monotonic()
        # else whoever reads now wakes the reader thread when it stops
        if not reply.wait(wait):
            self.forget(link, rid)
            raise PyFaaSTimeoutError(
                "director %s did not answer within %.1f s%s"
                % (link.name, self.timeout if timeout is None else timeout,
                   self.hint if timeout is None else ""))
        if reply.error is not None:
            raise reply.error
        return reply.frame
