"""A test bed of "hosts" in Linux network namespaces (netns).

Owns making a small network that exists only inside namespaces the test
bed creates, running programs on its hosts, cutting and restoring a host's
link, and removing everything it made, even when a test failed.

- **Hosts.** One namespace per host (``PREFIX-a``, ``PREFIX-b``, ...), each
  with ``lo`` and one link, ``eth0``, to a bridge in a switch namespace of
  its own (``PREFIX-sw``). Host *n* gets ``SUBNET_PREFIX.n`` in
  ``SUBNET`` (a private subnet: it exists only in these namespaces). No
  namespace has a default route, and the machine's own namespace has no
  link into them, so nothing started on a host can reach any address
  outside the bed, and nothing outside can reach the bed. The test
  process itself stays in the machine's namespace and opens no socket to
  the bed: it drives clients through :class:`Agent` (netns_agent.py).
- **Names.** ``PREFIX`` is ``pyfaas-`` and 6 random hex digits per bed, so
  parallel runs never meet. Links are created inside the namespaces, never
  in the machine's own.
- **Programs** run with ``ip netns exec`` (which execs them: the pid is
  the program's), with ``$PYFAAS_TEST_HOST`` naming their host; each is
  tracked and stopped by its pid (SIGTERM, then SIGKILL).
- **Partitions.** :meth:`TestBed.partition` sets the switch's end of a
  host's link down: its packets are dropped, with no RST and no FIN, and
  its connections stay "established" on both sides, as when a machine
  vanishes from a real network. :meth:`TestBed.heal` sets it up again.
- **Cleanup** (:meth:`TestBed.close`, idempotent, also from ``with``):
  links healed, tracked processes stopped, any process still inside a
  namespace of the bed killed by pid (``ip netns pids``), the namespaces
  deleted, ``/etc/netns/NAME`` (per-host hosts files) removed, and all of
  it checked (:meth:`TestBed.leftovers`).

Needs root and the ``ip`` command: :func:`unavailable` says why a machine
cannot run it. Nothing here sleeps to let things settle.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time

SUBNET_PREFIX = "10.250.0"
SUBNET = SUBNET_PREFIX + ".0/24"
ETC_NETNS = "/etc/netns"
AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     "netns_agent.py")
PREFIX = "pyfaas-"


def unavailable():
    """Why this machine cannot run the test bed, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    name = PREFIX + "probe-" + secrets.token_hex(3)
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        return "ip netns add failed: %s" % made.stderr.strip()
    try:
        link = _ip("-n", name, "link", "add", "p0", "type", "veth", "peer",
                   "name", "p1")
        if link.returncode != 0:
            return "cannot create a veth pair in a namespace: %s" \
                % link.stderr.strip()
    finally:
        _ip("netns", "del", name)
    return None


def _ip(*args, check=False, input=None):
    result = subprocess.run(["ip"] + list(args), input=input,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args),
                                          result.stderr.strip()))
    return result


def namespaces():
    """The names of the machine's network namespaces."""
    out = _ip("-j", "netns", "list").stdout.strip()
    return {entry["name"] for entry in json.loads(out or "[]")}


