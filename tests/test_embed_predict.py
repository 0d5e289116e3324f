"""`citab embed` and `citab predict`: per-subject files that leave citab."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from citab_cli.core.data.project import Project
from citab_cli.core.data.subject_file import read_metadata
from citab_cli.core.evaluation import embedding_export as embed_core
from citab_cli.core.evaluation import finetune as finetune_core
from citab_cli.core.evaluation import predict as predict_core
from citab_cli.core.evaluation import probe as probe_core
from citab_cli.core.evaluation.classifier import CLASSIFIER
from citab_cli.core.runtime import checkpoint_file
from citab_cli.core.runtime.pretrained import load_checkpoint, prepare_cohorts
from tests.helpers import SHAPE, assert_user_error, ingest, read_rows, run, tree_hash, write_rows


@pytest.fixture(scope="module")
def classifier(pretrained: Path) -> Path:
    """A frozen-strategy classifier fine-tuned on adni for one epoch."""
    report = finetune_core.finetune(
        Project(pretrained), "best.safetensors", "adni", epochs=1, resamples=10
    )
    return report.model_file


def _probe_features(root: Path, cohort: str) -> tuple[np.ndarray, list[str]]:
    """What `citab probe --batchnorm stored` fits on for `cohort`: its multimodal embedding of
    labelled subjects, with the network's stored BatchNorm statistics."""
    project = Project(root)
    loaded = load_checkpoint(project, "best.safetensors")
    (data,) = prepare_cohorts(project, loaded, [cohort], lambda t: None, "probe")
    device = torch.device("cpu")
    model = loaded.model()
    features = probe_core._embeddings(loaded, data, {"citab": model}, device, "stored")
    labelled = [i for i, label in enumerate(data.labels) if label is not None]
    return features["citab"][labelled], [data.subjects[i] for i in labelled]


def test_embeddings_are_what_the_probe_fits_on(pretrained: Path, tmp_path: Path):
    out = tmp_path / "out" / "embeddings.parquet"  # the folder does not exist yet
    result = run("embed", "--ckpt", "best.safetensors", "-o", out, "--project", pretrained)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert list(frame.columns[:5]) == ["cohort", "subject", "split", "label", "has_scan"]
    assert frame["has_scan"].all()
    widths = {p: sum(c.startswith(p + "_") for c in frame.columns) for p in
              ("multimodal", "tabular_cls", "image_pooled")}  # fmt: skip
    assert widths["multimodal"] == widths["tabular_cls"] > 0 and widths["image_pooled"] > 0
    assert len(frame.columns) == 5 + sum(widths.values())
    assert sorted(frame["cohort"].unique()) == ["adni", "aibl", "nacc"]
    for cohort in ("adni", "nacc"):
        expected, subjects = _probe_features(pretrained, cohort)
        rows = frame[frame["cohort"] == cohort].set_index("subject").loc[subjects]
        got = rows[[c for c in frame.columns if c.startswith("multimodal_")]].to_numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    metadata = read_metadata(out)
    assert metadata["kind"] == "embeddings" and metadata["split"] == "all"
    assert metadata["embeddings"]["multimodal"]["dimensions"] == widths["multimodal"]
    assert metadata["cohorts"]["adni"]["seen_in_pretraining"] is True
    assert [p.name for p in out.parent.iterdir()] == ["embeddings.parquet"]


def test_csv_holds_the_same_rows_and_a_metadata_sidecar(pretrained: Path, tmp_path: Path):
    parquet, csv = tmp_path / "e.parquet", tmp_path / "e.csv"
    for path in (parquet, csv):
        args = ("embed", "--ckpt", "best.safetensors", "--cohorts", "aibl", "--split", "test")
        result = run(*args, "-o", path, "--project", pretrained)
        assert result.exit_code == 0, result.output
    a, b = pd.read_parquet(parquet), pd.read_csv(csv, dtype={"subject": str})
    assert len(a) == len(b) > 0 and set(a["split"]) == {"test"} and set(a["cohort"]) == {"aibl"}
    assert list(a["subject"]) == list(b["subject"])
    numbers = [c for c in a.columns if c.startswith(("multimodal_", "image_pooled_"))]
    np.testing.assert_array_equal(a[numbers].to_numpy(), b[numbers].to_numpy(np.float32))
    assert json.loads((tmp_path / "e.csv.json").read_text())["cohorts"]["aibl"]["subjects"] == len(
        a
    )


