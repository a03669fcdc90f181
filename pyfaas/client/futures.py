"""Asynchronous calls: call futures and ordered, lazy ``map``.

Owns :class:`CallFuture` (a ``concurrent.futures.Future`` completed with a
remote call's result or typed error; ``cancel()`` also cancels the call on
the cluster if it has not started), :func:`send_calls`, :func:`ordered_results`
and :func:`call_result`, the one translation of a call's reply into its
result. It works on a :class:`~pyfaas.client.channel.Channel` and calls as
the Client encodes them; it knows nothing of the Client
(the Executor below still uses the Client's private methods).
"""

import logging
import threading
import time
import weakref
from collections import deque
from concurrent import futures as cf
from itertools import islice

from .. import serialization as ser
from ..ids import function_id
from .channel import ReplyFuture
from ..errors import (PyFaaSError, PyFaaSProtocolError,
                     PyFaaSSerializationError, PyFaaSTimeoutError)
from ..errors import error_from_meta
from ..wire import protocol as p

log = logging.getLogger(__name__)


def call_result(frame):
    """The result a call's reply frame carries; raises the error it reports."""
    if frame.type == p.ERROR:
        try:
            error = error_from_meta(frame.meta())
        except p.ProtocolError as exc:
            error = PyFaaSProtocolError("the error reply of this call is "
                                        "malformed: %s" % exc)
        raise error
    try:
        return ser.loads(frame.payload)
    except Exception as exc:
        raise PyFaaSSerializationError(
            "the result cannot be unpickled here: %s: %s"
            % (type(exc).__name__, exc))


class CallFuture(ReplyFuture):
    """The future result of one remote call.

    ``cancel()`` drops the result, and a call that has not started on its
    Worker never runs; it returns False once the call finished.
    """

    def deliver(self, frame):
        try:
            value = call_result(frame)
        except PyFaaSError as exc:
            self.fail(exc)
            return
        ReplyFuture.deliver(self, value)


def send_calls(channel, calls):
    """Send calls in one write; return their :class:`CallFuture` s, in order.

    Calls of one function with the same options (``map``) travel as one
    CALL_MANY frame; others as one CALL frame each.

    Args:
        channel: the :class:`~pyfaas.client.channel.Channel` to send on.
        calls: ``(type, meta, payload, flags)`` of each call, as
            ``Client._call_parts`` encodes them.

    Raises:
        As :meth:`~pyfaas.client.channel.Channel.send_batch`.
    """
    futures = [CallFuture() for _ in calls]
    _, meta, _, flags = calls[0]
    if len(calls) > 1 and all(c[1] == meta and c[3] == flags for c in calls):
        channel.send_many(meta, [c[2] for c in calls], flags, futures)
    else:
        channel.send_batch([c + (f,) for c, f in zip(calls, futures)])
    return futures


def ordered_results(channel, make_call, items, *, timeout=None,
                    max_in_flight=256, batch=64):
    """Yield the results of calls for ``items`` in order, lazily.

    At most ``max_in_flight`` calls are outstanding; new ones are sent in
    batches of up to ``batch`` calls, as one CALL_MANY frame. ``timeout``
    bounds the whole iteration, from the first result asked for. Calls not
    consumed are cancelled when the generator is closed.

    Args:
        channel: the :class:`~pyfaas.client.channel.Channel` to send on.
        make_call: item -> ``(type, meta, payload, flags)`` of its call.
        items: an iterable, consumed as results are asked for.

    Raises:
        PyFaaSTimeoutError: a result was not ready within ``timeout``.
        PyFaaSError: on a thread that reads replies (a done-callback).
        whatever the first failing call raises, when its turn comes.
    """
    channel.refuse_in_reader()
    deadline = None if timeout is None else time.monotonic() + timeout
    items = iter(items)
    window = deque()
    exhausted = False
    batch = max(1, min(batch, max_in_flight))
    # Refill only once a whole batch fits: many calls per frame.
    low_water = max_in_flight - batch
    try:
        while True:
            while not exhausted and len(window) <= low_water:
                room = min(batch, max_in_flight - len(window))
                chunk = [make_call(item) for item in islice(items, room)]
                if not chunk:
                    exhausted = True
                    break
                window.extend(send_calls(channel, chunk))
            if not window:
                return
            fut = window.popleft()
            left = None if deadline is None else max(0.0, deadline -
                                                     time.monotonic())
            try:
                yield fut.result(left)
            except cf.TimeoutError:
                if fut.done():
                    raise  # the call's own answer was a timeout error
                fut.cancel()
                raise PyFaaSTimeoutError("map: results not ready within "
                                         "%.1f s" % timeout)
    finally:
        for fut in window:
            fut.cancel()