class Proc:
    """A program started on a host, with its output in a file."""

    def __init__(self, name, host, argv, workdir, env, stdin=None):
        self.name = name
        self.host = host
        self.output_path = os.path.join(workdir, name + ".out")
        self._out = open(self.output_path, "wb")
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE if stdin else self._out,
            stderr=self._out, stdin=stdin or subprocess.DEVNULL, env=env,
            cwd=workdir)
        self.pid = self.popen.pid

    def output(self):
        with open(self.output_path, "rb") as fh:
            return fh.read().decode(errors="replace")

    def alive(self):
        return self.popen.poll() is None

    def wait(self, timeout):
        return self.popen.wait(timeout)

    def stop(self, timeout=3.0):
        """SIGTERM, then SIGKILL after ``timeout``; return the exit code."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout)
            except ProcessLookupError:
                pass
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                pipe.close()
        self._out.close()
        return self.popen.returncode


class TestBed:
    """Hosts in network namespaces (see the module docstring).

    Args:
        workdir: where configs and outputs go.
        hosts: host names; the n-th (from 1) gets ``SUBNET_PREFIX.n``.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, workdir, hosts=("a", "b", "c", "d")):
        self.workdir = workdir
        self.prefix = PREFIX + secrets.token_hex(3)
        self.switch = self.prefix + "-sw"
        self.hosts = {h: n for n, h in enumerate(hosts, 1)}
        self.made = []            # namespaces, in creation order
        self.procs = []
        self.cut = set()          # hosts partitioned now
        self.strays = []          # pids found in a namespace at cleanup
        self.closed = False
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ----- the network -------------------------------------------------------

    def ns(self, host):
        """The namespace of ``host``."""
        return "%s-%s" % (self.prefix, host)

    def ip(self, host):
        """The address of ``host``."""
        return "%s.%d" % (SUBNET_PREFIX, self.hosts[host])

    def _build(self):
        for name in [self.switch] + [self.ns(h) for h in self.hosts]:
            _ip("netns", "add", name, check=True)
            self.made.append(name)
        cmds = ["link add br0 type bridge", "link set br0 up"]
        for host, n in self.hosts.items():
            cmds += ["link add to-%s type veth peer name eth0 netns %s"
                     % (host, self.ns(host)),
                     "link set to-%s master br0 up" % host]
        _ip("-n", self.switch, "-batch", "-", input="\n".join(cmds) + "\n",
            check=True)
        for host, n in self.hosts.items():
            _ip("-n", self.ns(host), "-batch", "-", check=True, input=(
                "addr add %s/24 dev eth0\nlink set eth0 up\nlink set lo up\n"
                % self.ip(host)))

    def add_address(self, host, n):
        """Give ``host`` a second address, ``SUBNET_PREFIX.n``; return it."""
        addr = "%s.%d" % (SUBNET_PREFIX, n)
        _ip("-n", self.ns(host), "addr", "add", addr + "/24", "dev", "eth0",
            check=True)
        return addr

    def hosts_file(self, host, names):
        """Resolve ``{name: address}`` on ``host`` (``ip netns exec`` mounts
        /etc/netns/NS/hosts over /etc/hosts for the programs it starts)."""
        folder = os.path.join(ETC_NETNS, self.ns(host))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "hosts"), "w") as fh:
            fh.write("127.0.0.1 localhost\n")
            fh.writelines("%s %s\n" % (addr, name)
                          for name, addr in names.items())

    def routes(self, host):
        """``[(destination, device)]`` of ``host``'s routing table."""
        out = _ip("-j", "-n", self.ns(host), "route", check=True).stdout
        return [(r["dst"], r.get("dev")) for r in json.loads(out or "[]")]

    def links(self, host):
        """The names of ``host``'s network interfaces."""
        out = _ip("-j", "-n", self.ns(host), "link", check=True).stdout
        return sorted(link["ifname"] for link in json.loads(out or "[]"))

    def partition(self, host):
        """Cut ``host`` off: its link to the switch goes down."""
        _ip("-n", self.switch, "link", "set", "to-" + host, "down",
            check=True)
        self.cut.add(host)

    def heal(self, host):
        """Restore ``host``'s link."""
        _ip("-n", self.switch, "link", "set", "to-" + host, "up", check=True)
        self.cut.discard(host)

    def sockets(self, host, port):
        """``ss`` lines of ``host``'s established TCP connections to or
        from ``port``, with their timers (``-o``)."""
        out = self.run(host, ["ss", "-tnoH", "state", "established",
                              "( sport = :%d or dport = :%d )" % (port, port)])
        return [line for line in out.stdout.splitlines() if line.strip()]

    # ----- programs ----------------------------------------------------------

    def env(self, host, extra=None):
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYFAAS_TOKEN", "PYFAAS_CONFIG")}
        env["PYFAAS_TEST_HOST"] = host
        env.update(extra or {})
        return env

    def start(self, host, name, argv, env=None, stdin=None):
        """Start ``argv`` on ``host``; return its tracked :class:`Proc`."""
        if self.closed:
            raise RuntimeError("the test bed is closed")
        proc = Proc(name, host, ["ip", "netns", "exec", self.ns(host)]
                    + list(argv), self.workdir, self.env(host, env), stdin)
        self.procs.append(proc)
        return proc

    def named(self, name):
        """The program started under ``name``."""
        return next(proc for proc in self.procs if proc.name == name)

    def pyfaas(self, host, name, args, env=None):
        """``python -m pyfaas ARGS`` on ``host``."""
        return self.start(host, name, [sys.executable, "-m", "pyfaas"]
                          + list(args), env)

    def run(self, host, argv, timeout=30, env=None):
        """Run ``argv`` on ``host`` to its end; return the CompletedProcess."""
        return subprocess.run(["ip", "netns", "exec", self.ns(host)]
                              + list(argv), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              universal_newlines=True, timeout=timeout,
                              env=self.env(host, env), cwd=self.workdir)

    def agent(self, host, name="agent"):
        """A client program on ``host`` (see :class:`Agent`)."""
        proc = self.start(host, name, [sys.executable, AGENT],
                          stdin=subprocess.PIPE)
        return Agent(proc)

    # ----- cleanup -----------------------------------------------------------

    def close(self):
        """Remove everything the bed made (see the module docstring)."""
        if self.closed:
            return
        self.closed = True
        problems = []
        for host in list(self.cut):
            try:
                self.heal(host)  # graceful stops go faster with a network
            except RuntimeError as exc:
                problems.append(str(exc))
        for proc in reversed(self.procs):
            proc.stop()
        for name in self.made:
            for pid in map(int, _ip("netns", "pids", name).stdout.split()):
                # e.g. children of a Worker's: in our namespace, so ours
                self.strays.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5.0
        while any(map(_running, self.strays)) and time.monotonic() < deadline:
            time.sleep(0.01)  # (their parent, or init, reaps them)
        for name in reversed(self.made):
            result = _ip("netns", "del", name)
            if result.returncode != 0:
                problems.append(result.stderr.strip())
            shutil.rmtree(os.path.join(ETC_NETNS, name), ignore_errors=True)
        if problems:
            raise RuntimeError("test bed cleanup: %s" % "; ".join(problems))

    def leftovers(self):
        """What the bed made that still exists: [] after :meth:`close`."""
        left = sorted(set(self.made) & namespaces())
        left += ["/etc/netns/%s" % name for name in self.made
                 if os.path.exists(os.path.join(ETC_NETNS, name))]
        left += ["%s (pid %d)" % (p.name, p.pid) for p in self.procs
                 if p.alive()]
        left += ["pid %d, found in a namespace" % pid for pid in self.strays
                 if _running(pid)]
        return left