def test_exclude_criteria_changes_the_input_and_says_so(pretrained: Path, tmp_path: Path):
    paths = {flag: tmp_path / f"{flag}.parquet" for flag in ("with", "without")}
    for flag, path in paths.items():
        extra = ["--exclude-criteria"] if flag == "without" else []
        args = ("embed", "--ckpt", "best.safetensors", "--cohorts", "adni", "-o", path, *extra)
        result = run(*args, "--project", pretrained)
        assert result.exit_code == 0, result.output
    left_out = read_metadata(paths["without"])["cohorts"]["adni"]["criterion_columns_left_out"]
    assert {"MMSE", "CDRSB", "FAQ"} <= set(left_out)
    assert read_metadata(paths["with"])["cohorts"]["adni"]["criterion_columns_left_out"] == []
    kept = read_metadata(paths["without"])["cohorts"]["adni"]["columns_read"]
    assert not set(kept) & set(left_out)
    a, b = (pd.read_parquet(p).filter(like="tabular_cls_").to_numpy() for p in paths.values())
    assert np.abs(a - b).max() > 1e-4  # the model read other input
    assert "criterion columns left out: " in result.output


def test_an_interrupted_run_leaves_no_file(pretrained: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "e.parquet"
    out.write_bytes(b"an older file the user keeps")
    original = embed_core.embedding_batches

    def interrupted(*args, **kwargs):
        for i, batch in enumerate(original(*args, **kwargs)):
            if i == 1:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(embed_core, "embedding_batches", interrupted)
    plan = embed_core.plan_export(Project(pretrained), "best.safetensors", out, ["adni"])
    with pytest.raises(KeyboardInterrupt):
        embed_core.write_embeddings(plan)
    assert out.read_bytes() == b"an older file the user keeps"
    assert [p.name for p in tmp_path.iterdir()] == ["e.parquet"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["-o", "e.txt"], ["must end in .parquet or .csv"]),
        (["-o", "e.csv", "--cohorts", "oasis"], ["cohort 'oasis' is not ingested"]),
        (["-o", "e.csv", "--ckpt", "nothing.safetensors"], ["no run in", "nothing.safetensors"]),
    ],
)
def test_embed_bad_input(pretrained: Path, tmp_path: Path, args, fragments):
    args = [a if not a.startswith("e.") else str(tmp_path / a) for a in args]
    if "--ckpt" not in args:
        args += ["--ckpt", "best.safetensors"]
    before = tree_hash(pretrained / "runs")
    assert_user_error(run("embed", *args, "--project", pretrained), *fragments)
    assert list(tmp_path.iterdir()) == [] and tree_hash(pretrained / "runs") == before


def _unlabelled_cohort(raw_dir: Path, root: Path, tmp_path: Path, name: str = "memclinic"):
    """Ingest aibl's table and scans again as a new site whose schema has no label at all."""
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copytree(raw_dir / "aibl_mri", raw / f"{name}_mri")
    write_rows(raw / f"{name}.csv", read_rows(raw_dir / "aibl.csv"))
    schema = (raw_dir / "aibl.yaml").read_text()
    schema = re.sub(r"label:\n(  .*\n)+", "", schema.replace("cohort: aibl", f"cohort: {name}"))
    (raw / f"{name}.yaml").write_text(schema)
    result = ingest(raw, name, root, "--shape", SHAPE)
    assert result.exit_code == 0, result.output


