"""The package's folders are its architecture, and its imports say so.

Parsed with ``ast`` (nothing is imported): every import in pyfaas/, at the
top of a module or inside a function, must follow these rules:

- the wire protocol (pyfaas/wire) does no I/O: it imports no ``socket``,
  ``selectors``, ``select``, ``ssl``, ``threading``, ``asyncio``,
  ``subprocess`` or ``multiprocessing``, and nothing of pyfaas outside wire;
- what every side shares (the modules at the top of pyfaas/) imports only
  the wire package and each other;
- net/ (sockets: connections to the Director, the listener) adds only wire
  and the shared modules;
- the Director, the Worker and the client never import each other, and
  none of them imports tools/;
- no two modules import each other, directly or through others.

Each rule is also run against a small package made up by the test, with
the forbidden import in it, to show that the check catches it.
"""

import ast
import os
import textwrap

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "pyfaas")

IO_MODULES = {"socket", "selectors", "select", "ssl", "threading",
              "asyncio", "subprocess", "multiprocessing"}
ROLES = ("director", "worker", "client")
# part of the package -> the parts it may import (besides itself)
ALLOWED = {
    "wire": set(),
    "shared": {"wire"},
    "net": {"wire", "shared"},
    "director": {"wire", "shared", "net"},
    "worker": {"wire", "shared", "net"},
    "client": {"wire", "shared", "net"},
    "tools": {"wire", "shared", "net", "director", "worker", "client"},
    "top": {"wire", "shared", "net", "client", "tools"},  # __init__, __main__
}


def modules(root):
    """``{dotted module name: path}`` of every .py file under ``root``."""
    found = {}
    base = os.path.basename(root)
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), root)
            parts = [base] + rel[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = os.path.join(folder, name)
    return found


def imports(name, path, known):
    """The modules ``name`` imports: (stdlib top names, pyfaas modules)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    is_package = path.endswith("__init__.py")
    package = name if is_package else name.rpartition(".")[0]
    outside, inside = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                (inside if target.split(".")[0] == name.split(".")[0]
                 else outside).add(target if target in known
                                   else target.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module
                                          else []))
            else:
                target = node.module
            if target.split(".")[0] != name.split(".")[0]:
                outside.add(target.split(".")[0])
                continue
            for alias in node.names:  # a submodule, or a name in target
                sub = target + "." + alias.name
                inside.add(sub if sub in known else target)
    inside.discard(name)
    return outside, inside


def part(name):
    """The part of the package a module belongs to (see ALLOWED)."""
    pieces = name.split(".")
    if len(pieces) == 1 or pieces[1] == "__main__":
        return "top"
    if pieces[1] in ("wire", "net", "director", "worker", "client", "tools"):
        return pieces[1]
    return "shared"


def problems(root):
    """Every rule broken in the package at ``root``, as sentences."""
    found = modules(root)
    graph = {}
    broken = []
    for name, path in sorted(found.items()):
        outside, inside = imports(name, path, found)
        graph[name] = inside
        mine = part(name)
        if mine == "wire":
            for bad in sorted(outside & IO_MODULES):
                broken.append("%s imports %s: the wire protocol does no I/O"
                              % (name, bad))
        for other in sorted(inside):
            theirs = part(other)
            if theirs != mine and theirs not in ALLOWED[mine]:
                broken.append("%s (%s) imports %s (%s)"
                              % (name, mine, other, theirs))
    broken.extend("import cycle: %s" % " -> ".join(cycle)
                  for cycle in cycles(graph))
    return broken


def cycles(graph):
    """One cycle (as a list of names, first repeated last) per strongly
    connected group of modules that import each other."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group) + [sorted(group)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_follows_its_import_rules():
    assert problems(ROOT) == []


def test_no_module_is_over_500_lines():
    long = {name: sum(1 for _ in open(path, encoding="utf-8"))
            for name, path in modules(ROOT).items()}
    assert {n: count for n, count in long.items() if count > 500} == {}


# ----- the checker catches what it must --------------------------------------

def _package(tmp_path, files):
    root = tmp_path / "pyfaas"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in [root] + [p for p in root.rglob("*") if p.is_dir()]:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text("")
    return str(root)


CLEAN = {
    "errors.py": "",
    "wire/protocol.py": "import struct\n",
    "net/connection.py": "import socket\nfrom ..wire import protocol\n",
    "director/loop.py": "import selectors\nfrom ..net import connection\n",
    "worker/service.py": "from .. import errors\n",
    "client/client.py": "from ..wire.protocol import struct\n",
    "tools/cli.py": "from ..director import loop\nfrom ..client import client\n",
}


def test_a_clean_package_passes(tmp_path):
    assert problems(_package(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("rel, text, expected", [
    ("wire/protocol.py", "import socket\n", "does no I/O"),
    ("wire/decoder.py", "def f():\n    import threading\n", "does no I/O"),
    ("wire/protocol.py", "from ..net import connection\n", "(wire) imports"),
    ("director/loop.py", "from ..worker import service\n",
     "pyfaas.director.loop (director) imports pyfaas.worker.service"),
    ("client/client.py", "def f():\n    from ..director.loop import X\n",
     "(client) imports pyfaas.director.loop (director)"),
    ("worker/service.py", "from ..tools import cli\n", "(tools)"),
    ("errors.py", "from .client import client\n", "(shared) imports"),
    ("net/connection.py", "import pyfaas.worker.service\n", "(net) imports"),
    ("client/futures.py", "from .client import X\n", "import cycle"),
])
def test_a_forbidden_import_is_caught(tmp_path, rel, text, expected):
    files = dict(CLEAN)
    files[rel] = files.get(rel, "") + text
    if rel == "client/futures.py":  # and client.py imports futures
        files["client/client.py"] += "from . import futures\n"
    found = problems(_package(tmp_path, files))
    assert any(expected in sentence for sentence in found), found
