"""The Worker's result cache (pyfaas/worker/cache.py), without sockets or files."""

import json
import pickle
import threading

import pytest

from pyfaas.ids import cache_key
from pyfaas.worker.cache import Entry, LRUCache

pytestmark = pytest.mark.timeout(30)


def entry(func_id="f1", result=b"r", name="fn"):
    return Entry(func_id, name, result, "(1,)", "2")


def filled(max_size, keys, func_id="f1"):
    cache = LRUCache(max_size)
    for key in keys:
        cache.put(key, entry(func_id, key.encode()))
    return cache


# ----- LRU order and eviction ---------------------------------------------------

def test_put_keeps_insertion_order_and_evicts_the_least_recently_used():
    cache = LRUCache(2)

    assert cache.put("a", entry()) == []
    assert cache.put("b", entry()) == []
    assert cache.put("c", entry()) == ["a"]

    assert cache.keys() == ["b", "c"]
    assert len(cache) == 2
    assert cache.get("a") is None


def test_get_moves_the_entry_to_the_end_and_counts_hits():
    cache = filled(3, ["a", "b", "c"])

    first = cache.get("a")
    second = cache.get("a")

    assert first is second and first.hits == 2
    assert first.last_use >= first.created
    assert cache.keys() == ["b", "c", "a"]
    # "b" is now the least recently used: it goes first.
    assert cache.put("d", entry()) == ["b"]
    assert cache.keys() == ["c", "a", "d"]


def test_put_of_an_existing_key_replaces_it_and_makes_it_most_recent():
    cache = filled(2, ["a", "b"])

    assert cache.put("a", entry(result=b"new")) == []

    assert cache.keys() == ["b", "a"]
    assert cache.get("a").result == b"new"


def test_get_of_a_missing_key_is_none_and_changes_nothing():
    cache = filled(2, ["a", "b"])

    assert cache.get("zz") is None
    assert cache.keys() == ["a", "b"]
    assert LRUCache(2).get("a") is None


def test_max_size_zero_disables_the_cache():
    cache = LRUCache(0)

    assert not cache.enabled
    assert cache.put("a", entry()) == []
    assert len(cache) == 0
    assert cache.get("a") is None
    assert cache.dump()["entries"] == []
    assert LRUCache(1).enabled


def test_max_size_one_keeps_only_the_last():
    cache = LRUCache(1)
    cache.put("a", entry())

    assert cache.put("b", entry()) == ["a"]
    assert cache.keys() == ["b"]


# ----- functions -------------------------------------------------------------------

def test_drop_function_removes_only_that_functions_entries():
    cache = LRUCache(10)
    cache.put("a1", entry("A"))
    cache.put("b1", entry("B"))
    cache.put("a2", entry("A"))

    removed = cache.drop_function("A")

    assert sorted(removed) == ["a1", "a2"]
    assert cache.keys() == ["b1"]
    assert cache.drop_function("nothing") == []


# ----- dump, state, restore ------------------------------------------------------

def test_dump_is_json_serialisable_and_in_lru_order():
    cache = LRUCache(5)
    cache.put("k1", Entry("f1", "square", b"12345", "((3,), {})", "9"))
    cache.put("k2", Entry("f2", "cube", b"xy", "((2,), {})", "8"))
    cache.get("k1")

    dump = json.loads(json.dumps(cache.dump()))

    assert dump["policy"] == "LRU"
    assert dump["max_size"] == 5
    assert dump["size"] == 2
    assert [e["key"] for e in dump["entries"]] == ["k2", "k1"]
    last = dump["entries"][-1]
    assert last["function"] == "square"
    assert last["func_id"] == "f1"
    assert last["args"] == "((3,), {})"
    assert last["result"] == "9"
    assert last["size_bytes"] == 5
    assert last["hits"] == 1
    assert last["last_use"] >= last["created"]


def test_state_and_restore_round_trip_keeps_order_hits_and_results():
    cache = filled(4, ["a", "b", "c"])
    cache.get("a")
    cache.get("a")

    # The state goes into the dump file with pickle.
    state = pickle.loads(pickle.dumps(cache.state()))
    again = LRUCache(4)
    again.restore(state)

    assert again.keys() == ["b", "c", "a"]
    assert again.get("a").hits == 3
    assert again.get("b").result == b"b"
    assert again.dump()["entries"][0]["key"] == "c"


def test_restore_into_a_smaller_cache_keeps_the_most_recent():
    cache = filled(4, ["a", "b", "c", "d"])

    smaller = LRUCache(2)
    smaller.restore(cache.state())

    assert smaller.keys() == ["c", "d"]


def test_restore_into_a_disabled_cache_keeps_nothing():
    disabled = LRUCache(0)
    disabled.restore(filled(3, ["a", "b"]).state())

    assert len(disabled) == 0


def test_entry_state_round_trip():
    original = Entry("f", "name", b"payload", "args", "result", created=12.5)
    original.hits = 4
    original.last_use = 20.0

    copy = Entry.from_state(original.state())

    assert copy.state() == original.state()


# ----- keys ------------------------------------------------------------------------

def test_cache_key_is_stable_and_differs_by_function_and_by_arguments():
    args = pickle.dumps(((1, [2, 3]), {"k": {"x": 1}}))

    key = cache_key("func-a", args)

    assert key == cache_key("func-a", args)
    assert len(key) == 32 and int(key, 16) >= 0
    assert cache_key("func-b", args) != key
    assert cache_key("func-a", pickle.dumps(((1, [2, 4]), {"k": {"x": 1}}))) \
        != key
    assert cache_key("func-a", args + b"\0") != key


def test_cache_key_does_not_mix_function_id_and_argument_bytes():
    # ("ab", "c...") and ("a", "bc...") must not collide.
    assert cache_key("ab", b"cd") != cache_key("a", b"bcd")


# ----- threads -------------------------------------------------------------------

def test_many_threads_putting_and_getting_never_exceed_max_size():
    cache = LRUCache(8)
    errors = []
    seen_sizes = []
    start = threading.Barrier(8)

    def work(n):
        try:
            start.wait(5)
            for i in range(2000):
                key = "k%d" % ((i * 7 + n) % 40)
                if i % 3:
                    cache.put(key, entry("f%d" % n))
                else:
                    cache.get(key)
                if i % 50 == 0:
                    seen_sizes.append(len(cache.keys()))
                    cache.dump()
                if i % 500 == 0:
                    cache.drop_function("f%d" % ((n + 1) % 8))
        except Exception as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)

    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert max(seen_sizes) <= 8
    assert len(cache) <= 8
    assert len(cache.keys()) == len(set(cache.keys())) == cache.dump()["size"]
