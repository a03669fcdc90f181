"""``Worker.stop()`` returns at once; the Worker then leaves gracefully.

It tells the Director to send no new calls (a HEARTBEAT marked
``draining``), answers what it still has, and closes its connection once
the Director agreed and nothing runs; ``serve_forever`` returns. A Worker
against a scripted Director (see scripted_director_for_workers.py); the same through
SIGTERM in real processes is in test_processes_that_freeze_die_or_leave.py.
"""

import time

import pytest

from helpers import wait_until
from scripted_director_for_workers import echo, gate, gated, serving_worker
from pyfaas import serialization as ser
from pyfaas.wire import protocol as p

pytestmark = pytest.mark.timeout(60)


def test_stop_returns_at_once_and_running_calls_are_answered_first(tmp_path):
    with serving_worker(str(tmp_path)) as (_, link, served):
        fid_gated, fid_echo = link.deploy(gated), link.deploy(echo)
        running = link.call(fid_gated, "running", "done")
        wait_until(gate("running.started").is_set, 5, "the call to start")

        start = time.monotonic()
        served.worker.stop()  # as from a signal handler: takes no lock
        assert time.monotonic() - start < 0.05

        drain = link.recv(5)
        assert drain.type == p.HEARTBEAT and drain.request_id != 0, drain
        assert drain.meta() == {"inflight": 1, "draining": True}
        # Until the Director agrees, calls may still come: they are run.
        late = link.call(fid_echo, "sent before the answer")
        reply = link.recv(5)
        assert reply.request_id == late and reply.type == p.OK
        link.send(p.OK, drain.request_id)  # no new calls from now
        assert not served.stopped(0.2)  # the running call holds it
        gate("running").set()
        reply = link.recv(5)
        assert reply.request_id == running
        assert ser.loads(reply.payload) == "done"
        assert link.closed_by_worker(5)
        assert served.stopped(5)
