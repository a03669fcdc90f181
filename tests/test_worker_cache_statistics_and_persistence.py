"""Real processes: the Worker's state (result cache, shutdown persistence,
statistics, worker info, cache dump) and ``python -m pyfaas status``.

A function that appends a line to a file each time it RUNS proves whether a
call was served from the cache. Tests on the shared ``cluster`` only add
functions of their own; tests that restart, kill or configure Workers get a
``fresh_cluster`` and end with a normal call that must succeed. Functions are
defined in this module so that they travel to the Workers by value.
"""

import glob
import json
import os
import pickle
import platform
import signal
import struct
import subprocess
import sys
import time

import pytest

from helpers import wait_until
from pyfaas.worker import persistence
from pyfaas.errors import (PyFaaSCacheDumpingError,
                           PyFaaSFunctionExecutionError,
                           PyFaaSStatisticsRetrievalError,
                           PyFaaSWorkerInfoError)

pytestmark = pytest.mark.timeout(60)

HEARTBEAT_MS = 200   # as conftest.py: a restarted Worker gets the same config
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----- functions that run on the Workers -------------------------------------

def counted(run_file, x):
    """x squared; appends one line to ``run_file`` each time it runs."""
    with open(run_file, "a") as fh:
        fh.write("%d %r\n" % (os.getpid(), x))
    return x * x


def counted_structures(run_file, items, mapping, k=None):
    with open(run_file, "a") as fh:
        fh.write("%d\n" % os.getpid())
    return {"items": items, "mapping": mapping, "k": k, "n": len(items)}


def version_one(run_file, x):
    with open(run_file, "a") as fh:
        fh.write("v1\n")
    return ("v1", x)


def version_two(run_file, x):
    with open(run_file, "a") as fh:
        fh.write("v2\n")
    return ("v2", x)


def big(run_file, i):
    with open(run_file, "a") as fh:
        fh.write("%d\n" % i)
    return bytes([i]) * (5 * 1000 * 1000)


def whoami():
    return os.getpid()


def fails_on_multiples_of_3(x):
    if x % 3 == 0:
        raise ValueError("multiple of 3: %d" % x)
    return x


def plain(x):
    return x + 1


# ----- helpers ---------------------------------------------------------------

def runs(path):
    """How many times a counted function ran (lines in its run file)."""
    try:
        with open(str(path)) as fh:
            return len(fh.read().splitlines())
    except FileNotFoundError:
        return 0


def dump_path(cluster, name):
    return os.path.join(cluster.workdir, name + ".dump")


def cache_entries(client, func_id=None):
    """Every cached entry on every live Worker (of one function if given)."""
    entries = []
    for wid in client.worker_ids():
        entries += [e for e in client.cache_dump(wid)["entries"]
                    if func_id is None or e["func_id"] == func_id]
    return entries


def pids_of_workers(client):
    return {w["pid"] for w in client.workers()}


def stop_worker(cluster, client, name):
    """Stop Worker ``name`` with SIGTERM and wait until the Director dropped it."""
    proc = cluster.workers[name]
    assert proc.stop() == 0, proc.output().decode(errors="replace")[-2000:]
    wait_until(lambda: proc.pid not in pids_of_workers(client), 10,
               "the director still lists the stopped worker %s" % name)
    return proc


def start_worker(cluster, client, name, **options):
    """Start Worker ``name`` (same name: same config, same dump file)."""
    options.setdefault("heartbeat_ms", HEARTBEAT_MS)
    proc = cluster.start_worker(name=name, **options)
    wait_until(lambda: proc.pid in pids_of_workers(client), 15,
               lambda: "worker %s did not register: %s" % (
                   name, proc.output().decode(errors="replace")[-2000:]))
    return proc


def worker_id_of(client, proc):
    for row in client.workers():
        if row["pid"] == proc.pid:
            return row["worker_id"]
    raise AssertionError("no live worker has pid %d" % proc.pid)


def log_lines(cluster, name, word):
    path = os.path.join(cluster.workdir, "logs", name + ".log")
    with open(path, encoding="utf-8") as fh:
        return [line for line in fh if word in line]


def run_cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "pyfaas"] + list(args),
                          cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


# ----- result cache on the shared cluster --------------------------------------

