"""Pure tests of execution statistics (pyfaas/stats.py): recording and aggregation."""

import json
import math

import pytest

from pyfaas.stats import WorkerStats, aggregate, percentile

pytestmark = pytest.mark.timeout(30)


def nearest_rank(sorted_values, q):
    """The textbook nearest-rank percentile: the ceil(q * n)-th value."""
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


# ----- one Worker ---------------------------------------------------------------

def test_record_counts_calls_errors_hits_and_misses():
    stats = WorkerStats()
    stats.record("f", "fn", 0.5, hit=False)
    stats.record("f", "fn", 0.25, error=True, hit=False)
    stats.record("f", "fn", None, hit=True)
    stats.record("f", "fn", 0.75)

    fig = stats.snapshot()["f"]

    assert fig["name"] == "fn"
    assert fig["calls"] == 4
    assert fig["errors"] == 1
    assert fig["cache_hits"] == 1
    assert fig["cache_misses"] == 2
    assert fig["executions"] == 3          # the hit ran nothing
    assert fig["total_s"] == pytest.approx(1.5)
    assert fig["mean_s"] == pytest.approx(0.5)
    assert fig["min_s"] == 0.25
    assert fig["max_s"] == 0.75
    assert fig["last_call"] is not None
    json.dumps(fig)


def test_a_function_that_only_hit_the_cache_has_no_mean():
    stats = WorkerStats()
    stats.record("f", "fn", None, hit=True)

    fig = stats.snapshot()["f"]

    assert fig["executions"] == 0
    assert fig["mean_s"] is None and fig["min_s"] is None
    assert fig["p50_s"] is None and fig["p95_s"] is None


def test_snapshot_of_one_function_and_forget():
    stats = WorkerStats()
    stats.record("f", "fn", 0.1)
    stats.record("g", "gn", 0.2)

    assert list(stats.snapshot("g")) == ["g"]
    stats.forget("g")
    assert list(stats.snapshot()) == ["f"]


def test_disabled_statistics_collect_nothing():
    stats = WorkerStats(enabled=False)
    stats.record("f", "fn", 0.1, error=True, hit=False)

    assert stats.snapshot() == {}


def test_restore_round_trip():
    stats = WorkerStats()
    for d in (0.1, 0.2, 0.3):
        stats.record("f", "fn", d, hit=False)
    snap = json.loads(json.dumps(stats.snapshot()))

    again = WorkerStats()
    again.restore(snap)
    again.record("f", "fn", 0.4)

    fig = again.snapshot()["f"]
    assert fig["calls"] == 4 and fig["executions"] == 4
    assert fig["max_s"] == 0.4 and fig["min_s"] == 0.1
    assert fig["recent_s"] == [0.1, 0.2, 0.3, 0.4]


# ----- percentiles --------------------------------------------------------------

def test_percentile_of_nothing_is_none_and_of_one_value_is_that_value():
    assert percentile([], 0.5) is None
    assert percentile([7], 0.5) == 7
    assert percentile([7], 0.95) == 7


def test_percentile_extremes():
    values = list(range(1, 11))

    assert percentile(values, 0.0) == 1
    assert percentile(values, 1.0) == 10


@pytest.mark.parametrize("n,q", [(3, 0.5), (7, 0.5), (4, 0.5), (3, 0.95),
                                 (10, 0.95), (4, 0.95)])
def test_percentile_nearest_rank_where_q_n_is_not_an_odd_integer(n, q):
    values = list(range(1, n + 1))

    assert percentile(values, q) == nearest_rank(values, q)


# round(q * n + 0.5) would give the next value here (banker's rounding).
@pytest.mark.parametrize("n,q,expected", [(10, 0.5, 5), (2, 0.5, 1),
                                          (100, 0.95, 95), (20, 0.95, 19),
                                          (60, 0.95, 57)])
def test_percentile_nearest_rank_where_q_n_is_an_odd_integer(n, q, expected):
    values = list(range(1, n + 1))

    assert percentile(values, q) == expected


def test_p50_and_p95_of_a_worker():
    stats = WorkerStats()
    for ms in range(1, 8):   # q * n is never an odd integer here
        stats.record("f", "fn", ms / 1000.0)

    fig = stats.snapshot()["f"]

    assert fig["p50_s"] == 0.004
    assert fig["p95_s"] == 0.007


# ----- several Workers ---------------------------------------------------------

def two_workers():
    """Worker A: 1 call of 10 s. Worker B: 3 calls of 2 s, one raising, and
    2 cache hits. Mean of means would be (10 + 2) / 2 = 6; the true mean over
    the 4 executions is (10 + 6) / 4 = 4."""
    a, b = WorkerStats(), WorkerStats()
    a.record("f", "fn", 10.0, hit=False)
    b.record("f", "fn", 2.0, hit=False)
    b.record("f", "fn", 2.0, error=True, hit=False)
    b.record("f", "fn", 2.0, hit=False)
    b.record("f", "fn", None, hit=True)
    b.record("f", "fn", None, hit=True)
    b.record("g", "gn", 1.0)
    return {"A": a.snapshot(), "B": b.snapshot()}


def test_aggregate_sums_counts():
    fig = aggregate(two_workers())["f"]

    assert fig["calls"] == 6
    assert fig["errors"] == 1
    assert fig["executions"] == 4
    assert fig["cache_hits"] == 2
    assert fig["cache_misses"] == 4
    assert fig["total_s"] == pytest.approx(16.0)
    assert sorted(fig["workers"]) == ["A", "B"]


def test_aggregate_mean_is_weighted_by_executions_not_a_mean_of_means():
    fig = aggregate(two_workers())["f"]

    assert fig["mean_s"] == pytest.approx(4.0)
    assert fig["mean_s"] != pytest.approx(6.0)


def test_aggregate_min_max_percentiles_and_hit_rate_over_workers():
    fig = aggregate(two_workers())["f"]

    assert fig["min_s"] == 2.0
    assert fig["max_s"] == 10.0
    # union of windows: [2, 2, 2, 10]
    assert fig["p50_s"] == 2.0
    assert fig["p95_s"] == 10.0
    assert fig["cache_hit_rate"] == pytest.approx(2 / 6)
    assert "_recent" not in fig
    json.dumps(fig)


def test_aggregate_keeps_functions_apart_and_of_nothing_is_empty():
    total = aggregate(two_workers())

    assert set(total) == {"f", "g"}
    assert total["g"]["calls"] == 1 and total["g"]["workers"] == ["B"]
    assert total["g"]["cache_hit_rate"] is None   # no lookup was made
    assert aggregate({}) == {}
    assert aggregate({"A": {}}) == {}


def test_cache_totals_never_go_down_when_a_function_is_forgotten():
    stats = WorkerStats()
    stats.record("f", "f", 0.1, hit=False)
    stats.record("f", "f", None, hit=True)
    stats.record("g", "g", None, hit=True)
    stats.record("g", "g", 0.1)              # no lookup: not counted
    assert stats.cache_totals() == (2, 1)
    stats.forget("f")
    assert stats.cache_totals() == (2, 1)
    assert WorkerStats(enabled=False).cache_totals() == (0, 0)
