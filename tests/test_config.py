"""Pure tests of config.py and logs.py: TOML files in tmp_path, no sockets."""

import dataclasses
import logging
import os
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

from pyfaas import config, logs
from pyfaas.errors import PyFaaSConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
LOADERS = {
    "director": config.load_director_config,
    "worker": config.load_worker_config,
    "client": config.load_client_config,
}
DEFAULT_THREADS = min(os.cpu_count() or 1, 1024)
DELETE = object()


def _sections(kind):
    """The shipped ``kind`` config as {"section": {key: value}}, flattened."""
    with open(CONFIGS / (kind + ".toml"), "rb") as f:
        doc = tomllib.load(f)
    out = {}

    def walk(prefix, table):
        out[prefix] = {}
        for key, value in table.items():
            if isinstance(value, dict):
                walk(prefix + "." + key, value)
            else:
                out[prefix][key] = value

    for name, table in doc.items():
        walk(name, table)
    return out


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    return repr(value)  # int, float (inf and nan are valid TOML too)


def _write(tmp_path, sections):
    lines = []
    for name, table in sections.items():
        lines.append("[%s]" % name)
        lines.extend("%s = %s" % (k, _toml_value(v)) for k, v in table.items())
    path = tmp_path / "test.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _load(tmp_path, kind, edits=()):
    """Write the shipped ``kind`` config with ``edits`` applied and load it.

    An edit is (section, key, value); value DELETE removes the key, and
    key None with value DELETE removes the whole section.
    """
    sections = _sections(kind)
    for section, key, value in edits:
        if key is None:
            del sections[section]
        elif value is DELETE:
            del sections[section][key]
        else:
            sections.setdefault(section, {})[key] = value
    path = _write(tmp_path, sections)
    return path, LOADERS[kind](path)


def _error(tmp_path, kind, edits):
    with pytest.raises(PyFaaSConfigError) as info:
        _load(tmp_path, kind, edits)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture(autouse=True)
