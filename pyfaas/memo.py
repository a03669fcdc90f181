"""What one side works out once per kind of call: a bounded memo.

Calls of one function with the same options look alike: the same CALL
meta bytes, the same argument count and keyword names. Each side works
out something from that once and keeps it here, keyed on it:

- the client: that arguments of that shape bind to the function's
  signature, and the call's encoded meta (:mod:`pyfaas.client.signatures`);
- the Director: the call's route, that is the function, the Workers
  that may run it and the meta they get (:mod:`pyfaas.director.calls`);
- the Worker: the decoded options, the time limit, the largest result
  the caller takes and whether the last such call was quick enough to
  run on the reading thread (:class:`pyfaas.worker.core.Known`).

This is a speed trick, kept because it pays on the bench figure "sync
no-op p50" (``python -m pyfaas bench``): docs/performance.md, "What stays
and why", has the figures with and without each side's memo.

A memo forgets everything when it is full, and whoever owns one clears it
when what it derives from changes (a function registered again, a Worker
joining or leaving, ...).
"""

MAX_ENTRIES = 4096   # a program calls far fewer kinds of call than this
MAX_KEY_BYTES = 512  # meta longer than this (big options) is not kept


class Memo(dict):
    """A dict that stays small: ``memo.get(key)``, ``memo.keep(key, value)``."""

    __slots__ = ()

    def keep(self, key, value):
        """Remember ``value`` for ``key`` (unless the key is too long to be
        worth it); return ``value``."""
        if key.__class__ is not bytes or len(key) <= MAX_KEY_BYTES:
            if len(self) >= MAX_ENTRIES:
                self.clear()
            self[key] = value
        return value
