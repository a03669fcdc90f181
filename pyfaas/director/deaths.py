"""Worker deaths as the calls they hit see them, and what supervisors say.

Owns :class:`Deaths`: one :class:`Death` per loss of a Worker that had
calls in flight; whether that Worker is expected back (it registered as
supervised and did not stop on purpose); the cause of its end once known;
and the calls held meanwhile.

How a cause becomes known: the supervisor of a Worker that died restarts
it under the same id with the cause (``"SIGSEGV"``, ``"SIGKILL"``,
``"exit code 1"``) and a higher ``restarts`` count, both of which the new
Worker says when it registers. A Worker that comes back with the same
count did not die (it was cut off, or frozen); its loss keeps the reason
the Director saw (``"connection closed"``, ``"no heartbeat for 0.7 s"``).
A Worker that is not supervised, or does not come back within
``RETURN_WAIT_S``, leaves its cause unknown.

Held calls: a call whose Worker was lost, that may run again but finds no
other Worker, waits for one (a supervised Worker is expected back); a call
whose outcome is settled (lost for good, or poison) waits for the causes
of its deaths, so that its error names them. Each is looked at again when
a Worker registers and at every tick, and settled for good at its
deadline. Pure: :class:`pyfaas.director.calls.Calls` decides and answers.
"""

RETURN_WAIT_S = 3.0


class Death:
    """One loss of a Worker, as the calls it ran see it."""

    __slots__ = ("worker_id", "reason", "restarts", "awaited", "cause", "at")

    def __init__(self, worker_id, reason, restarts, awaited, at):
        self.worker_id = worker_id
        self.reason = reason      # what the Director saw
        self.restarts = restarts  # the Worker's count when it was lost
        self.awaited = awaited    # supervised: expected back with a cause
        self.cause = None         # how it died, once its supervisor said
        self.at = at

    def describe(self):
        """The cause if known, else what the Director saw."""
        return self.cause or self.reason


class Held:
    """A call waiting: for a Worker to re-run it on (``retry``), or for
    the causes of its deaths."""

    __slots__ = ("pend", "deadline", "retry")

    def __init__(self, pend, deadline, retry):
        self.pend = pend
        self.deadline = deadline
        self.retry = retry


class Deaths:
    """The deaths of Workers and the calls waiting on them.

    Args:
        clock: ``time.monotonic`` or a test's fake.
        wait_s: how long a call waits for a Worker to come back.
    """

    def __init__(self, clock, wait_s=RETURN_WAIT_S):
        self.clock = clock
        self.wait_s = wait_s
        self.last = {}     # worker id -> its last Death
        self.held = []     # Held, oldest first

    def died(self, worker, reason):
        """``worker`` was lost (its record, as it registered); return the
        Death its calls will carry."""
        death = Death(worker.id, reason, worker.restarts,
                      worker.supervised and (not worker.draining
                                             or worker.recycling),
                      self.clock())
        self.last[worker.id] = death
        return death

    def death_of(self, worker_id, reason):
        """The Death recorded when ``worker_id`` was last lost (one that
        is not expected back if none was)."""
        death = self.last.get(worker_id)
        if death is None:
            death = Death(worker_id, reason, 0, False, self.clock())
        return death

    def returned(self, worker):
        """``worker`` registered: if it is back from an awaited death, that
        death's cause is now known. True if calls are held (to look at
        them again)."""
        death = self.last.get(worker.id)
        if death is not None and death.awaited:
            death.awaited = False
            if worker.restarts > death.restarts:
                death.cause = worker.last_cause or "unknown cause"
        return bool(self.held)

    def expecting(self):
        """True if some Worker is expected back."""
        return any(d.awaited for d in self.last.values())

    def hold(self, pend, retry, deadline=None):
        """Hold ``pend`` until a Worker registers or its deadline."""
        if deadline is None:
            deadline = self.clock() + self.wait_s
        self.held.append(Held(pend, deadline, retry))

    def take(self):
        """Every held call, to be settled again (held again, or not)."""
        held, self.held = self.held, []
        return held

    def tick(self):
        """Give up on Workers not back in time; forget the deaths no call
        refers to any more. True if calls are held (to look at them)."""
        now = self.clock()
        for worker_id, death in list(self.last.items()):
            if death.awaited and now - death.at > self.wait_s:
                death.awaited = False
            if not death.awaited:
                del self.last[worker_id]
        return bool(self.held)

    def cancel(self, peer_id, client_rid):
        """Drop the held call ``client_rid`` of client ``peer_id``; return
        its Pending, or None."""
        for i, held in enumerate(self.held):
            pend = held.pend
            if pend.client_peer == peer_id and pend.client_rid == client_rid:
                del self.held[i]
                return pend
        return None

    def forget_peer(self, peer_id):
        """The client ``peer_id`` left: its held calls go."""
        self.held = [h for h in self.held if h.pend.client_peer != peer_id]