def test_a_saved_result_is_returned_without_running_the_function_again(
        client, tmp_path):
    run_file = str(tmp_path / "runs")
    fid = client.register(counted, name="st_hit")

    assert client.exec("st_hit", [run_file, 7], save_in_cache=True) == 49
    assert runs(run_file) == 1
    assert client.exec("st_hit", [run_file, 7], save_in_cache=True) == 49
    assert client.exec("st_hit", [run_file, 7]) == 49
    assert client.exec(fid, [run_file, 7]) == 49

    assert runs(run_file) == 1
    fig = client.get_stats("st_hit")["functions"][fid]
    assert fig["cache_hits"] == 3
    assert fig["executions"] == 1
    entries = cache_entries(client, fid)
    assert len(entries) == 1 and entries[0]["hits"] == 3
    assert entries[0]["function"] == "st_hit" and entries[0]["result"] == "49"


def test_a_call_that_never_asked_to_save_is_never_stored(client, tmp_path):
    run_file = str(tmp_path / "runs")
    fid = client.register(counted, name="st_nosave")

    assert client.exec("st_nosave", [run_file, 3]) == 9
    assert client.exec("st_nosave", [run_file, 3]) == 9
    assert runs(run_file) == 2
    assert cache_entries(client, fid) == []

    # Saving now runs it once more (nothing was stored), then it hits.
    assert client.exec("st_nosave", [run_file, 3], save_in_cache=True) == 9
    assert client.exec("st_nosave", [run_file, 3]) == 9
    assert runs(run_file) == 3


def test_lists_and_dicts_as_arguments_are_cached(client, tmp_path):
    run_file = str(tmp_path / "runs")
    client.register(counted_structures, name="st_structures")
    items = [1, [2, 3], {"deep": (4, 5)}]
    mapping = {"a": [1, 2], "b": {"c": {3, 4}}}
    expected = {"items": items, "mapping": mapping, "k": {"z": [9]}, "n": 3}

    first = client.exec("st_structures", [run_file, items, mapping],
                        {"k": {"z": [9]}}, save_in_cache=True)
    again = client.exec("st_structures", [run_file, list(items), dict(mapping)],
                        {"k": {"z": [9]}})

    assert first == again == expected
    assert runs(run_file) == 1
    # Different contents are a different key: it runs, with its own result.
    other = client.exec("st_structures", [run_file, [1, [2, 4]], mapping],
                        {"k": {"z": [9]}}, save_in_cache=True)
    assert other["items"] == [1, [2, 4]]
    other_kw = client.exec("st_structures", [run_file, items, mapping],
                           {"k": {"z": [10]}})
    assert other_kw["k"] == {"z": [10]}
    assert runs(run_file) == 3


def test_new_code_under_the_same_name_never_returns_old_results(
        client, tmp_path):
    run_file = str(tmp_path / "runs")
    old_id = client.register(version_one, name="st_versioned")
    assert client.exec("st_versioned", [run_file, 5],
                       save_in_cache=True) == ("v1", 5)
    assert client.exec("st_versioned", [run_file, 5]) == ("v1", 5)
    assert runs(run_file) == 1

    new_id = client.register(version_two, name="st_versioned")

    assert new_id != old_id
    assert client.exec("st_versioned", [run_file, 5],
                       save_in_cache=True) == ("v2", 5)
    assert client.exec("st_versioned", [run_file, 5]) == ("v2", 5)
    with open(run_file) as fh:
        assert fh.read().split() == ["v1", "v2"]
    assert cache_entries(client, old_id) == []
    assert len(cache_entries(client, new_id)) == 1


def test_unregistering_drops_the_functions_cached_results(client, tmp_path):
    run_file = str(tmp_path / "runs")
    dropped = client.register(counted, name="st_dropped")
    kept = client.register(counted, name="st_kept")
    for x in (1, 2, 3):
        client.exec("st_dropped", [run_file, x], save_in_cache=True)
    client.exec("st_kept", [run_file, 1], save_in_cache=True)
    ids = client.worker_ids()
    size_before = sum(client.cache_dump(w)["size"] for w in ids)
    assert len(cache_entries(client, dropped)) == 3

    client.unregister("st_dropped")

    wait_until(lambda: sum(client.cache_dump(w)["size"] for w in ids)
               == size_before - 3, 10, "the cache still holds st_dropped")
    assert cache_entries(client, dropped) == []
    assert len(cache_entries(client, kept)) == 1
    # Registered again, it starts with an empty cache: it runs.
    client.register(counted, name="st_dropped")
    before = runs(run_file)
    assert client.exec("st_dropped", [run_file, 1]) == 1
    assert runs(run_file) == before + 1


