"""How the tree is kept: test modules share helpers through helper modules, never by importing each other or a
conftest; no entry point patches sys.path (the project is installed, `make venv`); nothing cites files outside the
repository; no file under scripts/ grows past about 400 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DIRS = (REPO / "tests", REPO / "tests_vllm")
PRODUCT = ("planner", "components", "scripts", "ansible-like", "policies", "__main__.py", "fabfile.py")
MAX_SCRIPT_LINES = 400


def python_files(*roots: Path) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        files += [root] if root.is_file() else sorted(root.rglob("*.py"))
    return files


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def is_test_module(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf.startswith("test_") or leaf == "conftest"


def test_test_modules_do_not_import_each_other_or_a_conftest():
    offenders = [f"{path.relative_to(REPO)}:{line}: imports {name}"
                 for path in python_files(*TEST_DIRS) for line, name in imported_modules(path) if is_test_module(name)]
    assert offenders == [], "move what they share into a helper module: " + "; ".join(offenders)


def test_the_rule_sees_an_offender(tmp_path):
    offender = tmp_path / "test_x.py"
    offender.write_text("from tests.jumpstart.test_endpoint_lifecycle import deploy\nimport conftest\n")
    assert [name for _, name in imported_modules(offender) if is_test_module(name)] == [
        "tests.jumpstart.test_endpoint_lifecycle", "conftest"]


@pytest.mark.parametrize("path", python_files(*(REPO / p for p in PRODUCT)), ids=lambda p: str(p.relative_to(REPO)))
def test_no_entry_point_patches_sys_path(path):
    text = path.read_text(encoding="utf-8")
    # check_vllm puts the chosen vLLM's sources (not this project) first on the path: that is its job
    allowed = {"scripts/check_vllm.py", "scripts/vllm_check/checks.py"}
    if str(path.relative_to(REPO)) in allowed:
        return
    assert not re.search(r"sys\.path\.(insert|append)", text), f"{path.relative_to(REPO)} patches sys.path"


def test_nothing_cites_files_outside_the_repository():
    pattern = re.compile(r"FACTS\.md|DESIGN\.md|STYLE\.md|\.\./shared/")
    roots = [REPO / p for p in (*PRODUCT, "docs", "models", "stacks", "README.md", "deploy", "Makefile")]
    hits = []
    for root in roots:
        files = [root] if root.is_file() else [f for f in root.rglob("*")
                                               if f.is_file() and "__pycache__" not in f.parts]
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            hits += [f"{path.relative_to(REPO)}:{n}" for n, line in enumerate(text.splitlines(), 1)
                     if pattern.search(line)]
    assert hits == [], "cite docs/sources.md instead: " + ", ".join(hits)


def test_every_script_file_stays_short():
    long = {str(p.relative_to(REPO)): n for p in python_files(REPO / "scripts")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_SCRIPT_LINES}
    assert long == {}, f"split these by concern (at most {MAX_SCRIPT_LINES} lines): {long}"
