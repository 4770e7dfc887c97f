"""The code base stays ruff clean (lint and format), as CI checks on every run, and its
modules import each other without a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"]
)
def test_ruff(args: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The ``triggerflow`` modules that ``module`` imports, at module level or in a function.

    Imports inside functions count: they are what keeps a circle from failing at import
    time, not what makes it go away (``_discovery -> _trigger -> vacation -> _discovery``
    was one). Only ``if TYPE_CHECKING:`` blocks are left out: they never run.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            # `from . import x` imports the submodule x; `from .m import name` imports m.
            subs = {f"{base}.{a.name}" for a in node.names} & modules
            found.update(subs or {base})
    return {m for m in found if m in modules and m != module}


def _graph() -> dict[str, set[str]]:
    files = {}
    for path in sorted((ROOT / "triggerflow").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {m: _imports(path, m, set(files)) for m, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected group of modules, as a path back to its start."""
    cycles, done = [], set()
    for start in sorted(graph):
        if start in done:
            continue
        # Every module reachable from start, with how it was reached: back at start = circle.
        came_from: dict[str, str] = {}
        todo = [start]
        while todo:
            here = todo.pop()
            for nxt in sorted(graph[here]):
                if nxt not in came_from:
                    came_from[nxt] = here
                    todo.append(nxt)
        if start in came_from:
            path, here = [start], came_from[start]
            while here != start:
                path.append(here)
                here = came_from[here]
            cycle = [start, *reversed(path[1:]), start]
            cycles.append(cycle)
            done.update(cycle)
    return cycles


def test_no_import_cycle() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    found = _graph()
    assert "triggerflow._alerts" in found["triggerflow._trigger"]  # function-level ones too
    assert "triggerflow.sources" not in found["triggerflow._trigger"]  # TYPE_CHECKING


def test_the_duckdb_transaction_is_exactly_the_store_protocol() -> None:
    """A second backend (PostgreSQL) implements the same Protocol: the two cannot drift."""
    import inspect

    from triggerflow._store import DuckDBTransaction
    from triggerflow._store._protocol import Transaction

    def public(cls: type) -> dict[str, inspect.Signature]:
        names = {n for c in cls.__mro__ if c is not object for n in vars(c)}
        return {
            n: inspect.signature(getattr(cls, n))
            for n in sorted(names)
            if not n.startswith("_") and callable(getattr(cls, n))
        }

    ours, protocol = public(DuckDBTransaction), public(Transaction)
    assert set(ours) == set(protocol), (
        f"only in DuckDBTransaction: {sorted(set(ours) - set(protocol))}; "
        f"only in the Protocol: {sorted(set(protocol) - set(ours))}"
    )
    differ = [n for n in ours if str(ours[n]) != str(protocol[n])]
    assert not differ, {n: (str(ours[n]), str(protocol[n])) for n in differ}


def test_sql_lives_only_in_the_store_package() -> None:
    """Sources, sinks, the CLI and the notebooks ask the store's typed methods."""
    import re

    sql = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)\b")
    root = Path(__file__).resolve().parents[1] / "triggerflow"
    found = []
    for path in sorted(root.rglob("*.py")):
        if "_store" in path.relative_to(root).parts:
            continue
        tree = ast.parse(path.read_text())
        docs = {  # examples for users in docstrings are not the code's SQL
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
            and n.body
            and isinstance(n.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if id(node) in docs:
                continue
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "execute":
                found.append(f"{path.relative_to(root)}:{node.lineno}: .execute(")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and sql.search(node.value)
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value[:40]!r}")
    assert not found, found
