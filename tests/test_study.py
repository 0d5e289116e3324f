"""`citab study`: the study file, its plan, a small study end to end, re-running it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from citab_cli.core.data.project import Project, StudyFiles
from citab_cli.core.errors import CitabError
from citab_cli.core.workflows.study_plan import plan_study
from citab_cli.core.workflows.study_spec import load_study
from tests.helpers import assert_user_error, run

SMALL = """\
study: small
cohorts: [adni, aibl]
preset: tiny
config: {train: {epochs: 1, batch_size: 4}}
arms:
  reference: {}
  dense: {model: {tabular: {ffn: dense}}}
reference: reference
seeds: [0, 1]
regimes:
  cross-cohort: all
  single-cohort: [reference]
  leave-one-out: [reference]
label_fractions: [1.0]
probe_seeds: 1
resamples: 50
"""


def _study(tmp_path: Path, text: str = SMALL, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("probe_seeds: 1", "probe_seed: 1"), "study.yaml:15: unknown key 'probe_seed'"),
        (("reference: reference", "reference: main"), "reference 'main' is not one of the arms"),
        (("single-cohort: [reference]", "single-cohort: [nope]"), "unknown arm(s): nope"),
        (("seeds: [0, 1]", "seeds: [0, 0]"), "seeds must be distinct"),
        (("label_fractions: [1.0]", "label_fractions: [1.5]"), "label fractions must be in"),
    ],
)
def test_a_bad_study_file_names_the_problem(tmp_path: Path, change, message):
    path = _study(tmp_path, SMALL.replace(*change))
    with pytest.raises(CitabError) as caught:
        load_study(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_the_plan_lays_out_every_run_with_equal_steps_for_single_cohorts(project: Path):
    spec = load_study(_study(project.parent))
    runs = plan_study(spec, Project(project))
    names = [r.name for r in runs]
    assert names[:4] == ["small-reference-cross-s0", "small-reference-cross-s1",
                         "small-dense-cross-s0", "small-dense-cross-s1"]  # fmt: skip
    assert "small-reference-single-aibl-s1" in names and "small-reference-loo-adni-s0" in names
    assert len(runs) == 4 + 4 + 4
    by_name = {r.name: r for r in runs}
    cross = by_name["small-reference-cross-s0"]
    assert cross.config.cohorts == ["adni", "aibl"] and cross.probe_on == ("adni", "aibl")
    assert cross.config.exclude_criteria and cross.config.train.seed == 0
    assert by_name["small-dense-cross-s1"].config.model.tabular.ffn == "dense"
    assert by_name["small-dense-cross-s1"].config.train.seed == 1
    assert cross.config.train.steps is None  # cross-cohort runs count in epochs
    for cohort in ("adni", "aibl"):
        single = by_name[f"small-reference-single-{cohort}-s0"]
        loo = by_name[f"small-reference-loo-{cohort}-s0"]
        assert cohort not in loo.config.cohorts and loo.probe_on == (cohort,)
        assert loo.held_out == cohort
        # every regime: the cross-cohort run's steps, warm-up and validation points exactly
        for other in (single, loo):
            train = other.config.train
            assert other.steps == train.steps == cross.steps
            assert train.warmup_steps == round(cross.config.train.warmup_epochs * cross.steps)
            assert train.validate_every_steps == cross.steps  # validate_every: 1 epoch
            assert train.epochs * _per_epoch(project, other) >= train.steps


def _per_epoch(project: Path, run) -> int:
    from citab_cli.core.workflows.study_plan import steps_per_epoch

    return steps_per_epoch(Project(project), run.config)


def test_an_arm_override_that_is_not_a_setting_is_refused(project: Path):
    text = SMALL.replace(
        "dense: {model: {tabular: {ffn: dense}}}", "dense: {model: {tabular: {ffn: wide}}}"
    )
    with pytest.raises(CitabError, match="arm 'dense': model.tabular.ffn"):
        plan_study(load_study(_study(project.parent, text)), Project(project))


def test_dry_run_lists_the_runs_and_trains_nothing(project: Path):
    path = _study(project.parent)
    result = run("study", path, "--project", project, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "small-reference-cross-s0" in result.output and "Dry run" in result.output
    # what the study can detect, before anything runs: the test split and, cross-fitted, the
    # held-out cohort's every labelled subject
    assert "What it can detect" in result.output and "held out" in result.output
    assert "smallest detectable" in result.output.replace("\n", " ")
    assert not (project / "runs").exists()
    missing = _study(project.parent, SMALL.replace("[adni, aibl]", "[adni, oasis]"), "m.yaml")
    assert_user_error(run("study", missing, "--project", project, "--dry-run"), "oasis")


ONE_RUN = """\
study: one
cohorts: [adni, aibl]
probe_cohorts: [adni]
preset: tiny
config: {train: {epochs: 1, batch_size: 4}}
arms: {reference: {}}
reference: reference
seeds: [0]
label_fractions: [1.0]
probe_seeds: 1
resamples: 50
"""


def test_a_study_runs_reports_and_a_rerun_redoes_nothing(embedded: Path, monkeypatch):
    from citab_cli.core.evaluation import probe
    from citab_cli.core.workflows import study, study_report

    spec = load_study(_study(embedded.parent, ONE_RUN))
    result = study.run_study(Project(embedded), spec, "cpu")
    document = json.loads((result.report / "report.json").read_text())
    tables = {(t["cohort"], t["fraction"]) for t in document["tables"]}
    assert tables == {("adni", 1.0)}  # the tiny test cohorts: only adni's test split has
    # every class
    rows = [e["comparison"] for e in document["tables"][0]["balanced_accuracy"]]
    assert rows[0] == "reference − raw table (logistic regression)"
    assert "like for like: reference image pooled − random weights image pooled" in rows
    assert all(e["seeds"] == 1 for e in document["tables"][0]["balanced_accuracy"])
    from citab_cli.core.workflows.study_power import family_size

    family = [e for e in document["tables"][0]["balanced_accuracy"] if e["family"]]
    assert len(family) == family_size(spec)  # the dry run's power figure used the same family
    text = (result.report / "report.md").read_text()
    assert "family of" in text and "Holm" in text
    assert (result.folder / "scores" / "one-reference-cross-s0--best--adni.npz").is_file()
    # where the time went: every part of the study, in the report and kept for the next run
    parts = {row["part"]: row["seconds"] for row in document["time"]["parts"]}
    expected = {study.PRETRAINING, *probe.PARTS.values(), study_report.REPORT_PARTS[0]}
    assert expected <= set(parts), expected - set(parts)
    assert all(seconds >= 0 for seconds in parts.values()) and parts[study.PRETRAINING] > 0
    assert abs(sum(parts.values()) - document["time"]["total_seconds"]) < 0.5
    assert "## Where the time went" in text and "| pretraining |" in text
    kept = json.loads(StudyFiles(result.folder).timings.read_text())
    assert set(kept) == expected - {study_report.REPORT_PARTS[0]}
    calls = []
    monkeypatch.setattr(probe, "probe", lambda *a, **k: calls.append(a) or [])
    again = study.run_study(Project(embedded), spec, "cpu")
    assert calls == [] and again.report is not None  # scored runs are not probed again
    again_kept = json.loads(StudyFiles(result.folder).timings.read_text())
    assert {k: again_kept[k] for k in probe.PARTS.values()} == {
        k: kept[k] for k in probe.PARTS.values()
    }  # nothing probed again, nothing counted again
    assert again_kept[study.PRETRAINING] >= kept[study.PRETRAINING]
    # the study file edited since: its kept run is refused, not extended under the old scores
    longer = load_study(
        _study(embedded.parent, ONE_RUN.replace("epochs: 1", "epochs: 3"), "l.yaml")
    )
    with pytest.raises(CitabError, match="run 'one-reference-cross-s0' .* train.epochs 1, the "
                       "study now asks for 3; remove that run"):  # fmt: skip
        plan_study(longer, Project(embedded))


@pytest.mark.slow
def test_every_regime_and_fine_tuning_reach_the_report(embedded: Path):
    from citab_cli.core.workflows import study

    text = SMALL.replace("probe_seeds: 1", "probe_seeds: 1\nfinetune: true")
    text = text.replace("cohorts: [adni, aibl]", "cohorts: [adni, aibl]\nprobe_cohorts: [adni]")
    result = study.run_study(Project(embedded), load_study(_study(embedded.parent, text)), "cpu")
    document = json.loads((result.report / "report.json").read_text())
    table = next(t for t in document["tables"] if t["cohort"] == "adni")
    rows = {e["comparison"]: e for e in table["balanced_accuracy"]}
    assert rows["reference − dense"]["seeds"] == 2
    assert "cross-cohort − single-cohort (same steps)" in rows
    assert "cross-cohort − adni left out of pretraining" in rows
    assert "fine-tuned (held out) − from scratch, same steps" in rows
    assert "fine-tuned (held out) − supervised fusion from scratch (DAFT-style), same steps" in rows
    assert {a["regime"] for a in table["arms"]} == {
        "cross-cohort",
        "single-cohort",
        "leave-one-out",
    }
    assert table["scope"] == "test split" and table["subjects"] == sum(table["classes"])
    assert all(e["n"] == table["subjects"] for e in table["balanced_accuracy"])
    # the held-out cohort, cross-fitted over every labelled subject, has its own table
    held = next(t for t in document["tables"] if t["scope"] == "held out")
    assert held["subjects"] > table["subjects"]
    names = [e["comparison"] for e in held["balanced_accuracy"]]
    assert names[0] == "left out − raw table (logistic regression)"
    assert "like for like: left out image pooled − random weights image pooled" in names
    assert all("mde" in e and "mde_holm" in e for e in held["balanced_accuracy"])


def test_a_one_sided_baseline_arm_is_also_compared_on_the_embedding_it_trains(tmp_path: Path):
    """scarf trains the tabular CLS, simclr the pooled image: besides the multimodal row, each
    gets a row against the reference's same embedding, paired by seed, on the same subjects."""
    from citab_cli.core.workflows.study_scores import Scores
    from citab_cli.core.workflows.study_tables import _arm_rows

    arms = "arms:\n  reference: {}\n  scarf: {model: {loss: {objective: scarf}}}\n"
    arms += "  simclr: {model: {loss: {objective: simclr}}}\n"
    text = SMALL.replace(
        "arms:\n  reference: {}\n  dense: {model: {tabular: {ffn: dense}}}\n", arms
    )
    spec = load_study(_study(tmp_path, text))
    rng = np.random.default_rng(0)
    y, rows = np.array([0, 1, 0, 1]), np.arange(4)

    def scores(shift: float) -> Scores:
        names = ("citab", "citab_tabular", "citab_image")
        runs = {n: {"1": [rng.random((4, 2)) + shift]} for n in names}
        return Scores(y, rows, runs)

    ref, other = {0: scores(0.0), 1: scores(0.0)}, {0: scores(1.0), 1: scores(1.0)}
    found = {arm: _arm_rows(spec, arm, ref, other, "1") for arm in ("scarf", "simclr")}
    assert [r.label for r in found["scarf"]] == [
        "reference − scarf", "reference tabular CLS − scarf tabular CLS"]  # fmt: skip
    assert [r.label for r in found["simclr"]] == [
        "reference − simclr", "reference image pooled − simclr image pooled"]  # fmt: skip
    side = found["simclr"][1]
    assert side.method[1] is ref[1].runs["citab_image"]["1"]
    np.testing.assert_array_equal(side.baseline[0][0], other[0].runs["citab_image"]["1"][0])
    plain = SMALL.replace("dense: {model: {tabular: {ffn: dense}}}", "dense: {}")
    assert (
        len(_arm_rows(load_study(_study(tmp_path, plain, "p.yaml")), "dense", ref, other, "1")) == 1
    )


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.glob("studies/*.yaml")))
def test_every_shipped_study_file_loads_and_builds_every_arm(path: Path):
    from citab_cli.core.workflows.study_plan import arm_config

    spec = load_study(path)
    objectives = {arm: arm_config(spec, arm).model.loss.objective for arm in spec.arms}
    assert objectives[spec.reference] == "citab"
    if path.stem in {"paper", "control", "control-large-test"}:  # the paper's baselines
        assert {"scarf", "simclr"} <= set(objectives.values()), objectives
