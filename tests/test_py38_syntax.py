"""Every Python file of the project parses as Python 3.8 (setup.cfg: >=3.8).

``ast.parse(..., feature_version=(3, 8))`` rejects most newer syntax (the
walrus is fine; ``match``, parenthesized context managers, ``except*`` are
not). It cannot see newer *runtime* features such as ``list[int]`` or
``X | Y`` in evaluated annotations, or ``str.removeprefix``.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(
    path for folder in ("pyfaas", "tests", "examples")
    if (ROOT / folder).is_dir()
    for path in (ROOT / folder).rglob("*.py"))


def test_there_are_files_to_check():
    assert any(path.parent.name == "pyfaas" for path in FILES)


@pytest.mark.parametrize("path", FILES,
                         ids=[str(f.relative_to(ROOT)) for f in FILES])
def test_parses_as_python_38(path):
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path), feature_version=(3, 8))
    except SyntaxError as exc:
        pytest.fail("%s:%s is not Python 3.8 syntax: %s"
                    % (path.relative_to(ROOT), exc.lineno, exc.msg))
    match_type = getattr(ast, "Match", None)
    if match_type is not None:
        matches = [node.lineno for node in ast.walk(tree)
                   if isinstance(node, match_type)]
        assert not matches, "match statement at line(s) %s" % matches
