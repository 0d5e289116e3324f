"""`citab finetune`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from citab_cli.core.data.project import Project
from citab_cli.core.evaluation import finetune as core
from citab_cli.core.runtime import checkpoint_file
from citab_cli.core.training import loop as pretraining
from tests.helpers import assert_user_error, run, tiny


def _finetune(root: Path, **kw):
    args = dict(
        cohort="adni",
        strategy="frozen",
        label_fraction=1.0,
        seeds=1,
        epochs=2,
        patience=2,
        resamples=30,
    )
    args.update(kw)
    return core.finetune(Project(root), "best.safetensors", **args)


def test_frozen_means_frozen(pretrained: Path):  # noqa: F811
    report = _finetune(pretrained)
    source, _ = checkpoint_file.load(pretrained / "runs/base/best.safetensors")
    tuned, meta = checkpoint_file.load(report.model_file, kind="classifier")
    for name, tensor in source.items():  # weights and BatchNorm statistics alike
        assert torch.equal(tuned[f"backbone.{name}"], tensor), name
    assert meta["classes"] == ["CN", "MCI", "AD"] and meta["finetuned_on"] == "adni"
    assert meta["strategy"] == "frozen"


def test_trainable_moves_the_backbone(pretrained: Path):  # noqa: F811
    report = _finetune(pretrained, strategy="trainable")
    source, _ = checkpoint_file.load(pretrained / "runs/base/best.safetensors")
    tuned, _ = checkpoint_file.load(report.model_file, kind="classifier")
    assert any(
        not torch.equal(tuned[f"backbone.{n}"], t)
        for n, t in source.items()
        if t.is_floating_point()
    )


def test_same_seed_same_numbers(pretrained: Path):  # noqa: F811
    assert _finetune(pretrained).summary == _finetune(pretrained).summary


def test_never_trains_on_test_subjects(pretrained: Path, monkeypatch):  # noqa: F811
    seen = []
    real = core.train_classifier

    def spy(model, strategy, collator, layout, rows, *args):
        seen.append(
            (
                set(rows.tolist()),
                set(layout.rows["train"].tolist()),
                set(layout.rows["test"].tolist()),
            )
        )
        return real(model, strategy, collator, layout, rows, *args)

    monkeypatch.setattr(core, "train_classifier", spy)
    _finetune(pretrained, label_fraction=0.5, seeds=2)
    assert len(seen) == 6  # fine-tuned, scratch and DAFT-style fusion, two seeds
    for rows, train, test in seen:
        assert rows <= train and not rows & test


def test_report_and_saved_model(pretrained: Path):  # noqa: F811
    report = _finetune(pretrained)
    document = json.loads((report.folder / "report.json").read_text())
    assert set(document) == {
        "kind",
        "checkpoint",
        "run",
        "cohort",
        "cohort_seen_in_pretraining",
        "strategy",
        "classes",
        "subjects",
        "split_gaps",
        "exclude_criteria",
        "pretrained_without_criteria",
        "columns_seen",
        "label_fraction",
        "seeds",
        "budget",
        "results",
        "comparisons",
        "validation_curves",
        "created",
        "without_scan",
    }
    assert document["without_scan"] is None  # every subject has a scan
    from citab_cli.core.evaluation import catboost_trees

    catboost = ("raw_table_catboost",) if catboost_trees.available() else ()  # the extra
    kinds = ("scratch", "daft", "raw_table", "raw_table_gbdt", *catboost, "raw_image", "floor")
    assert set(document["results"]) == {"finetuned", *kinds}
    baselines = [(c["method"], c["baseline"]) for c in document["comparisons"]]
    assert baselines == [("finetuned", b) for b in kinds]
    assert "Paired differences" in (report.folder / "report.md").read_text()
    assert {p.name for p in report.folder.iterdir()} == {
        "report.json",
        "report.md",
        "confusion_matrix.png",
        "roc.png",
        "validation_curve.png",
        "paired_differences.png",
        "finetuned.safetensors",
    }
    model, meta = core.load_classifier(report.model_file)
    assert model.head.out_features == 3 and "adni" in meta["cohorts"]


def test_cohort_never_seen_in_pretraining(pretrained_copy: Path, tmp_path: Path):
    pretrained = pretrained_copy
    store = Project(pretrained)
    pretraining.pretrain(store, tiny("nacc,aibl", epochs=1), "without-adni")
    report = core.finetune(
        store,
        str(pretrained / "runs/without-adni/best.safetensors"),
        "adni",
        epochs=1,
        resamples=20,
    )
    document = json.loads((report.folder / "report.json").read_text())
    assert document["cohort_seen_in_pretraining"] is False
    assert np.isfinite(report.summary["finetuned"]["balanced_accuracy"]["mean"])


def test_cli_and_bad_input(pretrained: Path):  # noqa: F811
    result = run(
        "finetune",
        "--ckpt",
        "best.safetensors",
        "--cohort",
        "adni",
        "--epochs",
        1,
        "--project",
        pretrained,
    )
    assert result.exit_code == 0, result.output
    assert "fine-tuned (frozen)" in result.output and "from scratch" in result.output
    assert "DAFT-style" in result.output
    for bad in ("0", "2"):
        assert_user_error(
            run(
                "finetune",
                "--ckpt",
                "best.safetensors",
                "--cohort",
                "adni",
                "--label-fraction",
                bad,
                "--project",
                pretrained,
            ),
            "outside (0, 1]",
        )
    assert_user_error(
        run("finetune", "--ckpt", "best.safetensors", "--cohort", "oasis", "--project", pretrained),
        "not ingested",
    )


@pytest.mark.parametrize("strategy", ["frozen"])
def test_pickle_checkpoint_refused(pretrained: Path, tmp_path: Path, strategy: str):  # noqa: F811
    torch.save({"w": torch.zeros(1)}, tmp_path / "m.pt")
    assert_user_error(
        run(
            "finetune",
            "--ckpt",
            tmp_path / "m.pt",
            "--cohort",
            "adni",
            "--strategy",
            strategy,
            "--project",
            pretrained,
        ),
        "pickle",
    )
