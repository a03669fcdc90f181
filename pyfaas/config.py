"""The TOML configuration files of the Director, the Workers and clients.

Owns the schema of the three files (the tables below are the source of
truth for every key, its meaning, its valid values and its default;
docs/configuration.md is their reference for readers, checked against them
by tests/test_docs.py), the frozen dataclass each file loads into, and the
one-line error messages for bad files. It does not own logging setup (``logs.py``), a search path for
config files, or any process-global configuration: every loader call reads
the file again and returns a new immutable object.

Every problem is raised as :class:`PyFaaSConfigError` with a single line that
names the file, the ``[section] key`` and what was expected, for example::

    configs/worker.toml: [network] director_port: expected an integer from 1 to 65535, got 70000

Unknown sections and keys are errors (a typo must not silently fall back to
a default). Relative paths in the files (log directory, dump file) are kept
as written; they are relative to the working directory of the process.
"""

import math
import os
from dataclasses import dataclass

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

from .errors import PyFaaSConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
STRATEGIES = ("Random", "Round-Robin", "Least-Loaded")
CACHE_POLICIES = ("LRU",)
ISOLATION_MODES = ("thread", "process")
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
MIN_FRAME_BYTES = 64 * 1024
DEFAULT_MAX_PENDING_CALLS = 10000
# Bytes of call arguments in flight (see docs/configuration.md, "Memory"):
# the Director's whole budget, and each Worker's own.
DEFAULT_MAX_PENDING_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024
MAX_THREADS_LIMIT = 1024


# ---------------------------------------------------------------------------
# Value checkers. Each has ``what`` (used in messages) and ``check(value)``,
# which returns the value to store or raises ValueError.

class _Check:
    def __init__(self, what, accept, convert=None):
        self.what = what
        self._accept = accept
        self._convert = convert

    def check(self, value):
        if not self._accept(value):
            raise ValueError(self.what)
        return self._convert(value) if self._convert else value


def _is_int(value):
    # bool is a subclass of int: `port = true` must not load as 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _int(low, high=None):
    if high is None:
        what = "an integer >= %d" % low
    else:
        what = "an integer from %d to %d" % (low, high)
    return _Check(what, lambda v: _is_int(v) and low <= v
                  and (high is None or v <= high))


def _positive_number():
    def accept(v):
        return ((_is_int(v) or isinstance(v, float))
                and math.isfinite(v) and v > 0)
    return _Check("a number > 0", accept, float)


def _non_negative_number():
    def accept(v):
        return ((_is_int(v) or isinstance(v, float))
                and math.isfinite(v) and v >= 0)
    return _Check("a number >= 0", accept, float)


def _str(non_empty=False):
    if non_empty:
        return _Check("a non-empty string",
                      lambda v: isinstance(v, str) and v != "")
    return _Check("a string", lambda v: isinstance(v, str))


def _bool():
    return _Check("true or false", lambda v: isinstance(v, bool))


def _one_of(values):
    what = "one of " + ", ".join(repr(v) for v in values)
    return _Check(what, lambda v: isinstance(v, str) and v in values)


def _log_level():
    what = '"" (off) or one of %s (any case)' % ", ".join(LOG_LEVELS)
    return _Check(what, lambda v: isinstance(v, str)
                  and (v == "" or v.lower() in LOG_LEVELS), str.lower)


# ---------------------------------------------------------------------------
# The schema: section -> key -> _Field. Sections are listed in file order.

_REQUIRED = object()


class _Field:
    def __init__(self, checker, default=_REQUIRED, attr=None):
        self.checker = checker
        self.default = default      # _REQUIRED, a value, or a callable
        self.attr = attr            # dataclass attribute if not the key

    def default_value(self):
        return self.default() if callable(self.default) else self.default


def _default_threads():
    return min(os.cpu_count() or 1, MAX_THREADS_LIMIT)


# Optional in every [network]: largest frame accepted from a peer, in bytes.
# Default DEFAULT_MAX_FRAME_BYTES (64 MiB).
_MAX_FRAME_BYTES = _Field(_int(MIN_FRAME_BYTES, 2 ** 32 - 1),
                          DEFAULT_MAX_FRAME_BYTES)


