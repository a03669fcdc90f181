"""Which connections the Director lets in, and which it lets go first.

Owns :class:`Admission`: the connections still in their handshake (TLS,
preamble, token), oldest first, counted in all and per address, and the
choice of whom to close when a new connection arrives:

- past ``max_handshaking_per_addr`` from its address, that address's
  oldest connection still in its handshake;
- past ``max_handshaking`` in all, the oldest connection still in its
  handshake;
- past ``max_connections`` open, the oldest in its handshake, if any;
  else the new one is refused.

So sockets that never finish a handshake (idle, or hostile) only ever
compete with each other: a connection that finished its handshake is
never closed to let another in, and a new one always gets its chance.
Only connections older than ``MIN_AGE_S`` are closed for the per-address
and in-all caps, so that a burst of legitimate clients accepted in one
turn of the loop is not cut down before it could say anything.

Also owns :class:`Throttle`, which keeps a log line that a peer can cause
at will to a bounded rate. Pure: the loop closes the sockets.
"""

import collections

MIN_AGE_S = 0.5


class Admission:
    """Connections in their handshake, and who is closed for whom.

    Args:
        max_connections: most connections open at once.
        max_handshaking: most connections in their handshake.
        max_per_addr: most connections in their handshake from one address.
        clock: ``time.monotonic`` or a test's fake.
    """

    def __init__(self, max_connections, max_handshaking, max_per_addr, clock):
        self.max_connections = max_connections
        self.max_handshaking = max_handshaking
        self.max_per_addr = max_per_addr
        self.clock = clock
        self._waiting = collections.OrderedDict()  # id -> (host, since)
        self._per_host = collections.Counter()

    def __len__(self):
        return len(self._waiting)

    def admit(self, conn_id, host, open_now):
        """A new connection ``conn_id`` from ``host``, with ``open_now``
        connections open before it. Returns the ids of the connections to
        close to make room for it (oldest first), or None if it must be
        refused (every open connection finished its handshake)."""
        now = self.clock()
        shed = []
        if self._per_host[host] >= self.max_per_addr:
            oldest = self._oldest(now, host)
            if oldest is not None:
                shed.append(oldest)
        if len(self._waiting) - len(shed) >= self.max_handshaking:
            oldest = self._oldest(now)
            if oldest is not None and oldest not in shed:
                shed.append(oldest)
        if open_now - len(shed) >= self.max_connections:
            oldest = self.oldest()
            if oldest is None:
                return None
            if oldest not in shed:
                shed.append(oldest)
        for old in shed:
            self.done(old)
        self._waiting[conn_id] = (host, now)
        self._per_host[host] += 1
        return shed

    def oldest(self):
        """The id of the oldest connection in its handshake, or None."""
        return next(iter(self._waiting), None)

    def _oldest(self, now, host=None):
        for conn_id, (h, since) in self._waiting.items():
            if now - since < MIN_AGE_S:
                return None  # (the rest are younger still)
            if host is None or h == host:
                return conn_id
        return None

    def done(self, conn_id):
        """``conn_id`` finished its handshake, or closed."""
        entry = self._waiting.pop(conn_id, None)
        if entry is not None:
            host = entry[0]
            self._per_host[host] -= 1
            if not self._per_host[host]:
                del self._per_host[host]


class Throttle:
    """At most one log line per ``interval`` seconds for one kind of event.

    Args:
        interval: seconds between two lines.
        clock: ``time.monotonic`` or a test's fake.
    """

    def __init__(self, interval, clock):
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._quiet = 0           # events not logged since the last line

    def ready(self):
        """``None`` if this event is not to be logged; else how many were
        not logged since the last line."""
        now = self.clock()
        if now < self._next:
            self._quiet += 1
            return None
        self._next = now + self.interval
        quiet, self._quiet = self._quiet, 0
        return quiet
