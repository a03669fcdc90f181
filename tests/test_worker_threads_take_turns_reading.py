"""A Worker's threads take turns reading; each runs what it read.

LeaderPool without sockets: a fake reader hands out jobs from a queue.

Checks who runs what: quick calls on the reading thread, others after the
lead is handed on, the backlog when every slot is busy, demotion of a
leader stuck in a "quick" call, and stopping. Every wait has a deadline.
"""

import queue
import threading

import pytest

from pyfaas.worker.pool import LeaderPool

from helpers import wait_until

STOP = object()


class FakeReader:
    """``next_job`` for a LeaderPool: jobs come from ``put``; records who read."""

    def __init__(self):
        self.jobs = queue.Queue()
        self.readers = []

    def put(self, fn, *args, quick=False):
        self.jobs.put((fn, args, quick))

    def stop(self):
        self.jobs.put(STOP)

    def __call__(self):
        job = self.jobs.get(timeout=10)
        self.readers.append(threading.current_thread())
        return None if job is STOP else job


class Blocker:
    """A job that runs until released, then puts ``name`` in ``out``."""

    def __init__(self, out, name):
        self.out, self.name = out, name
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self):
        self.started.set()
        self.release.wait(10)
        self.out.put(self.name)


@pytest.fixture
def pool_of():
    made = []

    def make(size):
        reader = FakeReader()
        pool = LeaderPool(size, reader)
        made.append((reader, pool))
        return reader, pool

    yield make
    for reader, pool in made:
        reader.stop()
        assert pool.join(5), "a pool thread did not stop"


def test_a_quick_call_runs_on_the_thread_that_read_it(pool_of):
    reader, _ = pool_of(2)
    ran = queue.Queue()
    for _ in range(5):
        reader.put(lambda: ran.put(threading.current_thread()), quick=True)
    runners = [ran.get(timeout=5) for _ in range(5)]
    # One leader read all five and ran each itself: no hand-over.
    assert len(set(runners)) == 1
    assert set(reader.readers[:5]) == set(runners)


def test_a_call_not_known_quick_runs_while_another_thread_reads(pool_of):
    reader, _ = pool_of(2)
    done = queue.Queue()
    slow = Blocker(done, "slow")
    reader.put(slow)
    assert slow.started.wait(5)
    reader.put(lambda: done.put("next"))
    # Read and run by another thread while the first still runs.
    assert done.get(timeout=5) == "next"
    slow.release.set()
    assert done.get(timeout=5) == "slow"


def test_with_every_slot_busy_calls_wait_and_reading_goes_on(pool_of):
    reader, pool = pool_of(1)
    order = queue.Queue()
    blocker = Blocker(order, "blocker")
    reader.put(blocker)
    assert blocker.started.wait(5)
    reader.put(lambda: order.put("queued"))
    # The one slot is taken: the call waits, yet the pool keeps reading.
    wait_until(lambda: pool.backlog() == 1, 5, "the call was not backlogged")
    reader.put(lambda: order.put("also queued"))
    wait_until(lambda: pool.backlog() == 2, 5, "reading stopped")
    assert order.empty()
    blocker.release.set()
    assert [order.get(timeout=5) for _ in range(3)] == [
        "blocker", "queued", "also queued"]
    assert pool.backlog() == 0


def test_a_stuck_quick_call_is_demoted_so_others_are_read(pool_of):
    reader, pool = pool_of(2)
    done = queue.Queue()
    turns_slow = Blocker(done, "slow")
    reader.put(turns_slow, quick=True)
    assert turns_slow.started.wait(5)
    # The leader itself runs it, so nobody reads until it is demoted.
    assert not pool.demote_stuck(60.0)
    reader.put(lambda: done.put("next"))
    with pytest.raises(queue.Empty):
        done.get(timeout=0.2)
    assert pool.demote_stuck(0.0)
    assert done.get(timeout=5) == "next"
    turns_slow.release.set()
    assert done.get(timeout=5) == "slow"
    # The demoted thread rejoins: calls still run after it finished.
    reader.put(lambda: done.put("after"), quick=True)
    assert done.get(timeout=5) == "after"


def test_demote_stuck_does_nothing_without_a_quick_call_running(pool_of):
    reader, pool = pool_of(1)
    ran = queue.Queue()
    reader.put(lambda: ran.put(1), quick=True)
    assert ran.get(timeout=5) == 1
    assert not pool.demote_stuck(0.0)


def test_next_job_returning_none_stops_every_thread(pool_of):
    reader, pool = pool_of(3)
    reader.stop()
    assert pool.join(5)


class RaisesOnce(FakeReader):
    """A reader whose first call raises, as a bug in it would."""

    def __init__(self):
        super().__init__()
        self.raised = False

    def __call__(self):
        if not self.raised:
            self.raised = True
            raise RuntimeError("a bug in next_job")
        return super().__call__()


@pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_reader_that_raises_gives_the_lead_to_another_thread():
    reader = RaisesOnce()
    pool = LeaderPool(2, reader)
    try:
        ran = queue.Queue()
        reader.put(lambda: ran.put("after"), quick=True)
        # The thread that raised is gone, but it gave up the lead first.
        assert ran.get(timeout=5) == "after"
        assert reader.raised
    finally:
        reader.stop()
        assert pool.join(5)