class Executor(cf.Executor):
    """Run plain callables on a PyFaaS cluster, as a standard Executor.

    A callable is registered the first time it is submitted, under a name
    made of its qualified name and a digest of its code; later submissions
    send only its id and the arguments. Callables are identified by their
    code: a bound method or a lambda re-created in a loop is pickled again
    (locally) but never re-sent.

    Args:
        director: ``"host:port"`` or ``(host, port)`` of the Director.
        config: a client TOML file (instead of ``director``).
        timeout: seconds for registration round trips (results wait as long
            as the caller asks).
        client: an existing :class:`pyfaas.Client` to use (not closed here).
    """

    def __init__(self, director=None, config=None, timeout=20.0, client=None):
        from .client import Client, default_client
        self._owns_client = client is None
        if client is not None:
            self._client = client
        elif config is not None:
            self._client = Client.from_config(config)
        elif director is not None:
            host, port = (director.rsplit(":", 1) if isinstance(director, str)
                          else director)
            self._client = Client(host, int(port), timeout)
        else:
            self._client = default_client()
        self._ids = weakref.WeakKeyDictionary()
        self._strong_ids = {}
        self._by_digest = {}      # code digest -> func_id: never re-sent
        self._lock = threading.Lock()
        self._outstanding = set()
        self._shutdown = False
        self._close_when_idle = False

    @property
    def client(self):
        return self._client

    def _func_id(self, fn):
        try:
            known = self._ids.get(fn)
        except TypeError:
            known = self._strong_ids.get(id(fn), (None, None))[1]
        if known is not None:
            return known
        code = ser.dumps_function(fn)
        digest = function_id(code)
        fid = self._by_digest.get(digest)
        if fid is None:  # new code: register it once
            name = "%s.%s#%s" % (getattr(fn, "__module__", None) or "?",
                                 getattr(fn, "__qualname__", None) or
                                 type(fn).__name__, digest[:8])
            info = self._client._deploy(name, code,
                                        ser.describe_signature(fn),
                                        getattr(fn, "__doc__", None),
                                        source=ser.source_info(fn))
            fid = self._by_digest[digest] = info["func_id"]
        try:
            self._ids[fn] = fid
        except TypeError:  # not weak-referenceable: keep it alive
            self._strong_ids[id(fn)] = (fn, fid)
        return fid

    def _check_open(self):
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def submit(self, fn, /, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on the cluster; return a Future."""
        with self._lock:
            self._check_open()
        fid = self._func_id(fn)
        request = self._client._call_parts(fid, args, kwargs, {})
        fut, = send_calls(self._client._channel, [request])
        with self._lock:
            self._outstanding.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut):
        with self._lock:
            self._outstanding.discard(fut)
            close = self._close_when_idle and not self._outstanding
        if close and self._owns_client:
            self._client.close()

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Like ``Executor.map``: results in order; lazy, bounded in flight.

        Raises:
            PyFaaSTimeoutError (a TimeoutError): a result is not ready
                within ``timeout`` seconds of this call.
        """
        with self._lock:
            self._check_open()
        fid = self._func_id(fn)
        client = self._client
        return ordered_results(
            client._channel,
            lambda args: client._call_parts(fid, args, {}, {}),
            zip(*iterables), timeout=timeout,
            batch=max(1, min(chunksize * 64, 256)))

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No new submissions; optionally cancel or wait for pending ones.

        With ``wait=True`` and a connection of its own (not ``client=``), the
        functions this Executor registered are unregistered before it
        closes, so they do not stay on the cluster.
        """
        if wait:
            self._client._channel.refuse_in_reader()
        with self._lock:
            self._shutdown = True
            pending = list(self._outstanding)
        if cancel_futures:
            for fut in pending:
                fut.cancel()
        if wait:
            cf.wait(pending)
            if self._owns_client:
                for fid in set(self._by_digest.values()):
                    try:
                        self._client.unregister(fid)
                    except PyFaaSError as exc:
                        log.info("could not unregister %s: %s", fid, exc)
                self._client.close()
            return
        with self._lock:
            self._close_when_idle = True
            idle = not self._outstanding
        if idle and self._owns_client:
            self._client.close()
