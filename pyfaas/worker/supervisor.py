"""The Worker's supervisor: a small parent process that restarts it.

Owns :class:`Supervisor`, the parent that ``python -m pyfaas worker CONFIG``
runs unless ``[behavior] supervise = false``; :class:`Supervision`, what a
supervised Worker is told when it starts; and :class:`SupervisorLink`, the
Worker's end of the link between them (a socketpair). It does not run calls
or talk to the Director: the child is an ordinary Worker.

The parent starts the Worker as a child (``python -m pyfaas worker CONFIG
--supervised FD ...``) and waits for it to end. How it ended decides:

- exit code 0: the Worker stopped on purpose (a signal the parent
  forwarded, ``kill_worker``): the parent exits with 0 too;
- exit code 2: a configuration or token problem, which a restart cannot
  mend: the parent exits with 2;
- ``RECYCLE_EXIT``: the Worker recycled itself (every thread stuck in a
  call past its time limit, see :mod:`pyfaas.worker.watchdog`): it is
  started again at once;
- a signal or any other exit code: a crash. It is started again after a
  backoff (0.1 s, doubling up to 2 s). After more than ``max_restarts``
  crashes within ``restart_window_s`` the parent gives up: one log line,
  exit code ``GAVE_UP_EXIT``.

Every restart keeps the Worker id (the first child tells the parent its id
through the link) and tells the new child how many restarts there were
and how the last one ended (``"SIGSEGV"``, ``"SIGKILL"``, ``"exit code
1"``): the Worker reports both when it registers, which is how the
Director learns the cause of a death (see :mod:`pyfaas.director.deaths`),
and shows them in ``worker_info``.

SIGINT and SIGTERM are forwarded to the child (with SIGCONT, so that a
stopped child gets them), and the parent exits with the child's code; a
child that does not stop within ``STOP_WAIT_S`` is killed. The child
watches the link: when the parent is gone (even killed with SIGKILL) it
stops gracefully, so no Worker is left orphaned. The parent never polls:
it waits in ``select`` on the link and on a socket that every signal
(SIGCHLD included) writes to (``signal.set_wakeup_fd``).
"""

import collections
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)

CONFIG_EXIT = 2           # as the command line's usage errors
GAVE_UP_EXIT = 3          # too many crashes within the window
RECYCLE_EXIT = 75         # the Worker asks to be started again (EX_TEMPFAIL)
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
STOP_WAIT_S = 20.0        # a Worker's graceful stop (10 s) and its dump file
RECYCLED = "recycled: every thread was stuck in a call past its time limit"


class Supervision:
    """What a Worker knows of its supervisor (nothing when unsupervised).

    Args:
        link_fd: the Worker's end of the link (None: not supervised).
        restarts: how many times the supervisor started it again.
        last_cause: how the previous Worker process ended, or None.
    """

    def __init__(self, link_fd=None, restarts=0, last_cause=None):
        self.link_fd = link_fd
        self.supervised = link_fd is not None
        self.restarts = restarts
        self.last_cause = last_cause or None

    def info(self):
        """JSON-ready, for ``worker_info`` and the registration."""
        return {"supervised": self.supervised, "restarts": self.restarts,
                "last_cause": self.last_cause}


def describe_exit(code):
    """How a child ended, from its ``Popen.returncode``: ``"SIGSEGV"``,
    ``"exit code 1"``."""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return "signal %d" % -code
    return "exit code %d" % code


class SupervisorLink:
    """The Worker's end of the link to its supervisor.

    Args:
        fd: the descriptor the supervisor passed.
        on_lost: called (from a thread of the link) when the supervisor is
            gone, e.g. ``Worker.stop``.
    """

    def __init__(self, fd, on_lost):
        self._sock = socket.socket(fileno=fd)
        self._sock.set_inheritable(False)  # not for the Worker's children
        self._on_lost = on_lost

    def start(self, worker_id):
        """Tell the supervisor our id; watch for its end."""
        try:
            self._sock.sendall(("id %s\n" % worker_id).encode("utf-8"))
        except OSError:
            pass
        threading.Thread(target=self._watch, name="pyfaas-supervisor-link",
                         daemon=True).start()

    def _watch(self):
        try:
            while self._sock.recv(64):
                pass
        except OSError:
            pass
        log.warning("the supervisor (pid %d) is gone; stopping", os.getppid())
        self._on_lost()


