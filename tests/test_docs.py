"""Every code block of README.md and docs/*.md runs as written.

The fenced blocks are read from the Markdown files; the first word of a
fence's info string is its language. What each language gets:

- ``python``: run as a script in a fresh ``python`` subprocess, with the
  repository root as working directory and a hard timeout
  (``BLOCK_TIMEOUT_S``), against one local cluster shared by every block of
  this module: the ``cluster`` fixture of conftest.py (a Director and two
  Workers on 127.0.0.1, stopped by pid at the end even when a test failed).
  Blocks reach it as a user reaches a cluster: ``$PYFAAS_CONFIG`` names a
  client file for it (``pyfaas_config()`` and the functional API's default
  client read it), and the one substitution made in a block's text is the
  Director's port: every ``40000`` becomes the test cluster's port, so
  ``Client("127.0.0.1", 40000)`` works. A block must be self-contained
  (define and register the functions it calls) and must not stop Workers.
- ``toml``: loaded with the loader of pyfaas/config.py that the block's
  first line names: ``# director.toml``, ``# worker.toml`` or
  ``# client.toml`` for a whole file; ``# part of director.toml`` (or
  worker, client) for an excerpt, which is merged over the shipped file of
  configs/ before it is loaded.
- ``json``: parsed; a workflow (it has ``entry_function``) must also pass
  ``pyfaas.workflow.validate`` (its structure).
- ``bash``, ``sh``, ``console``: each command (in ``console`` blocks, the
  lines starting with ``$ ``; the others are output), split on ``&&``, runs
  in order in a temporary directory that holds a copy of configs/ and a
  link to examples/, with ``$PYFAAS_CONFIG`` naming that copy's
  client.toml. In the copies ``40000`` becomes the port of the cluster the
  block talks to: a Director the block starts itself gets a free port of
  its own, otherwise it is the shared cluster.

  * ``pip install ...`` is not run (it is the reader's environment), nor is
    ``python -m pytest`` (it is this suite).
  * ``python -m pyfaas ARGS`` and ``pyfaas ARGS``: ARGS must parse with the
    command line's parser. ``director`` and ``worker`` are started in the
    background and must come up (the Director listening, the Worker
    registered with it); at the end of the block they are stopped by pid
    with SIGTERM and must exit with code 0. ``bench`` is only parsed (it
    runs for minutes). Any other command runs and must exit with code 0;
    after ``init DIR``, ``40000`` becomes the block's port in the files it
    wrote, as in the copies of configs/.
  * ``export NAME=VALUE`` sets a variable for the block's later commands.
  * Anything else runs with bash and must exit with code 0.
- ``text``, and fences without a language: not run (output samples, wire
  layouts, pictures).
- Any other language fails the test, so that a typo cannot hide a block.

Python blocks must also parse as Python 3.8, the oldest version the
package supports. Further checks keep the pages whole and true: the README
shows the exact test command .ci/run runs; links between the pages lead to
a file and heading that exist; docs/configuration.md lists every key of
the three schemas of pyfaas/config.py with its default; docs/failures.md
names every exception class and error code of pyfaas/errors.py and draws
their class tree as the code defines it.
"""

import ast
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

from pyfaas import config, errors
from pyfaas import workflow as wfl
from pyfaas.client.client import Client
from pyfaas.tools.cli import build_parser
from pyfaas.tools.local_cluster import write_toml

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SHIPPED_PORT = "40000"
BLOCK_TIMEOUT_S = 60
START_TIMEOUT_S = 15
STOP_TIMEOUT_S = 15

PYTHON = ("python", "py", "python3")
SHELL = ("bash", "sh", "console")
NOT_RUN = ("text", "json", "")
LOADERS = {"director": config.load_director_config,
           "worker": config.load_worker_config,
           "client": config.load_client_config}
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>.*)$")
_MARKER = re.compile(r"^#\s*(?P<part>part of\s+)?(?:configs/)?"
                     r"(?P<role>director|worker|client)\.toml\b")


