"""A CANCEL stops a call that waits for a thread; a running call runs on.

A Worker against a scripted Director (see scripted_director_for_workers.py), with one
thread for calls, so a second call waits for the first.
"""

import logging

import pytest

from helpers import wait_until
from scripted_director_for_workers import echo, gate, gated, serving_worker
from pyfaas import serialization as ser
from pyfaas.wire import protocol as p

pytestmark = pytest.mark.timeout(60)


def test_a_cancelled_call_waiting_for_a_thread_never_runs(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pyfaas.worker")
    with serving_worker(str(tmp_path), max_threads=1) as (_, link, _):
        fid = link.deploy(gated)
        first = link.call(fid, "first", 1)
        wait_until(gate("first.started").is_set, 5, "the first call")
        second = link.call(fid, "second", 2)  # the one thread is busy
        link.send(p.CANCEL, second)
        link.worker_info()  # answered: the CANCEL before it was read too
        gate("second").set()  # (were it run, it would not wait)
        gate("first").set()
        reply = link.recv(5)
        assert reply.request_id == first and ser.loads(reply.payload) == 1
        # The thread takes the second call next, and must skip it.
        third = link.call(link.deploy(echo), 3)
        reply = link.recv(5)
        assert reply.request_id == third, "the cancelled call was answered"
        assert not gate("second.started").is_set()
        assert "request %d cancelled before it started" % second \
            in caplog.text
        assert link.worker_info()["network"]["requests"] == 3
        wait_until(lambda: link.worker_info()["network"]["inflight"] == 0, 5,
                   "calls are still counted as running")


def test_a_cancel_for_a_call_already_running_changes_nothing(tmp_path):
    with serving_worker(str(tmp_path), max_threads=1) as (_, link, _):
        fid = link.deploy(gated)
        rid = link.call(fid, "running", "finished")
        wait_until(gate("running.started").is_set, 5, "the call to start")
        link.send(p.CANCEL, rid)
        link.worker_info()  # the CANCEL was read
        gate("running").set()
        reply = link.recv(5)
        assert reply.request_id == rid and reply.type == p.OK
        assert ser.loads(reply.payload) == "finished"
        wait_until(lambda: link.worker_info()["network"]["inflight"] == 0, 5,
                   "the call is still counted as running")
