"""Requests held while the Workers that could take them are on their way.

Owns :class:`Grace`. A call or a workflow that finds no Worker to run it
is held here, instead of failing at once, in two cases:

- the start-up window: for ``startup_grace_ms`` after the Director
  starts (a restart, say), it knows no function until its Workers
  register again and announce what they hold, which takes them up to
  their reconnect backoff. A request naming a function no connected
  Worker holds, or finding no Worker at all, waits for the window's end;
- a Worker is expected back (``expecting()``): a supervised Worker died
  and is being restarted, or recycles itself, or has every thread stuck.
  A request finding no Worker (not one naming an unknown function) waits
  up to ``wait_s``.

Every registration or announcement hands the held requests back to be
handled again (those still without a Worker are held again, until their
own deadline); at its deadline a request is handled one last time, which
answers it as it would have been at once. The held requests are bounded
on their own by ``max_pending_calls`` and ``max_pending_bytes`` (beside
the requests in flight, which have the same bounds): past them a request
is answered at once. Pure: the state hands the requests back to their
handlers.
"""


class Grace:
    """Requests held until a Worker can take them.

    Args:
        clock: ``time.monotonic`` or a test's fake.
        grace_s: length of the start-up window from now, in seconds.
        max_held: most requests held.
        max_bytes: most payload bytes held.
        wait_s: how long a request waits for an expected Worker.
        expecting: a callable, True while some Worker is expected back.
    """

    def __init__(self, clock, grace_s, max_held, max_bytes, wait_s,
                 expecting):
        self.clock = clock
        self.until = clock() + grace_s
        self.max_held = max_held
        self.max_bytes = max_bytes
        self.wait_s = wait_s
        self.expecting = expecting
        self.held = []            # (peer id, frame, handler, deadline)
        self.bytes = 0
        self.replaying = None     # the deadline of the request handed back

    def open(self):
        """True while the start-up window lasts."""
        return self.clock() < self.until

    def hold(self, peer, frame, handler, unknown=False):
        """Hold ``frame`` of ``peer`` for ``handler(peer, frame)`` later.

        ``unknown``: it names a function the Director does not know (held
        in the start-up window only). Returns False (nothing held) when no
        Worker is on its way, when its deadline has passed, or when the
        limits are reached.
        """
        now = self.clock()
        if self.replaying is not None:
            if now >= self.replaying:
                return False
            deadline = self.replaying
        elif now < self.until:
            deadline = self.until
        elif not unknown and self.expecting():
            deadline = now + self.wait_s
        else:
            return False
        size = len(frame.payload)
        if len(self.held) >= self.max_held or \
                self.bytes + size > self.max_bytes:
            return False
        self.held.append((peer.id, frame, handler, deadline))
        self.bytes += size
        return True

    def take(self):
        """Every held request, to be handled again (under ``replaying``)."""
        held, self.held, self.bytes = self.held, [], 0
        return held

    def due(self):
        """True if a held request reached its deadline."""
        now = self.clock()
        return any(h[3] <= now for h in self.held)

    def cancel(self, peer_id, rid):
        """Drop the held request ``rid`` of ``peer_id``; True if found."""
        for i, (pid, frame, _, _) in enumerate(self.held):
            if pid == peer_id and frame.request_id == rid:
                del self.held[i]
                self.bytes -= len(frame.payload)
                return True
        return False

    def forget_peer(self, peer_id):
        """``peer_id`` left: its held requests go."""
        self.held = [h for h in self.held if h[0] != peer_id]
        self.bytes = sum(len(h[1].payload) for h in self.held)