# ----- result cache on dedicated Workers ------------------------------------------

def test_eviction_order_at_max_size(fresh_cluster, tmp_path):
    c = fresh_cluster(workers=1, cache_size=2)
    client = c.client()
    wid, = client.worker_ids()
    run_file = str(tmp_path / "runs")
    client.register(counted, name="evicted")

    def results_in_lru_order():
        dump = client.cache_dump(wid)
        assert dump["size"] == len(dump["entries"]) <= 2
        return [e["result"] for e in dump["entries"]]

    for x in (1, 2, 3):                      # a, b, c
        client.exec("evicted", [run_file, x], save_in_cache=True)
    assert runs(run_file) == 3

    dump = client.cache_dump(wid)
    assert dump["policy"] == "LRU" and dump["max_size"] == 2
    assert dump["worker_id"] == wid
    assert results_in_lru_order() == ["4", "9"]          # a was evicted
    json.dumps(dump)

    assert client.exec("evicted", [run_file, 2]) == 4    # b hits ...
    assert client.exec("evicted", [run_file, 3]) == 9    # ... c hits
    assert client.exec("evicted", [run_file, 2]) == 4    # b most recent
    assert runs(run_file) == 3
    assert results_in_lru_order() == ["9", "4"]

    assert client.exec("evicted", [run_file, 1]) == 1    # a runs again
    assert runs(run_file) == 4
    assert results_in_lru_order() == ["9", "4"]          # and was not saved
    client.exec("evicted", [run_file, 1], save_in_cache=True)
    assert runs(run_file) == 5
    assert results_in_lru_order() == ["4", "1"]          # c went out
    assert client.exec("evicted", [run_file, 3]) == 9
    assert runs(run_file) == 6

    # Concurrent saves from the Worker's thread pool keep the bound.
    futures = [client.exec_async("evicted", [run_file, 100 + i],
                                 save_in_cache=True) for i in range(24)]
    assert [f.result(20) for f in futures] == [(100 + i) ** 2
                                               for i in range(24)]
    dump = client.cache_dump(wid)
    assert dump["size"] == len(dump["entries"]) == 2


def test_max_size_zero_caches_nothing(fresh_cluster, tmp_path):
    c = fresh_cluster(workers=1, cache_size=0)
    client = c.client()
    wid, = client.worker_ids()
    run_file = str(tmp_path / "runs")
    client.register(counted, name="never_cached")

    for _ in range(3):
        assert client.exec("never_cached", [run_file, 4],
                           save_in_cache=True) == 16

    assert runs(run_file) == 3
    dump = client.cache_dump(wid)
    assert dump["max_size"] == 0 and dump["size"] == 0
    assert dump["entries"] == []
    assert client.worker_info(wid)["config"]["cache_max_size"] == 0


@pytest.mark.parametrize("strategy", ["Random", "Round-Robin"])
def test_a_cached_result_is_found_whichever_worker_the_strategy_picks(
        fresh_cluster, tmp_path, strategy):
    c = fresh_cluster(workers=2, strategy=strategy)
    client = c.client()
    run_file = str(tmp_path / "runs")
    fid = client.register(counted, name="cluster_wide")

    assert client.exec("cluster_wide", [run_file, 6], save_in_cache=True) == 36
    for n in range(10):
        assert client.exec("cluster_wide", [run_file, 6],
                           save_in_cache=bool(n % 2)) == 36
    assert runs(run_file) == 1

    # Several keys, saved on whichever Workers the strategy chose.
    for x in range(10, 16):
        client.exec("cluster_wide", [run_file, x], save_in_cache=True)
    for _ in range(3):
        for x in range(10, 16):
            assert client.exec("cluster_wide", [run_file, x]) == x * x
    assert runs(run_file) == 7
    fig = client.get_stats("cluster_wide")["functions"][fid]
    assert fig["cache_hits"] == 10 + 18


