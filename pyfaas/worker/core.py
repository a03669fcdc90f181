"""What a Worker knows and does, apart from its connection.

Owns the table of loaded functions, what the Worker works out once per kind
of call (:class:`Known`, kept in a :class:`pyfaas.memo.Memo`), running one
call (:meth:`WorkerCore.run`: cache consulted and filled, arguments
unpickled, function run, result pickled and checked against the result
limit, statistics counted), the reply to a call that outlived its time
limit, the Worker's description for ``pyfaas_get_worker_info``, and its
state as the dump file keeps it (:meth:`WorkerCore.state`, :meth:`WorkerCore.
load_state`; the file itself is :mod:`pyfaas.worker.persistence`'s).

It never touches a socket, and it does not count calls in flight
(:mod:`pyfaas.worker.calls`) nor watch their time limits
(:mod:`pyfaas.worker.watchdog`): :mod:`pyfaas.worker.service` reads
frames, hands CALLs to :meth:`WorkerCore.run` in pool threads and queues
what it returns. With ``isolation = "process"`` it is given the
:class:`pyfaas.worker.isolation.ProcessPool` its calls run in.
"""

import logging
import os
import platform
import socket
import threading
import time

from ..wire import protocol as p
from .. import serialization as ser
from .. import workflow as wfl
from ..ids import cache_key
from .cache import Entry, LRUCache
from ..errors import PyFaaSError
from ..memo import Memo
from ..stats import WorkerStats

log = logging.getLogger(__name__)

REPR_LIMIT = 120


class LoadedFunction:
    """A function this Worker can run; its pickled code is kept for re-announcing."""

    __slots__ = ("id", "name", "fn", "code", "params", "extra")

    def __init__(self, func_id, name, fn, code, params, extra=None):
        self.id = func_id
        self.name = name
        self.fn = fn
        self.code = code
        self.params = params
        self.extra = extra or {}  # source, doc, idempotent: kept to re-announce