def _security(role):
    """The optional [security] section (docs/security.md)."""
    fields = {
        # File holding the shared cluster token (first line, stripped).
        # "" = use $PYFAAS_TOKEN if set, else no token.
        "token_file": _Field(_str(), ""),
    }
    if role == "director":
        fields.update({
            # true: accept running on a non-loopback address without a token.
            "allow_insecure": _Field(_bool(), False),
            # PEM certificate and key: serve TLS when both are set.
            "tls_cert_file": _Field(_str(), ""),
            "tls_key_file": _Field(_str(), ""),
            # Seconds a new connection has to finish its handshake.
            "handshake_timeout_s": _Field(_positive_number(), 5.0),
        })
    else:
        fields.update({
            # true: connect to the Director with TLS.
            "tls": _Field(_bool(), False),
            # CA bundle (PEM) to verify the Director's certificate;
            # "" = the system's default CAs.
            "tls_ca_file": _Field(_str(), ""),
        })
    return fields


def _file_logging():
    return {
        # Level of stdout logging, any case; "" turns stdout logging off
        # (the log file then gets INFO and above).
        "log_level": _Field(_log_level()),
        # Directory of the log file; created with its parents at start;
        # "" = the working directory.
        "log_directory": _Field(_str()),
        # Name of the log file inside log_directory; appended to.
        "log_filename": _Field(_str(non_empty=True)),
    }


_DIRECTOR_SCHEMA = {
    "network": {
        # Address the Director listens on.
        "director_ip_addr": _Field(_str(non_empty=True)),
        # TCP port; 0 picks a free port (printed at start).
        "director_port": _Field(_int(0, 65535)),
        "max_frame_bytes": _MAX_FRAME_BYTES,
        # Most client calls in flight at once; further calls are refused
        # as overloaded. Default DEFAULT_MAX_PENDING_CALLS (10000).
        "max_pending_calls": _Field(_int(1), DEFAULT_MAX_PENDING_CALLS),
        # Most connections open at once; more are closed at accept.
        "max_connections": _Field(_int(1), 1024),
        # Bytes of call arguments sent to Workers and not yet answered;
        # further calls are refused as overloaded.
        "max_pending_bytes": _Field(_int(1), DEFAULT_MAX_PENDING_BYTES),
        # Connections still in their handshake, in all and from one
        # address; past either, the oldest of them is closed.
        "max_handshaking": _Field(_int(1), 64),
        "max_handshaking_per_addr": _Field(_int(1), 16),
        # Seconds a SIGTERM'd Director lets running calls finish.
        "shutdown_grace_s": _Field(_non_negative_number(), 10.0),
        # Seconds a peer may leave a frame unfinished with nothing more
        # arriving before its connection is closed.
        "frame_timeout_s": _Field(_positive_number(), 30.0),
    },
    "logging": _file_logging(),
    "statistics": {
        # Collect per-function statistics.
        "enabled": _Field(_bool(), attr="statistics_enabled"),
    },
    "workers": {
        # How often the Director looks for Workers gone silent (ms).
        "heartbeat_check_interval_ms": _Field(_int(1)),
        # How often Workers are expected to send a heartbeat (ms).
        "expected_heartbeat_interval_ms": _Field(_int(1)),
        # How a call picks its Worker: one of STRATEGIES, exact spelling.
        "worker_selection_strategy": _Field(_one_of(STRATEGIES)),
        # Workers a call may kill before it fails as poison (not re-run).
        "max_call_crashes": _Field(_int(1), 3),
        # After start, calls naming a function no Worker holds wait this
        # long (ms) for Workers to come back and announce it; 0 = never.
        "startup_grace_ms": _Field(_int(0), 3000),
    },
    "misc": {
        # Printed to stdout when the Director is ready.
        "greeting_msg": _Field(_str()),
    },
    "security": _security("director"),
    "monitoring": {
        # true: serve /metrics, /api/status and the dashboard over HTTP
        # (read-only; see docs/monitoring.md).
        "enabled": _Field(_bool(), False, attr="monitoring_enabled"),
        # Address and port of that HTTP endpoint; port 0 picks a free one.
        # Not loopback: requests must carry the cluster token.
        "address": _Field(_str(non_empty=True), "127.0.0.1",
                          attr="monitoring_address"),
        "port": _Field(_int(0, 65535), 40080, attr="monitoring_port"),
    },
}

