"""The command line tells a new user what to do.

``--version`` prints the package's version; ``director`` and ``worker``
without a file (or with a missing one) say in one line, exit code 2, that
``python -m pyfaas init`` writes one.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyfaas

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def run_pyfaas(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep)
                       if x])
    return subprocess.run([sys.executable, "-m", "pyfaas"] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, env=env, cwd=str(ROOT))


def test_version():
    result = run_pyfaas("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "pyfaas %s" % pyfaas.__version__
    assert pyfaas.__version__.count(".") == 2


@pytest.mark.parametrize("role", ["director", "worker"])
@pytest.mark.parametrize("given", [[], ["no-such-file.toml"]],
                         ids=["no-file", "missing-file"])
def test_without_a_config_file_it_says_how_to_get_one(role, given):
    result = run_pyfaas(role, *given)
    assert result.returncode == 2
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert "python -m pyfaas init" in result.stderr
    assert "Traceback" not in result.stderr
    if given:
        assert "no-such-file.toml: no such file" in result.stderr
