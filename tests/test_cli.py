"""The command-line surface: fast start-up, versions, usage errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from citab_cli import __version__
from citab_cli.app import app
from tests.helpers import run


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from citab_cli.app import app; "
        "heavy = {'torch', 'torchio', 'sentence_transformers', 'pandas', 'nibabel', 'sklearn', "
        "'numpy', 'scipy', 'matplotlib'}; "
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


def _commands():
    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, command

    return list(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize(
    "path,command", _commands(), ids=[" ".join(path) for path, _ in _commands()]
)
def test_every_option_shows_its_default(path, command):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for param in command.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        (line,) = [
            row for row in lines if re.match(rf"^[│|\s*]*{re.escape(param.opts[0])}[\s,]", row)
        ]
        assert "[default:" in line or "[required]" in line, line.strip()
        assert not re.search(r"\w \.", line), f"a value is missing before a full stop: {line}"


def test_pretrain_help_quotes_the_presets():
    from citab_cli.commands.pretrain import PRESET_BATCH, PRESET_EPOCHS, Preset
    from citab_cli.core.model.config import PRESETS
    from citab_cli.core.runtime.run_config import TRAIN_PRESETS

    assert [p.value for p in Preset] == list(TRAIN_PRESETS) == list(PRESETS)

    assert ", ".join(f"{k} {v.epochs}" for k, v in TRAIN_PRESETS.items()) == PRESET_EPOCHS
    assert ", ".join(f"{k} {v.batch_size}" for k, v in TRAIN_PRESETS.items()) == PRESET_BATCH
    assert {v.seed for v in TRAIN_PRESETS.values()} == {0}
