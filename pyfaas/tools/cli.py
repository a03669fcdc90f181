"""Command line: ``python -m pyfaas {init,director,worker,status,...} ...``.

Owns argument parsing, turning configuration errors into one line on stderr
with exit code 2 (never a traceback), signal handling for graceful stops,
and the start-up lines the Director and Workers print: a Director's once
it listens, a Worker's "ready" once it has registered with its Director.
``worker`` runs the Worker's supervisor (:mod:`pyfaas.worker.supervisor`)
unless its config says ``supervise = false``; the supervisor runs this
same command again, with hidden options, for the Worker itself.
"""

import argparse
import logging
import os
import signal
import ssl
import sys

from ..errors import (PyFaaSAuthenticationError, PyFaaSConfigError,
                     PyFaaSError)
from ..version import __version__

USAGE_ERROR = 2
INIT_HINT = ("python -m pyfaas init DIR writes a commented director.toml, "
             "worker.toml and client.toml to start from")


def _fail(message):
    print("pyfaas: error: %s" % message, file=sys.stderr)
    return USAGE_ERROR


def _config_missing(role, path):
    """The one-line error for a missing ``role`` file, or None."""
    if path is None:
        return _fail("%s: no configuration file given (python -m pyfaas %s "
                     "FILE); %s" % (role, role, INIT_HINT))
    if not os.path.exists(path):
        return _fail("%s: no such file; %s" % (path, INIT_HINT))
    return None


def _on_signals(callback):
    def handler(signum, frame):
        callback()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run_director(path):
    """Load the config, serve until SIGINT/SIGTERM; return the exit code."""
    from ..config import load_director_config
    from ..director.loop import Director
    from ..logs import setup_logging
    from ..security import is_loopback, load_token
    missing = _config_missing("director", path)
    if missing is not None:
        return missing
    cfg = load_director_config(path)
    token = load_token(cfg.token_file, path)
    if token is None and not is_loopback(cfg.director_ip_addr) \
            and not cfg.allow_insecure:
        return _fail(
            "%s: [network] director_ip_addr: refusing to listen on %s without"
            " a cluster token: anyone who can reach this port could run code "
            "on every Worker. Set [security] token_file (or $PYFAAS_TOKEN), "
            "or set [security] allow_insecure = true to accept the risk."
            % (path, cfg.director_ip_addr))
    log = setup_logging("director", cfg.log_level, cfg.log_directory,
                        cfg.log_filename)
    try:
        director = Director(cfg, token)
    except (OSError, ssl.SSLError) as exc:
        return _fail("%s: cannot start the director on %s:%s: %s" % (
            path, cfg.director_ip_addr, cfg.director_port,
            getattr(exc, "strerror", None) or exc))
    if token is None:
        log.warning("no cluster token: any local process that can connect "
                    "to %s:%s can run code on the Workers (set [security] "
                    "token_file or $PYFAAS_TOKEN)", *director.address)
    _on_signals(director.shutdown)
    if cfg.greeting_msg:
        print(cfg.greeting_msg)
    if director.monitoring is not None:  # (before "listening": see
        # tools/local_cluster.py, which reads both)
        print("PyFaaS director monitoring on %s" % director.monitoring.url,
              flush=True)
    print("PyFaaS director listening on %s:%d" % director.address, flush=True)
    director.serve_forever()
    print("PyFaaS director stopped", flush=True)
    return 0


