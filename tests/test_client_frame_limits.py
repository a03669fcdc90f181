"""Frame limits seen from a Client: what it refuses to send, what it asks for.

A request over the Director's limit is refused before anything of it (or
of its batch) is sent. A client that takes smaller frames than its
Director says so (``max``) in every request whose reply carries results,
from the first one after a Director with a larger limit took over; then a
result over its limit fails only that call. Against a scripted Director
(tests/scripted_director.py) for what is sent, against real processes for
what the Workers do with it.
"""

import pickle
import time

import pytest

from helpers import HOST
from pyfaas import Client
from pyfaas.client.channel import IDLE_CHECK_S
from pyfaas.errors import PyFaaSSerializationError
from pyfaas.wire import protocol as p
from scripted_director import ScriptedDirector, functions

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


def size(blob):
    return len(blob)


def blob(n):
    return b"x" * n


def slow_blob(seconds, n):
    time.sleep(seconds)
    return b"y" * n


def _max_asked(director, *types):
    return [f.meta().get("max") for f in director.received(*types)]


# ----- against a scripted Director -------------------------------------------

def test_a_request_over_the_directors_limit_is_not_sent():
    with ScriptedDirector(functions(size=size), max_frame=65536) as director, \
            Client(config=director.client_config()) as client:
        with pytest.raises(PyFaaSSerializationError, match="frame limit of "
                                                           "65536 bytes"):
            client.call("size", b"z" * 100000)
        with pytest.raises(PyFaaSSerializationError, match="nothing was sent"):
            client.exec_async("size", [b"z" * 100000])
        with pytest.raises(PyFaaSSerializationError):
            list(client.map("size", [b"a", b"z" * 100000, b"b"]))
        assert client.call("size", b"abc") == 3
        # Answered: whatever was sent before it has arrived.
        [call] = director.received(p.CALL, p.CALL_MANY)
        assert pickle.loads(call.payload) == ((b"abc",), {})


def test_a_client_with_the_directors_limit_asks_for_no_max():
    with ScriptedDirector(functions(size=size), max_frame=MIB) as director, \
            Client(config=director.client_config(max_frame_bytes=MIB)) \
            as client:
        client.call("size", b"a")
        client.exec("size", [b"a"], timeout=5)
        list(client.map("size", [b"a", b"b"]))
        client.chain_exec({"id": "w", "entry_function": "size", "functions": {
            "size": {"positional_args": ["a"], "default_args": {},
                     "next": "", "cache_result": False}}}, validate=False)
        asked = _max_asked(director, p.CALL, p.CALL_MANY, p.CHAIN)
        assert len(asked) == 4 and asked == [None] * 4


def test_a_client_that_takes_less_asks_for_its_max_in_every_result_request():
    with ScriptedDirector(functions(size=size)) as director, \
            Client(config=director.client_config(max_frame_bytes=MIB)) \
            as client:
        client.call("size", b"a")
        client.exec("size", [b"a"], timeout=5, save_in_cache=True)
        client.submit("size", b"a").result(10)
        list(client.map("size", [b"a", b"b"]))
        client.chain_exec({"id": "w", "entry_function": "size", "functions": {
            "size": {"positional_args": ["a"], "default_args": {},
                     "next": "", "cache_result": False}}}, validate=False)
        calls = director.received(p.CALL, p.CALL_MANY, p.CHAIN)
        assert [f.type for f in calls] == [p.CALL] * 3 + [p.CALL_MANY,
                                                          p.CHAIN]
        assert _max_asked(director, p.CALL, p.CALL_MANY, p.CHAIN) == [MIB] * 5
        # The options of a call travel with it.
        assert calls[1].meta()["cache"] is True
        assert calls[1].meta()["timeout"] == 5.0


def test_the_first_call_after_a_director_with_a_larger_limit_took_over_asks_for_ours():
    # Our limit (1 MiB) equals the first Director's: calls need no "max".
    # The one that takes over on the same port takes 4 MiB: from then on
    # every call must say the largest result we take, the first one too
    # (it goes out after the idle connection's EOF is found).
    with ScriptedDirector(functions(size=size), max_frame=MIB) as director, \
            Client(config=director.client_config(max_frame_bytes=MIB)) \
            as client:
        assert client.call("size", b"a") == 1
        assert _max_asked(director, p.CALL) == [None]
        director.max_frame = 4 * MIB
        director.drop_connections()
        time.sleep(2 * IDLE_CHECK_S)  # the connection is idle: under test
        for _ in range(2):
            assert client.call("size", b"a") == 1
        assert director.connections == 2
        assert _max_asked(director, p.CALL) == [None, MIB, MIB]


# ----- against real processes ------------------------------------------------

def test_a_result_over_the_clients_limit_fails_only_that_call(cluster):
    with Client(HOST, cluster.port, 20, max_frame_size=65536) as client:
        client.register(blob)
        client.register(slow_blob)
        other = client.submit("slow_blob", 0.5, 10)
        with pytest.raises(PyFaaSSerializationError):
            client.call("blob", 100000)
        assert other.result(10) == b"y" * 10
        assert client.call("blob", 10) == b"x" * 10


def test_a_cached_result_over_the_clients_limit_fails_only_that_call(cluster):
    with Client(HOST, cluster.port, 20) as big, \
            Client(HOST, cluster.port, 20, max_frame_size=65536) as small:
        big.register(blob)
        big.exec("blob", [100000], save_in_cache=True)
        with pytest.raises(PyFaaSSerializationError):
            small.exec("blob", [100000])  # a cache hit, too large for it
        assert small.call("blob", 3) == b"xxx"


def test_workflow_outputs_over_the_clients_limit_are_refused(cluster):
    with Client(HOST, cluster.port, 20, max_frame_size=65536) as client:
        client.register(blob)
        wf = {"id": "big", "entry_function": "blob", "functions": {
            "blob": {"positional_args": [100000], "default_args": {},
                     "next": "", "cache_result": False}}}
        with pytest.raises(PyFaaSSerializationError) as info:
            client.chain_exec(wf)
        assert "'big'" in str(info.value)
        assert client.call("blob", 2) == b"xx"