# ----- shutdown persistence ---------------------------------------------------------

def test_restart_with_persistence_restores_functions_and_cache(
        fresh_cluster, tmp_path):
    c = fresh_cluster(workers=1, persistence=True)
    client = c.client()
    run_file = str(tmp_path / "runs")
    fid = client.register(counted, name="kept_on_disk")
    old_id = client.worker_ids()[0]
    for x in (1, 2, 3):
        client.exec("kept_on_disk", [run_file, x], save_in_cache=True)
    assert runs(run_file) == 3

    stop_worker(c, client, "worker1")                     # SIGTERM
    state = persistence.load(dump_path(c, "worker1"))
    assert [f[1] for f in state["functions"]] == ["kept_on_disk"]
    assert len(state["cache"]) == 3
    proc = start_worker(c, client, "worker1", persistence=True)

    wid = worker_id_of(client, proc)
    assert wid == old_id
    info = client.worker_info(wid)
    assert info["identity"]["pid"] == proc.pid
    assert info["functions"][fid]["name"] == "kept_on_disk"
    assert info["functions"][fid]["stats"]["calls"] == 3
    assert client.cache_dump(wid)["size"] == 3
    for x in (1, 2, 3):                                   # no re-registration
        assert client.exec("kept_on_disk", [run_file, x]) == x * x
    assert runs(run_file) == 3
    assert not glob.glob(dump_path(c, "worker1") + ".bad-*")


def test_restart_of_director_and_worker_restores_the_function_from_the_dump(
        fresh_cluster, tmp_path):
    c = fresh_cluster(workers=1, persistence=True)
    client = c.client()
    run_file = str(tmp_path / "runs")
    fid = client.register(counted, name="announced")
    client.exec("announced", [run_file, 4], save_in_cache=True)
    stop_worker(c, client, "worker1")
    c.director.stop()

    c.start_director(strategy="Round-Robin", heartbeat_ms=HEARTBEAT_MS)
    client = c.client()
    start_worker(c, client, "worker1", persistence=True)

    wait_until(lambda: fid in client.list(), 10,
               "the restored function was not announced to the new director")
    assert client.list()[fid]["name"] == "announced"
    assert client.exec("announced", [run_file, 4]) == 16
    assert runs(run_file) == 1
    assert client.exec("announced", [run_file, 5]) == 25
    assert runs(run_file) == 2


def test_restored_cache_is_found_cluster_wide_after_a_director_restart(
        fresh_cluster, tmp_path):
    c = fresh_cluster(workers=1, persistence=True)
    client = c.client()
    run_file = str(tmp_path / "runs")
    fid = client.register(counted, name="announced2")
    client.exec("announced2", [run_file, 4], save_in_cache=True)
    stop_worker(c, client, "worker1")
    c.director.stop()
    c.start_director(strategy="Round-Robin", heartbeat_ms=HEARTBEAT_MS)
    client = c.client()
    start_worker(c, client, "worker1", persistence=True)
    wait_until(lambda: fid in client.list(), 10, "function not announced")
    start_worker(c, client, "worker2")
    wait_until(lambda: len(client.list()[fid]["workers"]) == 2, 10,
               "the function did not reach the second worker")

    for _ in range(6):
        assert client.exec("announced2", [run_file, 4]) == 16

    assert runs(run_file) == 1


def test_code_replaced_while_the_worker_was_down_is_not_served_from_its_dump(
        fresh_cluster, tmp_path):
    c = fresh_cluster(workers=1, persistence=True)
    client = c.client()
    run_file = str(tmp_path / "runs")
    old_id = client.register(version_one, name="replaced_offline")
    assert client.exec("replaced_offline", [run_file, 1],
                       save_in_cache=True) == ("v1", 1)
    stop_worker(c, client, "worker1")

    new_id = client.register(version_two, name="replaced_offline")
    proc = start_worker(c, client, "worker1", persistence=True)

    assert client.exec("replaced_offline", [run_file, 1]) == ("v2", 1)
    with open(run_file) as fh:
        assert fh.read().split() == ["v1", "v2"]
    wid = worker_id_of(client, proc)
    wait_until(lambda: old_id not in client.worker_info(wid)["functions"], 10,
               "the old code is still loaded on the restarted worker")
    assert new_id in client.worker_info(wid)["functions"]
    assert cache_entries(client, old_id) == []


