"""The Worker process shell: connection, heartbeats, frames.

Owns :class:`Worker`: the connection to the Director (connect, register,
reconnect with capped backoff), the heartbeat thread (which also leaves
a Director that went silent: see DIRECTOR_MISSES), reading frames (on
the pool's threads, see below) and handling each, running one call from
end to end (cancelled? watched? run, reply, quick?), and the start and end
of the Worker's life (the dump file restored, then saved when
``shutdown_persistence`` is on).

It builds and wires the parts, each given what it uses:

- :class:`~pyfaas.worker.core.WorkerCore`: functions, cache, statistics,
  running a call; what is known per kind of call (no sockets);
- :class:`~pyfaas.worker.calls.CallTable`: the calls read and not
  answered, their counts, cancels and time limits;
- :class:`~pyfaas.worker.replies.Replies`: the one reply queue;
- :class:`~pyfaas.worker.pool.LeaderPool`: threads taking turns reading
  the socket (given :meth:`Worker._next_call`); the thread that reads a
  call runs it, while another reads on;
- :class:`~pyfaas.worker.watchdog.Watchdog`: late calls, a reader stuck
  in a "quick" call, threads stuck for good (recycling a supervised
  Worker), the graceful stop;
- with ``isolation = "process"``, the
  :class:`~pyfaas.worker.isolation.ProcessPool` the core runs calls in.
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
from .calls import CallTable
from .core import WorkerCore
from .isolation import ProcessPool
from .pool import LeaderPool
from .replies import Replies
from .supervisor import Supervision
from .watchdog import DRAIN_RID, Watchdog

log = logging.getLogger(__name__)

QUICK_CALL_S = 0.001      # a call this short is run by the reading thread
CONNECT_TIMEOUT_S = 5.0   # connecting and the handshake
WORKER_SEND_TIMEOUT_S = 60.0  # a large result to a busy Director
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
# A Director that answers heartbeats and then sends nothing for this many
# heartbeat intervals, and at least DIRECTOR_SILENCE_MIN_S, is cut off or
# frozen: the Worker leaves the connection and connects again. (The floor
# keeps a Director that stalls for a moment from losing every Worker's
# calls; the Director forgives its own stalls the same way.)
DIRECTOR_MISSES = 3
DIRECTOR_SILENCE_MIN_S = 3.0
PAUSE_SLACK_S = 1.0   # a heartbeat wait that overslept this much: paused


class Worker:
    """One Worker.

    Args:
        config: a :class:`pyfaas.config.WorkerConfig`.
        worker_id: the id to ask the Director for (default: the restored
            one, else random).
        token: the cluster token (bytes), or None.
        supervision: a :class:`~pyfaas.worker.supervisor.Supervision`
            when a supervisor started this Worker (its restarts and the
            cause of the last one are reported at registration).
        on_registered: called as ``on_registered(worker_id, director)``
            (``director``: "host:port") each time the Worker has registered
            with a Director, on the thread running :meth:`serve_forever`.

    Raises:
        PyFaaSConfigError: the dump file is in use by another Worker, or
            the TLS settings are unusable.
    """

    def __init__(self, config, worker_id=None, token=None, supervision=None,
                 on_registered=None):
        self.config = config
        self.token = token
        self.supervision = supervision or Supervision()
        self._on_registered = on_registered
        self._tls = tls_client_context(config)
        self._dump_lock = None
        if config.shutdown_persistence:
            try:
                self._dump_lock = persistence.lock(config.dump_file)
            except persistence.DumpError as exc:
                raise PyFaaSConfigError(
                    "%s: [behavior] dump_file %s: %s; give each Worker its "
                    "own dump_file" % (config.path, config.dump_file, exc))
        self._auth_failed = False
        self._children = ProcessPool(config) \
            if config.isolation == "process" else None
        self.core = WorkerCore(config, worker_id or "w-" + uuid.uuid4().hex[:8],
                               self._children, self.supervision.info())
        if config.shutdown_persistence:
            persistence.restore(self.core, config.dump_file)
            if worker_id:  # an explicit id wins over the restored one
                self.core.worker_id = worker_id
        self._stopping = threading.Event()  # stop under way: drain, return
        self._closed = threading.Event()    # serve_forever has returned
        self._conn = None
        self._silence_limit = None  # see DIRECTOR_MISSES; None: not judged
        self._left = None         # the connection we left for its silence
        self._reading = None      # the connection the pool reads, if any
        self._reading_cond = threading.Condition()
        self._lost = threading.Event()  # the pool lost self._reading
        self._exiting = False     # the pool's threads end
        self._calls = CallTable()
        self._replies = Replies()
        self._pool = LeaderPool(config.max_threads, self._next_call)
        self._watchdog = Watchdog(self.core, self._calls, self._replies,
                                  self._pool, self._stopping,
                                  recycle=self.supervision.supervised)

    @property
    def worker_id(self):
        return self.core.worker_id

    @property
    def recycle_reason(self):
        """Why the Worker stopped to be started again (None: it did not)."""
        return self._watchdog.recycle_reason

    # ----- lifecycle -------------------------------------------------------

    def serve_forever(self):
        """Connect, serve, reconnect; return after :meth:`stop`.

        Raises:
            PyFaaSAuthenticationError: the Director and this Worker do not
                share a cluster token (retrying cannot help).
        """
        self._closed.clear()
        heart = threading.Thread(target=self._heartbeat_loop,
                                 name="pyfaas-heartbeat", daemon=True)
        heart.start()
        self._watchdog.start()
        delay = BACKOFF_FIRST_S
        try:
            while not self._stopping.is_set():
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
                    self._stopping.wait(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    continue
                delay = BACKOFF_FIRST_S
                self._watchdog.connected(conn)
                self._conn = conn
                self._lost.clear()
                with self._reading_cond:
                    self._reading = conn
                    self._reading_cond.notify_all()
                try:
                    self._lost.wait()  # the pool reads till the connection ends
                finally:
                    self._conn = None
                    self._watchdog.disconnected()
                    conn.close()
        finally:
            self._stopping.set()
            self._closed.set()
            with self._reading_cond:
                self._reading = None
                self._exiting = True
                self._reading_cond.notify_all()
            self._watchdog.close()
            if self._children is not None:
                self._children.close()
            heart.join(timeout=2)
            if self.config.shutdown_persistence and not self._auth_failed:
                persistence.keep(self.core, self.config.dump_file)
            if self._dump_lock is not None:
                persistence.unlock(self._dump_lock)
                self._dump_lock = None

    def stop(self):
        """Ask the Worker to stop gracefully; :meth:`serve_forever` returns.

        Returns at once, and is safe from a signal handler (see
        :meth:`pyfaas.worker.watchdog.Watchdog.request_stop`): running
        calls are finished (up to STOP_GRACE_S) and answered first.
        """
        self._watchdog.request_stop()

    def _heartbeat_loop(self):
        """Send a heartbeat every interval; leave a Director gone silent."""
        interval = self.config.heartbeat_interval_ms / 1000.0
        awake = forgiven = time.monotonic()
        while not self._closed.wait(interval):
            now = time.monotonic()
            if now - awake > interval + PAUSE_SLACK_S:
                forgiven = now  # we were paused: what came is unread
            awake = now
            conn = self._conn
            if conn is None:
                continue
            limit = self._silence_limit
            silent = now - max(conn.last_rx, forgiven)
            if limit is not None and silent > limit and not conn.closed:
                log.warning("director %s sent nothing for %.1f s (it answers"
                            " heartbeats: it is cut off or frozen); leaving "
                            "the connection and connecting again", conn.name,
                            silent)
                self._left = conn  # (already said: the reader is quiet)
                conn.close()  # the reading thread sees it and we reconnect
                continue
            try:
                # Not behind another thread's send: its bytes tell the
                # Director we are alive, and it answers them too.
                conn.send(p.frame_parts(p.HEARTBEAT, 0,
                                        self._heartbeat_meta()), block=False)
            except PyFaaSError:
                pass  # the reader notices the broken connection
            except Exception:  # a bug: heartbeats must go on regardless
                log.exception("could not send a heartbeat")

    def _heartbeat_meta(self):
        """Calls in flight, and for the Director's status document: pool
        threads busy, resident memory, CPU seconds, cache hits and misses
        (about 120 bytes of meta)."""
        inflight = self._calls.inflight
        hits, misses = self.core.stats.cache_totals()
        stuck = self._calls.stuck_now  # (answered, yet holding a thread)
        return {"inflight": inflight, "stuck": stuck,
                "busy": max(0, min(self.config.max_threads,
                                   inflight - self._pool.backlog() + stuck)),
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
            "max_inflight_bytes": self.config.max_inflight_bytes,
            "started_at": core.started_at, "host": socket.gethostname(),
            # Asks the Director to answer heartbeats (see _heartbeat_loop).
            "heartbeat_ms": self.config.heartbeat_interval_ms,
            **self.supervision.info()},
            ser.to_json({"cache_keys": core.cached_keys()})))
        deadline = time.monotonic() + 5.0
        while True:
            frame = conn.recv_frame(deadline)
            if frame.type == p.WELCOME:
                break
            if frame.type == p.ERROR:
                raise PyFaaSNetworkError("director refused registration: %s"
                                         % frame.meta().get("message"))
        try:
            meta = frame.meta()
        except p.ProtocolError as exc:  # (the connection is closed by the
            raise PyFaaSProtocolError(  # caller, as for any PyFaaSError)
                "director %s sent a bad WELCOME: %s" % (conn.name, exc))
        # A Director that says it answers heartbeats is judged by its
        # silence; an older one is not.
        self._silence_limit = max(
            DIRECTOR_MISSES * self.config.heartbeat_interval_ms / 1000.0,
            DIRECTOR_SILENCE_MIN_S) if meta.get("heartbeat_ms") else None
        if meta.get("worker_id", core.worker_id) != core.worker_id:
            log.warning("the director renamed this worker %s to %s: a live "
                        "worker already has that id", core.worker_id,
                        meta["worker_id"])
        core.worker_id = meta.get("worker_id", core.worker_id)
        core.limit_results(conn.hello.get("max_frame")
                           or self.config.max_frame_bytes)
        log.info("registered with director %s as %s", conn.name,
                 core.worker_id)
        for fid in meta.get("want", []):
            func = core.functions.get(fid)
            if func is not None:
                meta = dict(func.extra, func_id=func.id, name=func.name,
                            params=func.params)
                conn.send(p.frame_parts(p.ANNOUNCE, 0, meta, func.code))
        if self._on_registered is not None:
            self._on_registered(core.worker_id, conn.name)

    # ----- frames ------------------------------------------------------------

    def _next_call(self):
        """Read frames until a call comes; return it as a pool job.

        Runs on the pool thread that holds the lead. Frames other than
        calls are handled here. Waits while there is no connection; returns
        None once the Worker is stopping. A connection ends when the
        Director goes, or when a graceful stop shuts its read side once
        the running calls are done (see the Watchdog).
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
                    # counted, and cancellable, from now
                    self._calls.received((conn, frame.request_id))
                    known = self.core.kinds.get(frame.meta_raw)
                    return (self._run, (conn, frame, known),
                            known is not None and known.quick)
                self._handle(conn, frame)
            except BaseException as exc:
                if not isinstance(exc, PyFaaSError):  # a bug: start afresh
                    log.exception("internal error while reading from "
                                  "director %s; reconnecting", conn.name)
                elif not self._stopping.is_set() and conn is not self._left:
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

    def _run(self, conn, frame, known):
        """Run one CALL (a pool job) and queue its reply.

        ``known``: the core's :class:`~pyfaas.worker.core.Known` for its
        meta, if kept. A call with a time limit in a thread is watched:
        if the watchdog answered it meanwhile, its result is dropped.
        """
        rid = frame.request_id
        key = (conn, rid)
        calls = self._calls
        slot = None
        start = time.perf_counter()
        try:
            if not calls.start(key):
                log.info("request %d cancelled before it started", rid)
                return
            if conn.closed:  # its caller was told the call was lost
                log.info("request %d dropped: the connection it came on "
                         "closed before it started", rid)
                return
            core = self.core
            if known is None:
                known = core.learn(frame)
            if known.watch:
                slot = calls.watch(key, known.func_id, known.limit)
                type_, meta, payload, flags = core.run(frame, known)
                if calls.unwatch(slot):
                    log.info("late result of timed-out request %d dropped "
                             "(ran %.1f s)", rid, time.monotonic() - slot.start)
                    return
            else:
                type_, meta, payload, flags = core.run(frame, known)
            self._replies.send(conn, p.frame_parts(type_, rid, meta, payload,
                                                   flags))
            known.quick = time.perf_counter() - start < QUICK_CALL_S
        except BaseException:  # a bug here must not kill the pool thread
            log.exception("internal error while running request %d", rid)
            self._reply(conn, p.ERROR, rid, {
                "code": "execution", "worker_id": self.worker_id,
                "message": "internal error on worker %s" % self.worker_id})
        finally:
            calls.finish(slot)

    def _reply(self, conn, type_, rid, meta=None, payload=b""):
        """Queue one reply frame (see :class:`~pyfaas.worker.replies.Replies`)."""
        self._replies.send(conn, p.frame_parts(type_, rid, meta, payload))

    def _on_deploy(self, conn, frame):
        meta = frame.meta()
        fid, name = meta.get("func_id"), meta.get("name")
        try:
            self.core.load_function(fid, name, meta.get("params"),
                                    frame.payload, meta.get("replaces"), meta)
        except BaseException as exc:  # unpickling runs user code
            log.warning("cannot load function %s (%s): %s", name, fid, exc)
            self._reply(conn, p.ERROR, frame.request_id, {
                "code": "registration", "worker_id": self.worker_id,
                "message": "worker %s cannot load function %r: %s: %s"
                % (self.worker_id, name, type(exc).__name__,
                   ser.clip_start(str(exc)))})
            return
        self._reply(conn, p.OK, frame.request_id, {"func_id": fid})

    def _on_undeploy(self, conn, frame):
        self.core.unload_function(frame.meta().get("func_id"))

    def _on_cancel(self, conn, frame):
        self._calls.cancel((conn, frame.request_id))

    def _on_worker_info(self, conn, frame):
        figures = self._calls.figures()
        for stuck in figures["stuck_now"]:
            func = self.core.functions.get(stuck["func_id"])
            stuck["name"] = func.name if func is not None else None
        self._reply(conn, p.OK, frame.request_id, None, ser.to_json(
            self.core.info(conn.local_address(), figures)))

    def _on_stats(self, conn, frame):
        self._reply(conn, p.OK, frame.request_id, None, ser.to_json(
            self.core.stats_reply(frame.meta().get("func_id"))))

    def _on_cache_dump(self, conn, frame):
        dump = self.core.cache.dump()
        dump["worker_id"] = self.worker_id
        self._reply(conn, p.OK, frame.request_id, None, ser.to_json(dump))

    def _on_kill(self, conn, frame):
        log.info("stop requested by a client through the director")
        self._reply(conn, p.OK, frame.request_id,
                    {"worker_id": self.worker_id})
        self.stop()

    def _on_ok(self, conn, frame):
        if frame.request_id == DRAIN_RID:
            self._watchdog.drain_acknowledged()

    def _on_heartbeat(self, conn, frame):
        """The Director is alive (its bytes set ``conn.last_rx``)."""

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
        p.HEARTBEAT: _on_heartbeat,
    }
