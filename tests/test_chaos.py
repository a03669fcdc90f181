"""Real processes under chaos: Workers killed and frozen at random.

Three supervised Workers serve calls from several threads while a chaos
thread, for CHAOS_S seconds, sends SIGKILL to one at random, or freezes
one with SIGSTOP for a moment. What must hold:

- every call ends with exactly one outcome: its own result, or a typed
  PyFaaSError (never another exception, never someone else's result);
- without retries no call runs twice (each run appends its tag to a file);
- no call waits past its timeout (plus the client's small grace);
- at the end the supervisors have brought all three Workers back and a
  canary call works.

Bounded: CHAOS_S of chaos, calls with a TIMEOUT_S timeout, a hard pytest
timeout. Every process is stopped by pid at the end, frozen ones
continued first.
"""

import collections
import os
import random
import signal
import threading
import time

import pytest

from helpers import wait_until
from pyfaas.errors import PyFaaSError

pytestmark = pytest.mark.timeout(60)

WORKERS = 3
CALLERS = 4
CHAOS_S = 7.0
TIMEOUT_S = 3.0
LATE_S = 0.25 + 0.75      # the client's grace, and room for a busy machine


def tagged(tag, path):
    """Record that this call ran, then do a little work."""
    import os
    import time
    with open(path, "a") as fh:
        fh.write(tag + "\n")
    time.sleep(0.02)
    return tag, os.getpid()


def caller(client, path, name, stop, outcomes, runs_ok):
    n = 0
    while not stop.is_set():
        n += 1
        tag = "%s-%d" % (name, n)
        retries = 1 if n % 4 == 0 else 0
        start = time.monotonic()
        try:
            got, _ = client.exec("tagged", [tag, path], timeout=TIMEOUT_S,
                                 retries=retries)
            outcome = "result" if got == tag else "wrong result %r" % got
        except PyFaaSError as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # anything else is a bug
            outcome = "untyped %r" % exc
        took = time.monotonic() - start
        outcomes.append((tag, retries, outcome, took))
        if not retries:
            runs_ok.add(tag)


def chaos(cl, stop, rng, log):
    frozen = []
    deadline = time.monotonic() + CHAOS_S
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 0.6))
            for pid, until in list(frozen):
                if time.monotonic() >= until:
                    os.kill(pid, signal.SIGCONT)
                    frozen.remove((pid, until))
            proc = rng.choice(list(cl.workers.values()))
            pids = proc.worker_pids()
            if not pids or any(pid == pids[-1] for pid, _ in frozen):
                continue
            pid = pids[-1]
            try:
                if rng.random() < 0.6:
                    os.kill(pid, signal.SIGKILL)
                    log.append(("SIGKILL", pid))
                else:
                    os.kill(pid, signal.SIGSTOP)
                    frozen.append((pid, time.monotonic()
                                   + rng.uniform(0.2, 1.5)))
                    log.append(("SIGSTOP", pid))
            except ProcessLookupError:
                pass
    finally:
        for pid, _ in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        stop.set()


def test_calls_under_random_kills_and_freezes_each_end_once(fresh_cluster):
    cl = fresh_cluster(workers=WORKERS, supervise=True, max_threads=2)
    path = os.path.join(cl.workdir, "runs.txt")
    setup = cl.client()
    setup.register(tagged)
    rng = random.Random(os.getpid())
    stop = threading.Event()
    outcomes, runs_ok, events = [], set(), []
    threads = [threading.Thread(target=caller, args=(
        cl.client(timeout=10), path, "c%d" % i, stop, outcomes, runs_ok))
        for i in range(CALLERS)]
    threads.append(threading.Thread(target=chaos, args=(cl, stop, rng,
                                                         events)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CHAOS_S + 2 * TIMEOUT_S + 10)
    assert not any(thread.is_alive() for thread in threads)

    kinds = collections.Counter(outcome for _, _, outcome, _ in outcomes)
    print("chaos: %d events (%s); %d calls: %s" % (
        len(events), dict(collections.Counter(e for e, _ in events)),
        len(outcomes), dict(kinds)))
    assert events and kinds["result"]
    bad = [o for o in outcomes if o[2].startswith(("untyped", "wrong"))]
    assert not bad
    late = [o for o in outcomes if o[3] > TIMEOUT_S + LATE_S]
    assert not late, late[:5]
    with open(path) as fh:
        runs = collections.Counter(line.strip() for line in fh)
    twice = [tag for tag in runs_ok if runs[tag] > 1]
    assert not twice, twice[:5]

    wait_until(lambda: len(setup.worker_ids()) == WORKERS and not any(
        w["wedged"] or w["draining"] for w in setup.workers()), 20,
        lambda: "workers not all back: %s" % setup.workers())
    pids = {w["pid"] for w in setup.workers()}
    assert setup.exec("tagged", ["canary", path], timeout=10)[1] in pids
