"""Remote calls awaited from asyncio code, without blocking the event loop.

Owns :func:`await_call` (behind ``Client.acall`` / ``Client.aexec``) and
:func:`await_future` (behind ``await future`` on a call future). The parts
of a call that can block run on a thread of the loop's default executor:
sending it (connecting first, reading the function's signature from the
Director the first time, writing a large request), and telling the
Director to cancel it. Waiting for the reply takes no thread: the
connection's reader thread completes the future and the loop is told
thread-safely. A task cancelled while it awaits cancels its call on the
cluster. It knows nothing of the Client: it is given what to run.

Imported only when asyncio is used, so that programs which do not use it
never import asyncio.
"""

import asyncio

from ..errors import PyFaaSTimeoutError


async def await_call(send, wait, where):
    """The result of the call that ``send()`` starts, awaited.

    Args:
        send: starts the call and returns its
            :class:`~pyfaas.client.futures.CallFuture` (blocking: it runs
            in the loop's default executor).
        wait: seconds to wait for the result, sending included.
        where: what did not answer, for the timeout's message.

    Raises:
        PyFaaSTimeoutError: no result within ``wait`` seconds; the call is
            cancelled.
        whatever ``send()`` or the call raises.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    sending = loop.run_in_executor(None, send)
    try:
        await asyncio.wait((sending,))
    except asyncio.CancelledError:
        sending.add_done_callback(lambda s: _cancel_sent(loop, s))
        raise
    future = sending.result()
    return await _await(loop, future, deadline - loop.time(),
                        lambda: PyFaaSTimeoutError(
                            "%s did not answer within %.1f s" % (where, wait)))


async def await_future(future):
    """The result of a call future, awaited (no time limit)."""
    return await _await(asyncio.get_running_loop(), future, None, None)


async def _await(loop, future, timeout, timeout_error):
    waiter = asyncio.wrap_future(future, loop=loop)
    # Awaited through asyncio.wait, which never cancels what it waits for:
    # a cancelled task or a timeout cancels the call from the executor
    # (cancelling sends a frame), not on the loop.
    try:
        done, _ = await asyncio.wait((waiter,), timeout=timeout)
    except asyncio.CancelledError:
        _abandon(loop, future, waiter)
        raise
    if not done:
        _abandon(loop, future, waiter)
        raise timeout_error()
    return waiter.result()


def _abandon(loop, future, waiter):
    """Cancel the call off the loop; drop its outcome quietly."""
    waiter.add_done_callback(_retrieve)
    loop.run_in_executor(None, future.cancel)


def _cancel_sent(loop, sending):
    """``sending`` was abandoned: cancel the call it sent, if any."""
    if not sending.cancelled() and sending.exception() is None:
        _abandon(loop, sending.result(),
                 asyncio.wrap_future(sending.result(), loop=loop))


def _retrieve(waiter):
    # An outcome nobody awaits any more: read it, so that asyncio does not
    # log "exception was never retrieved".
    if not waiter.cancelled():
        waiter.exception()