def test_restart_with_persistence_off_neither_reads_nor_writes_the_dump(
        fresh_cluster, tmp_path):
    c = fresh_cluster(workers=1, persistence=True)
    client = c.client()
    run_file = str(tmp_path / "runs")
    client.register(counted, name="not_kept")
    client.exec("not_kept", [run_file, 2], save_in_cache=True)
    old_id = client.worker_ids()[0]
    stop_worker(c, client, "worker1")
    path = dump_path(c, "worker1")
    with open(path, "rb") as fh:
        saved = fh.read()

    proc = start_worker(c, client, "worker1", persistence=False)

    wid = worker_id_of(client, proc)
    assert wid != old_id                       # the id was not restored
    assert client.cache_dump(wid)["size"] == 0
    assert client.exec("not_kept", [run_file, 2]) == 4
    assert runs(run_file) == 2                 # the cache was not restored
    client.exec("not_kept", [run_file, 3], save_in_cache=True)
    stop_worker(c, client, "worker1")
    with open(path, "rb") as fh:
        assert fh.read() == saved              # nor written

    os.unlink(path)
    start_worker(c, client, "worker1", persistence=False)
    assert client.exec("not_kept", [run_file, 3]) == 9
    stop_worker(c, client, "worker1")
    assert not os.path.exists(path)
    assert not glob.glob(path + "*")


def test_kill_worker_writes_the_dump(fresh_cluster, tmp_path):
    c = fresh_cluster(workers=1, persistence=True)
    client = c.client()
    run_file = str(tmp_path / "runs")
    client.register(counted, name="killed_kept")
    client.exec("killed_kept", [run_file, 8], save_in_cache=True)
    wid, = client.worker_ids()
    proc = c.workers["worker1"]

    client.kill_worker(wid)

    assert proc.wait(10) == 0
    state = persistence.load(dump_path(c, "worker1"))
    assert [f[1] for f in state["functions"]] == ["killed_kept"]
    assert [e["result_repr"] for _, e in state["cache"]] == ["64"]
    start_worker(c, client, "worker1", persistence=True)
    assert client.exec("killed_kept", [run_file, 8]) == 64
    assert runs(run_file) == 1


@pytest.mark.timeout(120)
def test_kill_9_while_the_dump_is_written_leaves_a_loadable_file(
        fresh_cluster, tmp_path):
    c = fresh_cluster(workers=1, persistence=True, cache_size=10)
    client = c.client()
    run_file = str(tmp_path / "runs")
    client.register(big, name="big")
    for i in range(10):                          # ~50 MB of cached results
        assert len(client.exec("big", [run_file, i], save_in_cache=True)) \
            == 5 * 1000 * 1000
    started = time.monotonic()
    stop_worker(c, client, "worker1")
    graceful_s = time.monotonic() - started      # SIGTERM to exit, dump included
    path = dump_path(c, "worker1")
    assert len(persistence.load(path)["cache"]) == 10

    # Fixed short delays, then fractions of a whole graceful stop so that
    # some SIGKILLs land while the dump is being pickled or written.
    delays = [0.0, 0.02] + [f * graceful_s for f in (0.3, 0.6, 0.9)]
    for delay in delays:
        proc = start_worker(c, client, "worker1", persistence=True,
                            cache_size=10)
        proc.signal(signal.SIGTERM)
        time.sleep(delay)                        # the fault's timing
        proc.signal(signal.SIGKILL)
        proc.wait(10)
        state = persistence.load(path)           # never a partial file
        assert len(state["cache"]) == 10, delay
        assert not glob.glob(path + ".bad-*"), delay
        for tmp in glob.glob(path + ".tmp-*"):   # what a killed save leaves
            os.unlink(tmp)
        wait_until(lambda: proc.pid not in pids_of_workers(client), 10,
                   "the killed worker is still listed")

    start_worker(c, client, "worker1", persistence=True, cache_size=10)
    assert client.exec("big", [run_file, 7]) == bytes([7]) * 5000000
    assert runs(run_file) == 10
    assert not glob.glob(path + ".bad-*")
    assert not log_lines(c, "worker1", "unusable")


