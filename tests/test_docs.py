"""The documentation's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from citab_cli.core.schema.cohort import CohortSchema
from citab_cli.core.settings import ProjectSettings
from citab_cli.core.yaml_io import parse_model

DOCS = Path(__file__).parents[1] / "docs"


def yaml_blocks(page: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


@pytest.mark.parametrize("block", yaml_blocks("cohort-schema.md"))
def test_schema_examples_are_valid(block: str):
    schema = parse_model(block, Path("docs/cohort-schema.md"), CohortSchema, "cohort schema")
    assert schema.columns


def test_project_settings_example_matches_what_ingest_writes(ingested_dir: Path):
    (block,) = yaml_blocks("project-directory.md")
    parse_model(block, Path("docs/project-directory.md"), ProjectSettings, "project settings")
    written = (ingested_dir / "citab.yaml").read_text()

    def keys(text: str) -> list[str]:  # the affine's rows are numbers, not keys
        return [line.split(":")[0] for line in text.splitlines() if ":" in line]

    assert keys(written) == keys(block)


def test_readme_links_resolve():
    readme = (DOCS.parent / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (DOCS.parent / target).exists(), target


def test_model_config_example_is_the_paper_preset():
    from citab_cli.core.model.config import ModelConfig, preset

    (block,) = yaml_blocks("model.md")
    assert parse_model(block, Path("docs/model.md"), ModelConfig, "model config") == preset("paper")


def test_pretraining_config_example_overrides_the_preset(tmp_path: Path):
    from citab_cli.core.training.run_setup import load_config

    (block,) = yaml_blocks("pretraining.md")
    path = tmp_path / "override.yaml"
    path.write_text(block)
    config = load_config("small", path)
    assert config.train.epochs == 50 and config.train.learning_rate == 0.0003
    assert config.train.augment.rotate_degrees == 5.0 and config.train.augment.flip == 0.5
    assert config.model.loss.mtr_weight == 0.5 and config.model.tabular.dim == 128
    path.write_text("train:\n  epochs: 5\n  epohcs: 6\n")
    with pytest.raises(Exception, match="override.yaml:3: unknown key 'epohcs'"):
        load_config("small", path)


def test_cli_reference_matches_the_app():
    from citab_cli.app import app
    from citab_cli.cli_reference import render

    page = (DOCS / "cli.md").read_text()
    assert page == render(app), "regenerate: python -m citab_cli.cli_reference > docs/cli.md"
    for command in (
        "synth",
        "ingest",
        "schema infer",
        "schema check",
        "embed-headers",
        "pretrain",
        "probe",
        "finetune",
        "explain",
        "demo",
        "info",
    ):
        assert f"## `citab {command}`" in page


def test_docs_links_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (DOCS / target).is_file(), (page.name, target)


def test_cli_reference_summaries_are_whole_sentences():
    page = (DOCS / "cli.md").read_text()
    sections = page.split("\n## `citab ")[1:]
    assert len(sections) > 10
    for section in sections:
        summary = section.split("\n\n")[1]
        assert summary.endswith((".", ")")), summary


def test_ingest_page_names_every_qc_figure():
    from citab_cli.core.scans.qc import FIGURES

    page = (DOCS / "ingest.md").read_text()
    for key in FIGURES:
        assert f"`{key}`" in page, key


def test_readme_says_the_schema_search_order_the_code_uses():
    import inspect

    from citab_cli.core.schema.cohort import find_schema

    readme = " ".join((DOCS.parent / "README.md").read_text().split())
    order = ["`--schema`", "the project's copy", "beside the CSV", "the shipped"]
    positions = [readme.index(step) for step in order]
    assert positions == sorted(positions)
    source = inspect.getsource(find_schema)
    code = ["explicit", "project_schema", "csv_path.parent", "shipped_schema_dir"]
    assert [source.index(x) for x in code] == sorted(source.index(x) for x in code)


@pytest.mark.slow
def test_quickstart_shows_what_the_demo_prints(tmp_path: Path):
    """The numbers of docs/quickstart.md are those a fresh, seeded `citab demo` prints (3-4
    minutes on two cores, hence slow)."""
    from tests.helpers import run

    page = (DOCS / "quickstart.md").read_text()
    block = page.split("```\nTest balanced accuracy", 1)[1].split("```", 1)[0]
    rows = [" ".join(line.split()) for line in block.splitlines()
            if re.match(r"\s+(adni|nacc|aibl)\s+\d+%", line)]  # fmt: skip
    assert len(rows) == 6
    result = run("demo", "--dir", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    for row in rows:
        assert row in printed, row
    sentences = " ".join(block.split("below it", 1)[1].split())
    assert sentences in printed
