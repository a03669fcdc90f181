"""The Worker's result cache: a thread-safe LRU of pickled results.

Owns the ``OrderedDict`` LRU bounded by ``max_size`` entries
(``max_size = 0`` disables it: every add is a no-op), per-entry bookkeeping
(hits, last use, size) and the JSON-ready dump. It stores results as the
pickled bytes that are sent to clients, so a hit costs no pickling and the
size of an entry is known. Pure: no sockets, no files.

Entries are keyed by :func:`pyfaas.ids.cache_key`, which the Director
computes too, to route a call to the Worker holding its result.
"""

import threading
import time
from collections import OrderedDict


class Entry:
    """One cached result."""

    __slots__ = ("func_id", "func_name", "result", "args_repr", "result_repr",
                 "hits", "created", "last_use")

    def __init__(self, func_id, func_name, result, args_repr, result_repr,
                 created=None):
        self.func_id = func_id
        self.func_name = func_name
        self.result = result          # pickled result bytes
        self.args_repr = args_repr
        self.result_repr = result_repr
        self.hits = 0
        self.created = created if created is not None else time.time()
        self.last_use = self.created

    def state(self):
        """Plain data for persistence."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_state(cls, state):
        entry = cls(state["func_id"], state["func_name"], state["result"],
                    state["args_repr"], state["result_repr"], state["created"])
        entry.hits = state["hits"]
        entry.last_use = state["last_use"]
        return entry


class LRUCache:
    """Bounded LRU of :class:`Entry`, safe to use from many threads.

    Args:
        max_size: most entries kept; 0 disables the cache.
        policy: the replacement policy's name (only "LRU").
    """

    def __init__(self, max_size, policy="LRU"):
        self.max_size = max_size
        self.enabled = max_size > 0
        self.policy = policy
        # The number of entries, kept as an attribute: a Worker reads it on
        # every call (no entry, no lookup) and len() would run __len__.
        self.size = 0
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self):
        return self.size

    def get(self, key):
        """The entry for ``key`` (now most recently used), or None."""
        if not self._entries:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            entry.hits += 1
            entry.last_use = time.time()
            return entry

    def put(self, key, entry):
        """Store ``entry``; return the keys evicted to make room."""
        if self.max_size <= 0:
            return []
        evicted = []
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                old_key, _ = self._entries.popitem(last=False)
                evicted.append(old_key)
            self.size = len(self._entries)
        return evicted

    def drop_function(self, func_id):
        """Remove every entry of ``func_id``; return the keys removed."""
        with self._lock:
            keys = [k for k, e in self._entries.items() if e.func_id == func_id]
            for key in keys:
                del self._entries[key]
            self.size = len(self._entries)
        return keys

    def keys(self):
        """The keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def state(self):
        """Entries as plain data, LRU order, for persistence."""
        with self._lock:
            return [(k, e.state()) for k, e in self._entries.items()]

    def restore(self, items):
        """Load entries saved by :meth:`state` (keeps at most ``max_size``)."""
        for key, state in items:
            self.put(key, Entry.from_state(state))

    def dump(self):
        """JSON-ready description, entries least recently used first."""
        with self._lock:
            entries = [{"key": k, "function": e.func_name,
                        "func_id": e.func_id, "args": e.args_repr,
                        "result": e.result_repr, "size_bytes": len(e.result),
                        "hits": e.hits, "created": e.created,
                        "last_use": e.last_use}
                       for k, e in self._entries.items()]
        return {"policy": self.policy, "max_size": self.max_size,
                "size": len(entries), "entries": entries}