def result_limit(max_frame):
    """Largest pickled result that fits a reply frame of ``max_frame`` bytes
    (room is kept for the header and the reply's small meta)."""
    return max_frame - min(4096, max_frame // 8)


def call_arguments(meta, payload):
    """``(args, kwargs)`` of a CALL from its decoded meta and payload.

    A workflow step (``refs`` in its meta) has JSON arguments that name
    earlier steps' outputs, which come pickled after them in the payload.
    """
    if "refs" not in meta:
        return ser.loads(payload)
    head, blobs = wfl.split_step_payload(meta, payload)
    outputs = {name: ser.loads(blob) for name, blob in blobs.items()}
    return (wfl.substitute(head.get("args", []), outputs),
            wfl.substitute(head.get("kwargs", {}), outputs))


def _short(value):
    return ser.short_repr(value, REPR_LIMIT)


class Known:
    """What a Worker works out once for calls with one CALL meta.

    Made by :meth:`WorkerCore.learn` and kept in ``WorkerCore.kinds``;
    shared by every call with those meta bytes, so nothing here may depend
    on one call. Only ``quick`` changes: the Worker sets it after each call.
    """

    __slots__ = ("meta", "func_id", "limit", "watch", "store", "step", "most",
                 "quick")

    def __init__(self, meta, limit, watch, store, step, most):
        self.meta = meta            # decoded; never changed
        self.func_id = meta.get("f")
        self.limit = limit          # seconds the call may run (0: no limit)
        self.watch = watch          # the Worker's watchdog enforces limit
        self.store = store          # its result goes into the cache
        self.step = step            # a workflow step (see call_arguments)
        self.most = most            # the largest result the caller takes
        self.quick = False          # the last such call was quick


class WorkerCore:
    """Functions, cache and statistics of one Worker. Thread-safe.

    Args:
        config: a :class:`pyfaas.config.WorkerConfig`.
        worker_id: this Worker's id.
        pool: a :class:`pyfaas.worker.isolation.ProcessPool` to run calls
            in (``isolation = "process"``), or None to run them in the
            calling thread. Its owner closes it.
        supervision: what its supervisor said, for ``info`` (JSON-ready).
    """

    def __init__(self, config, worker_id, pool=None, supervision=None):
        self.config = config
        self.worker_id = worker_id
        self.pool = pool
        self.supervision = supervision or {"supervised": False,
                                           "restarts": 0, "last_cause": None}
        self.functions = {}
        self._lock = threading.Lock()
        self.cache = LRUCache(config.cache_max_size, config.cache_policy)
        self.stats = WorkerStats(config.statistics_enabled)
        self.started_at = time.time()
        self.max_result = result_limit(config.max_frame_bytes)
        # CALL meta bytes -> Known. Cleared when max_result changes (each
        # Known's result limit derives from it); nothing else it derives
        # from changes while the Worker runs.
        self.kinds = Memo()

    # ----- functions ---------------------------------------------------------

    def load_function(self, func_id, name, params, code, replaces=None,
                      extra=None):
        """Unpickle and install a function (replacing older code of that name).

        Raises:
            Exception: whatever unpickling raised, or TypeError if the object
                is not callable.
        """
        extra = {k: v for k, v in (extra or {}).items()
                 if k in ("source", "doc", "idempotent")}
        code = bytes(code)  # kept for re-announcing and the dump file
        fn = ser.loads(code)
        if not callable(fn):
            raise TypeError("%s object is not callable" % type(fn).__name__)
        ser.restore_source(fn, extra.get("source"))
        with self._lock:
            stale = [f.id for f in self.functions.values()
                     if f.id != func_id and (f.name == name or f.id == replaces)]
            for old in stale:
                self._unload_locked(old)
            self.functions[func_id] = LoadedFunction(func_id, name, fn, code,
                                                     params, extra)
        log.info("function %s (%s) loaded", name, func_id)

    def unload_function(self, func_id):
        """Remove a function, its cached results and its figures."""
        with self._lock:
            func = self._unload_locked(func_id)
        if func is not None:
            log.info("function %s (%s) unloaded", func.name, func_id)

    def _unload_locked(self, func_id):
        func = self.functions.pop(func_id, None)
        self.cache.drop_function(func_id)
        self.stats.forget(func_id)
        return func

    def held(self):
        """``[[func_id, name], ...]`` for registration."""
        with self._lock:
            return [[f.id, f.name] for f in self.functions.values()]

    # ----- calls ---------------------------------------------------------------

    def learn(self, frame):
        """The :class:`Known` of calls with this CALL frame's meta bytes:
        worked out now, and kept in ``kinds`` for the next such call.

        Raises:
            pyfaas.wire.protocol.ProtocolError: the meta is not JSON.
        """
        meta = frame.meta()
        limits = [x for x in (self.config.call_timeout_s, meta.get("timeout"))
                  if isinstance(x, (int, float)) and x > 0]
        limit = min(limits) if limits else 0.0
        return self.kinds.keep(frame.meta_raw, Known(
            meta, limit=limit, watch=bool(limit) and self.pool is None,
            store=bool(meta.get("cache")) and self.cache.enabled,
            step="refs" in meta, most=self.result_limit_for(meta)))

    def limit_results(self, max_frame):
        """Results are sent in frames of at most ``max_frame`` bytes from
        now on (the Director's limit, or ours if smaller)."""
        self.max_result = result_limit(min(self.config.max_frame_bytes,
                                           max_frame))
        self.kinds.clear()  # their result limits were worked out from it

    def run(self, frame, known):
        """Run one CALL frame; return the reply as ``(type, meta, payload,
        flags)``.

        Args:
            frame: the CALL frame.
            known: its :class:`Known` (see :meth:`learn`). Its time limit
                is enforced here only with process isolation (the child is
                killed); calls in threads are watched by the Worker.
        """
        # The one way a call is run. The usual call (no cache asked for and
        # none stored, in this thread, not a workflow step) only reads a
        # few flags on its way to _execute: keep it so (docs/performance.md).
        func = self.functions.get(known.func_id)
        if func is None:
            return self._error("not_registered",
                               "function %r is not loaded on worker %s"
                               % (known.func_id, self.worker_id))
        cache = self.cache
        key = hit = None
        if cache.enabled:
            hit = False
            if cache.size or known.store:  # (none stored: the usual case)
                key = cache_key(func.id, frame.payload)
                entry = cache.get(key)
                if entry is not None:
                    self.stats.record(func.id, func.name, None, hit=True)
                    if len(entry.result) > known.most:
                        return self._too_large(func, entry.result, "cached",
                                               known.most)
                    return p.OK, {"cache": "hit"}, entry.result, p.FLAG_PICKLED
        if self.pool is not None:
            return self._run_isolated(func, known, frame.payload, key, hit)
        try:
            if known.step:
                args, kwargs = call_arguments(known.meta, frame.payload)
            else:
                args, kwargs = ser.loads(frame.payload)
        except Exception as exc:
            return self._bad_arguments(func, exc, hit)
        return self._execute(func, args, kwargs, known, hit, key)

    def timeout_reply(self, rid, func_id, limit):
        """Count a call in a thread that outlived its time limit (its
        thread runs on) and return the ERROR reply its caller gets."""
        func = self.functions.get(func_id)
        name = func.name if func else func_id
        if func is not None:
            self.stats.record_timeout(func.id, func.name)
        log.warning("call %d of %s exceeded its %.1f s timeout; its caller "
                    "was told; the thread is still busy", rid, name, limit)
        return self._error("timeout",
                           "function %r did not finish within %.1f s on "
                           "worker %s (the call's timeout or call_timeout_s)"
                           % (name, limit, self.worker_id))

    def _bad_arguments(self, func, exc, hit):
        self.stats.record(func.id, func.name, None, error=True, hit=hit)
        return self._error("serialization",
                           "arguments for %r cannot be deserialized on "
                           "worker %s: %s: %s" % (func.name, self.worker_id,
                                                  type(exc).__name__,
                                                  ser.clip_start(str(exc))))

    def _execute(self, func, args, kwargs, known, hit, key):
        """Call ``func``; the reply as :meth:`run` returns it (``key``: the
        cache key, if one was worked out)."""
        start = time.perf_counter()
        try:
            result = func.fn(*args, **kwargs)
        except BaseException as exc:  # user code: SystemExit too
            self.stats.record(func.id, func.name, time.perf_counter() - start,
                              error=True, hit=hit)
            return self._exception_reply(func, exc, args, kwargs)
        duration = time.perf_counter() - start
        try:
            payload = ser.dumps(result, "result", func.name)
        except PyFaaSError as exc:
            self.stats.record(func.id, func.name, duration, error=True, hit=hit)
            return self._error("serialization", ser.clip_start(str(exc)))
        if len(payload) > known.most:
            self.stats.record(func.id, func.name, duration, error=True, hit=hit)
            return self._too_large(func, payload, type(result).__name__,
                                   known.most)
        self.stats.record(func.id, func.name, duration, False, hit)
        reply_meta = None
        if known.store:
            reply_meta = self._store(key, func, payload,
                                     _short((args, kwargs)), _short(result))
        return p.OK, reply_meta, payload, p.FLAG_PICKLED

    def _store(self, key, func, payload, args_repr, result_repr):
        """Cache a pickled result; return the reply meta."""
        if self.functions.get(func.id) is not func:
            return None  # unloaded while it ran
        evicted = self.cache.put(key, Entry(func.id, func.name, payload,
                                            args_repr, result_repr))
        reply_meta = {"cached": key, "func_id": func.id}
        if evicted:
            reply_meta["evicted"] = evicted
        return reply_meta

    def result_limit_for(self, meta):
        """Largest result for this call: ours, or the caller's if smaller
        (a client announces its own ``max_frame_bytes`` in ``max``)."""
        theirs = meta.get("max")
        if isinstance(theirs, int) and not isinstance(theirs, bool) \
                and theirs > 0:
            return min(self.max_result, result_limit(theirs))
        return self.max_result

    def _too_large(self, func, payload, type_name, limit):
        return self._error("serialization",
                           "result of %r (type %s) is %d bytes pickled; "
                           "frames are limited to %d bytes (max_frame_bytes "
                           "of this worker, the director or the caller)"
                           % (func.name, type_name, len(payload), limit))

    def _run_isolated(self, func, known, payload, key, hit):
        start = time.perf_counter()
        outcome = self.pool.run(func, known.meta, payload, known.limit)
        duration = time.perf_counter() - start
        kind = outcome[0]
        if kind == "ok":
            result = outcome[1]
            if len(result) > known.most:
                self.stats.record(func.id, func.name, duration, error=True,
                                  hit=hit)
                return self._too_large(func, result, outcome[4], known.most)
            self.stats.record(func.id, func.name, duration, hit=hit)
            reply_meta = None
            if known.store:
                reply_meta = self._store(key, func, result, outcome[2],
                                         outcome[3])
            return p.OK, reply_meta, result, p.FLAG_PICKLED
        self.stats.record(func.id, func.name, duration, error=True, hit=hit)
        if kind == "raised":
            info = outcome[1]
            if info.get("memory") and self.config.memory_limit_mb:
                return self._crash(func, "memory limit of %d MiB exceeded "
                                   "(MemoryError)" % self.config.memory_limit_mb,
                                   replaced=False)
            return self._error("execution",
                               "function %r raised %s: %s (on worker %s)" % (
                                   func.name, info["type"], info["message"],
                                   self.worker_id),
                               type=info["type"],
                               remote_message=info["message"],
                               traceback=info["traceback"], function=func.name)
        if kind == "bad_function":
            return self._error("registration",
                               "function %r cannot be loaded in a child "
                               "process of worker %s: %s: %s" % (
                                   func.name, self.worker_id,
                                   outcome[1]["type"], outcome[1]["message"]))
        if kind == "bad_args":
            return self._error("serialization",
                               "arguments for %r cannot be deserialized on "
                               "worker %s: %s: %s" % (
                                   func.name, self.worker_id,
                                   outcome[1]["type"], outcome[1]["message"]))
        if kind == "unpicklable":
            return self._error("serialization", "function %r: %s" % (
                func.name, ser.clip_start(str(outcome[1]))))
        if kind == "timeout":
            self.stats.record_timeout(func.id, func.name)
            return self._error("timeout",
                               "function %r did not finish within %.1f s on "
                               "worker %s; its process was killed"
                               % (func.name, outcome[1], self.worker_id))
        how = outcome[1]
        if (how.startswith("signal 24") or how.startswith("signal 9")) and \
                self.config.cpu_time_limit_s:
            how += "; cpu_time_limit_s is %d" % self.config.cpu_time_limit_s
        return self._crash(func, how)

    def _crash(self, func, how, replaced=True):
        log.warning("function %s crashed its process: %s", func.name, how)
        return self._error("crashed", "function %r crashed: %s (on worker %s%s)"
                           % (func.name, how, self.worker_id,
                              "; its process was replaced" if replaced else ""),
                           type="ProcessCrash", remote_message=how,
                           function=func.name)

    def _error(self, code, message, **extra):
        extra.update(code=code, message=message, worker_id=self.worker_id)
        return p.ERROR, extra, b"", 0

    def _exception_reply(self, func, exc, args, kwargs):
        if isinstance(exc, TypeError):
            why = ser.check_arguments(func.params, args, kwargs)
            if why is not None:
                return self._error("parameter_mismatch",
                                   "arguments do not fit %s%s: %s" % (
                                       func.name,
                                       ser.signature_text(func.params), why))
        info = ser.exception_info(exc, skip_frames=1)
        log.info("function %s raised %s: %s", func.name, info["type"],
                 info["message"])
        return self._error("execution",
                           "function %r raised %s: %s (on worker %s)" % (
                               func.name, info["type"], info["message"],
                               self.worker_id),
                           type=info["type"], remote_message=info["message"],
                           traceback=info["traceback"], function=func.name)

    # ----- inspection ------------------------------------------------------------

    def stats_reply(self, func_id=None):
        """Statistics payload for the Director (JSON-ready)."""
        return {"worker_id": self.worker_id, "enabled": self.stats.enabled,
                "functions": self.stats.snapshot(func_id)}

    def info(self, address, calls):
        """This Worker's description, as returned by ``pyfaas_get_worker_info``.

        Args:
            address: ``"host:port"`` of the Worker's end of its connection.
            calls: the figures of its calls (:meth:`pyfaas.worker.calls.
                CallTable.figures`), for the ``network`` section.
        """
        now = time.time()
        cfg = self.config
        figures = self.stats.snapshot()
        with self._lock:
            funcs = {}
            for f in self.functions.values():
                fig = dict(figures.get(f.id, {}))
                fig.pop("recent_s", None)
                funcs[f.id] = {"name": f.name,
                               "signature": ser.signature_text(f.params)
                               if f.params is not None else None,
                               "stats": fig or None}
        return {
            "identity": {"worker_id": self.worker_id, "address": address,
                         "pid": os.getpid(), "host": socket.gethostname(),
                         "start_time": self.started_at,
                         "uptime_s": round(now - self.started_at, 3)},
            "system": {"python_version": platform.python_version(),
                       "implementation": platform.python_implementation(),
                       "os": platform.platform(), "cpu": platform.machine(),
                       "processor": platform.processor(),
                       "cores": os.cpu_count()},
            "config": {"statistics_enabled": cfg.statistics_enabled,
                       "log_level": cfg.log_level,
                       "cache_policy": cfg.cache_policy,
                       "cache_max_size": cfg.cache_max_size,
                       "pool_size": cfg.max_threads,
                       "shutdown_persistence": cfg.shutdown_persistence,
                       "dump_file": cfg.dump_file},
            "functions": funcs,
            "network": dict(calls, director="%s:%s" % (cfg.director_ip_addr,
                                                       cfg.director_port)),
            "supervision": dict(self.supervision),
        }

    # ----- persistence -------------------------------------------------------------

    def state(self):
        """Everything the dump file keeps."""
        with self._lock:
            funcs = [(f.id, f.name, f.params, f.code, f.extra)
                     for f in self.functions.values()]
        return {"worker_id": self.worker_id, "saved_at": time.time(),
                "functions": funcs, "cache": self.cache.state(),
                "stats": self.stats.snapshot()}

    def load_state(self, state):
        """Put back what :meth:`state` returned (of an earlier run).

        Functions that no longer load are skipped (logged). On any other
        error (a layout this code does not know) every function, cached
        result and figure is forgotten and the error raised.
        """
        try:
            self.worker_id = state.get("worker_id") or self.worker_id
            for fid, name, params, code, *rest in state.get("functions", []):
                try:
                    self.load_function(fid, name, params, code,
                                       extra=rest[0] if rest else None)
                except Exception as exc:
                    log.warning("restored function %s cannot be loaded: "
                                "%s: %s", name, type(exc).__name__, exc)
            self.cache.restore(item for item in state.get("cache", [])
                               if item[1]["func_id"] in self.functions)
            if self.stats.enabled:
                self.stats.restore({fid: figures for fid, figures
                                    in state.get("stats", {}).items()
                                    if fid in self.functions})
        except Exception:
            with self._lock:
                self.functions.clear()
            self.cache = LRUCache(self.config.cache_max_size,
                                  self.config.cache_policy)
            self.stats = WorkerStats(self.config.statistics_enabled)
            raise

    def cached_keys(self):
        """``[[key, func_id], ...]`` of the cached results, for the Director."""
        return [[key, state["func_id"]] for key, state in self.cache.state()]
