"""What the Director knows about its cluster, and where a call may go.

Owns :class:`Cluster`: the tables of peers, Workers, registered functions,
requests in flight and running workflows, the owners of cached results,
the counts kept for monitoring (:class:`~.tallies.Counts`), and the choices
made on them: which Workers may run a function (not one draining or
wedged), which one a call goes to (the cached result's Worker, else the
configured strategy, preferring a Worker with a free thread and room in
its byte budget), and the routes kept per kind of call. It keeps the count
of argument bytes in flight, per Worker and in all. Pure: no I/O, nothing
unpickled; the parts of :mod:`pyfaas.director` that answer frames share
one Cluster.

Cluster-wide cache hits: a Worker that stores a result says so in its reply
(meta ``cached``: the key, ``evicted``: keys it dropped). The Cluster keeps
``key -> worker`` for those, and a later call with the same key (a digest
of the function id and the argument bytes, :func:`pyfaas.ids.cache_key`)
goes to that Worker, whatever the strategy would have picked. The key is
only computed for functions that have cached results.
"""

from ..ids import cache_key
from ..memo import Memo
from .tallies import Counts

# Room for a frame's header and meta when comparing a payload with a limit.
FRAME_OVERHEAD = 4096
# Arguments smaller than this are not counted in bytes in flight: the
# usual small call stays as cheap as it was, and max_pending_calls of them
# hold at most 10,000 x 1 KiB = 10 MiB at the defaults.
COUNTED_BYTES = 1024


def counted(size):
    """The bytes a payload of ``size`` counts for in flight."""
    return size if size >= COUNTED_BYTES else 0


USABLE = ("ok", "sent")   # the states of a Worker's copy it can run


