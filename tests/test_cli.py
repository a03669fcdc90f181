"""The command line: bad config files give one line on stderr and exit code 2.

Every case runs ``python -m pyfaas director|worker FILE`` as a subprocess
(bounded by ``subprocess.run(timeout=...)``) and checks what a user sees:
the exit code, a single stderr line naming the file and the key, and no
Python traceback anywhere.
"""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pyfaas import config
from pyfaas.tools.local_cluster import director_sections, worker_sections, write_toml

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 30


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep)
                       if x])
    return env


def run_pyfaas(*args, timeout=RUN_TIMEOUT_S):
    """Run ``python -m pyfaas ARGS``; the process is gone when this returns."""
    return subprocess.run([sys.executable, "-m", "pyfaas"] + list(args),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, env=_env(),
                          cwd=str(ROOT))


def _base(kind, workdir):
    if kind == "director":
        return director_sections(str(workdir))
    return worker_sections(str(workdir), "w", 40000)


def _valid_file(kind, tmp_path):
    """The base config of ``kind`` as a file (it loads without error)."""
    path = write_toml(str(tmp_path / ("good-%s.toml" % kind)),
                      _base(kind, tmp_path))
    loader = (config.load_director_config if kind == "director"
              else config.load_worker_config)
    loader(path)
    return path


def _with(kind, tmp_path, section, key, value, delete=False, extra=None):
    sections = _base(kind, tmp_path)
    if delete:
        del sections[section][key]
    else:
        sections[section][key] = value
    path = str(tmp_path / ("bad-%s.toml" % kind))
    write_toml(path, sections)
    if extra is not None:
        with open(path, "a") as fh:
            fh.write(extra)
    return path


# (id, kind, builder(tmp_path) -> path, words the message must contain)
CASES = []
for _kind in ("director", "worker"):
    CASES += [
        ("missing-file", _kind,
         lambda t, k=_kind: str(t / "does-not-exist.toml"),
         ["no such file"]),
        ("syntax-error", _kind,
         lambda t, k=_kind: _with(k, t, "network", "director_ip_addr",
                                  "x", extra="[network\nbroken = = 1\n"),
         ["not valid TOML"]),
        ("missing-key", _kind,
         lambda t, k=_kind: _with(k, t, "network", "director_ip_addr", None,
                                  delete=True),
         ["[network]", "director_ip_addr", "missing"]),
        ("unknown-key", _kind,
         lambda t, k=_kind: _with(k, t, "network", "director_prot", 1),
         ["[network]", "director_prot", "unknown key"]),
        ("wrong-type", _kind,
         lambda t, k=_kind: _with(k, t, "network", "director_port", "4000"),
         ["[network]", "director_port", "'4000'"]),
        ("port-out-of-range", _kind,
         lambda t, k=_kind: _with(k, t, "network", "director_port", 70000),
         ["[network]", "director_port", "70000"]),
    ]
CASES += [
    ("unknown-strategy", "director",
     lambda t: _with("director", t, "workers", "worker_selection_strategy",
                     "Fastest"),
     ["[workers]", "worker_selection_strategy", "Fastest"]),
    ("unknown-cache-policy", "worker",
     lambda t: _with("worker", t, "behavior.caching", "policy", "FIFO"),
     ["[behavior.caching]", "policy", "FIFO"]),
    ("worker-port-zero", "worker",
     lambda t: _with("worker", t, "network", "director_port", 0),
     ["[network]", "director_port", "from 1 to 65535"]),
    ("bool-as-int", "director",
     lambda t: _with("director", t, "workers",
                     "heartbeat_check_interval_ms", True),
     ["[workers]", "heartbeat_check_interval_ms", "True"]),
]


@pytest.mark.parametrize("case, kind, build, words", CASES,
                         ids=["%s-%s" % (c[1], c[0]) for c in CASES])
def test_bad_config_is_one_line_and_exit_2(tmp_path, case, kind, build,
                                           words):
    _valid_file(kind, tmp_path)  # the base is fine: only the change is bad
    path = build(tmp_path)

    result = run_pyfaas(kind, path)

    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert path in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_director_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        path = _with("director", tmp_path, "network", "director_port", port)

        result = run_pyfaas("director", path)

    err = result.stderr.decode()
    assert result.returncode == 2, (result.stdout, err)
    assert "Traceback" not in result.stdout.decode() + err
    assert len(err.splitlines()) == 1, err
    assert path in err and str(port) in err


def test_bench_on_a_cpu_that_does_not_exist_is_one_line_and_exit_2():
    result = run_pyfaas("bench", "--cpu", "100000")
    err = result.stderr.decode()
    assert result.returncode == 2
    assert err.count("\n") == 1 and "--cpu" in err and "Traceback" not in err


def test_help():
    result = run_pyfaas("--help")

    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    for word in ("director", "worker", "demo"):
        assert word in out


def test_unknown_command_is_a_usage_error():
    result = run_pyfaas("directr", "x.toml")

    assert result.returncode == 2
    assert "Traceback" not in (result.stdout + result.stderr).decode()


def test_demo_runs_and_prints_results():
    # Its own session, so a hung demo's cluster can be stopped with it.
    proc = subprocess.Popen([sys.executable, "-m", "pyfaas", "demo"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), cwd=str(ROOT),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this test made
            proc.communicate()

    out, err = out.decode(), err.decode()
    assert proc.returncode == 0, (out, err)
    assert "add(5, 6, c=56) = 67" in out, out
    assert "triple(14) = 42" in out, out
    assert "ZeroDivisionError" in out, out
    assert "Traceback" not in err, err
