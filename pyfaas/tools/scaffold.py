"""``python -m pyfaas init [DIR]``: a Director, Worker and client file to start from.

Owns writing the sample configuration files shipped in the package
(``pyfaas/configs/*.toml``, package data; configs/ in the repository holds
the same files) into a directory: as shipped, with another port if asked,
and with ``--token`` a fresh cluster token file (mode 0600) that all three
name. The files are commented and work as written: 127.0.0.1, logs and the
Worker's dump file under the working directory. It does not start anything.
"""

import os
import pkgutil
import re

from ..errors import PyFaaSConfigError
from ..security import new_token

ROLES = ("director", "worker", "client")
SHIPPED_PORT = 40000
TOKEN_FILE = "cluster.token"
_PORT_LINE = re.compile(r"^director_port = %d$" % SHIPPED_PORT, re.M)
_TOKEN_LINE = re.compile(r'^token_file = ""$', re.M)


def sample(role):
    """The text of the shipped sample file of ``role`` (director, worker,
    client)."""
    return pkgutil.get_data("pyfaas", "configs/%s.toml" % role).decode(
        "utf-8")


def render(role, port=SHIPPED_PORT, token_path=None):
    """The sample of ``role`` with ``port`` and, if given, ``token_path``
    as ``[security] token_file``."""
    text = sample(role)
    if port != SHIPPED_PORT:
        text = _replace_once(_PORT_LINE, "director_port = %d" % port, text,
                             role)
    if token_path is not None:
        text = _replace_once(_TOKEN_LINE, 'token_file = "%s"' % token_path
                             .replace("\\", "\\\\").replace('"', '\\"'),
                             text, role)
    return text


def _replace_once(pattern, line, text, role):
    text, count = pattern.subn(line, text)
    if count != 1:  # the shipped samples and this module disagree
        raise AssertionError("%s.toml: %d lines match %s" % (role, count,
                                                             pattern.pattern))
    return text


def write_configs(directory, port=SHIPPED_PORT, token=False, force=False):
    """Write director.toml, worker.toml, client.toml (and with ``token``, a
    new token file) into ``directory``, created if needed.

    Returns:
        list: the paths written, the token file last.

    Raises:
        PyFaaSConfigError: a file exists (and not ``force``), or cannot be
            written.
    """
    if not 1 <= port <= 65535:
        raise PyFaaSConfigError("init: --port: expected an integer from 1 to "
                                "65535, got %d" % port)
    paths = [os.path.join(directory, role + ".toml") for role in ROLES]
    token_path = os.path.join(directory, TOKEN_FILE) if token else None
    if not force:
        for path in paths + ([token_path] if token else []):
            if os.path.exists(path):
                raise PyFaaSConfigError(
                    "init: %s exists; pass --force to overwrite it, or "
                    "choose another directory" % path)
    try:
        os.makedirs(directory, exist_ok=True)
        if token:
            _write_token(token_path)
        # Absolute: a token file named relatively would be looked for in
        # the working directory of each process, not beside the configs.
        named = os.path.abspath(token_path) if token else None
        for role, path in zip(ROLES, paths):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(render(role, port, named))
    except OSError as exc:
        raise PyFaaSConfigError("init: cannot write into %s: %s" % (
            directory, exc.strerror or exc)) from None
    return paths + ([token_path] if token else [])


def _write_token(path):
    if os.path.exists(path):
        os.remove(path)  # --force: a new file, so it is created 0600
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # whatever the umask
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(new_token() + "\n")


def run_init(directory, port=SHIPPED_PORT, token=False, force=False):
    """``python -m pyfaas init``: write the files, say what to run next."""
    written = write_configs(directory, port, token, force)
    print("wrote " + ", ".join(written))
    if token:
        print("%s holds the cluster token (mode 0600); each file names it "
              "in [security] token_file" % written[-1])
    print("next, each in a terminal of its own:")
    for command in ("python -m pyfaas director %s" % written[0],
                    "python -m pyfaas worker %s" % written[1],
                    "python -m pyfaas status --config %s" % written[2]):
        print("  " + command)
    return 0