class Supervisor:
    """The supervising parent of one Worker (see the module docstring).

    Args:
        config: the Worker's :class:`pyfaas.config.WorkerConfig`.
        config_path: its file, passed on to each child.
        clock: ``time.monotonic`` (tests may pass another).
    """

    def __init__(self, config, config_path, clock=time.monotonic):
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.worker_id = None     # told by the first child
        self.restarts = 0
        self.last_cause = None
        self._crashes = collections.deque()   # times, within the window
        self._child = None
        self._link = None         # our end of the current child's link
        self._buffer = b""
        self._signal = None       # SIGINT/SIGTERM received, to forward
        self._stopping = False
        self._kill_at = None      # kill a stopping child that lingers
        self._sel = None

    # ----- the loop ------------------------------------------------------------

    def run(self):
        """Supervise until the Worker stops for good; return the exit code."""
        wake_r, wake_w = socket.socketpair()
        for sock in (wake_r, wake_w):
            sock.setblocking(False)
        old_fd = signal.set_wakeup_fd(wake_w.fileno())
        old = {sig: signal.signal(sig, self._on_signal)
               for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
        self._sel = selectors.DefaultSelector()
        self._sel.register(wake_r, selectors.EVENT_READ, None)
        try:
            log.info("supervising the worker (this process: pid %d); it is "
                     "restarted when it dies, at most %d time(s) within "
                     "%.0f s", os.getpid(), self.config.max_restarts,
                     self.config.restart_window_s)
            return self._loop(wake_r)
        finally:
            if self._child is not None and self._child.poll() is None:
                self._child.kill()  # never leave it (a bug got us here)
                self._child.wait()
            self._close_link()
            signal.set_wakeup_fd(old_fd)
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self._sel.close()
            wake_r.close()
            wake_w.close()

    def _loop(self, wake_r):
        start_at = self.clock()   # when to start the next child
        while True:
            if self._child is None:
                if self._stopping:
                    return 0
                if self.clock() >= start_at:
                    try:
                        self._start()
                        continue
                    except OSError as exc:  # fork refused: EAGAIN, ENOMEM
                        exit_code, delay = self.ended(
                            1, "could not start it: %s" % exc)
                        if exit_code is not None:
                            return exit_code
                        start_at = self.clock() + delay
                        continue
                timeout = start_at - self.clock()
            elif self._kill_at is not None:
                timeout = max(0.0, self._kill_at - self.clock())
            else:
                timeout = None
            for key, _ in self._sel.select(timeout):
                if key.fileobj is wake_r:
                    try:
                        while wake_r.recv(256):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                else:
                    self._read_link()
            if self._signal is not None:
                self._forward()
            if self._child is None:
                continue
            code = self._child.poll()
            if code is None:
                if self._kill_at is not None and self.clock() >= self._kill_at:
                    log.warning("worker %s did not stop within %.0f s; "
                                "killing it", self.worker_id, STOP_WAIT_S)
                    self._child.kill()
                continue
            self._child = None
            self._close_link()
            exit_code, delay = self.ended(code)
            if exit_code is not None:
                return exit_code
            start_at = self.clock() + delay

    def _on_signal(self, signum, frame):
        # Only note it (the wake-up socket already woke select): the loop
        # forwards it. SIGCHLD needs a Python handler for the wake-up.
        if signum != signal.SIGCHLD:
            self._signal = signum

    def _forward(self):
        signum, self._signal = self._signal, None
        self._stopping = True
        child = self._child
        if child is None or child.poll() is not None:
            return
        log.info("stopping: passing %s on to worker %s (pid %d)",
                 signal.Signals(signum).name, self.worker_id, child.pid)
        try:
            os.kill(child.pid, signal.SIGCONT)
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass
        if self._kill_at is None:
            self._kill_at = self.clock() + STOP_WAIT_S

    # ----- one child -----------------------------------------------------------

    def _start(self):
        mine, theirs = socket.socketpair()
        args = [sys.executable, "-m", "pyfaas", "worker", self.config_path,
                "--supervised", str(theirs.fileno()),
                "--restarts", str(self.restarts)]
        if self.worker_id:
            args += ["--worker-id", self.worker_id]
        if self.last_cause:
            args += ["--last-cause", self.last_cause]
        try:
            self._child = subprocess.Popen(args, pass_fds=(theirs.fileno(),),
                                           stdin=subprocess.DEVNULL)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self._link = mine
        self._buffer = b""
        mine.setblocking(False)
        self._sel.register(mine, selectors.EVENT_READ, None)
        self._kill_at = None
        # Tests find the Worker process (and stop it) by this line.
        print("PyFaaS worker supervisor (pid %d) started worker pid %d"
              % (os.getpid(), self._child.pid), flush=True)

    def _read_link(self):
        try:
            data = self._link.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the child is ending (or closed it): poll() tells
            self._close_link()
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            word, _, rest = line.decode("utf-8", "replace").partition(" ")
            if word == "id" and rest:
                self.worker_id = rest

    def _close_link(self):
        if self._link is not None:
            try:
                self._sel.unregister(self._link)
            except (KeyError, ValueError):
                pass
            self._link.close()
            self._link = None

    def ended(self, code, cause=None):
        """The decision when the child ended with ``code`` (a
        ``Popen.returncode``; see the module docstring), or could not be
        started (``cause`` says why; it counts as a crash).

        Returns:
            ``(exit code, None)``: leave with that code; or ``(None,
            delay)``: start the Worker again after ``delay`` seconds.
        """
        name = self.worker_id or "(not registered yet)"
        if self._stopping:
            log.info("worker %s stopped (%s)", name, describe_exit(code))
            return (code if code >= 0 else 128 - code), None
        if code == 0:
            log.info("worker %s stopped by itself (exit code 0); the "
                     "supervisor stops too", name)
            return 0, None
        if code == CONFIG_EXIT:
            log.error("worker %s exited with code 2 (a configuration or "
                      "token problem); not restarting it", name)
            return CONFIG_EXIT, None
        self.restarts += 1
        if code == RECYCLE_EXIT:
            self.last_cause = RECYCLED
            log.warning("worker %s recycled itself (every thread was stuck);"
                        " starting it again", name)
            return None, 0.0
        self.last_cause = cause or describe_exit(code)
        now = self.clock()
        crashes = self._crashes
        crashes.append(now)
        while crashes and now - crashes[0] > self.config.restart_window_s:
            crashes.popleft()
        hint = (": killed by another process, or by the kernel when out of "
                "memory" if code == -signal.SIGKILL else "")
        if len(crashes) > self.config.max_restarts:
            log.error("worker %s died (%s%s): %d crashes within %.0f s, more "
                      "than max_restarts = %d ([behavior]); not restarting "
                      "it, exiting with code %d", name, self.last_cause, hint,
                      len(crashes), self.config.restart_window_s,
                      self.config.max_restarts, GAVE_UP_EXIT)
            return GAVE_UP_EXIT, None
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (len(crashes) - 1))
        log.warning("worker %s died (%s%s); starting it again in %.1f s "
                    "(crash %d of at most %d within %.0f s; its stack, if "
                    "Python could write one, is in this log)", name,
                    self.last_cause, hint, delay, len(crashes),
                    self.config.max_restarts, self.config.restart_window_s)
        return None, delay
