"""``python -m pyfaas init`` writes configs that start a cluster as written.

A new user outside the checkout has no configs/: ``init`` writes the
sample files shipped inside the package (package data, the same files as
configs/ in the repository), and a Director and a Worker started from a
freshly written directory serve calls, with and without ``--token``. The
processes are started with ``python -m pyfaas`` in the written directory
and stopped by pid.
"""

import configparser
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import reserve_port, wait_until
from pyfaas import Client, config
from pyfaas.errors import PyFaaSTokenMissingError
from pyfaas.tools import scaffold

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("director", "worker", "client")
RUN_TIMEOUT_S = 30


def _env():
    env = dict(os.environ)
    env.pop("PYFAAS_TOKEN", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep)
                       if x])
    return env


def init(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pyfaas", "init"]
                          + list(args), cwd=str(cwd), env=_env(),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


def whoami():
    return os.getpid()


class Started:
    """``python -m pyfaas ROLE ROLE.toml`` run in a directory, as a user
    would after ``init``; its output goes to a file."""

    def __init__(self, role, workdir):
        self.out = Path(workdir) / ("%s.out" % role)
        with open(str(self.out), "wb") as fh:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "pyfaas", role, "%s.toml" % role],
                cwd=str(workdir), env=_env(), stdin=subprocess.DEVNULL,
                stdout=fh, stderr=subprocess.STDOUT)
        self.pid = self.popen.pid

    def output(self):
        return self.out.read_bytes()

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(15)
        return self.popen.returncode


@pytest.fixture
def started():
    """Processes a test starts; stopped by pid at the end, always."""
    procs = []
    yield procs
    codes = [proc.stop() for proc in reversed(procs)]
    assert codes == [0] * len(codes), codes


def _start(started, role, workdir):
    proc = Started(role, workdir)
    started.append(proc)
    return proc



def parent_of(pid):
    """The parent process id of ``pid`` (Linux: /proc)."""
    with open("/proc/%d/stat" % pid) as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])

def test_the_shipped_samples_are_the_repositorys_configs():
    for role in ROLES:
        assert scaffold.sample(role) == (ROOT / "configs" / (
            "%s.toml" % role)).read_text(encoding="utf-8"), role


def test_setup_cfg_ships_the_samples_as_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(str(ROOT / "setup.cfg"))
    pattern = cfg["options.package_data"]["pyfaas"].strip()
    shipped = sorted(p.name for p in (ROOT / "pyfaas").glob(pattern))
    assert shipped == ["client.toml", "director.toml", "worker.toml"]


def test_init_writes_the_samples_and_refuses_to_overwrite(tmp_path):
    result = init("fresh", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for role in ROLES:
        written = tmp_path / "fresh" / ("%s.toml" % role)
        assert written.read_text(encoding="utf-8") == scaffold.sample(role)
    # It says what to run next.
    for command in ("director fresh/director.toml", "worker fresh/worker.toml",
                    "status --config fresh/client.toml"):
        assert "python -m pyfaas " + command in result.stdout
    again = init("fresh", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    assert init("fresh", "--force", "--port", "40001",
                cwd=tmp_path).returncode == 0
    assert config.load_client_config(
        str(tmp_path / "fresh" / "client.toml")).director_port == 40001


def test_a_director_and_a_worker_from_a_fresh_init_serve_calls(tmp_path,
                                                               started):
    port = reserve_port()
    assert init("--port", str(port), cwd=tmp_path).returncode == 0
    director = _start(started, "director", tmp_path)
    worker = _start(started, "worker", tmp_path)
    wait_until(lambda: b"ready: registered" in worker.output(), 15,
               lambda: worker.output().decode(errors="replace"))
    assert b"PyFaaS director listening on 127.0.0.1:%d" % port in \
        director.output()
    with Client.from_config(str(tmp_path / "client.toml")) as client:
        client.register(whoami)
        # The shipped Worker file is supervised: the Worker is the child
        # process its supervisor (the process started here) runs.
        assert parent_of(client.call("whoami")) == worker.pid
    # The files write under the directory they are started in.
    assert (tmp_path / "pyfaas_director" / "logs").is_dir()


def test_init_with_a_token_makes_a_cluster_that_requires_it(tmp_path,
                                                           started):
    port = reserve_port()
    result = init(str(tmp_path / "secure"), "--port", str(port), "--token",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    token_file = tmp_path / "secure" / "cluster.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) == 64
    for role in ROLES:
        cfg = getattr(config, "load_%s_config" % role)(
            str(tmp_path / "secure" / ("%s.toml" % role)))
        assert cfg.token_file == str(token_file)
    _start(started, "director", tmp_path / "secure")
    worker = _start(started, "worker", tmp_path / "secure")
    wait_until(lambda: b"ready: registered" in worker.output(), 15,
               lambda: worker.output().decode(errors="replace"))
    with Client("127.0.0.1", port, 5) as anonymous:
        with pytest.raises(PyFaaSTokenMissingError):
            anonymous.ping()
    with Client.from_config(str(tmp_path / "secure" / "client.toml")) as c:
        c.register(whoami)
        assert parent_of(c.call("whoami")) == worker.pid
    # A second init cannot silently replace the token of a running cluster.
    assert init(str(tmp_path / "secure"), "--token",
                cwd=tmp_path).returncode == 2
    assert token_file.read_text().strip() == token
