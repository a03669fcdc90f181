"""Process isolation: run calls in child processes a crash cannot escape.

Owns the pool of child processes used when a Worker has
``[behavior] isolation = "process"``: starting children (the "spawn" method,
so no lock or thread state is inherited), their resource limits
(``memory_limit_mb`` as RLIMIT_AS, ``cpu_time_limit_s`` as RLIMIT_CPU, where
the ``resource`` module exists), running one call in an idle child, and
replacing a child that crashed, hit a limit or was killed on timeout. The
parent never unpickles a call's arguments or runs the call: the child does
both and returns the pickled result, so a call that segfaults, calls
``os._exit`` or exhausts memory is reported to its caller and the Worker
lives on. (The Worker process itself still unpickles each function when it
is deployed, to check it loads; isolation protects against calls, not
against hostile code, which authentication keeps out.)
"""

import logging
import multiprocessing
import queue
import signal
import threading

from .. import serialization as ser

log = logging.getLogger(__name__)

SPAWN_TIMEOUT_S = 30.0


try:
    import resource
except ImportError:  # not on this OS: children run without limits
    resource = None


def _set_memory_limit(memory_limit_mb):
    if resource is not None and memory_limit_mb:
        size = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))


def _allow_cpu(cpu_time_limit_s):
    """Let the next call use ``cpu_time_limit_s`` more seconds of CPU.

    A child serves many calls, so the soft limit is moved to the CPU time
    used so far plus the limit before each call (SIGXCPU when it passes).
    """
    if resource is None or not cpu_time_limit_s:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = used + cpu_time_limit_s
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def child_main(conn, config):
    """Loop of a child: receive a call, run it, send back the outcome.

    ``config``: the Worker's :class:`pyfaas.config.WorkerConfig` (its
    ``memory_limit_mb`` and ``cpu_time_limit_s`` apply here).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the Worker decides
    from .core import call_arguments
    _set_memory_limit(config.memory_limit_mb)
    functions = {}
    while True:
        try:
            func_id, code, source, meta, payload = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if code is not None:
                functions[func_id] = ser.loads(code)
                ser.restore_source(functions[func_id], source)
            fn = functions[func_id]
        except BaseException as exc:
            conn.send(("bad_function", ser.exception_info(exc)))
            continue
        try:
            args, kwargs = call_arguments(meta, payload)
        except BaseException as exc:
            conn.send(("bad_args", ser.exception_info(exc)))
            continue
        _allow_cpu(config.cpu_time_limit_s)
        try:
            result = fn(*args, **kwargs)
        except MemoryError as exc:
            info = ser.exception_info(exc, skip_frames=1)
            info["memory"] = True
            conn.send(("raised", info))
            continue
        except BaseException as exc:  # user code: SystemExit too
            conn.send(("raised", ser.exception_info(exc, skip_frames=1)))
            continue
        try:
            out = ser.dumps(result, "its result")
        except Exception as exc:
            conn.send(("unpicklable", str(exc)))
            continue
        conn.send(("ok", out, _short(args, kwargs), _short(result),
                   type(result).__name__))


def _short(*values):
    return ser.short_repr(values if len(values) > 1 else values[0])


def describe_exit(exitcode):
    """Why a child ended, for the caller: "signal 11 (SIGSEGV)", "exit code 13"."""
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "?"
        return "signal %d (%s)" % (-exitcode, name)
    return "exit code %d" % exitcode


class Child:
    """One child process and the functions it has loaded."""

    def __init__(self, ctx, config):
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=child_main, name="pyfaas-child",
                                args=(child_conn, config), daemon=True)
        self.proc.start()
        child_conn.close()
        self.loaded = set()

    def kill(self):
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class ProcessPool:
    """A fixed number of child processes; each runs one call at a time.

    Args:
        config: the Worker's :class:`pyfaas.config.WorkerConfig`:
            ``max_threads`` children, each with the limits
            ``memory_limit_mb`` and ``cpu_time_limit_s`` (0 = none).
    """

    def __init__(self, config):
        self._ctx = multiprocessing.get_context("spawn")
        self._config = config
        self._idle = queue.Queue()
        self._children = []
        self._lock = threading.Lock()
        self.replaced = 0
        self.closed = False
        for _ in range(config.max_threads):
            self._idle.put(self._new_child())

    def _new_child(self):
        child = Child(self._ctx, self._config)
        with self._lock:
            if self.closed:  # close() came while it started
                orphan = True
            else:
                orphan = False
                self._children.append(child)
        if orphan:
            child.kill()
        return child

    def run(self, func, meta, payload, limit=0.0):
        """Run one call in an idle child.

        Returns:
            tuple: ``("ok", pickled result, args repr, result repr, result
            type name)``,
            ``("raised", exception info)``, ``("bad_args", info)``,
            ``("unpicklable", message)``, ``("timeout", seconds)`` or
            ``("crashed", how)``.
        """
        if self.closed:
            return ("crashed", "the worker is stopping")
        child = self._idle.get()
        if child is None:  # closed while waiting
            self._idle.put(None)
            return ("crashed", "the worker is stopping")
        try:
            code = None if func.id in child.loaded else func.code
            child.conn.send((func.id, code, func.extra.get("source"),
                             dict(meta), bytes(payload)))
            if not child.conn.poll(limit if limit else None):
                self._replace(child, "timeout after %.1f s" % limit)
                child = None
                return ("timeout", limit)
            try:
                outcome = child.conn.recv()
                if outcome[0] != "bad_function":
                    child.loaded.add(func.id)
                return outcome
            except (EOFError, OSError):
                child.proc.join(5)
                how = describe_exit(child.proc.exitcode)
                self._replace(child, how)
                child = None
                return ("crashed", how)
        except (BrokenPipeError, OSError) as exc:
            self._replace(child, "pipe broken: %s" % exc)
            child = None
            return ("crashed", "child process lost (%s)" % exc)
        finally:
            if child is not None:
                self._idle.put(child)

    def _replace(self, child, why):
        with self._lock:
            mine = child in self._children
            if mine:
                self._children.remove(child)
            closed = self.closed
        if mine:  # close() kills the children it took itself
            child.kill()
        if closed:
            return
        log.warning("child process %s ended (%s); starting a new one",
                    child.proc.pid, why)
        self.replaced += 1
        self._idle.put(self._new_child())

    def close(self):
        """Stop every child; calls still waiting for one fail. Idempotent."""
        with self._lock:
            self.closed = True
            children, self._children = self._children, []
        self._idle.put(None)
        for child in children:
            child.kill()