def test_predict_on_a_new_unlabelled_cohort(
    pretrained_copy: Path, classifier: Path, raw_dir: Path, tmp_path: Path
):
    root = pretrained_copy
    _unlabelled_cohort(raw_dir, root, tmp_path)
    out = tmp_path / "predictions.csv"
    result = run("predict", "--ckpt", classifier, "--cohort", "memclinic", "-o", out, "-p", root)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, dtype={"subject": str, "label": str})
    assert list(frame.columns) == [
        "cohort", "subject", "split", "label", "has_scan", "used_in_training",
        "p_CN", "p_MCI", "p_AD", "predicted",
    ]  # fmt: skip
    assert len(frame) == len(read_rows(root / "cohorts/memclinic/subjects.csv"))
    assert frame["label"].isna().all() and not frame["used_in_training"].any()
    probabilities = frame[["p_CN", "p_MCI", "p_AD"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert list(frame["predicted"]) == [["CN", "MCI", "AD"][k] for k in probabilities.argmax(1)]
    assert read_metadata(out)["summary"] is None
    assert "no labelled subject" in result.output


def test_predict_on_the_finetuning_cohort_scores_only_unseen_subjects(
    pretrained: Path, classifier: Path, tmp_path: Path
):
    out = tmp_path / "p.parquet"
    plan = predict_core.plan_predict(Project(pretrained), str(classifier), "adni", out)
    metadata = predict_core.write_predictions(plan)
    frame = pd.read_parquet(out)
    assert (frame["used_in_training"] == frame["split"].isin(["train", "val"])).all()
    summary = metadata["summary"]
    assert summary["subjects"] == int(((frame["split"] == "test") & frame["label"].notna()).sum())
    assert summary["left_out_as_fitted"] == int(frame["used_in_training"].sum())
    # the same numbers as the classifier's own test predictions, where it was evaluated
    test = frame[frame["split"] == "test"]
    model, _ = finetune_core.load_classifier(classifier)
    from citab_cli.core.evaluation.classifier import predict
    from citab_cli.core.runtime.dataset import Collator

    rows = np.nonzero(plan.cohort.splits == "test")[0]
    collator = Collator.for_model([plan.cohort], plan.loaded.config.model)
    expected = predict(model, collator, rows, 4, torch.device("cpu"))
    np.testing.assert_allclose(test[["p_CN", "p_MCI", "p_AD"]].to_numpy(), expected, atol=1e-6)


def _edited_classifier(classifier: Path, tmp_path: Path, edit) -> Path:
    tensors, document = checkpoint_file.load(classifier, kind=CLASSIFIER)
    edit(document)
    path = tmp_path / "edited.safetensors"
    checkpoint_file.save(path, tensors, CLASSIFIER, document)
    return path


def _two_classes(document: dict) -> None:
    document["classes"] = ["CN", "AD"]


def _learned_identity(document: dict) -> None:
    tabular = document["config"]["model"]["tabular"]
    tabular["column_identity"] = "learned"
    tabular["vocabulary"] = ["AGE", "MMSE"]


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (_two_classes, ["label(s) MCI that the classifier does not know", "CN, AD"]),
        (_learned_identity, ["columns or levels this classifier never saw", "CDRSB"]),
    ],
)
def test_predict_refuses_what_cannot_be_mapped(
    pretrained: Path, classifier: Path, tmp_path: Path, edit, fragments
):
    path = _edited_classifier(classifier, tmp_path, edit)
    out = tmp_path / "p.csv"
    result = run("predict", "--ckpt", path, "--cohort", "adni", "-o", out, "-p", pretrained)
    assert_user_error(result, *fragments)
    assert not out.exists()


def test_predict_takes_only_a_classifier(pretrained: Path, tmp_path: Path):
    out = tmp_path / "p.csv"
    args = ("predict", "--ckpt", "best.safetensors", "--cohort", "adni", "-o", out)
    assert_user_error(run(*args, "-p", pretrained), "holds a model", "classifier")
    assert not out.exists()


def test_one_rule_for_the_criterion_columns():
    """A fine-tuned classifier reads cohorts as it was fine-tuned; asked to do without the
    criteria it saw, it refuses; a pretrained checkpoint does as the command asks."""
    from citab_cli.core.errors import CitabError
    from citab_cli.core.runtime.pretrained import LoadedCheckpoint

    def checkpoint(kind: str, without: bool | None = None) -> LoadedCheckpoint:
        document = {"kind": kind, **({} if without is None else {"exclude_criteria": without})}
        return LoadedCheckpoint(Path("c.safetensors"), "r", None, document, {})  # type: ignore[arg-type]

    for requested in (False, True):
        assert checkpoint("model").without_criteria(requested) is requested
        assert checkpoint("classifier", True).without_criteria(requested) is True
    assert checkpoint("classifier", False).without_criteria(False) is False
    with pytest.raises(CitabError, match="fine-tuned with the criterion columns"):
        checkpoint("classifier", False).without_criteria(True)
