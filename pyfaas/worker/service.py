"""The Worker process shell: connection, heartbeats, thread pool.

Owns the connection to the Director (connect, register, reconnect with capped
backoff), the heartbeat thread, the pool that reads and runs calls, the
handling of each frame, and the end of a stop (save the state when
``shutdown_persistence`` is on). The watchdog thread (time limits, stuck
quick calls, the graceful stop) is in :mod:`pyfaas.worker.watchdog`; what a
Worker knows and how it runs a call is in :mod:`pyfaas.worker.core`.

The pool's threads take turns reading the socket (see
:class:`pyfaas.worker.pool.LeaderPool`): the thread that reads a call runs
it, while another reads on. Replies are queued, and whichever thread
queued first writes everything queued in one ``send``, so no thread waits
on the socket while holding others' replies.
"""

import logging
import os
import socket
import threading
import time
import uuid

from ..wire import protocol as p
from .. import serialization as ser
from .. import usage
from . import persistence
from ..errors import (PyFaaSAuthenticationError, PyFaaSConfigError,
                     PyFaaSError, PyFaaSNetworkError, PyFaaSProtocolError)
from ..net.tls import client_context as tls_client_context
from ..net.connection import Connection
from ..memo import Memo
from .isolation import ProcessPool
from .core import WorkerCore, result_limit
from .pool import LeaderPool, Slot
from .watchdog import DRAIN_RID, Watchdog

log = logging.getLogger(__name__)

QUICK_CALL_S = 0.001      # a call this short is run by the reading thread
CONNECT_TIMEOUT_S = 5.0   # connecting and the handshake
WORKER_SEND_TIMEOUT_S = 60.0  # a large result to a busy Director
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0


class _Known:
    """What a Worker keeps about calls with one CALL meta (Worker._calls)."""

    __slots__ = ("meta", "limit", "quick", "plain", "func_id", "most")

    def __init__(self, meta, limit, plain, most):
        self.meta = meta            # decoded; shared, never changed
        self.limit = limit          # seconds the call may run (0: no limit)
        self.quick = False          # the last such call took < QUICK_CALL_S
        self.plain = plain          # no limit, and WorkerCore.plain(meta)
        self.func_id = meta.get("f")
        self.most = most            # the largest result the caller takes