_WORKER_SCHEMA = {
    "network": {
        # Address and port of the Director to register with.
        "director_ip_addr": _Field(_str(non_empty=True)),
        "director_port": _Field(_int(1, 65535)),
        # How often the Worker sends a heartbeat to the Director (ms).
        "heartbeat_interval_ms": _Field(_int(1)),
        "max_frame_bytes": _MAX_FRAME_BYTES,
    },
    "statistics": {
        # Collect per-function execution statistics.
        "enabled": _Field(_bool(), attr="statistics_enabled"),
    },
    "logging": _file_logging(),
    "behavior": {
        # File the Worker's state is saved to / restored from.
        "dump_file": _Field(_str(non_empty=True)),
        # true: save state at shutdown and load it at start.
        "shutdown_persistence": _Field(_bool()),
        # Threads running calls at once. Default: the CPU count (max 1024).
        "max_threads": _Field(_int(1, MAX_THREADS_LIMIT), _default_threads),
        # Seconds a call may run before its caller gets a timeout error;
        # 0 = no limit. A call's own timeout= wins when shorter.
        "call_timeout_s": _Field(_non_negative_number(), 0.0),
        # Where calls run: "thread" (the Worker's pool) or "process"
        # (a pool of child processes; a crash only kills the child).
        "isolation": _Field(_one_of(ISOLATION_MODES), "thread"),
        # Limits of each child process with isolation = "process";
        # 0 = none. Address space in MiB, CPU time in seconds.
        "memory_limit_mb": _Field(_int(0), 0),
        "cpu_time_limit_s": _Field(_int(0), 0),
        # Bytes of call arguments the Director may have in flight to this
        # Worker (announced at registration).
        "max_inflight_bytes": _Field(_int(1), DEFAULT_MAX_INFLIGHT_BYTES),
        # `python -m pyfaas worker` runs a supervising parent that restarts
        # the Worker when it dies, unless this is false; it gives up after
        # max_restarts crashes within restart_window_s seconds.
        "supervise": _Field(_bool(), True),
        "max_restarts": _Field(_int(0), 10),
        "restart_window_s": _Field(_positive_number(), 60.0),
    },
    "behavior.caching": {
        # Replacement policy of the result cache: one of CACHE_POLICIES.
        "policy": _Field(_one_of(CACHE_POLICIES), attr="cache_policy"),
        # Most cached results; 0 disables caching.
        "max_size": _Field(_int(0), attr="cache_max_size"),
    },
    "misc": {
        # Printed to stdout when the Worker is ready.
        "greeting_msg": _Field(_str()),
    },
    "security": _security("worker"),
}

_CLIENT_SCHEMA = {
    "network": {
        # Address and port of the Director.
        "director_ip_addr": _Field(_str(non_empty=True)),
        "director_port": _Field(_int(1, 65535)),
        # Longest wait for the Director's answer to one request (seconds).
        "receive_timeout_s": _Field(_positive_number()),
        "max_frame_bytes": _MAX_FRAME_BYTES,
    },
    "misc": {
        # Level of the client's stdout logging, any case; "" = off.
        "log_level": _Field(_log_level()),
    },
    "security": _security("client"),
}


# ---------------------------------------------------------------------------
# The dataclasses. The meaning of each attribute is in the schema above.

