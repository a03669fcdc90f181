"""The command line tells a new user what to do.

``--version`` prints the package's version.
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
