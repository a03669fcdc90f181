"""Asynchronous calls: call futures and ordered, lazy ``map``.

Owns :class:`CallFuture` (a ``concurrent.futures.Future`` completed with a
remote call's result or typed error; ``cancel()`` also cancels the call on
the cluster if it has not started; asyncio code can ``await`` it), :func:`send_calls`, :func:`ordered_results`
and :func:`call_result`, the one translation of a call's reply into its
result. It works on a :class:`~pyfaas.client.channel.Channel` and calls as
the Client encodes them; it knows nothing of the Client
(:mod:`pyfaas.client.executor` builds the standard Executor on the Client).
"""

import time
from collections import deque
from concurrent import futures as cf
from itertools import islice

from .. import serialization as ser
from .channel import ReplyFuture
from ..errors import (PyFaaSDeserializationError, PyFaaSError,
                     PyFaaSProtocolError, PyFaaSTimeoutError)
from ..errors import error_from_meta
from ..wire import protocol as p


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
        raise PyFaaSDeserializationError(
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

    def __await__(self):
        """``await future`` in a coroutine: the result, without blocking the
        event loop; cancelling the task cancels the call (see
        :mod:`pyfaas.client.aio`)."""
        from .aio import await_future
        return await_future(self).__await__()


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