def _valid_dump_bytes(tmp_path):
    path = str(tmp_path / "valid.dump")
    persistence.save(path, {"worker_id": "w-valid", "functions": [],
                            "cache": [], "stats": {}, "pad": "x" * 200})
    with open(path, "rb") as fh:
        return fh.read()


def bad_dumps(tmp_path):
    """{kind: (file contents, words the warning must contain)}."""
    valid = _valid_dump_bytes(tmp_path)
    other_version = bytearray(valid)
    struct.pack_into("!H", other_version, 8, persistence.FORMAT_VERSION + 1)
    flipped = bytearray(valid)
    flipped[-20] ^= 0x01
    layout = str(tmp_path / "layout.dump")
    persistence.save(layout, {"functions": "not a list of tuples"})
    with open(layout, "rb") as fh:
        foreign_layout = fh.read()
    return {
        "empty": (b"", "empty"),
        "truncated_header": (valid[:30], "truncated"),
        "truncated_body": (valid[:-7], "truncated"),
        "random_bytes": (bytes(range(256)) * 8, "not a PyFaaS dump"),
        "plain_pickle": (pickle.dumps({"functions": list(range(50))}),
                         "not a PyFaaS dump"),
        "other_version": (bytes(other_version), "version"),
        "corrupted": (bytes(flipped), "checksum"),
        "foreign_layout": (foreign_layout, "unexpected layout"),
    }


def test_every_kind_of_bad_dump_file_is_set_aside_and_the_worker_serves(
        fresh_cluster, tmp_path):
    c = fresh_cluster(workers=0)
    client = c.client()
    cases = bad_dumps(tmp_path)
    procs = {}
    for kind, (data, _) in cases.items():
        with open(dump_path(c, kind), "wb") as fh:
            fh.write(data)
        os.chmod(dump_path(c, kind), 0o600)  # as Workers write them
        procs[kind] = c.start_worker(name=kind, persistence=True,
                                     heartbeat_ms=HEARTBEAT_MS)
    wait_until(lambda: pids_of_workers(client) == {p.pid for p in
                                                   procs.values()}, 30,
               lambda: "workers with a bad dump did not all register: %s"
               % {k: p.output().decode(errors="replace")[-500:]
                  for k, p in procs.items() if not p.alive()})

    client.register(whoami)
    served = set()
    wait_until(lambda: served.add(client.exec("whoami")) or
               served == {p.pid for p in procs.values()}, 20,
               lambda: "workers that never served a call: %s" % sorted(
                   k for k, p in procs.items() if p.pid not in served))

    for kind, (data, words) in cases.items():
        warnings = log_lines(c, kind, "WARNING")
        assert len(warnings) == 1, (kind, warnings)
        assert "unusable" in warnings[0] or "unexpected layout" in warnings[0]
        assert words in warnings[0], (kind, warnings[0])
        aside = glob.glob(dump_path(c, kind) + ".bad-*")
        assert len(aside) == 1, (kind, aside)
        assert aside[0] in warnings[0]
        with open(aside[0], "rb") as fh:
            assert fh.read() == data, kind
        assert not os.path.exists(dump_path(c, kind)), kind

    # A graceful stop then writes a good dump in place of the bad one.
    proc = procs["corrupted"]
    assert proc.stop() == 0
    state = persistence.load(dump_path(c, "corrupted"))
    assert [f[1] for f in state["functions"]] == ["whoami"]


# ----- statistics ------------------------------------------------------------------