class Cluster:
    """The Director's tables (see the module docstring).

    Args:
        strategy: ``"Random"``, ``"Round-Robin"`` or ``"Least-Loaded"``.
        rng: a ``random.Random`` (for Random).
    """

    def __init__(self, strategy, rng):
        self.strategy = strategy
        self.rng = rng
        # choose_worker(candidates): one of them (a non-empty list), by the
        # strategy (see _random, _least_loaded, _round_robin)
        self.choose_worker = {"Random": self._random,
                              "Least-Loaded": self._least_loaded,
                              "Round-Robin": self._round_robin}[strategy]
        self.peers = {}            # connection id -> Peer
        self.workers = {}          # worker_id -> Worker, in join order
        self.functions = {}        # func_id -> Function
        self.by_name = {}          # name -> func_id
        self.pending = {}          # director rid -> Pending
        self.runs = {}             # (client peer, client rid) -> workflow Run
        self.unregistered = set()  # ids unregistered here: never restored
        self.cache_owner = {}      # cache key -> (worker_id, func_id)
        self.cached_by_func = {}   # func_id -> set of cache keys
        # CALL meta bytes -> Route; dropped by every change a Route depends
        # on: Workers joining, leaving or draining; functions added,
        # removed, deployed or failing to load (see reroute()).
        self.routes = Memo()
        self.routed = 0            # calls and steps sent to Workers
        self.counts = Counts()     # for monitoring (see tallies.py)
        self.draining = False      # stopping: refuse new calls and workflows
        self.pending_bytes = 0     # sum of the sizes of the pending requests
        self._rr = 0
        self._next_rid = 1

    def new_rid(self):
        """A request id for a frame the Director sends to a Worker."""
        rid = self._next_rid
        self._next_rid = rid + 1
        return rid

    def track(self, pend, worker, client=None):
        """Record a request sent to ``worker`` (and awaited by ``client``),
        and the argument bytes it holds."""
        self.pending[pend.rid] = pend
        worker.inflight.add(pend.rid)
        if pend.size:
            self.pending_bytes += pend.size
            worker.inflight_bytes += pend.size
        if client is not None:
            client.pending.add(pend.rid)

    def untrack(self, rid):
        """Forget the request ``rid`` (answered, lost or cancelled); return
        its Pending, or None. The client's own record is the caller's."""
        pend = self.pending.pop(rid, None)
        if pend is not None:
            worker = self.workers.get(pend.worker_id)
            if worker is not None:
                worker.inflight.discard(rid)
                worker.inflight_bytes -= pend.size
            self.pending_bytes -= pend.size
        return pend

    def reroute(self):
        """Something a Route depends on changed: every route is dropped (to
        be rebuilt at its next use), so none is stale and none keeps an
        unregistered function's code or a lost Worker alive."""
        self.routes.clear()

    # ----- functions ---------------------------------------------------------

    def resolve(self, name_or_id):
        """The Function for a name or an id, or None."""
        if not isinstance(name_or_id, str):
            return None
        func = self.functions.get(name_or_id)
        if func is None:
            fid = self.by_name.get(name_or_id)
            func = self.functions.get(fid) if fid else None
        return func

    def add_function(self, func):
        self.reroute()
        self.functions[func.id] = func
        self.by_name[func.name] = func.id

    def remove_function(self, func_id):
        """Forget a function and its cached results; return it (or None)."""
        self.reroute()
        for key in list(self.cached_by_func.get(func_id, ())):
            self.forget_key(key)
        func = self.functions.pop(func_id, None)
        if func is not None and self.by_name.get(func.name) == func_id:
            del self.by_name[func.name]
        for worker in self.workers.values():
            worker.tallies.pop(func_id, None)
        self.counts.forget_function(func_id)
        return func

    # ----- choosing a Worker -----------------------------------------------

    def eligible(self, func_id):
        """The Workers that may run ``func_id`` now."""
        return [w for w in self.workers.values()
                if w.functions.get(func_id) in USABLE and not w.draining
                and not w.wedged]

    # The strategies (worker_selection_strategy): choose_worker is one.
    # Each picks one of ``candidates`` (a non-empty list).

    def _random(self, candidates):
        return self.rng.choice(candidates)

    def _least_loaded(self, candidates):
        """The lowest share of busy threads (requests in flight and stuck
        calls over ``max_threads``)."""
        return min(candidates, key=_busy_share)

    def _round_robin(self, candidates):
        """The next in turn, passing over a Worker with no free thread when
        another has one (its threads not stuck: ``room``)."""
        self._rr = rr = self._rr + 1
        worker = candidates[rr % len(candidates)]
        if len(worker.inflight) < worker.room:
            return worker
        for i in range(1, len(candidates)):
            other = candidates[(rr + i) % len(candidates)]
            if len(other.inflight) < other.room:
                self._rr = rr + i
                return other
        return worker

    def place(self, func, payload, candidates):
        """Where a call with ``payload`` goes: ``(worker, None)``, or
        ``(None, code)`` when no candidate can take it: ``"serialization"``
        (over every frame limit), ``"overloaded"`` (every byte budget is
        full; a Worker with nothing in flight takes any size)."""
        size = counted(len(payload))
        roomy = [w for w in candidates if not w.inflight_bytes
                 or w.inflight_bytes + size <= w.max_inflight]
        if not roomy:
            return None, "overloaded"
        worker = self.pick_worker(func, payload, roomy)
        return (worker, None) if worker is not None else (None,
                                                          "serialization")

    def pick_worker(self, func, payload, candidates):
        """The Worker holding this call's cached result, else by strategy.

        Only Workers whose frame limit takes the payload count; None if no
        candidate does.
        """
        size = len(payload) + FRAME_OVERHEAD
        for w in candidates:
            if w.max_frame < size:
                candidates = [w for w in candidates if w.max_frame >= size]
                if not candidates:
                    return None
                break
        if func.id in self.cached_by_func:
            owner = self.cache_owner.get(cache_key(func.id, payload))
            if owner is not None:
                worker = self.workers.get(owner[0])
                if worker is not None and worker in candidates:
                    return worker
        return self.choose_worker(candidates)

    def update_load(self, worker, stuck):
        """``worker`` has ``stuck`` calls still running past their time
        limit; True if that changed whether it takes calls."""
        worker.stuck = stuck
        worker.room = worker.max_threads - stuck
        wedged = stuck >= worker.max_threads
        if wedged == worker.wedged:
            return False
        worker.wedged = wedged
        self.reroute()  # (a Route keeps its eligible Workers)
        return True

    # ----- cached results (see the module docstring) ------------------------

    def note_cache(self, worker, meta):
        """A Worker's reply said it cached a result or dropped some."""
        key, func_id = meta.get("cached"), meta.get("func_id")
        if isinstance(key, str) and func_id in self.functions:
            self.remember_key(worker, key, func_id)
        for old in meta.get("evicted", ()):
            if self.cache_owner.get(old, (None,))[0] == worker.id:
                self.forget_key(old)

    def remember_key(self, worker, key, func_id):
        if key in self.cache_owner:
            self.forget_key(key)
        self.cache_owner[key] = (worker.id, func_id)
        self.cached_by_func.setdefault(func_id, set()).add(key)
        worker.cache_keys.add(key)

    def forget_key(self, key):
        owner = self.cache_owner.pop(key, None)
        if owner is None:
            return
        worker_id, func_id = owner
        keys = self.cached_by_func.get(func_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.cached_by_func[func_id]
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.cache_keys.discard(key)


def _busy_share(worker):
    return (len(worker.inflight) + worker.stuck) / worker.max_threads