class Block:
    """One fenced code block: where it is, its language and its text."""

    def __init__(self, path, line, lang, text):
        self.path = path
        self.line = line          # of the opening fence, from 1
        self.lang = lang
        self.text = text

    @property
    def where(self):
        return "%s:%d" % (self.path.relative_to(ROOT), self.line)


def _closes(line, fence):
    """True if ``line`` closes a block opened with ``fence``."""
    mark = line.strip()
    return len(mark) >= len(fence) and set(mark) == {fence[0]}


def read_blocks(path):
    """The fenced blocks of a Markdown file (CommonMark fences, any indent)."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        lang = m.group("info").split()[0].lower() if m.group("info") else ""
        body, j = [], i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == ""
                        else lines[j])
            j += 1
        blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


BLOCKS = [b for path in DOC_FILES for b in read_blocks(path)]


def _of(langs):
    chosen = [b for b in BLOCKS if b.lang in langs]
    return pytest.mark.parametrize("block", chosen,
                                   ids=[b.where for b in chosen])


def _env(**extra):
    env = dict(os.environ)
    env.pop("PYFAAS_TOKEN", None)     # the test cluster has no token
    env.pop("PYFAAS_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep)
                       if x])
    # `python` and `pyfaas` in a block are this interpreter's
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                   env.get("PATH", "")])
    env.update(extra)
    return env


def _with_port(text, port):
    return re.sub(r"\b%s\b" % SHIPPED_PORT, str(port), text)


def _report(block, what, proc):
    return "%s: %s exited with %s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
        block.where, what, proc.returncode, proc.stdout[-3000:],
        proc.stderr[-3000:])


# ---------------------------------------------------------------------------
# Languages

def test_every_block_has_a_known_language():
    unknown = ["%s: ```%s" % (b.where, b.lang) for b in BLOCKS
               if b.lang not in PYTHON + SHELL + NOT_RUN + ("toml",)]
    assert not unknown, ("blocks in a language this test does not know "
                         "(use python, toml, json, bash or text): %s"
                         % unknown)


def test_the_readme_keeps_the_ci_test_command():
    # .ci/run runs this line; the README must show exactly the same one.
    line = "pip install '.[test]' && python -m pytest"
    assert line in (ROOT / "README.md").read_text().splitlines()
    assert line in (ROOT / ".ci" / "run").read_text().splitlines()


# ---------------------------------------------------------------------------
# python

@pytest.fixture(scope="module")
def client_config(cluster):
    return cluster.client_config()


@_of(PYTHON)
def test_python_block_runs(block, cluster, client_config, tmp_path):
    # The README promises Python 3.8: so do its examples.
    ast.parse(block.text, block.where, feature_version=(3, 8))
    script = tmp_path / ("%s_%d.py" % (block.path.stem, block.line))
    script.write_text(_with_port(block.text, cluster.port))
    proc = subprocess.run([sys.executable, str(script)], cwd=str(ROOT),
                          env=_env(PYFAAS_CONFIG=client_config),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT_S)
    assert proc.returncode == 0, _report(block, "the block", proc)


# ---------------------------------------------------------------------------
# toml

def _flatten(doc, prefix=""):
    """``{"behavior": {"caching": {...}}}`` -> ``{"behavior.caching": {...}}``."""
    sections = {}
    for name, table in doc.items():
        full = prefix + name
        sections[full] = {k: v for k, v in table.items()
                          if not isinstance(v, dict)}
        sections.update(_flatten({k: v for k, v in table.items()
                                  if isinstance(v, dict)}, full + "."))
    return sections


@_of(("toml",))
def test_toml_block_loads(block, tmp_path):
    first = block.text.lstrip().splitlines()[0]
    marker = _MARKER.match(first)
    assert marker, ("%s: a toml block starts with a comment naming its file: "
                    "'# director.toml' (a whole file) or '# part of "
                    "director.toml' (an excerpt); got %r" % (block.where,
                                                             first))
    role = marker.group("role")
    path = tmp_path / ("%s.toml" % role)
    if marker.group("part"):
        shipped = _flatten(tomllib.loads(
            (ROOT / "configs" / ("%s.toml" % role)).read_text()))
        for section, keys in _flatten(tomllib.loads(block.text)).items():
            shipped.setdefault(section, {}).update(keys)
        write_toml(str(path), shipped)
    else:
        path.write_text(block.text)
    LOADERS[role](str(path))  # raises PyFaaSConfigError with the key


# ---------------------------------------------------------------------------
# json

@_of(("json",))
def test_json_block_parses(block):
    doc = json.loads(block.text)
    if isinstance(doc, dict) and "entry_function" in doc:
        problems = wfl.validate(doc)
        assert not problems, "%s: %s" % (block.where, problems)


# ---------------------------------------------------------------------------
# shell

def _commands(block):
    """The commands of a shell block: comments and output left out, lines
    continued with a backslash joined, ``&&`` chains split."""
    lines, joined = block.text.splitlines(), []
    if block.lang == "console":
        lines = [x[2:] for x in lines if x.startswith("$ ")]
    for line in lines:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line.strip())
    commands = []
    for line in joined:
        if line and not line.startswith("#"):
            commands.extend(c.strip() for c in line.split("&&"))
    return commands


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pyfaas_args(words):
    if words[:3] == ["python", "-m", "pyfaas"]:
        return words[3:]
    if words[:1] == ["pyfaas"]:
        return words[1:]
    return None


class ShellRun:
    """The processes a shell block started in the background, by pid."""

    def __init__(self, block, workdir, env, port):
        self.block, self.workdir, self.env, self.port = block, workdir, env, port
        self.started = []         # (role, Popen, output path)

    def start(self, words, role):
        out = self.workdir / ("%s-%d.out" % (role, len(self.started)))
        if role == "worker":
            before = self._workers()
        with open(out, "wb") as fh:
            words = [shutil.which(words[0], path=self.env["PATH"])] + words[1:]
            proc = subprocess.Popen(words, cwd=str(self.workdir), env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT)
        self.started.append((role, proc, out))
        if role == "director":
            self._wait(proc, out, lambda: b"PyFaaS director listening on"
                       in out.read_bytes())
        else:
            self._wait(proc, out, lambda: len(self._workers()) > len(before))

    def _workers(self):
        with Client("127.0.0.1", self.port, timeout=5.0) as client:
            return client.worker_ids()

    def _wait(self, proc, out, ready):
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, (
                "%s: %s did not come up:\n%s" % (
                    self.block.where, proc.args,
                    out.read_bytes().decode(errors="replace")[-3000:]))
            time.sleep(0.05)

    def stop(self):
        """SIGTERM each process, last started first; return the exit codes."""
        codes = []
        for role, proc, out in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(STOP_TIMEOUT_S)
            codes.append((role, proc.returncode,
                          out.read_bytes().decode(errors="replace")[-2000:]))
        self.started = []
        return codes


def _run(block, words_or_line, env, workdir):
    shell = isinstance(words_or_line, str)
    proc = subprocess.run(words_or_line, shell=shell, cwd=str(workdir),
                          env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S,
                          executable="/bin/bash" if shell else None)
    what = words_or_line if shell else " ".join(words_or_line)
    assert proc.returncode == 0, _report(block, repr(what), proc)


def _port_in_written_files(directory, port):
    for path in directory.glob("*.toml"):
        path.write_text(_with_port(path.read_text(), port))


@_of(SHELL)
def test_shell_block_runs(block, cluster, tmp_path):
    commands = _commands(block)
    starts_director = any((_pyfaas_args(shlex.split(c, comments=True)) or
                           [""])[0] == "director" for c in commands)
    port = _free_port() if starts_director else cluster.port
    workdir = tmp_path
    (workdir / "configs").mkdir()
    for shipped in (ROOT / "configs").glob("*.toml"):
        (workdir / "configs" / shipped.name).write_text(
            _with_port(shipped.read_text(), port))
    (workdir / "examples").symlink_to(ROOT / "examples")
    env = _env(PYFAAS_CONFIG=str(workdir / "configs" / "client.toml"))
    run = ShellRun(block, workdir, env, port)
    try:
        for command in commands:
            words = shlex.split(command, comments=True)
            args = _pyfaas_args(words)
            if words[:2] == ["pip", "install"] or \
                    words[:3] == ["python", "-m", "pytest"]:
                continue
            if words[:1] == ["export"]:
                name, _, value = words[1].partition("=")
                env[name] = value
            elif args is None:
                _run(block, command, env, workdir)
            else:
                try:
                    build_parser().parse_args(args)
                except SystemExit as exc:
                    assert not exc.code, "%s: %r: bad arguments" % (
                        block.where, command)
                    continue          # --help
                if args[0] in ("director", "worker"):
                    run.start(words, args[0])
                elif args[0] != "bench":
                    _run(block, words, env, workdir)
                if args[0] == "init":
                    _port_in_written_files(workdir / build_parser()
                                           .parse_args(args).dir, port)
    finally:
        codes = run.stop()
    bad = [c for c in codes if c[1] != 0]
    assert not bad, "%s: not stopped cleanly by SIGTERM: %s" % (block.where,
                                                                 bad)


# ---------------------------------------------------------------------------
# Links between the pages, and the reference pages are whole

def _anchors(path):
    """GitHub's anchors of a Markdown file's headings."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(
        " ", "-") for m in re.finditer(r"^#+ (.*)$", text, re.M)}