@dataclass(frozen=True)
class DirectorConfig:
    """Settings of a Director, loaded by :func:`load_director_config`."""

    path: str
    director_ip_addr: str
    director_port: int
    max_frame_bytes: int
    max_pending_calls: int
    log_level: str
    log_directory: str
    log_filename: str
    statistics_enabled: bool
    heartbeat_check_interval_ms: int
    expected_heartbeat_interval_ms: int
    worker_selection_strategy: str
    greeting_msg: str
    max_connections: int = 1024
    shutdown_grace_s: float = 10.0
    frame_timeout_s: float = 30.0
    token_file: str = ""
    allow_insecure: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    handshake_timeout_s: float = 5.0
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    max_handshaking: int = 64
    max_handshaking_per_addr: int = 16
    max_call_crashes: int = 3
    startup_grace_ms: int = 3000
    monitoring_enabled: bool = False
    monitoring_address: str = "127.0.0.1"
    monitoring_port: int = 40080


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of a Worker, loaded by :func:`load_worker_config`."""

    path: str
    director_ip_addr: str
    director_port: int
    heartbeat_interval_ms: int
    max_frame_bytes: int
    statistics_enabled: bool
    log_level: str
    log_directory: str
    log_filename: str
    dump_file: str
    shutdown_persistence: bool
    max_threads: int
    cache_policy: str
    cache_max_size: int
    greeting_msg: str
    call_timeout_s: float = 0.0
    isolation: str = "thread"
    memory_limit_mb: int = 0
    cpu_time_limit_s: int = 0
    token_file: str = ""
    tls: bool = False
    tls_ca_file: str = ""
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    supervise: bool = True
    max_restarts: int = 10
    restart_window_s: float = 60.0


@dataclass(frozen=True)
class ClientConfig:
    """Settings of a client, loaded by :func:`load_client_config`."""

    path: str
    director_ip_addr: str
    director_port: int
    receive_timeout_s: float
    max_frame_bytes: int
    log_level: str
    token_file: str = ""
    tls: bool = False
    tls_ca_file: str = ""


# ---------------------------------------------------------------------------
# Loading.

def _read_toml(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise PyFaaSConfigError("%s: no such file" % path) from None
    except OSError as exc:
        raise PyFaaSConfigError(
            "%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PyFaaSConfigError("%s: not valid TOML: not UTF-8 text (byte %d)"
                                % (path, exc.start)) from None
    except tomllib.TOMLDecodeError as exc:
        message = " ".join(str(exc).split())  # keep it on one line
        raise PyFaaSConfigError(
            "%s: not valid TOML: %s" % (path, message)) from None


def _check_names(path, schema, table, section):
    """Raise for the first key or sub-table of ``table`` the schema lacks."""
    known = schema.get(section, {})
    for key, value in table.items():
        name = key if not section else section + "." + key
        if key in known:
            continue
        if name in schema:
            if not isinstance(value, dict):
                raise PyFaaSConfigError("%s: [%s]: expected a table, got %r"
                                        % (path, name, value))
            _check_names(path, schema, value, name)
        elif isinstance(value, dict):
            raise PyFaaSConfigError(
                "%s: [%s]: unknown section (valid sections: %s)"
                % (path, name, ", ".join(schema)))
        elif not section:
            raise PyFaaSConfigError(
                "%s: %s: unknown key outside any section (valid sections: %s)"
                % (path, key, ", ".join(schema)))
        else:
            raise PyFaaSConfigError(
                "%s: [%s] %s: unknown key (valid keys: %s)"
                % (path, section, key, ", ".join(known)))


def _section(doc, section):
    table = doc
    for part in section.split("."):
        table = table.get(part, {})
    return table


def _load(path, schema, cls):
    path = str(path)
    doc = _read_toml(path)
    _check_names(path, schema, doc, "")
    values = {"path": path}
    for section, fields in schema.items():
        table = _section(doc, section)
        for key, field in fields.items():
            if key not in table:
                if field.default is _REQUIRED:
                    raise PyFaaSConfigError(
                        "%s: [%s] %s: missing (expected %s)"
                        % (path, section, key, field.checker.what))
                value = field.default_value()
            else:
                try:
                    value = field.checker.check(table[key])
                except ValueError:
                    raise PyFaaSConfigError(
                        "%s: [%s] %s: expected %s, got %r"
                        % (path, section, key, field.checker.what,
                           table[key])) from None
            values[field.attr or key] = value
    return cls(**values)


# Each loader reads a TOML file (str or path-like) and returns the frozen
# dataclass, or raises PyFaaSConfigError with a one-line message naming the
# file, the key and what was expected (missing, unreadable, not TOML, or a
# missing, unknown or invalid key).

def load_director_config(path):
    """The :class:`DirectorConfig` of a Director's TOML file."""
    return _load(path, _DIRECTOR_SCHEMA, DirectorConfig)


def load_worker_config(path):
    """The :class:`WorkerConfig` of a Worker's TOML file."""
    return _load(path, _WORKER_SCHEMA, WorkerConfig)


def load_client_config(path):
    """The :class:`ClientConfig` of a client's TOML file."""
    return _load(path, _CLIENT_SCHEMA, ClientConfig)