def test_statistics_are_aggregated_across_two_workers(fresh_cluster):
    c = fresh_cluster(workers=2)
    client = c.client()
    fid = client.register(fails_on_multiples_of_3)
    other = client.register(plain)
    n, errors = 12, 0
    for x in range(n):
        try:
            assert client.exec("fails_on_multiples_of_3", [x]) == x
        except PyFaaSFunctionExecutionError:
            errors += 1
    assert errors == 4
    assert client.exec("plain", [1]) == 2
    assert client.exec("plain", [2]) == 3

    stats = client.get_stats()

    fig = stats["functions"][fid]
    assert fig["name"] == "fails_on_multiples_of_3"
    assert fig["calls"] == n and fig["errors"] == errors
    assert fig["executions"] == n
    assert sorted(fig["workers"]) == sorted(client.worker_ids())
    per = {w: figs[fid] for w, figs in stats["per_worker"].items()
           if fid in figs}
    assert len(per) == 2                         # Round-Robin used both
    assert sum(f["calls"] for f in per.values()) == n
    assert sum(f["errors"] for f in per.values()) == errors
    assert fig["mean_s"] == pytest.approx(fig["total_s"] / n)
    assert fig["total_s"] == pytest.approx(sum(f["total_s"]
                                               for f in per.values()))
    assert fig["min_s"] == min(f["min_s"] for f in per.values())
    assert fig["max_s"] == max(f["max_s"] for f in per.values())
    assert fig["min_s"] <= fig["p50_s"] <= fig["p95_s"] <= fig["max_s"]
    assert stats["functions"][other]["calls"] == 2
    assert stats["workers_disabled"] == [] and stats["workers_failed"] == {}
    director = stats["director"]
    assert director["requests_routed"] == n + 2
    assert director["errors"] == errors
    assert director["queue_depth"] == 0
    routed = director["routed_per_worker"]
    assert sorted(routed) == sorted(client.worker_ids())
    assert sum(routed.values()) == n + 2
    for wid, count in routed.items():
        assert count == sum(f["calls"] for f in
                            stats["per_worker"][wid].values())
    json.dumps(stats)

    only = client.get_stats("fails_on_multiples_of_3")
    assert list(only["functions"]) == [fid]
    assert all(set(figs) <= {fid} for figs in only["per_worker"].values())
    assert client.get_stats(fid)["functions"][fid]["calls"] == n
    with pytest.raises(PyFaaSStatisticsRetrievalError, match="no_such_fn"):
        client.get_stats("no_such_fn")


def test_routed_per_worker_counts_only_calls(fresh_cluster):
    c = fresh_cluster(workers=1)
    client = c.client()
    client.register(plain)
    wid, = client.worker_ids()
    for x in range(3):
        client.exec("plain", [x])
    client.worker_info(wid)
    client.cache_dump(wid)

    director = client.get_stats()["director"]

    assert director["requests_routed"] == 3
    assert director["routed_per_worker"] == {wid: 3}


def test_statistics_disabled_on_the_director(fresh_cluster):
    c = fresh_cluster(start=False)
    c.start_director(statistics=False, heartbeat_ms=HEARTBEAT_MS)
    c.start_worker(heartbeat_ms=HEARTBEAT_MS)
    c.wait_for_workers(1)
    client = c.client()
    client.register(plain)
    assert client.exec("plain", [1]) == 2

    with pytest.raises(PyFaaSStatisticsRetrievalError,
                       match="statistics are disabled on director"):
        client.get_stats()
    with pytest.raises(PyFaaSStatisticsRetrievalError, match="disabled"):
        client.get_stats("plain")

    # status shows the Director's own counts: statistics do not turn it off
    done = run_cli("status", "--config", c.client_config(timeout=10))
    assert done.returncode == 0, done.stderr
    functions_part = done.stdout.split("FUNCTIONS", 1)[1]
    assert "plain(x)" in functions_part
    assert client.exec("plain", [2]) == 3


def test_statistics_disabled_on_every_worker(fresh_cluster):
    c = fresh_cluster(workers=2, statistics=False)
    client = c.client()
    fid = client.register(plain)
    for x in range(4):
        assert client.exec("plain", [x]) == x + 1
    ids = client.worker_ids()

    with pytest.raises(PyFaaSStatisticsRetrievalError,
                       match="disabled on every worker") as caught:
        client.get_stats()
    for wid in ids:
        assert wid in str(caught.value)
        info = client.worker_info(wid)
        assert info["config"]["statistics_enabled"] is False
        assert info["functions"][fid]["stats"] is None   # nothing collected

    # One Worker with statistics: the figures are its own, the others listed.
    proc = start_worker(c, client, "with_stats", statistics=True)
    wait_until(lambda: len(client.list()[fid]["workers"]) == 3, 10,
               "the function did not reach the third worker")
    counting = worker_id_of(client, proc)
    stats = client.get_stats()
    assert sorted(stats["workers_disabled"]) == sorted(ids)
    assert list(stats["per_worker"]) == [counting]


