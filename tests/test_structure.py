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
#: Shared leaves directly under core/: anything may import them; they import only each other.
CORE_LEAVES = {
    "errors",
    "atomic",
    "locks",
    "hashing",
    "figures",
    "settings",
    "yaml_io",
    "precision",
}
#: The parts of citab_cli from the bottom up. A part imports only the shared leaves, itself and
#: parts of lower layers; parts of one layer never import each other. ("version" is
#: citab_cli/__init__.py, which holds the version number.)
LAYERS: list[set[str]] = [
    {"version", *CORE_LEAVES},
    {"layers", "losses", "schema"},
    {"model", "scans", "synth"},
    {"data"},
    {"headers"},
    {"runtime"},
    {"training", "evaluation"},
    {"explain"},
    {"workflows"},
    {"commands"},
    {"app"},
    {"cli_reference", "__main__"},
]
CORE_PACKAGES = {"data", "schema", "scans", "synth", "model", "layers", "losses", "runtime"}
CORE_PACKAGES |= {"training", "evaluation", "explain", "workflows"}


def _sources(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in _sources(PACKAGE)}


def _imports(name: str) -> set[str]:
    """Every citab_cli module that `name` imports anywhere: at the top, inside functions, or
    under TYPE_CHECKING; `from package import module` counts as importing the module."""
    path = MODULES[name]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("citab_cli")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            if not base.startswith("citab_cli"):
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def _part(module: str) -> str:
    """The part of citab_cli a module belongs to (a core package or leaf, commands, app, ...)."""
    parts = module.split(".")
    if parts == ["citab_cli"]:
        return "version"
    if parts[1] == "core":
        return parts[2] if len(parts) > 2 else "core"
    return parts[1]


def _layer(part: str) -> int:
    for index, parts in enumerate(LAYERS):
        if part in parts:
            return index
    raise AssertionError(f"{part} is in no layer of the structure test")


def test_core_is_grouped_by_stage():
    modules = {p.stem for p in CORE.glob("*.py")} - {"__init__"}
    packages = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert modules - CORE_LEAVES == {"headers"}  # the one concept module at the top
    assert packages == CORE_PACKAGES


def test_every_part_is_placed_in_a_layer():
    parts = {_part(m) for m in MODULES} - {"core"}
    for part in parts:
        _layer(part)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_layers(module: str):
    part = _part(module)
    if part == "core":
        assert not _imports(module)
        return
    for target in _imports(module):
        other = _part(target)
        if other == part or (part in CORE_LEAVES and other in CORE_LEAVES | {"version"}):
            continue
        assert _layer(other) < _layer(part), f"{module} imports {target}: {part} -> {other}"


def test_no_module_imports_itself_through_others():
    """No import cycle among modules, deferred and TYPE_CHECKING imports included."""
    graph = {m: _imports(m) for m in MODULES}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_the_checks_see_a_cycle_and_an_upward_import():
    """The two checks above would fail on a real violation (guards against a vacuous pass)."""
    assert "citab_cli.core.runtime.dataset" in _imports("citab_cli.core.evaluation.labels")
    assert _layer("training") > _layer("runtime") > _layer("data") > _layer("schema")
    assert _layer("evaluation") == _layer("training")


def test_evaluation_and_explain_never_import_training():
    for module in MODULES:
        if _part(module) in ("evaluation", "explain"):
            assert not any(_part(t) == "training" for t in _imports(module)), module


def test_explanations_live_in_their_own_package():
    """Nothing of the explanations is left in evaluation/, and only the layers above reach
    into explain/."""
    assert not any(m.startswith("citab_cli.core.evaluation.explain") for m in MODULES)
    assert _layer("explain") == _layer("evaluation") + 1
    for module in MODULES:
        if _part(module) == "evaluation":
            assert not any(_part(t) == "explain" for t in _imports(module)), module


def test_synth_imports_no_stage_above_the_schema():
    for module in MODULES:
        if _part(module) == "synth":
            parts = {_part(t) for t in _imports(module)}
            assert parts <= {"synth", "schema", "version", *CORE_LEAVES}, (module, parts)


