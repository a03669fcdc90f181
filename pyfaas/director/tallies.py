"""What the Director counts about calls and Workers, for monitoring.

Owns :class:`Tally` (the calls of one function on one Worker: replies and
their latency, errors, calls lost with their Worker, calls cancelled),
:class:`Tallies` (a Worker's tallies by function id, made on first use),
the latency buckets, and :class:`Counts` (cluster-wide counters: Worker
evictions by reason and restarts, workflows by outcome, the Director's own
errors to clients by code, the tallies of Workers that are gone, and the
recent errors and evictions). Pure: no I/O and no clock of its own. The
document made of all this is built by :mod:`pyfaas.director.monitor`.

The call path pays one list append per reply: its latency goes to its
:class:`Tally`, and :meth:`Tally.fold` turns what was appended into
bucket counts, a sum and the recent windows about once a second, with
loops that run in C (sort, bisect, extend) instead of Python per call.
"""

import bisect
from collections import deque

# Upper bounds (seconds) of the call latency histogram; +Inf is implicit.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
           0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WINDOW = 1024     # latest latencies kept per Worker and per function
RECENT = 20       # recent errors and evictions kept
MAX_IDS = 10000   # Worker ids remembered for restarts (oldest dropped)

# Why a Worker was evicted, from the reason the loop or the state gave;
# the label values of pyfaas_worker_evictions_total.
EVICTION_REASONS = ("heartbeat", "stopped", "disconnected", "error")
_DISCONNECTED = ("connection closed", "receive failed", "send failed")


def eviction_reason(reason, draining):
    """One of EVICTION_REASONS for an eviction's free-text ``reason``."""
    if reason.startswith("no heartbeat"):
        return "heartbeat"
    if draining:
        return "stopped"     # a Worker that said it was stopping, gone
    if reason.startswith(_DISCONNECTED):
        return "disconnected"
    return "error"           # bad bytes, frame timeout, output not read


class Tally(list):
    """The calls of one function on one Worker (or, in :class:`Counts`,
    on the Workers that are gone).

    The list itself holds the latencies (seconds) of the replies not
    folded yet, so that a reply costs one ``append``. ``count`` counts
    replies, OK and ERROR, once folded; of those, ``errors`` were ERROR.
    Calls without a reply are ``lost`` (their Worker was lost) or
    ``cancelled`` (by their client, by the client leaving, or by their
    workflow failing). Compare tallies with ``is``: ``==`` compares their
    unfolded latencies.
    """

    __slots__ = ("func_id", "count", "sum", "buckets", "errors", "lost",
                 "cancelled")

    def __init__(self, func_id):
        super().__init__()
        self.func_id = func_id
        self.count = 0
        self.sum = 0.0
        self.buckets = [0] * len(BUCKETS)   # cumulative: replies <= bound
        self.errors = 0
        self.lost = 0
        self.cancelled = 0

    def fold(self):
        """Count the unfolded latencies; return them in arrival order."""
        if not len(self):
            return ()
        values = self[:]
        del self[:]
        ordered = sorted(values)
        self.count += len(ordered)
        self.sum += sum(ordered)
        buckets = self.buckets
        for i, bound in enumerate(BUCKETS):
            buckets[i] += bisect.bisect_right(ordered, bound)
        return values

    def add(self, other):
        """Add the folded figures of ``other`` to these."""
        self.count += other.count
        self.sum += other.sum
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]
        self.errors += other.errors
        self.lost += other.lost
        self.cancelled += other.cancelled


class _Nowhere(Tally):
    __slots__ = ()

    def append(self, latency):
        """Dropped: see NO_TALLY."""


# The tally of every request that is not a call (deployments, statistics,
# Worker information...): latencies given to it go nowhere, so the call
# path needs no test for "is this a call".
NO_TALLY = _Nowhere(None)


class Tallies(dict):
    """A Worker's ``{func_id: Tally}``; ``tallies[func_id]`` makes one the
    first time (no lookup-then-insert on the call path)."""

    __slots__ = ()

    def __missing__(self, func_id):
        tally = self[func_id] = Tally(func_id)
        return tally


class Counts:
    """Cluster-wide counters and recent events (see the module docstring).

    Times in the recent events are wall-clock seconds (``time.time()``
    given by the caller).
    """

    def __init__(self):
        self.evictions = dict.fromkeys(EVICTION_REASONS, 0)
        self.lost_ids = {}           # ids of Workers lost, oldest first
        self.restarts = {}           # worker id -> registrations after loss
        self.workflows = {"ok": 0, "failed": 0, "cancelled": 0}
        # code -> the Director's own ERRORs ("overloaded" listed from the
        # start: a rate of overload refusals needs its zero)
        self.client_errors = {"overloaded": 0}
        self.retired = {}            # func_id -> Tally of Workers gone
        self.by_function = {}        # func_id -> deque of latest latencies
        self.recent_errors = deque(maxlen=RECENT)
        self.recent_evictions = deque(maxlen=RECENT)

    def joined(self, worker_id):
        """A Worker registered; returns how often its id restarted."""
        if self.lost_ids.pop(worker_id, None) is not None:
            self.restarts[worker_id] = self.restarts.get(worker_id, 0) + 1
            _bound(self.restarts)
        return self.restarts.get(worker_id, 0)

    def evicted(self, worker, reason, wall):
        """``worker`` was evicted for ``reason`` (free text) at ``wall``."""
        kind = eviction_reason(reason, worker.draining)
        self.evictions[kind] += 1
        self.lost_ids[worker.id] = True
        _bound(self.lost_ids)
        self.recent_evictions.append({
            "time": wall, "worker_id": worker.id,
            "addr": "%s:%s" % worker.addr[:2], "reason": kind,
            "detail": reason, "calls_lost": len(worker.inflight)})

    def retire(self, worker):
        """``worker`` is gone: its figures count on for its functions."""
        self.fold(worker)
        for func_id, tally in worker.tallies.items():
            self.retired.setdefault(func_id, Tally(func_id)).add(tally)

    def fold(self, worker):
        """Fold ``worker``'s tallies; their latencies join the recent
        windows of the Worker and of each function."""
        for func_id, tally in worker.tallies.items():
            values = tally.fold()
            if values:
                worker.recent.extend(values)
                window = self.by_function.get(func_id)
                if window is None:
                    window = self.by_function[func_id] = deque(maxlen=WINDOW)
                window.extend(values)

    def client_error(self, code, message, wall):
        """The Director itself answered a client with ERROR ``code``."""
        self.client_errors[code] = self.client_errors.get(code, 0) + 1
        self.recent_errors.append((wall, code, message, None, None))

    def call_error(self, meta_raw, func_id, worker_id, wall):
        """A Worker answered a call with ERROR (its meta is decoded only
        when the document is built)."""
        self.recent_errors.append((wall, None, bytes(meta_raw), func_id,
                                   worker_id))

    def forget_function(self, func_id):
        """An unregistered (or replaced) function's figures go."""
        self.retired.pop(func_id, None)
        self.by_function.pop(func_id, None)


def _bound(table):
    while len(table) > MAX_IDS:
        del table[next(iter(table))]
