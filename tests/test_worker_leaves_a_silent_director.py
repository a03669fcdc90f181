"""A Worker leaves a Director that answers heartbeats and then goes silent.

The Worker asks for answers in REGISTER_WORKER (``heartbeat_ms``). A
Director that says in WELCOME that it answers, and then sends nothing for
3 heartbeat intervals (at least 3 s), is cut off or frozen: the Worker
closes that connection and connects again, instead of waiting for TCP to
give up. One that does not say so (an older Director) is never judged.
A real Worker against a scripted Director (scripted_director.py), with
heartbeats every second: the limit is 3 s.
"""

import threading
import time

import pytest

from scripted_director_for_workers import serving_worker
from pyfaas.wire import protocol as p

pytestmark = pytest.mark.timeout(60)

LIMIT_S = 3.0      # max(3 x 1 s, DIRECTOR_SILENCE_MIN_S)
INTERVAL_S = 1.0   # the Worker checks once per heartbeat interval


def test_a_worker_leaves_a_director_gone_silent_and_connects_again(tmp_path):
    with serving_worker(str(tmp_path)) as (director, old, served):
        assert old.register["heartbeat_ms"] == 1000
        old.close()  # a Director that never said it answers: gone
        link = director.accept(answers_heartbeats=True)
        # Heard for longer than the limit: the Worker stays.
        stop = threading.Event()

        def answer():
            while not stop.wait(0.4):
                link.send(p.HEARTBEAT)
        beating = threading.Thread(target=answer, daemon=True)
        beating.start()
        time.sleep(LIMIT_S + 0.5)  # the time under test, not a settling wait
        stop.set()
        beating.join()
        last_heard = time.monotonic()
        # Then silent: the Worker leaves within the limit and one check.
        assert link.closed_by_worker(LIMIT_S + INTERVAL_S + 2.0)
        silent = time.monotonic() - last_heard
        assert LIMIT_S <= silent < LIMIT_S + INTERVAL_S + 1.0, silent
        # ... and registers again, as itself, on a new connection.
        again = director.accept()
        assert again.register["worker_id"] == served.worker.worker_id
        assert again.worker_info()["identity"]["worker_id"] == \
            served.worker.worker_id
