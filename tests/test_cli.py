"""The command-line surface: fast start-up, versions, usage errors."""

from __future__ import annotations

import subprocess
import sys

from citab_cli import __version__
from tests.conftest import run


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from citab_cli.app import app; "
        "heavy = {'torch', 'torchio', 'sentence_transformers', 'pandas', 'nibabel', 'sklearn'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_built_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("synth", "ingest", "schema", "info"):
        assert command in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_bad_usage_is_exit_2():
    assert run("ingest").exit_code == 2
    assert run("nonsense").exit_code == 2


def test_info_outside_a_project(tmp_path):
    result = run("info", "--project", tmp_path)
    assert result.exit_code == 1 and "not a citab project" in result.output