@pytest.mark.parametrize("path", _sources(PACKAGE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_short(path: Path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    for function in _functions(ast.parse(text)):
        length = function.end_lineno - function.lineno + 1
        assert length <= MAX_FUNCTION_LINES, f"{function.name} has {length} lines"


@pytest.mark.parametrize("path", _sources(CORE), ids=lambda p: str(p.relative_to(CORE)))
def test_every_public_function_and_class_of_the_core_says_what_it_is(path: Path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    missing = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.ClassDef) or node.name.startswith("_"):
            continue
        if not ast.get_docstring(node):
            missing.append(node.name)
        if isinstance(node, ast.ClassDef):
            missing += [
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef)
                and not item.name.startswith("_")
                and not ast.get_docstring(item)
            ]
    assert not missing, f"{path.name}: no docstring for {', '.join(missing)}"


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
    """Losses import torch and the precision leaf, which imports torch alone."""
    for path in [*_sources(CORE / "losses"), CORE / "precision.py"]:
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
        modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} - {
            None
        }
        citab = {m for m in modules if m.startswith("citab_cli")}
        assert citab <= ({"citab_cli.core.precision"} if path.parent.name == "losses" else set())
        imported -= {"citab_cli"} if citab else set()
        assert imported <= {"__future__", "torch", "collections", "typing", "math"}, path.name


def test_the_model_sees_tensors_not_files():
    allowed = ("citab_cli.core.model", "citab_cli.core.layers", "citab_cli.core.losses")
    allowed += ("citab_cli.core.errors", "citab_cli.core.precision")
    for folder in ("model", "layers"):
        for path in _sources(CORE / folder):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("citab"):
                    assert node.module.startswith(allowed), f"{path.name}: {node.module}"


def test_only_the_project_module_names_run_and_cohort_files():
    """Run, cohort, report and study file names are spelled in data/project.py alone: no other
    module builds a path from them (docstrings aside; help texts may name them for users)."""
    names = ("best.safetensors", "last.safetensors", "metrics.jsonl", "curves.png", "qc.png")
    names += ("report.json", "report.md", "finetuned.safetensors", "study.json", "plan.json")
    names += ("timings.json",)
    for path in [*_sources(CORE), *_sources(PACKAGE / "commands")]:
        if path.name == "project.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        docstrings |= {  # help texts name files for users
            id(constant)
            for node in ast.walk(tree)
            if isinstance(node, ast.keyword) and node.arg == "help"
            for constant in ast.walk(node.value)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                for name in names:
                    assert node.value != name and f"/{name}" not in node.value, (path, name)


def test_architecture_page_names_every_core_module():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for path in _sources(CORE):
        if path.name != "__init__.py":
            assert path.name in page, path.relative_to(CORE)
    for package in CORE_PACKAGES:
        assert f"{package}/" in page


def test_test_modules_share_only_through_conftest():
    """Fixtures come from tests/conftest.py (pytest's, never imported) and helpers from
    tests/helpers.py (or helper modules), never from another test module."""
    for path in sorted((PACKAGE.parent / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.split(".")[-1].startswith("test_"), (path.name, node.module)
                assert node.module != "tests.conftest", path.name
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.split(".")[-1].startswith("test_"), path.name


def test_the_three_reports_and_three_embeddings_have_names_of_their_own():
    """No core module or function is called plain `report` or `embed` (the command names are
    the only ones); the page's folder is not one letter away from the reports' folder; the
    architecture page says which is which."""
    from citab_cli.core.data.project import PAGE_DIR, Project

    for path in _sources(CORE):
        assert path.stem not in {"report", "embed", "reports"}, path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                assert node.name not in {"report", "embed", "write_report"}, (path, node.name)
    assert PAGE_DIR == "page" and Project(Path("p")).reports_dir.name == "reports"
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for name in ("evaluation report", "study report", "project page", "header encoding",
                 "subject embeddings", "embedding export"):  # fmt: skip
        assert f"| {name} |" in page, name
