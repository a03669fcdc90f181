"""A future's done-callback runs on the thread that reads the client's
connection: a blocking call there would wait for itself.

So it is refused at once with a PyFaaSError that says so, and nothing of it
is sent; calls that do not block (``submit``) are allowed, and the client
goes on serving other threads. Against a scripted Director
(tests/scripted_director.py), which sees every frame sent and holds a
reply until the callback is in place.
"""

import pytest

from helpers import wait_until
from pyfaas import Client, Executor
from pyfaas.errors import PyFaaSError
from pyfaas.wire import protocol as p
from scripted_director import Held, ScriptedDirector, functions

pytestmark = pytest.mark.timeout(60)


WORKFLOW = {"id": "w", "entry_function": "square", "functions": {
    "square": {"positional_args": [3], "default_args": {}, "next": "",
               "cache_result": False}}}


def square(x):
    return x * x


def first():
    return 1


def second():
    return 2


def never_registered():
    return 0


def _in_callback(future, held, action):
    """Run ``action()`` in ``future``'s done-callback, on the thread that
    reads its reply (``held`` answers it once the callback is in place);
    return what ``action`` returned or raised."""
    outcome = []

    def callback(_):
        try:
            outcome.append(action())
        except Exception as exc:  # reported below, not lost in the thread
            outcome.append(exc)

    future.add_done_callback(callback)
    assert held.release() == 1
    wait_until(lambda: outcome, 10, "the callback never ran")
    return outcome[0]


@pytest.mark.parametrize("blocking", [
    lambda client: client.call("square", 3),
    lambda client: client.exec("square", [3]),
    lambda client: client.register(never_registered),
    lambda client: client.list(),
    lambda client: client.ping(),
    lambda client: list(client.map("square", [1, 2])),
    lambda client: client.chain_exec(WORKFLOW, validate=False),
], ids=["call", "exec", "register", "list", "ping", "map", "chain_exec"])
def test_a_blocking_call_in_a_done_callback_is_refused_and_sends_nothing(
        blocking):
    held = Held(square)
    with ScriptedDirector(functions(square=square, held=held)) as director, \
            Client(config=director.client_config()) as client:
        assert client.call("square", 2) == 4
        future = client.submit("held", 5)
        wait_until(lambda: held.held == 1, 10)
        sent = len(director.received())
        outcome = _in_callback(future, held, lambda: blocking(client))
        assert isinstance(outcome, PyFaaSError), outcome
        assert "done-callback" in str(outcome)
        assert "nothing was sent" in str(outcome)
        assert future.result(0) == 25
        assert client.call("square", 6) == 36
        assert len(director.received()) == sent + 1  # that last call only


def test_a_call_that_does_not_block_is_allowed_in_a_done_callback():
    held = Held(square)
    with ScriptedDirector(functions(square=square, held=held)) as director, \
            Client(config=director.client_config()) as client:
        assert client.call("square", 2) == 4
        future = client.submit("held", 3)
        wait_until(lambda: held.held == 1, 10)
        later = _in_callback(future, held,
                             lambda: client.submit("square", 4))
        assert later.result(10) == 16
        assert client.call("square", 6) == 36


def test_an_executor_shutdown_that_would_wait_in_a_done_callback_is_refused():
    held_first, held_second = Held(first), Held(second)
    with ScriptedDirector(functions(first=held_first, second=held_second,
                                    square=square)) as director, \
            Client(config=director.client_config()) as client:
        ex = Executor(client=client)
        try:
            done = ex.submit(first)
            pending = ex.submit(second)
            wait_until(lambda: held_first.held == held_second.held == 1, 10)
            outcome = _in_callback(done, held_first,
                                   lambda: ex.shutdown(wait=True))
            assert isinstance(outcome, PyFaaSError), outcome
            assert "done-callback" in str(outcome)
            # Nothing was done: the Executor still takes work.
            assert ex.submit(square, 7).result(10) == 49
            assert not pending.done()
        finally:
            held_second.release()
            ex.shutdown(wait=True)
        assert pending.result(0) == 2
        assert len(director.received(p.DEPLOY)) == 3
