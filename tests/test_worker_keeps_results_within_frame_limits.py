"""A result too large for a frame on its way back fails only its own call.

The largest result a Worker sends is the smallest frame limit on the way:
its own ``max_frame_bytes``, the Director's (from its HELLO, at each
registration) and the caller's (``max`` in the call's options). A result
over it is answered with a serialization error naming the limit; the
Worker and every other call go on.
"""

import time

import pytest

from helpers import HOST
from scripted_director_for_workers import blob, serving_worker
from pyfaas import Client
from pyfaas.errors import PyFaaSSerializationError
from pyfaas.wire import protocol as p

pytestmark = pytest.mark.timeout(60)


def slow_blob(seconds, n):
    time.sleep(seconds)
    return b"y" * n


def test_a_result_too_large_for_a_new_directors_limit_is_refused_not_sent(
        tmp_path):
    with serving_worker(str(tmp_path)) as (director, link, _):
        fid = link.deploy(blob)
        rid = link.call(fid, 100000)
        assert link.replies({rid})[rid].type == p.OK
        # The Director is replaced by one that takes smaller frames; the
        # Worker registers with it, and the same kind of call comes again.
        link.close()
        link = director.accept(max_frame=65536)
        big, small = link.call(fid, 100000), link.call(fid, 1000)
        replies = link.replies({big, small})
        assert replies[big].type == p.ERROR, "a frame over the limit was sent"
        meta = replies[big].meta()
        assert meta["code"] == "serialization"
        assert "limited to 61440 bytes" in meta["message"], meta
        assert replies[small].type == p.OK
        assert len(replies[small].payload) < 2000


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