def _running(pid):
    """True while ``pid`` exists (a zombie still counts)."""
    return os.path.exists("/proc/%d" % pid)


class Agent:
    """The test's side of netns_agent.py: requests and their answers.

    :meth:`start` sends a request and returns its id at once; :meth:`result`
    waits for its answer (a dict: ``ok``, ``value`` or ``error`` and
    ``message``, ``t0``, ``t1``); :meth:`__call__` does both and returns
    the value, raising AssertionError with the agent's message on an error.
    """

    def __init__(self, proc):
        self.proc = proc
        self._ids = iter(range(1, 1 << 30))
        self._answers = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.popen.stdout:
            answer = json.loads(line)
            with self._cond:
                self._answers[answer["id"]] = answer
                self._cond.notify_all()

    def start(self, op, config, **args):
        rid = next(self._ids)
        request = dict(args, id=rid, op=op, config=config)
        self.proc.popen.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.popen.stdin.flush()
        return rid

    def result(self, rid, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or not self.proc.alive():
                    raise AssertionError(
                        "agent %s: no answer to request %d within %.1f s; "
                        "its output:\n%s" % (self.proc.name, rid, timeout,
                                             self.proc.output()[-3000:]))
                self._cond.wait(min(left, 0.5))
            return self._answers.pop(rid)

    def __call__(self, op, config, wait_s=30.0, **args):
        answer = self.result(self.start(op, config, **args), wait_s)
        if not answer["ok"]:
            raise AssertionError("agent %s: %s failed: %s: %s" % (
                self.proc.name, op, answer["error"], answer["message"]))
        return answer["value"]
