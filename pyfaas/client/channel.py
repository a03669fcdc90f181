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

Every request is encoded by the Link of the connection it goes out on
(:meth:`Link.encode`): checked against that Director's frame limit and,
when this client takes smaller frames than that Director, asking for
replies no larger (``max``).
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
# Requests whose replies carry results: they say the largest reply this
# client takes (``max``) when the Director's limit is larger (see Link).
RESULT_REQUESTS = frozenset((p.CALL, p.CALL_MANY, p.CHAIN))


class ReplyFuture(Future):
    """A Future completed with the reply to one request sent with
    :meth:`Channel.send_batch` or :meth:`Channel.send_many` (the reply
    Frame; subclasses may turn it into something else)."""

    _channel = None
    _link = None
    _rid = None

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

    def cancel(self):
        """Cancel the request: its reply is dropped, and the Director is
        told (a call that has not started on its Worker never runs).
        Returns False once it finished."""
        if not super().cancel():
            return False
        if self._channel is not None:
            self._channel.forget(self._link, self._rid)
        return True

    def refuse_waiting_here(self):
        """Raise PyFaaSError on a thread that reads the replies this future
        waits for (in a done-callback): waiting there would never end."""
        if self._channel is not None:
            self._channel.refuse_in_reader()


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
    (held by the thread reading it), its reader thread's wake-up Event,
    and the frame limits of both ends: requests are encoded here
    (:meth:`encode`), against the limits of the Director they go to.

    Args:
        conn: a connected :class:`~pyfaas.net.connection.Connection`.
    """

    def __init__(self, conn):
        self.conn = conn
        self.name = conn.name
        # The largest request the Director takes (its HELLO says), and the
        # largest reply we take when it is below the Director's (results
        # over it must be refused by the Worker, not kill the connection):
        # None when ours is not smaller.
        ours = conn.max_frame_size
        director_max = (conn.hello or {}).get("max_frame")
        self.limit = director_max or ours
        self.reply_limit = None if ours >= (
            director_max or p.DEFAULT_MAX_FRAME_SIZE) else ours
        self.pending = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()

    def encode(self, type_, rid, meta, payload, flags):
        """One request as frame parts for this connection's Director.

        A request whose reply carries results (RESULT_REQUESTS) says in
        ``max`` the largest reply we take, when that is below what the
        Director takes.

        Raises:
            PyFaaSSerializationError: the request is over the Director's
                frame limit, or its meta over 64 KiB (nothing is sent).
        """
        if self.reply_limit is not None and type_ in RESULT_REQUESTS:
            if isinstance(meta, (bytes, bytearray)):
                meta = p.decode_meta(meta)
            meta = dict(meta or {}, max=self.reply_limit)
        try:
            frame = p.frame_parts(type_, rid, meta, payload, flags)
        except ValueError as exc:  # meta over 64 KiB
            raise PyFaaSSerializationError(str(exc) + "; nothing was sent")
        size = sum(map(len, frame)) - 4
        if size > self.limit:
            raise PyFaaSSerializationError(
                "request of %d bytes is over the director's frame limit of "
                "%d bytes (max_frame_bytes); nothing was sent"
                % (size, self.limit))
        return frame

    def stop_reading(self):
        """Release the read lock; wake the reader thread if requests are
        pending: their senders left the reading to whoever held it."""
        self.lock.release()
        if self.pending:
            self.wake.set()


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
        self.name = "%s:%s" % (config.director_ip_addr, config.director_port)
        self.timeout = config.receive_timeout_s
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
                raise PyFaaSNetworkError("client for %s is closed"
                                         % self.name)
            link = self.link
            if link is not None and not link.conn.closed:
                return link
            if link is not None:  # closed by a failed send: its reader
                self._lost(link, None)  # may be parked; let it end
            conn = Connection(self.config, p.ROLE_CLIENT, self.timeout,
                              self.token, self.tls)
            conn.connect()
            link = self.link = Link(conn)
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
            link.stop_reading()  # a request sent meanwhile: its reader
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
            error = PyFaaSNetworkError("client for %s was closed"
                                       % self.name)
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
        """Send several requests in one write.

        Each future receives its reply through ``deliver(frame)`` /
        ``fail(exc)`` from whichever thread reads it; cancelling it cancels
        its request.

        Args:
            requests: ``(type, meta, payload, flags, future)`` tuples, each
                future a new :class:`ReplyFuture`.

        Raises:
            PyFaaSSerializationError: a request cannot be sent (see
                :meth:`Link.encode`); none was sent.
            PyFaaSNetworkError, PyFaaSTimeoutError: the write failed.
        """
        self._send(self._open(sending=True), requests)

    def send_many(self, meta, payloads, flags, futures):
        """Send calls of one function with the same options as ONE frame.

        A CALL_MANY frame carries the calls' request ids and argument sizes
        in its meta and their argument bytes one after the other; the
        Director routes each as a CALL and each is answered on its own.
        Falls back to one CALL frame each when the batch would not fit a
        frame comfortably.

        Args:
            meta: the calls' CALL meta (dict or encoded).
            payloads: their arguments (bytes each).
            flags: their CALL flags.
            futures: a new :class:`ReplyFuture` per call, in order.

        Raises:
            As :meth:`send_batch`.
        """
        link = self._open(sending=True)
        if len(payloads) < 2 or sum(map(len, payloads)) + \
                16 * len(payloads) + 4096 > link.limit // 2:
            self._send(link, [(p.CALL, meta, x, flags, f)
                              for x, f in zip(payloads, futures)])
            return
        if isinstance(meta, (bytes, bytearray)):
            meta = p.decode_meta(meta)
        rids = [next(self._rids) for _ in payloads]
        many = dict(meta, rids=rids, sizes=[len(x) for x in payloads])
        frame = link.encode(p.CALL_MANY, rids[0], many, b"".join(payloads),
                            flags)
        pending = link.pending
        for rid, future in zip(rids, futures):
            future._channel, future._link, future._rid = self, link, rid
            pending[rid] = future
        self._write(link, frame, rids)

    def _send(self, link, requests):
        """Encode and register ``requests`` on ``link``; send them at once."""
        parts, rids = [], []
        pending = link.pending
        try:
            for type_, meta, payload, flags, future in requests:
                rid = next(self._rids)
                parts.extend(link.encode(type_, rid, meta, payload, flags))
                future._channel, future._link, future._rid = self, link, rid
                pending[rid] = future
                rids.append(rid)
        except PyFaaSError:
            for rid in rids:
                pending.pop(rid, None)
            raise
        self._write(link, parts, rids)

    @staticmethod
    def _write(link, parts, rids):
        """Send the frames of requests ``rids``; wake the reader for them."""
        try:
            link.conn.send(parts)
        except PyFaaSError:
            for rid in rids:
                link.pending.pop(rid, None)
            raise
        link.wake.set()

    def refuse_in_reader(self):
        """Raise if called on a thread that is reading replies (from a
        future's callback): a blocking call there would wait for a reply
        only that thread can read."""
        if threading.get_ident() in self._readers:
            raise _in_reader()

    def forget(self, link, rid):
        """Stop waiting for ``rid``; ask the Director to cancel it."""
        link.pending.pop(rid, None)
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
            PyFaaSError: called on a thread that reads replies (in a
                future's done-callback: it would wait for itself); nothing
                was sent.
            PyFaaSSerializationError: the request cannot be sent (too large,
                meta over 64 KiB); nothing was sent.
            PyFaaSTimeoutError: no reply within ``timeout`` (default: the
                channel's); the request is then cancelled.
            PyFaaSNetworkError: the connection broke first.
        """
        me = threading.get_ident()
        if me in self._readers:
            raise _in_reader()
        link = self.link
        if link is None or link.conn.closed or not link.pending and \
                time.monotonic() - self._last_reply >= IDLE_CHECK_S:
            link = self._open(sending=True)  # (the checks, inlined: see it)
        conn, pending = link.conn, link.pending
        rid = next(self._rids)
        frame = link.encode(type_, rid, meta, payload, flags)
        reply = pending[rid] = Reply()
        try:
            conn.send(frame)
        except PyFaaSError:
            pending.pop(rid, None)
            raise
        wait = self.timeout if timeout is None else timeout
        if reply.frame is None and reply.error is None and \
                link.lock.acquire(False):
            # Read, anyone's replies, until ours comes (returned as it is:
            # nothing to hand over) or fails, or the deadline passes.
            deadline = time.monotonic() + wait
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
                link.stop_reading()  # others still wait: the reader takes over
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


def _in_reader():
    return PyFaaSError(
        "a blocking PyFaaS call was made from a future's done-callback, "
        "which runs on the thread reading the client's connection: it would "
        "wait for itself; nothing was sent. Make the call from another "
        "thread, or use exec_async/submit in the callback")