def test_links_between_the_pages_lead_somewhere():
    broken = []
    for path in DOC_FILES:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"\w+:", target):
                continue          # http:, mailto: ...
            name, _, anchor = target.partition("#")
            linked = (path.parent / name).resolve() if name else path
            if not linked.exists() or (
                    anchor and linked.suffix == ".md"
                    and anchor not in _anchors(linked)):
                broken.append("%s: %s" % (path.relative_to(ROOT), target))
    assert not broken

def _rows(page, heading):
    """``{(section, key): default cell}`` of the table under ``## heading``."""
    text = (ROOT / "docs" / page).read_text()
    part = text.split("\n## %s\n" % heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for m in re.finditer(r"^\| `\[([\w.]+)\]` \| `(\w+)` \|.*\| ([^|]+) \|$",
                         part, re.M):
        rows[(m.group(1), m.group(2))] = m.group(3).strip()
    return rows


@pytest.mark.parametrize("heading, schema", [
    ("Director", config._DIRECTOR_SCHEMA), ("Worker", config._WORKER_SCHEMA),
    ("Client", config._CLIENT_SCHEMA)])
def test_configuration_page_lists_every_key_with_its_default(heading, schema):
    rows = _rows("configuration.md", heading)
    expected = {(s, k): f for s, keys in schema.items()
                for k, f in keys.items()}
    assert sorted(rows) == sorted(expected)
    for (section, key), field in expected.items():
        cell = rows[(section, key)]
        where = "[%s] %s: %r" % (section, key, cell)
        if field.default is config._REQUIRED:
            assert cell == "required", where
        elif not callable(field.default):
            literal = re.match(r"`([^`]*)`", cell)
            assert literal, where
            value = tomllib.loads("v = " + literal.group(1))["v"]
            assert value == field.default and \
                type(value) is type(field.default), where


def test_failures_page_names_every_exception_and_code():
    text = (ROOT / "docs" / "failures.md").read_text()
    missing = [name for name in errors.__all__
               if "`%s`" % name not in text]
    missing += ["code %s" % code for code in errors.CODES
                if "`%s`" % code not in text]
    assert not missing


def test_failures_page_draws_the_exception_tree_of_the_code():
    tree = [b for b in BLOCKS if b.path.name == "failures.md"
            and b.text.startswith("PyFaaSError")]
    assert len(tree) == 1
    parents, drawn = [], set()
    for line in tree[0].text.splitlines():
        m = re.search(r"PyFaaS\w+", line)
        if not m:
            continue
        depth = m.start() // 4
        cls = getattr(errors, m.group())
        del parents[depth:]
        if parents:
            assert parents[-1] in cls.__bases__, line
        parents.append(cls)
        drawn.add(m.group())
    assert drawn == set(errors.__all__)