def run_worker(path, args=None):
    """Load the config, serve until stopped; return the exit code.

    ``args``: the parsed command line, whose hidden options say that a
    supervisor started this process (see :mod:`pyfaas.worker.supervisor`).
    """
    from ..config import load_worker_config
    from ..logs import enable_crash_traces, setup_logging
    from ..worker.service import Worker
    from ..worker.supervisor import (RECYCLE_EXIT, Supervision,
                                     Supervisor, SupervisorLink)
    from ..security import load_token
    missing = _config_missing("worker", path)
    if missing is not None:
        return missing
    cfg = load_worker_config(path)
    token = load_token(cfg.token_file, path)
    link_fd = getattr(args, "supervised", None)
    # (The supervisor needs POSIX: SIGCHLD and passing a descriptor.)
    if cfg.supervise and link_fd is None and hasattr(signal, "SIGCHLD"):
        setup_logging("worker supervisor", cfg.log_level, cfg.log_directory,
                      cfg.log_filename)
        return Supervisor(cfg, path).run()
    setup_logging("worker", cfg.log_level, cfg.log_directory, cfg.log_filename)
    enable_crash_traces(cfg.log_directory, cfg.log_filename)
    supervision = Supervision(link_fd, getattr(args, "restarts", 0),
                              getattr(args, "last_cause", None))
    greeted = []

    def registered(worker_id, director):
        # Ready means registered: the greeting waits for the Director.
        if greeted:
            return
        greeted.append(worker_id)
        try:
            if cfg.greeting_msg:
                print(cfg.greeting_msg)
            print("PyFaaS worker %s ready: registered with the director at "
                  "%s" % (worker_id, director), flush=True)
        except OSError:
            pass  # no stdout to print to: the Worker works on

    worker = Worker(cfg, getattr(args, "worker_id", None), token, supervision,
                    on_registered=registered)
    # Name the Worker in every log line: several may share a log file.
    setup_logging("worker %s" % worker.worker_id, cfg.log_level,
                  cfg.log_directory, cfg.log_filename)
    _on_signals(worker.stop)
    if link_fd is not None:
        SupervisorLink(link_fd, worker.stop).start(worker.worker_id)
    print("PyFaaS worker %s starting: waiting for the director at %s:%d" % (
        worker.worker_id, cfg.director_ip_addr, cfg.director_port), flush=True)
    try:
        worker.serve_forever()
    except PyFaaSAuthenticationError as exc:
        return _fail("%s: %s" % (path, exc))
    if worker.recycle_reason:
        # Its stuck threads may hold locks an orderly exit would wait for.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(RECYCLE_EXIT)
    print("PyFaaS worker %s stopped" % worker.worker_id, flush=True)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pyfaas", description="PyFaaS: remote function execution.")
    parser.add_argument("--version", action="version",
                        version="%(prog)s " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    i = sub.add_parser("init", help="write a commented director.toml, "
                                    "worker.toml and client.toml")
    i.add_argument("dir", nargs="?", default=".", help="directory to write "
                   "them into (created if needed; default: the current one)")
    i.add_argument("--port", type=int, default=40000,
                   help="the Director's port (default: 40000)")
    i.add_argument("--token", action="store_true",
                   help="also write a new cluster token file (mode 0600) "
                        "and name it in all three files")
    i.add_argument("--force", action="store_true",
                   help="overwrite files that exist")
    d = sub.add_parser("director", help="run the Director")
    d.add_argument("config", nargs="?", help="Director TOML file (python -m "
                                             "pyfaas init writes one)")
    w = sub.add_parser("worker", help="run a Worker")
    w.add_argument("config", nargs="?", help="Worker TOML file (python -m "
                                             "pyfaas init writes one)")
    # Set by the Worker's supervisor for the process it starts.
    w.add_argument("--supervised", type=int, help=argparse.SUPPRESS)
    w.add_argument("--worker-id", help=argparse.SUPPRESS)
    w.add_argument("--restarts", type=int, default=0, help=argparse.SUPPRESS)
    w.add_argument("--last-cause", help=argparse.SUPPRESS)
    sub.add_parser("demo", help="start a local cluster, call a few functions,"
                                " stop it")
    st = sub.add_parser("status", help="show the workers and functions of a "
                                       "running cluster")
    st.add_argument("--config", help="client TOML file (default: "
                                     "$PYFAAS_CONFIG, else 127.0.0.1:40000)")
    st.add_argument("--json", action="store_true", help="print JSON (the "
                    "document the monitoring endpoint serves as /api/status)")
    st.add_argument("--watch", nargs="?", type=float, const=2.0,
                    metavar="SECONDS", help="redraw in place every SECONDS "
                    "(default 2) until Ctrl-C; with --json, one document a "
                    "line")
    b = sub.add_parser("bench", help="measure latency, throughput and memory",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("--workers", type=int, default=2,
                   help="Workers of the local cluster")
    b.add_argument("--calls", type=int, default=2000,
                   help="synchronous calls timed")
    b.add_argument("--async-calls", type=int, default=10000,
                   help="calls of the asynchronous run (map)")
    b.add_argument("--mib-rounds", type=int, default=30,
                   help="1 MiB round trips timed")
    b.add_argument("--config", help="benchmark an existing cluster (client "
                                    "TOML file) instead of a local one")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("--cpu", type=int, metavar="N",
                   help="run everything the benchmark starts on CPU N only "
                        "(Linux): PyFaaS and the floor then pay the same "
                        "wake-ups, wherever the scheduler would have put "
                        "them")
    b.add_argument("--monitoring", action="store_true",
                   help="run the local Director with its monitoring "
                        "endpoint on and scrape /metrics every second")
    wf = sub.add_parser("workflow", help="workflow tools: template, validate, "
                                         "run")
    wsub = wf.add_subparsers(dest="action", metavar="ACTION")
    wsub.required = True
    t = wsub.add_parser("template", help="print a skeleton workflow")
    t.add_argument("--steps", type=int, default=3, help="number of steps")
    v = wsub.add_parser("validate", help="check a workflow file's structure "
                                         "offline")
    v.add_argument("file")
    r = wsub.add_parser("run", help="run a workflow file on a cluster")
    r.add_argument("file")
    r.add_argument("--config", help="client TOML file")
    r.add_argument("--timeout", type=float, help="seconds for the whole "
                                                 "workflow")
    return parser


def main(argv=None):
    """Entry point of ``python -m pyfaas`` and the ``pyfaas`` script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "init":
            from .scaffold import run_init
            return run_init(args.dir, args.port, args.token, args.force)
        if args.command == "director":
            return run_director(args.config)
        if args.command == "worker":
            return run_worker(args.config, args)
        if args.command == "demo":
            from .demo import run_demo
            return run_demo()
        if args.command == "workflow":
            from .workflow_cli import run_workflow_command
            return run_workflow_command(args)
        if args.command == "bench":
            from .bench import run_bench
            run_bench(args.workers, args.calls, args.async_calls,
                      args.mib_rounds, args.config, args.json, cpu=args.cpu,
                      monitoring=args.monitoring)
            return 0
        if args.command == "status":
            from .status import run_status
            return run_status(args.config, args.json, args.watch)
    except PyFaaSConfigError as exc:
        return _fail(str(exc))
    except PyFaaSError as exc:  # e.g. the Director cannot be reached
        print("pyfaas: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return USAGE_ERROR