# ----- worker info, cache dump, status ---------------------------------------------

def test_worker_info_sections(cluster, client):
    fid = client.register(plain, name="st_info_fn")
    for x in range(4):
        client.exec("st_info_fn", [x])
    pids = {proc.pid for proc in cluster.workers.values()}
    before = time.time()

    for row in client.workers():
        info = client.worker_info(row["worker_id"])

        assert set(info) >= {"identity", "system", "config", "functions",
                             "network"}
        ident = info["identity"]
        assert ident["worker_id"] == row["worker_id"]
        assert ident["pid"] == row["pid"] and ident["pid"] in pids
        assert ident["address"].startswith("127.0.0.1:")
        assert ident["start_time"] <= before
        assert ident["uptime_s"] >= 0
        system = info["system"]
        assert system["python_version"] == platform.python_version()
        assert system["cores"] == os.cpu_count()
        assert system["os"] and system["cpu"] == platform.machine()
        config = info["config"]
        assert config["statistics_enabled"] is True
        assert config["cache_policy"] == "LRU"
        assert config["cache_max_size"] == 16
        assert config["pool_size"] >= 1
        assert config["log_level"]
        func = info["functions"][fid]
        assert func["name"] == "st_info_fn"
        assert func["signature"] == "(x)"
        assert func["stats"]["calls"] >= 1              # Round-Robin: both
        assert info["network"]["requests"] >= 2
        assert info["network"]["last_request_time"] <= time.time()
        json.dumps(info)


def test_unknown_worker_id_names_it(client):
    with pytest.raises(PyFaaSWorkerInfoError, match="no-such-worker-42"):
        client.worker_info("no-such-worker-42")
    with pytest.raises(PyFaaSCacheDumpingError, match="no-such-worker-43"):
        client.cache_dump("no-such-worker-43")
    assert client.worker_ids()                           # still serving


def test_status_prints_the_workers_and_functions_tables(cluster, client):
    fid = client.register(plain, name="st_status_fn")
    client.exec("st_status_fn", [1])
    ids = client.worker_ids()
    config = cluster.client_config(timeout=10)

    text = run_cli("status", "--config", config)
    as_json = run_cli("status", "--config", config, "--json")

    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "WORKERS" in out and "FUNCTIONS" in out
    assert out.index("WORKERS") < out.index("FUNCTIONS")
    workers_part, functions_part = out.split("FUNCTIONS", 1)
    for wid in ids:
        assert wid in workers_part
    assert "st_status_fn(x)" in functions_part and fid in functions_part
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert sorted(w["worker_id"] for w in data["workers"]) == sorted(ids)
    for w in data["workers"]:
        assert w["addr"] and w["inflight"] >= 0
        assert w["last_heartbeat_age_s"] >= 0 and w["uptime_s"] >= 0
    row, = [f for f in data["functions"] if f["func_id"] == fid]
    assert row["name"] == "st_status_fn"
    assert row["calls"] >= 1 and row["errors"] == 0
    assert data["director"]["workers"] == len(ids)


def test_status_against_a_stopped_cluster_exits_1_with_one_line(fresh_cluster):
    c = fresh_cluster(workers=0)
    config = c.client_config(timeout=5)
    c.stop()

    done = run_cli("status", "--config", config)

    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pyfaas: ") and "Traceback" not in done.stderr
    assert str(c.port) in lines[0]


def test_the_dump_file_is_private_and_an_exposed_one_is_warned_about(
        fresh_cluster):
    c = fresh_cluster(workers=0)
    path = dump_path(c, "private")
    persistence.save(path, {"worker_id": "w-private", "functions": [],
                            "cache": [], "stats": {}})
    os.chmod(path, 0o644)  # as a careless copy would leave it
    proc = c.start_worker(name="private", persistence=True,
                          heartbeat_ms=HEARTBEAT_MS)
    client = c.client()
    assert client.wait_for_workers(1, 15) == ["w-private"]
    [warning] = log_lines(c, "private", "can be read by other users")
    assert "mode 0644" in warning and "chmod 600" in warning
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert os.stat(path).st_mode & 0o777 == 0o600
