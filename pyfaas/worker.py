"""The Worker process: holds functions and runs calls in a thread pool.

Owns the connection to the Director (connect, register, reconnect with capped
backoff), the heartbeat thread, the table of loaded functions and the pool
that runs calls. The socket is read by one thread (the one that called
:meth:`Worker.serve_forever`); pool threads unpickle arguments, run the
function, pickle the result and send the reply themselves, under the
connection's send lock, so the reader never waits on user code.
"""

import logging
import os
import platform
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from . import protocol as p
from . import serialization as ser
from .errors import PyFaaSError, PyFaaSNetworkError
from .transport import Connection

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
STOP_GRACE_S = 10.0


class LoadedFunction:
    """A function this Worker can run, with its pickled code kept for re-announcing."""

    __slots__ = ("id", "name", "fn", "code", "params")

    def __init__(self, func_id, name, fn, code, params):
        self.id = func_id
        self.name = name
        self.fn = fn
        self.code = code
        self.params = params


class Worker:
    """One Worker.

    Args:
        config: a :class:`pyfaas.config.WorkerConfig`.
        worker_id: the id to ask the Director for (default: random).
    """

    def __init__(self, config, worker_id=None):
        self.config = config
        self.worker_id = worker_id or "w-" + uuid.uuid4().hex[:8]
        self.functions = {}
        self._functions_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(config.max_threads,
                                       thread_name_prefix="pyfaas-exec")
        self._stop = threading.Event()
        self._conn = None
        self._cancelled = set()
        self._inflight = 0
        self._count_lock = threading.Lock()
        self.started_at = time.time()
        self.requests = 0
        self.last_request_at = None
        self.exit_requested = False

    # ----- lifecycle -------------------------------------------------------

    def serve_forever(self):
        """Connect, serve, reconnect; return after :meth:`stop`."""
        heart = threading.Thread(target=self._heartbeat_loop,
                                 name="pyfaas-heartbeat", daemon=True)
        heart.start()
        delay = BACKOFF_FIRST_S
        try:
            while not self._stop.is_set():
                conn = Connection(self.config.director_ip_addr,
                                  self.config.director_port, p.ROLE_WORKER,
                                  timeout=5.0,
                                  max_frame_size=self.config.max_frame_bytes)
                try:
                    conn.connect()
                    self._register(conn)
                except PyFaaSError as exc:
                    conn.close()
                    log.info("director %s not available (%s); retrying in "
                             "%.2f s", conn.name, exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    continue
                delay = BACKOFF_FIRST_S
                self._conn = conn
                try:
                    self._read_loop(conn)
                except PyFaaSError as exc:
                    if not self._stop.is_set():
                        log.warning("lost director %s: %s; reconnecting",
                                    conn.name, exc)
                finally:
                    if self._stop.is_set():
                        self._finish_calls()
                    self._conn = None
                    conn.close()
        finally:
            self._stop.set()
            self.pool.shutdown(wait=False)
            heart.join(timeout=2)

    def stop(self):
        """Ask :meth:`serve_forever` to return. Safe from a signal handler."""
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.shutdown_read()

    def _finish_calls(self):
        deadline = time.monotonic() + STOP_GRACE_S
        while self._inflight and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._inflight:
            log.warning("stopping with %d call(s) still running",
                        self._inflight)

    def _heartbeat_loop(self):
        interval = self.config.heartbeat_interval_ms / 1000.0
        while not self._stop.wait(interval):
            conn = self._conn
            if conn is None:
                continue
            try:
                conn.send(p.frame_parts(p.HEARTBEAT, 0,
                                        {"inflight": self._inflight}))
            except PyFaaSError:
                pass  # the reader notices the broken connection

    # ----- registration ------------------------------------------------------

    def _register(self, conn):
        with self._functions_lock:
            held = [[f.id, f.name] for f in self.functions.values()]
        conn.send(p.frame_parts(p.REGISTER_WORKER, 0, {
            "worker_id": self.worker_id, "pid": os.getpid(),
            "max_threads": self.config.max_threads, "functions": held,
            "started_at": self.started_at, "host": socket.gethostname()}))
        deadline = time.monotonic() + 5.0
        while True:
            frame = conn.recv_frame(deadline)
            if frame.type == p.WELCOME:
                break
            if frame.type == p.ERROR:
                raise PyFaaSNetworkError("director refused registration: %s"
                                         % frame.meta().get("message"))
        meta = frame.meta()
        self.worker_id = meta.get("worker_id", self.worker_id)
        log.info("registered with director %s as %s", conn.name,
                 self.worker_id)
        for fid in meta.get("want", []):
            func = self.functions.get(fid)
            if func is not None:
                conn.send(p.frame_parts(p.ANNOUNCE, 0, {
                    "func_id": func.id, "name": func.name,
                    "params": func.params}, func.code))

    # ----- frames ------------------------------------------------------------

    def _read_loop(self, conn):
        while not self._stop.is_set():
            frame = conn.recv_frame()
            handler = self._handlers.get(frame.type)
            if handler is None:
                log.warning("ignored unexpected %s frame from director",
                            p.TYPE_NAMES.get(frame.type, frame.type))
                continue
            handler(self, conn, frame)

    def _reply(self, conn, rid, meta=None, payload=b"", flags=0):
        try:
            conn.send(p.frame_parts(p.OK, rid, meta, payload, flags))
        except PyFaaSError as exc:
            log.warning("could not send reply %d: %s", rid, exc)

    def _reply_error(self, conn, rid, code, message, **extra):
        extra.update(code=code, message=message, worker_id=self.worker_id)
        try:
            conn.send(p.frame_parts(p.ERROR, rid, extra))
        except PyFaaSError as exc:
            log.warning("could not send error reply %d: %s", rid, exc)

    def _on_deploy(self, conn, frame):
        meta = frame.meta()
        fid, name = meta.get("func_id"), meta.get("name")
        try:
            fn = ser.loads(frame.payload)
            if not callable(fn):
                raise TypeError("%s object is not callable" % type(fn).__name__)
        except Exception as exc:
            log.warning("cannot load function %s (%s): %s", name, fid, exc)
            self._reply_error(conn, frame.request_id, "registration",
                              "worker %s cannot load function %r: %s: %s"
                              % (self.worker_id, name, type(exc).__name__, exc))
            return
        with self._functions_lock:
            if meta.get("replaces"):
                self.functions.pop(meta["replaces"], None)
            for other in list(self.functions.values()):
                if other.name == name and other.id != fid:
                    del self.functions[other.id]
            self.functions[fid] = LoadedFunction(fid, name, fn, frame.payload,
                                                 meta.get("params"))
        log.info("function %s (%s) loaded", name, fid)
        self._reply(conn, frame.request_id, {"func_id": fid})

    def _on_undeploy(self, conn, frame):
        fid = frame.meta().get("func_id")
        with self._functions_lock:
            func = self.functions.pop(fid, None)
        if func is not None:
            log.info("function %s (%s) unloaded", func.name, fid)

    def _on_call(self, conn, frame):
        with self._count_lock:
            self._inflight += 1
            self.requests += 1
        self.last_request_at = time.time()
        self.pool.submit(self._run, conn, frame)

    def _on_cancel(self, conn, frame):
        self._cancelled.add(frame.request_id)

    def _run(self, conn, frame):
        rid = frame.request_id
        try:
            if rid in self._cancelled:
                self._cancelled.discard(rid)
                return
            self._execute(conn, frame)
        except BaseException:  # a bug here must not kill the pool thread
            log.exception("internal error while running request %d", rid)
            self._reply_error(conn, rid, "execution", "internal worker error")
        finally:
            with self._count_lock:
                self._inflight -= 1

    def _execute(self, conn, frame):
        rid = frame.request_id
        meta = frame.meta()
        func = self.functions.get(meta.get("f"))
        if func is None:
            self._reply_error(conn, rid, "not_registered",
                              "function %r is not loaded on worker %s"
                              % (meta.get("f"), self.worker_id))
            return
        try:
            args, kwargs = ser.loads(frame.payload)
        except Exception as exc:
            self._reply_error(conn, rid, "serialization",
                              "arguments for %r cannot be deserialized on "
                              "worker %s: %s: %s" % (func.name, self.worker_id,
                                                     type(exc).__name__, exc))
            return
        try:
            result = func.fn(*args, **kwargs)
        except BaseException as exc:  # user code: SystemExit too
            self._report_exception(conn, rid, func, exc, args, kwargs)
            return
        try:
            payload = ser.dumps(result, "result of %r" % func.name)
        except PyFaaSError as exc:
            self._reply_error(conn, rid, "serialization", str(exc))
            return
        self._reply(conn, rid, None, payload, p.FLAG_PICKLED)

    def _report_exception(self, conn, rid, func, exc, args, kwargs):
        if isinstance(exc, TypeError):
            why = ser.check_arguments(func.params, args, kwargs)
            if why is not None:
                self._reply_error(conn, rid, "parameter_mismatch",
                                  "arguments do not fit %s%s: %s" % (
                                      func.name,
                                      ser.signature_text(func.params), why))
                return
        info = ser.exception_info(exc, skip_frames=1)
        log.info("function %s raised %s: %s", func.name, info["type"],
                 info["message"])
        self._reply_error(conn, rid, "execution",
                          "function %r raised %s: %s on worker %s" % (
                              func.name, info["type"], info["message"],
                              self.worker_id),
                          type=info["type"], remote_message=info["message"],
                          traceback=info["traceback"], function=func.name)

    def _on_worker_info(self, conn, frame):
        self._reply(conn, frame.request_id, None, ser.to_json(self.info(conn)))

    def _on_kill(self, conn, frame):
        log.info("stop requested by a client through the director")
        self._reply(conn, frame.request_id, {"worker_id": self.worker_id})
        self.exit_requested = True
        self.stop()

    def _on_error(self, conn, frame):
        log.warning("director reported: %s", frame.meta().get("message"))

    def info(self, conn=None):
        """This Worker's description, as returned by ``pyfaas_get_worker_info``."""
        now = time.time()
        cfg = self.config
        with self._functions_lock:
            funcs = {f.id: {"name": f.name,
                            "signature": ser.signature_text(f.params)
                            if f.params is not None else None}
                     for f in self.functions.values()}
        return {
            "identity": {"worker_id": self.worker_id,
                         "address": conn.local_address() if conn else "",
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
                       "shutdown_persistence": cfg.shutdown_persistence},
            "functions": funcs,
            "network": {"director": "%s:%s" % (cfg.director_ip_addr,
                                               cfg.director_port),
                        "requests": self.requests,
                        "inflight": self._inflight,
                        "last_request_time": self.last_request_at},
        }

    _handlers = {
        p.DEPLOY: _on_deploy,
        p.UNDEPLOY: _on_undeploy,
        p.CALL: _on_call,
        p.CANCEL: _on_cancel,
        p.WORKER_INFO: _on_worker_info,
        p.KILL_WORKER: _on_kill,
        p.ERROR: _on_error,
    }


def python_summary():
    """One line naming this interpreter, for start-up logs."""
    return "Python %s on %s" % (platform.python_version(), sys.platform)
