"""A call in a thread that outlives its time limit is answered anyway.

Its caller gets a ``timeout`` error at about the limit, the Worker counts
the call as answered and stuck, the thread runs on, and the result it
returns at last is dropped, never sent. A Worker against a scripted
Director (see scripted_director_for_workers.py).
"""

import logging
import time

import pytest

from helpers import wait_until
from scripted_director_for_workers import echo, gate, gated, serving_worker
from pyfaas import serialization as ser
from pyfaas.wire import protocol as p

pytestmark = pytest.mark.timeout(60)


def test_a_late_call_is_answered_at_its_limit_and_its_result_dropped(
        tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pyfaas.worker")
    with serving_worker(str(tmp_path), max_threads=2) as (_, link, _):
        fid = link.deploy(gated)
        start = time.monotonic()
        rid = link.call(fid, "late", "too late", timeout=0.3)
        reply = link.recv(5)
        waited = time.monotonic() - start
        assert reply.request_id == rid and reply.type == p.ERROR
        meta = reply.meta()
        assert meta["code"] == "timeout", meta
        assert "'gated'" in meta["message"] and "0.3 s" in meta["message"]
        assert 0.3 <= waited < 2.0
        assert not gate("late.done").is_set()  # its thread still runs
        network = link.worker_info()["network"]
        assert (network["inflight"], network["stuck_calls"]) == (0, 1)

        gate("late").set()
        wait_until(lambda: "late result of timed-out request %d dropped"
                   % rid in caplog.text, 5, "the late result was not dropped")
        # The next frame answers the next call: nothing was sent meanwhile.
        again = link.call(link.deploy(echo), 7)
        reply = link.recv(5)
        assert reply.request_id == again and ser.loads(reply.payload) == 7
        stats = ser.from_json(link.request(p.STATS, {"func_id": fid}).payload)
        assert stats["functions"][fid]["timeouts"] == 1


def test_a_call_within_its_limit_gets_its_result(tmp_path):
    with serving_worker(str(tmp_path), call_timeout_s=5.0) as (_, link, _):
        fid = link.deploy(echo)
        rids = [link.call(fid, i, timeout=2.0) for i in range(3)]
        got = link.replies(set(rids))
        assert [ser.loads(got[rid].payload) for rid in rids] == [0, 1, 2]
        assert link.worker_info()["network"]["stuck_calls"] == 0
