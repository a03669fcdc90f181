"""Execution statistics: per-function figures on a Worker, and their sum.

Owns what a Worker counts for each function (calls, errors, cache hits and
misses, execution time total / min / max and a window of recent durations
for percentiles, last call time) and the correct aggregation of several
Workers' figures into one cluster view: counts and totals are summed, the
mean is total time over executions (never a mean of means), min/max are
taken over Workers, and p50/p95 are computed over the union of the Workers'
recent-duration windows. Pure: no I/O.
"""

import math
import threading
import time
from collections import deque

WINDOW = 1024   # recent durations kept per function per Worker


def percentile(sorted_values, q):
    """The ``q``-quantile (0..1) of sorted values, nearest-rank; None if empty."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1,
                      math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


class FunctionStats:
    """Figures of one function on one Worker."""

    __slots__ = ("name", "calls", "errors", "cache_hits", "cache_misses",
                 "executions", "total_s", "min_s", "max_s", "recent",
                 "last_call", "timeouts")

    def __init__(self, name):
        self.name = name
        self.calls = 0
        self.errors = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.executions = 0
        self.total_s = 0.0
        self.min_s = None
        self.max_s = None
        self.recent = deque(maxlen=WINDOW)
        self.last_call = None
        self.timeouts = 0         # calls whose caller got a timeout error

    def to_dict(self):
        ordered = sorted(self.recent)
        return {
            "name": self.name, "calls": self.calls, "errors": self.errors,
            "cache_hits": self.cache_hits, "cache_misses": self.cache_misses,
            "timeouts": self.timeouts,
            "executions": self.executions, "total_s": self.total_s,
            "mean_s": self.total_s / self.executions if self.executions
            else None,
            "min_s": self.min_s, "max_s": self.max_s,
            "p50_s": percentile(ordered, 0.50),
            "p95_s": percentile(ordered, 0.95),
            "last_call": self.last_call, "recent_s": list(self.recent),
        }

    @classmethod
    def from_dict(cls, data):
        st = cls(data["name"])
        for field in ("calls", "errors", "cache_hits", "cache_misses",
                      "executions", "total_s", "min_s", "max_s", "last_call"):
            setattr(st, field, data[field])
        st.recent.extend(data.get("recent_s", ()))
        st.timeouts = data.get("timeouts", 0)
        return st


class WorkerStats:
    """All functions' figures on one Worker. Thread-safe; no-op when disabled."""

    def __init__(self, enabled=True):
        self.enabled = enabled
        self._funcs = {}
        self._lock = threading.Lock()
        self._gone = [0, 0]       # cache hits, misses of functions forgotten

    def record(self, func_id, name, duration=None, error=False, hit=None):
        """Count one call.

        Args:
            duration: execution seconds, or None when nothing ran (a hit).
            error: the function raised.
            hit: True for a cache hit, False for a miss, None if no lookup.
        """
        if not self.enabled:
            return
        with self._lock:  # (the path of every call: kept short)
            st = self._funcs.get(func_id)
            if st is None:
                st = self._funcs[func_id] = FunctionStats(name)
            st.calls += 1
            st.last_call = time.time()
            if error:
                st.errors += 1
            if hit is not None:
                if hit:
                    st.cache_hits += 1
                else:
                    st.cache_misses += 1
            if duration is not None:
                st.executions += 1
                st.total_s += duration
                if st.min_s is None or duration < st.min_s:
                    st.min_s = duration
                if st.max_s is None or duration > st.max_s:
                    st.max_s = duration
                st.recent.append(duration)

    def record_timeout(self, func_id, name):
        """Count a call that outlived its timeout (it may still finish)."""
        if not self.enabled:
            return
        with self._lock:
            self._entry(func_id, name).timeouts += 1

    def _entry(self, func_id, name):
        """The figures of ``func_id``, created empty on first use (locked)."""
        st = self._funcs.get(func_id)
        if st is None:
            st = self._funcs[func_id] = FunctionStats(name)
        return st

    def cache_totals(self):
        """``(hits, misses)``: cache lookups so far, of every function
        (those forgotten too: the totals never go down)."""
        with self._lock:
            funcs = list(self._funcs.values())
            hits, misses = self._gone
        return (hits + sum(st.cache_hits for st in funcs),
                misses + sum(st.cache_misses for st in funcs))

    def forget(self, func_id):
        with self._lock:
            st = self._funcs.pop(func_id, None)
            if st is not None:
                self._gone[0] += st.cache_hits
                self._gone[1] += st.cache_misses

    def snapshot(self, func_id=None):
        """``{func_id: figures}`` (one function if ``func_id`` is given)."""
        with self._lock:
            return {fid: st.to_dict() for fid, st in self._funcs.items()
                    if func_id is None or fid == func_id}

    def restore(self, snapshot):
        with self._lock:
            for fid, data in snapshot.items():
                self._funcs[fid] = FunctionStats.from_dict(data)


def aggregate(per_worker):
    """Sum several Workers' snapshots into one figure per function.

    Args:
        per_worker: ``{worker_id: {func_id: figures}}`` as made by
            :meth:`WorkerStats.snapshot`.

    Returns:
        dict: ``{func_id: figures}`` with ``workers`` listing contributors.
    """
    total = {}
    for worker_id, funcs in per_worker.items():
        for fid, f in funcs.items():
            agg = total.get(fid)
            if agg is None:
                agg = total[fid] = {
                    "name": f["name"], "calls": 0, "errors": 0,
                    "cache_hits": 0, "cache_misses": 0, "executions": 0,
                    "timeouts": 0,
                    "total_s": 0.0, "min_s": None, "max_s": None,
                    "last_call": None, "workers": [], "_recent": []}
            for field in ("calls", "errors", "cache_hits", "cache_misses",
                          "executions", "total_s", "timeouts"):
                agg[field] += f.get(field, 0)
            for field, pick in (("min_s", min), ("max_s", max),
                                ("last_call", max)):
                if f[field] is not None:
                    agg[field] = f[field] if agg[field] is None else pick(
                        agg[field], f[field])
            agg["workers"].append(worker_id)
            agg["_recent"].extend(f.get("recent_s", ()))
    for agg in total.values():
        ordered = sorted(agg.pop("_recent"))
        agg["mean_s"] = (agg["total_s"] / agg["executions"]
                         if agg["executions"] else None)
        agg["p50_s"] = percentile(ordered, 0.50)
        agg["p95_s"] = percentile(ordered, 0.95)
        looked = agg["cache_hits"] + agg["cache_misses"]
        agg["cache_hit_rate"] = agg["cache_hits"] / looked if looked else None
    return total