def _clean_loggers():
    yield
    for name in ("pyfaas", "pyfaas.client"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


# ---------------------------------------------------------------------------
# The shipped files.

def test_shipped_director_config():
    c = config.load_director_config(CONFIGS / "director.toml")
    assert c.path == str(CONFIGS / "director.toml")
    assert (c.director_ip_addr, c.director_port) == ("127.0.0.1", 40000)
    assert c.max_frame_bytes == config.DEFAULT_MAX_FRAME_BYTES
    assert c.max_pending_calls == 10000
    assert (c.log_level, c.log_directory) == ("info", "pyfaas_director/logs")
    assert c.log_filename and c.statistics_enabled is True
    assert c.heartbeat_check_interval_ms == 1000
    assert c.expected_heartbeat_interval_ms == 1000
    assert c.worker_selection_strategy == "Round-Robin"
    assert c.greeting_msg == "PyFaaS director ready"


def test_shipped_worker_config():
    c = config.load_worker_config(str(CONFIGS / "worker.toml"))
    assert (c.director_ip_addr, c.director_port) == ("127.0.0.1", 40000)
    assert c.heartbeat_interval_ms == 1000
    assert c.max_frame_bytes == config.DEFAULT_MAX_FRAME_BYTES
    assert (c.log_level, c.log_directory) == ("info", "pyfaas_worker/logs")
    assert c.dump_file == "pyfaas_worker/worker_dump.bin"
    assert c.shutdown_persistence is True and c.statistics_enabled is True
    assert c.max_threads == DEFAULT_THREADS
    assert (c.cache_policy, c.cache_max_size) == ("LRU", 128)
    assert c.greeting_msg == "PyFaaS worker ready"


def test_shipped_client_config():
    c = config.load_client_config(CONFIGS / "client.toml")
    assert (c.director_ip_addr, c.director_port) == ("127.0.0.1", 40000)
    assert c.receive_timeout_s == 20.0
    assert isinstance(c.receive_timeout_s, float)
    assert c.max_frame_bytes == config.DEFAULT_MAX_FRAME_BYTES
    assert c.log_level == "info"


def test_config_is_frozen():
    c = config.load_client_config(CONFIGS / "client.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.director_port = 1


# ---------------------------------------------------------------------------
# File-level errors.

@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_missing_file(tmp_path, kind):
    path = tmp_path / "nope.toml"
    with pytest.raises(PyFaaSConfigError) as info:
        LOADERS[kind](path)
    assert str(info.value) == "%s: no such file" % path


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_unreadable_file(tmp_path, kind):
    with pytest.raises(PyFaaSConfigError) as info:
        LOADERS[kind](tmp_path)  # a directory cannot be read as a file
    assert str(info.value).startswith("%s: cannot read: " % tmp_path)


@pytest.mark.parametrize("text", [
    "[network\ndirector_port = 1\n",
    "[network]\ndirector_port = \n",
    "[network]\na = 1\na = 2\n",
    b"[misc]\ngreeting_msg = \"\xff\"\n",
])
def test_not_toml(tmp_path, text):
    path = tmp_path / "bad.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(PyFaaSConfigError) as info:
        config.load_client_config(path)
    message = str(info.value)
    assert message.startswith("%s: not valid TOML: " % path)
    assert "\n" not in message


def test_section_not_a_table(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('network = 5\n[misc]\nlog_level = "info"\n')
    with pytest.raises(PyFaaSConfigError) as info:
        config.load_client_config(path)
    assert str(info.value) == "%s: [network]: expected a table, got 5" % path


# ---------------------------------------------------------------------------
# Key-level errors: (kind, edits, message after "<path>: ").

PORT = "expected an integer from 1 to 65535"
DIRECTOR_SECTIONS = ("network, logging, statistics, workers, misc, security,"
                     " monitoring")
WORKER_SECTIONS = ("network, statistics, logging, behavior, behavior.caching,"
                   " misc, security")
LEVELS = '"" (off) or one of debug, info, warning, error, critical (any case)'

ERRORS = [
    # missing keys and sections
    ("director", [("network", "director_port", DELETE)],
     "[network] director_port: missing (expected an integer from 0 to 65535)"),
    ("worker", [("behavior.caching", "max_size", DELETE)],
     "[behavior.caching] max_size: missing (expected an integer >= 0)"),
    ("worker", [("behavior.caching", None, DELETE)],
     "[behavior.caching] policy: missing (expected one of 'LRU')"),
    ("client", [("misc", None, DELETE)],
     "[misc] log_level: missing (expected %s)" % LEVELS),
    ("director", [("statistics", "enabled", DELETE)],
     "[statistics] enabled: missing (expected true or false)"),
    # unknown keys and sections
    ("worker", [("behavior", "dump_fil", "x")],
     "[behavior] dump_fil: unknown key (valid keys: dump_file,"
     " shutdown_persistence, max_threads, call_timeout_s, isolation,"
     " memory_limit_mb, cpu_time_limit_s, max_inflight_bytes, supervise,"
     " max_restarts, restart_window_s)"),
    ("worker", [("behavior.caching", "ttl", 5)],
     "[behavior.caching] ttl: unknown key (valid keys: policy, max_size)"),
    ("client", [("network", "receive_timeout", 5)],
     "[network] receive_timeout: unknown key (valid keys: director_ip_addr,"
     " director_port, receive_timeout_s, max_frame_bytes)"),
    ("director", [("extra", "a", 1)],
     "[extra]: unknown section (valid sections: %s)" % DIRECTOR_SECTIONS),
    ("worker", [("behavior.cache", "policy", "LRU")],
     "[behavior.cache]: unknown section (valid sections: %s)"
     % WORKER_SECTIONS),
    # wrong types
    ("director", [("network", "director_port", "40000")],
     "[network] director_port: expected an integer from 0 to 65535,"
     " got '40000'"),
    ("worker", [("network", "heartbeat_interval_ms", True)],
     "[network] heartbeat_interval_ms: expected an integer >= 1, got True"),
    ("worker", [("network", "director_port", 40000.0)],
     "[network] director_port: %s, got 40000.0" % PORT),
    ("director", [("statistics", "enabled", 1)],
     "[statistics] enabled: expected true or false, got 1"),
    ("worker", [("behavior", "shutdown_persistence", "yes")],
     "[behavior] shutdown_persistence: expected true or false, got 'yes'"),
    ("client", [("network", "receive_timeout_s", "20")],
     "[network] receive_timeout_s: expected a number > 0, got '20'"),
    ("client", [("network", "receive_timeout_s", True)],
     "[network] receive_timeout_s: expected a number > 0, got True"),
    ("director", [("misc", "greeting_msg", 1)],
     "[misc] greeting_msg: expected a string, got 1"),
    # bad values
    ("director", [("workers", "worker_selection_strategy", "round-robin")],
     "[workers] worker_selection_strategy: expected one of 'Random',"
     " 'Round-Robin', 'Least-Loaded', got 'round-robin'"),
    ("worker", [("behavior.caching", "policy", "FIFO")],
     "[behavior.caching] policy: expected one of 'LRU', got 'FIFO'"),
    ("director", [("network", "director_port", 70000)],
     "[network] director_port: expected an integer from 0 to 65535,"
     " got 70000"),
    ("director", [("network", "director_port", -1)],
     "[network] director_port: expected an integer from 0 to 65535, got -1"),
    ("worker", [("network", "director_port", 70000)],
     "[network] director_port: %s, got 70000" % PORT),
    ("worker", [("network", "director_port", -1)],
     "[network] director_port: %s, got -1" % PORT),
    ("worker", [("network", "director_port", 0)],
     "[network] director_port: %s, got 0" % PORT),
    ("client", [("network", "director_port", 70000)],
     "[network] director_port: %s, got 70000" % PORT),
    ("client", [("network", "director_port", -1)],
     "[network] director_port: %s, got -1" % PORT),
    ("client", [("network", "director_port", 0)],
     "[network] director_port: %s, got 0" % PORT),
    ("client", [("network", "receive_timeout_s", 0)],
     "[network] receive_timeout_s: expected a number > 0, got 0"),
    ("client", [("network", "receive_timeout_s", -1.5)],
     "[network] receive_timeout_s: expected a number > 0, got -1.5"),
    ("client", [("network", "receive_timeout_s", float("inf"))],
     "[network] receive_timeout_s: expected a number > 0, got inf"),
    ("client", [("network", "receive_timeout_s", float("nan"))],
     "[network] receive_timeout_s: expected a number > 0, got nan"),
    ("worker", [("behavior.caching", "max_size", -1)],
     "[behavior.caching] max_size: expected an integer >= 0, got -1"),
    ("director", [("workers", "heartbeat_check_interval_ms", 0)],
     "[workers] heartbeat_check_interval_ms: expected an integer >= 1,"
     " got 0"),
    ("director", [("network", "director_ip_addr", "")],
     "[network] director_ip_addr: expected a non-empty string, got ''"),
    ("director", [("logging", "log_filename", "")],
     "[logging] log_filename: expected a non-empty string, got ''"),
    ("worker", [("behavior", "dump_file", "")],
     "[behavior] dump_file: expected a non-empty string, got ''"),
    ("director", [("monitoring", "enable", True)],
     "[monitoring] enable: unknown key (valid keys: enabled, address, port)"),
    ("director", [("monitoring", "enabled", "yes")],
     "[monitoring] enabled: expected true or false, got 'yes'"),
    ("director", [("monitoring", "port", 65536)],
     "[monitoring] port: expected an integer from 0 to 65535, got 65536"),
    ("director", [("monitoring", "address", "")],
     "[monitoring] address: expected a non-empty string, got ''"),
    # optional keys out of range
    ("director", [("network", "max_frame_bytes", 65535)],
     "[network] max_frame_bytes: expected an integer from 65536 to"
     " 4294967295, got 65535"),
    ("client", [("network", "max_frame_bytes", 2 ** 32)],
     "[network] max_frame_bytes: expected an integer from 65536 to"
     " 4294967295, got 4294967296"),
    ("director", [("network", "max_pending_calls", 0)],
     "[network] max_pending_calls: expected an integer >= 1, got 0"),
    ("worker", [("behavior", "max_threads", 0)],
     "[behavior] max_threads: expected an integer from 1 to 1024, got 0"),
    ("worker", [("behavior", "max_threads", 1025)],
     "[behavior] max_threads: expected an integer from 1 to 1024, got 1025"),
    # log levels
    ("director", [("logging", "log_level", "verbose")],
     "[logging] log_level: expected %s, got 'verbose'" % LEVELS),
    ("worker", [("logging", "log_level", 10)],
     "[logging] log_level: expected %s, got 10" % LEVELS),
    ("client", [("misc", "log_level", "trace")],
     "[misc] log_level: expected %s, got 'trace'" % LEVELS),
]


@pytest.mark.parametrize("kind, edits, expected", ERRORS)
def test_error_message(tmp_path, kind, edits, expected):
    message = _error(tmp_path, kind, edits)
    assert message == "%s: %s" % (tmp_path / "test.toml", expected)


def test_top_level_key_is_an_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("oops = 1\n" + (CONFIGS / "client.toml").read_text())
    with pytest.raises(PyFaaSConfigError) as info:
        config.load_client_config(path)
    assert str(info.value) == (
        "%s: oops: unknown key outside any section (valid sections:"
        " network, misc, security)" % path)


# ---------------------------------------------------------------------------
# Accepted values and defaults.

ACCEPTED = [
    ("director", [("network", "director_port", 0)], "director_port", 0),
    ("director", [("network", "director_port", 65535)], "director_port",
     65535),
    ("client", [("network", "director_port", 1)], "director_port", 1),
    ("client", [("network", "receive_timeout_s", 5)], "receive_timeout_s",
     5.0),
    ("client", [("network", "receive_timeout_s", 0.25)], "receive_timeout_s",
     0.25),
    ("worker", [("behavior.caching", "max_size", 0)], "cache_max_size", 0),
    ("director", [("network", "max_frame_bytes", 65536)], "max_frame_bytes",
     65536),
    ("worker", [("network", "max_frame_bytes", 2 ** 32 - 1)],
     "max_frame_bytes", 2 ** 32 - 1),
    ("client", [("network", "max_frame_bytes", 131072)], "max_frame_bytes",
     131072),
    ("director", [("network", "max_pending_calls", 1)], "max_pending_calls",
     1),
    ("worker", [("behavior", "max_threads", 4)], "max_threads", 4),
    ("worker", [("behavior", "max_threads", 1024)], "max_threads", 1024),
    ("director", [], "max_frame_bytes", config.DEFAULT_MAX_FRAME_BYTES),
    ("director", [], "max_pending_calls", 10000),
    ("worker", [], "max_frame_bytes", config.DEFAULT_MAX_FRAME_BYTES),
    ("worker", [], "max_threads", DEFAULT_THREADS),
    ("client", [], "max_frame_bytes", config.DEFAULT_MAX_FRAME_BYTES),
    ("director", [("logging", "log_level", "DEBUG")], "log_level", "debug"),
    ("worker", [("logging", "log_level", "Warning")], "log_level", "warning"),
    ("client", [("misc", "log_level", "CRITICAL")], "log_level", "critical"),
    ("client", [("misc", "log_level", "")], "log_level", ""),
    ("director", [("logging", "log_level", "")], "log_level", ""),
    ("director", [("workers", "worker_selection_strategy", "Least-Loaded")],
     "worker_selection_strategy", "Least-Loaded"),
    ("director", [("workers", "worker_selection_strategy", "Random")],
     "worker_selection_strategy", "Random"),
    ("worker", [("statistics", "enabled", False)], "statistics_enabled",
     False),
    ("director", [], "monitoring_enabled", False),
    ("director", [], "monitoring_address", "127.0.0.1"),
    ("director", [], "monitoring_port", 40080),
    ("director", [("monitoring", "enabled", True)], "monitoring_enabled",
     True),
    ("director", [("monitoring", "port", 0)], "monitoring_port", 0),
    ("director", [("monitoring", "address", "0.0.0.0")],
     "monitoring_address", "0.0.0.0"),
]


@pytest.mark.parametrize("kind, edits, attr, expected", ACCEPTED)
def test_accepted_value(tmp_path, kind, edits, attr, expected):
    path, loaded = _load(tmp_path, kind, edits)
    value = getattr(loaded, attr)
    assert value == expected and type(value) is type(expected)
    assert loaded.path == str(path)


# ---------------------------------------------------------------------------
# logs.py

def _handler_types(logger):
    return sorted(type(h).__name__ for h in logger.handlers)


def test_setup_logging_writes_file_and_creates_directory(tmp_path, capsys):
    log_dir = tmp_path / "a" / "b"
    logger = logs.setup_logging("director", "debug", str(log_dir), "d.log")
    assert logger.name == "pyfaas" and logger.propagate is False
    logging.getLogger("pyfaas.test").debug("hello %s", "there")
    for handler in logger.handlers:
        handler.flush()
    text = (log_dir / "d.log").read_text()
    assert "DEBUG director pyfaas.test: hello there" in text
    assert "DEBUG director pyfaas.test: hello there" in capsys.readouterr().out


def test_setup_logging_twice_does_not_duplicate(tmp_path):
    logger = logging.getLogger("pyfaas")
    foreign = logging.NullHandler()
    logger.addHandler(foreign)  # someone else's handler stays
    for _ in range(2):
        logs.setup_logging("worker", "info", str(tmp_path), "w.log")
    assert _handler_types(logger) == [
        "FileHandler", "NullHandler", "StreamHandler"]
    logging.getLogger("pyfaas.worker").info("once")
    for handler in logger.handlers:
        handler.flush()
    assert (tmp_path / "w.log").read_text().count("once") == 1


def test_setup_logging_off_keeps_file_at_info(tmp_path, capsys):
    logger = logs.setup_logging("worker", "", str(tmp_path), "w.log")
    assert _handler_types(logger) == ["FileHandler"]
    logging.getLogger("pyfaas.x").debug("quiet")
    logging.getLogger("pyfaas.x").info("loud")
    logger.handlers[0].flush()
    text = (tmp_path / "w.log").read_text()
    assert "loud" in text and "quiet" not in text
    assert capsys.readouterr().out == ""


def test_setup_logging_appends(tmp_path):
    (tmp_path / "w.log").write_text("old line\n")
    logs.setup_logging("worker", "", str(tmp_path), "w.log")
    logging.getLogger("pyfaas").info("new line")
    logging.getLogger("pyfaas").handlers[0].flush()
    assert (tmp_path / "w.log").read_text().startswith("old line\n")


def test_setup_logging_bad_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PyFaaSConfigError) as info:
        logs.setup_logging("worker", "info", str(blocker / "logs"), "w.log")
    message = str(info.value)
    assert str(blocker / "logs") in message and "\n" not in message


def test_setup_client_logging(capsys):
    logger = logs.setup_client_logging("")
    assert logger.name == "pyfaas.client" and logger.handlers == []
    for _ in range(2):
        logs.setup_client_logging("debug")
    assert _handler_types(logger) == ["StreamHandler"]
    logging.getLogger("pyfaas.client.conn").debug("hi")
    assert capsys.readouterr().out.count("client pyfaas.client.conn: hi") == 1
    logs.setup_client_logging("")
    assert logger.handlers == []