class Worker(Watchdog):
    """One Worker.

    Args:
        config: a :class:`pyfaas.config.WorkerConfig`.
        worker_id: the id to ask the Director for (default: the restored
            one, else random).
    """

    def __init__(self, config, worker_id=None, token=None):
        self.config = config
        self.token = token
        self._tls = tls_client_context(config.tls, config.tls_ca_file,
                                       config.path)
        self.core = WorkerCore(config, worker_id or "w-" + uuid.uuid4().hex[:8])
        self._dump_lock = None
        if config.shutdown_persistence:
            try:
                self._dump_lock = persistence.lock(config.dump_file)
            except persistence.DumpError as exc:
                raise PyFaaSConfigError(
                    "%s: [behavior] dump_file %s: %s; give each Worker its "
                    "own dump_file" % (config.path, config.dump_file, exc))
            self.core.restore()
        self._auth_failed = False
        if config.isolation == "process":
            self.core.pool = ProcessPool(config.max_threads,
                                         config.memory_limit_mb,
                                         config.cpu_time_limit_s)
        self._stop_requested = False        # set by stop(), maybe in a handler
        self._stop = threading.Event()      # stop under way: drain, return
        self._closed = threading.Event()    # serve_forever has returned
        self._drain_acked = False
        self._drain_deadline = None
        self._conn = None
        self._reading = None      # the connection the pool reads, if any
        self._reading_cond = threading.Condition()
        self._lost = threading.Event()  # the pool lost self._reading
        self._exiting = False     # the pool's threads end
        # Keyed by (connection, request id): a restarted Director numbers
        # its requests from 1 again.
        self._slots = {}          # -> Slot, calls with a time limit
        self._out_lock = threading.Lock()
        self._out = []            # (conn, frame parts) waiting for the writer
        self._writing = False     # a thread is writing self._out
        self._queued = set()      # calls not started yet
        self._cancelled = set()
        self._count_lock = threading.Lock()
        # CALL meta bytes (function and options) -> _Known
        self._calls = Memo()
        self.pool = LeaderPool(config.max_threads, self._next_call)

    @property
    def worker_id(self):
        return self.core.worker_id

    # ----- lifecycle -------------------------------------------------------

    def serve_forever(self):
        """Connect, serve, reconnect; return after :meth:`stop`."""
        self._closed.clear()
        heart = threading.Thread(target=self._heartbeat_loop,
                                 name="pyfaas-heartbeat", daemon=True)
        heart.start()
        threading.Thread(target=self._watchdog_loop, name="pyfaas-watchdog",
                         daemon=True).start()
        delay = BACKOFF_FIRST_S
        try:
            while not self._stop.is_set():
                conn = Connection(self.config, p.ROLE_WORKER, CONNECT_TIMEOUT_S,
                                  self.token, self._tls,
                                  send_timeout=WORKER_SEND_TIMEOUT_S)
                try:
                    conn.connect()
                    self._register(conn)
                except PyFaaSAuthenticationError:
                    conn.close()
                    self._auth_failed = True
                    raise  # a configuration problem: retrying cannot help
                except PyFaaSError as exc:
                    conn.close()
                    log.info("director %s not available (%s); retrying in "
                             "%.2f s", conn.name, exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    continue
                delay = BACKOFF_FIRST_S
                self._drain_acked = False
                self._drain_deadline = None
                self._conn = conn
                self._lost.clear()
                with self._reading_cond:
                    self._reading = conn
                    self._reading_cond.notify_all()
                try:
                    self._lost.wait()  # the pool reads till the connection ends
                finally:
                    self._conn = None
                    conn.close()
        finally:
            self._stop.set()
            self._closed.set()
            with self._reading_cond:
                self._reading = None
                self._exiting = True
                self._reading_cond.notify_all()
            if self.core.pool is not None:
                self.core.pool.close()
            heart.join(timeout=2)
            if self.config.shutdown_persistence and not self._auth_failed:
                try:
                    self.core.save()
                except Exception as exc:
                    log.error("could not save state to %s: %s: %s",
                              self.config.dump_file, type(exc).__name__, exc)
            if self._dump_lock is not None:
                persistence.unlock(self._dump_lock)
                self._dump_lock = None

    def _heartbeat_loop(self):
        interval = self.config.heartbeat_interval_ms / 1000.0
        while not self._closed.wait(interval):
            conn = self._conn
            if conn is None:
                continue
            try:
                conn.send(p.frame_parts(p.HEARTBEAT, 0,
                                        self._heartbeat_meta()))
            except PyFaaSError:
                pass  # the reader notices the broken connection

    def _heartbeat_meta(self):
        """Calls in flight, and for the Director's status document: pool
        threads busy, resident memory, CPU seconds, cache hits and misses
        (about 120 bytes of meta)."""
        core = self.core
        inflight = core.inflight
        hits, misses = core.stats.cache_totals()
        return {"inflight": inflight,
                "busy": max(0, min(self.config.max_threads,
                                   inflight - self.pool.backlog())),
                "rss": usage.rss_bytes(),
                "cpu": round(usage.cpu_seconds(), 3),
                "hits": hits, "misses": misses}

    # ----- registration ------------------------------------------------------

    def _register(self, conn):
        core = self.core
        conn.send(p.frame_parts(p.REGISTER_WORKER, 0, {
            "worker_id": core.worker_id, "pid": os.getpid(),
            "max_threads": self.config.max_threads, "functions": core.held(),
            "max_frame": self.config.max_frame_bytes,
            "started_at": core.started_at, "host": socket.gethostname()},
            ser.to_json({"cache_keys": core.cached_keys()})))
        deadline = time.monotonic() + 5.0
        while True:
            frame = conn.recv_frame(deadline)
            if frame.type == p.WELCOME:
                break
            if frame.type == p.ERROR:
                raise PyFaaSNetworkError("director refused registration: %s"
                                         % frame.meta().get("message"))
        meta = frame.meta()
        if meta.get("worker_id", core.worker_id) != core.worker_id:
            log.warning("the director renamed this worker %s to %s: a live "
                        "worker already has that id", core.worker_id,
                        meta["worker_id"])
        core.worker_id = meta.get("worker_id", core.worker_id)
        core.max_result = result_limit(min(
            self.config.max_frame_bytes,
            conn.hello.get("max_frame") or self.config.max_frame_bytes))
        log.info("registered with director %s as %s", conn.name,
                 core.worker_id)
        for fid in meta.get("want", []):
            func = core.functions.get(fid)
            if func is not None:
                meta = dict(func.extra, func_id=func.id, name=func.name,
                            params=func.params)
                conn.send(p.frame_parts(p.ANNOUNCE, 0, meta, func.code))

    # ----- frames ------------------------------------------------------------

    def _next_call(self):
        """Read frames until a call comes; return it as a pool job.

        Runs on the pool thread that holds the lead. Frames other than
        calls are handled here. Waits while there is no connection; returns
        None once the Worker is stopping. A connection ends when the
        Director goes, or when a graceful stop closes its read side once
        the running calls are done (see _drain_step).
        """
        while True:
            conn = self._reading  # (one read of an attribute: no lock)
            if conn is None:
                with self._reading_cond:
                    while self._reading is None and not self._exiting:
                        self._reading_cond.wait()
                    conn = self._reading
                if conn is None:
                    return None
            try:
                frame = conn.recv_frame()
                if frame.type == p.CALL:
                    core = self.core
                    with self._count_lock:  # counted and cancellable from now
                        core.inflight += 1
                        core.requests += 1
                        self._queued.add((conn, frame.request_id))
                    core.last_request_at = time.time()
                    known = self._calls.get(frame.meta_raw)
                    return (self._run, (conn, frame, known),
                            known is not None and known.quick)
                self._handle(conn, frame)
            except BaseException as exc:
                if not isinstance(exc, PyFaaSError):  # a bug: start afresh
                    log.exception("internal error while reading from "
                                  "director %s; reconnecting", conn.name)
                elif not self._stop.is_set():
                    log.warning("lost director %s: %s; reconnecting",
                                conn.name, exc)
                conn.close()
                with self._reading_cond:
                    if self._reading is conn:
                        self._reading = None
                self._lost.set()

    def _handle(self, conn, frame):
        handler = self._handlers.get(frame.type)
        if handler is None:
            log.warning("ignored unexpected %s frame from director",
                        p.TYPE_NAMES.get(frame.type, frame.type))
            return
        try:
            handler(self, conn, frame)
        except p.ProtocolError as exc:  # bad meta: the stream is suspect
            raise PyFaaSProtocolError("director %s sent a bad %s frame: %s"
                                      % (conn.name, p.TYPE_NAMES.get(
                                          frame.type), exc))
        except BaseException:  # e.g. SystemExit: this thread must read on
            log.exception("error while handling a %s frame; going on",
                          p.TYPE_NAMES.get(frame.type))

    def _send(self, conn, type_, rid, meta=None, payload=b"", flags=0):
        """Queue one reply frame (see :meth:`_reply`)."""
        self._reply(conn, p.frame_parts(type_, rid, meta, payload, flags))

    def _reply(self, conn, parts):
        """Queue one encoded frame; the first thread to queue writes.

        Replies that complete while a write is under way are written
        together by that thread in one ``send``: no thread waits for the
        socket while holding others' replies, and no writer thread exists.
        """
        with self._out_lock:
            self._out.append((conn, parts))
            if self._writing:
                return
            self._writing = True
            batch, self._out = self._out, []
        try:
            while True:
                if len(batch) == 1:  # the usual case, without _write's loop
                    self._deliver(*batch[0])
                else:
                    self._write(batch)
                with self._out_lock:
                    batch, self._out = self._out, []
                    if not batch:
                        self._writing = False
                        return
        except BaseException:
            with self._out_lock:
                self._writing = False
            raise

    @classmethod
    def _write(cls, batch):
        """Write queued ``(conn, parts)``: one send per run of one connection."""
        i = 0
        while i < len(batch):
            conn = batch[i][0]
            parts = []
            while i < len(batch) and batch[i][0] is conn:
                parts.extend(batch[i][1])
                i += 1
            cls._deliver(conn, parts)

    @staticmethod
    def _deliver(conn, parts):
        """Send reply frames now. Those for a closed connection (the
        Director went away meanwhile) are dropped: their callers were
        already told the calls were lost."""
        if not conn.closed:
            try:
                conn.send(parts)
            except PyFaaSError as exc:
                log.warning("could not send reply frame(s): %s", exc)

    def _on_deploy(self, conn, frame):
        meta = frame.meta()
        fid, name = meta.get("func_id"), meta.get("name")
        try:
            self.core.load_function(fid, name, meta.get("params"),
                                    frame.payload, meta.get("replaces"), meta)
        except BaseException as exc:  # unpickling runs user code
            log.warning("cannot load function %s (%s): %s", name, fid, exc)
            self._send(conn, p.ERROR, frame.request_id, {
                "code": "registration", "worker_id": self.worker_id,
                "message": "worker %s cannot load function %r: %s: %s"
                % (self.worker_id, name, type(exc).__name__, exc)})
            return
        self._send(conn, p.OK, frame.request_id, {"func_id": fid})

    def _on_undeploy(self, conn, frame):
        self.core.unload_function(frame.meta().get("func_id"))

    def _on_cancel(self, conn, frame):
        with self._count_lock:
            if (conn, frame.request_id) in self._queued:
                self._cancelled.add((conn, frame.request_id))

    def _limit(self, meta):
        """Seconds this call may run (0: no limit)."""
        limits = [x for x in (self.config.call_timeout_s, meta.get("timeout"))
                  if isinstance(x, (int, float)) and x > 0]
        return min(limits) if limits else 0.0

    def _known(self, frame):
        """The :class:`_Known` of calls with this frame's meta bytes, kept."""
        meta = frame.meta()
        limit = self._limit(meta)
        return self._calls.keep(frame.meta_raw, _Known(
            meta, limit, not limit and self.core.plain(meta),
            self.core.result_limit_for(meta)))

    def _run(self, conn, frame, known=None):
        """Run one CALL; ``known``: its entry in self._calls, if any."""
        rid = frame.request_id
        slot = None
        start = time.perf_counter()
        core = self.core
        try:
            key = (conn, rid)
            with self._count_lock:
                self._queued.discard(key)
                cancelled = key in self._cancelled
                if cancelled:
                    self._cancelled.discard(key)
            if cancelled:
                log.info("request %d cancelled before it started", rid)
                return
            if conn.closed:  # its caller was told the call was lost
                log.info("request %d dropped: the connection it came on "
                         "closed before it started", rid)
                return
            if known is None:
                known = self._known(frame)
            if known.plain and core.cache_idle():  # the usual call
                type_, meta, payload, flags = core.run_plain(
                    frame, known.func_id, known.most)
            else:
                meta, limit = known.meta, known.limit
                if limit and core.pool is None:
                    slot = Slot(rid, conn, meta.get("f"), limit)
                    with self._count_lock:
                        self._slots[key] = slot
                type_, meta, payload, flags = core.run_call(frame, meta, limit)
                if slot is not None:
                    with self._count_lock:
                        self._slots.pop(key, None)
                        late, slot.finished = slot.finished, True
                    if late:
                        log.info("late result of timed-out request %d "
                                 "dropped (ran %.1f s)", rid,
                                 time.monotonic() - slot.start)
                        return
            self._send(conn, type_, rid, meta, payload, flags)
            known.quick = time.perf_counter() - start < QUICK_CALL_S
        except BaseException:  # a bug here must not kill the pool thread
            log.exception("internal error while running request %d", rid)
            self._send(conn, p.ERROR, rid, {
                "code": "execution", "worker_id": self.worker_id,
                "message": "internal error on worker %s" % self.worker_id})
        finally:
            with self._count_lock:
                if slot is None or not slot.timed_out:
                    core.inflight -= 1

    def _on_worker_info(self, conn, frame):
        self._send(conn, p.OK, frame.request_id, None,
                   ser.to_json(self.core.info(conn.local_address())))

    def _on_stats(self, conn, frame):
        self._send(conn, p.OK, frame.request_id, None, ser.to_json(
            self.core.stats_reply(frame.meta().get("func_id"))))

    def _on_cache_dump(self, conn, frame):
        dump = self.core.cache.dump()
        dump["worker_id"] = self.worker_id
        self._send(conn, p.OK, frame.request_id, None, ser.to_json(dump))

    def _on_kill(self, conn, frame):
        log.info("stop requested by a client through the director")
        self._send(conn, p.OK, frame.request_id, {"worker_id": self.worker_id})
        self.stop()

    def _on_ok(self, conn, frame):
        if frame.request_id == DRAIN_RID:
            self._drain_acked = True  # the Director sends no more calls

    def _on_error(self, conn, frame):
        log.warning("director reported: %s", frame.meta().get("message"))

    _handlers = {
        p.DEPLOY: _on_deploy,
        p.UNDEPLOY: _on_undeploy,
        p.CANCEL: _on_cancel,
        p.WORKER_INFO: _on_worker_info,
        p.STATS: _on_stats,
        p.CACHE_DUMP: _on_cache_dump,
        p.KILL_WORKER: _on_kill,
        p.ERROR: _on_error,
        p.OK: _on_ok,
    }
