"""The layout rules of docs/architecture.md, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "citab_cli"
CORE = PACKAGE / "core"
#: Limits from the house style: a module under ~400 lines, a function under ~80.
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
#: The only modules allowed directly under core/: shared leaves.
CORE_LEAVES = {"__init__.py", "errors.py", "atomic.py", "locks.py", "settings.py", "yaml_io.py"}
CORE_PACKAGES = {"data", "synth", "model", "layers", "losses", "training", "evaluation"}


def _sources(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_core_is_grouped_by_stage():
    modules = {p.name for p in CORE.glob("*.py")}
    packages = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert modules - CORE_LEAVES == {"headers.py"}  # the one concept module at the top
    assert packages == CORE_PACKAGES


@pytest.mark.parametrize("path", _sources(PACKAGE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_short(path: Path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    for function in _functions(ast.parse(text)):
        length = function.end_lineno - function.lineno + 1
        assert length <= MAX_FUNCTION_LINES, f"{function.name} has {length} lines"


@pytest.mark.parametrize("path", _sources(CORE), ids=lambda p: str(p.relative_to(CORE)))
def test_core_never_prints_exits_or_reads_the_command_line(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names]
            assert not any(n.split(".")[0] in {"typer", "rich", "click"} for n in names)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"print", "input", "exit", "quit"}
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in {("sys", "argv"), ("sys", "exit")}


def test_losses_are_pure_functions_of_tensors():
    for path in _sources(CORE / "losses"):
        tree = ast.parse(path.read_text())
        imported = {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        } | {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert imported <= {"__future__", "torch", "collections", "typing", "math"}, path.name


def test_the_model_sees_tensors_not_files():
    allowed = ("citab_cli.core.model", "citab_cli.core.layers", "citab_cli.core.losses")
    allowed += ("citab_cli.core.errors",)
    for folder in ("model", "layers"):
        for path in _sources(CORE / folder):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("citab"):
                    assert node.module.startswith(allowed), f"{path.name}: {node.module}"


def test_architecture_page_names_every_core_module():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for path in _sources(CORE):
        if path.name != "__init__.py":
            assert path.name in page, path.relative_to(CORE)
    for package in CORE_PACKAGES:
        assert f"{package}/" in page
