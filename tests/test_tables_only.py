"""Subjects with a table and no scan: `citab synth --tables-only`, `citab ingest
--on-missing-image keep` (stored, counted per split, outside QC), and what reads the cohort
afterwards (they are left out, and said to be)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from tests.helpers import SHAPE, FakeEncoder, ingest, run, tiny

EXTRA = 12


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """adni and aibl of 16 scanned subjects each, plus 5 table-only subjects each."""
    out = tmp_path_factory.mktemp("registry") / "raw"
    result = run("synth", out, "--cohorts", "adni,aibl", "--subjects", 16, "--shape", SHAPE,
                 "--seed", 4, "--tables-only", EXTRA)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"last {EXTRA} subjects have table rows and no scan" in result.output
    return out


def _truth(raw: Path, cohort: str) -> list[dict]:
    with open(raw / "truth.csv", newline="") as handle:
        return [r for r in csv.DictReader(handle) if r["cohort"] == cohort]


def test_synth_writes_table_rows_without_scans(registry: Path, tmp_path: Path):
    truth = _truth(registry, "adni")
    assert len(truth) == 16 + EXTRA
    assert all(r["image"] for r in truth[:16]) and not any(r["image"] for r in truth[16:])
    assert len(list((registry / "adni_mri").rglob("*.nii.gz"))) == 16
    with open(registry / "adni.csv", newline="") as handle:
        subjects = {row["PTID"] for row in csv.DictReader(handle)}
    assert {r["subject"] for r in truth} == subjects  # every subject has table rows
    assert json.loads((registry / "truth.json").read_text())["tables_only"] == EXTRA
    plain = tmp_path / "plain"
    assert run("synth", plain, "--cohorts", "adni", "--subjects", 16, "--shape", SHAPE,
               "--seed", 4, "--tables-only", 0).exit_code == 0  # fmt: skip
    assert "tables_only" not in json.loads((plain / "truth.json").read_text())
    bad = run("synth", tmp_path / "bad", "--tables-only", -1)
    assert bad.exit_code == 1 and "--tables-only -1 is negative" in bad.output


def test_ingest_keeps_them_counts_them_and_leaves_them_out_of_qc(registry: Path, tmp_path: Path):
    project = tmp_path / "p"
    refused = ingest(registry, "adni", project, "--shape", SHAPE)
    assert refused.exit_code == 1 and "not found" in refused.output
    result = ingest(registry, "adni", project, "--shape", SHAPE, "--on-missing-image", "keep")
    assert result.exit_code == 0, result.output
    assert "without a scan" in result.output and f"{EXTRA} row(s) kept without a scan" in (
        result.output.replace("\n", " ")
    )
    assert "16 scans" in result.output and f"and {EXTRA} without a scan" in result.output
    folder = project / "cohorts" / "adni"
    with open(folder / "subjects.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 + EXTRA
    table_only = [r for r in rows if not r["image"]]
    assert len(table_only) == EXTRA and all(not r["image_sha256"] for r in table_only)
    assert np.load(folder / "images.npy", mmap_mode="r").shape == (16, *(SHAPE,) * 3)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sum(manifest["without_scan"].values()) == EXTRA
    by_split = {s: sum(1 for r in table_only if r["split"] == s) for s in ("train", "val", "test")}
    assert {s: manifest["without_scan"].get(s, 0) for s in by_split} == by_split
    assert len(manifest["qc"]) == 16 and not {r["subject"] for r in table_only} & set(
        manifest["qc"]
    )
    assert manifest["subjects"] == 16 + EXTRA
    info = run("info", "--project", project)
    assert f"{EXTRA} of {16 + EXTRA} subjects have no scan" in info.output.replace("\n", " ")


def test_a_cohort_without_any_scan_ingests_and_is_left_out_by_name(tmp_path: Path, monkeypatch):
    from citab_cli.core import headers
    from citab_cli.core.runtime.dataset import load_cohort
    from citab_cli.core.training import loop

    raw = tmp_path / "raw"
    assert run("synth", raw, "--cohorts", "adni,aibl", "--subjects", 16, "--shape", SHAPE,
               "--seed", 5).exit_code == 0  # fmt: skip
    for scan in (raw / "aibl_mri").rglob("*.nii.gz"):
        scan.unlink()  # a registry with tables only
    project = tmp_path / "p"
    assert ingest(raw, "adni", project, "--shape", SHAPE).exit_code == 0
    result = ingest(raw, "aibl", project, "--shape", SHAPE, "--on-missing-image", "keep")
    assert result.exit_code == 0, result.output
    assert "QC montage" not in result.output and "0 scans" in result.output
    assert not (project / "cohorts" / "aibl" / "qc.png").exists()
    monkeypatch.setattr(headers, "load_encoder", lambda model: FakeEncoder())
    assert run("embed-headers", "--project", project).exit_code == 0
    cache = headers.load_cache(Project(project), headers.encoder_id(None))
    with pytest.raises(CitabError, match="cohort 'aibl' has no subject with a scan"):
        load_cohort(Project(project), "aibl", cache)
    seen: list[str] = []
    run_result = loop.pretrain(Project(project), tiny("adni,aibl", epochs=1), "both",
                               hooks=loop.Hooks(message=seen.append))  # fmt: skip
    assert run_result.steps > 0  # aibl's tables joined masked-cell reconstruction
    assert any("without a scan join the tabular objectives" in line for line in seen)
    refused = run("probe", "--ckpt", "best.safetensors", "--cohorts", "aibl", "--project",
                  project)  # fmt: skip
    assert refused.exit_code == 1 and "cohort 'aibl' has no subject with a scan" in refused.output
    probed = run("probe", "--ckpt", "best.safetensors", "--cohorts", "aibl", "--subjects",
                 "without-scan", "--label-fractions", "1", "--seeds", "1", "--resamples", "20",
                 "--project", project)  # fmt: skip
    assert probed.exit_code == 0, probed.output
    report = sorted((project / "reports").glob("probe-both-aibl-*"))[-1]
    document = json.loads((report / "report.json").read_text())
    assert set(document["results"]) <= {
        "citab_tabular",
        "random_tabular",
        "raw_table",
        "raw_table_gbdt",
        "raw_table_catboost",
        "floor",
    }
    assert "citab_tabular" in document["results"] and document["scored"]["scans"] == "without-scan"
    assert "kept without a scan" in (report / "report.md").read_text()


def _ingest_registry(registry: Path, project: Path) -> Path:
    """The registry's cohorts ingested with their subjects without a scan."""
    for cohort in ("adni", "aibl"):
        result = ingest(registry, cohort, project, "--shape", SHAPE, "--on-missing-image", "keep",
                        "--split", "0.5,0.1,0.4")  # fmt: skip
        assert result.exit_code == 0, result.output
    return project


def _registry_project(registry: Path, tmp_path: Path, monkeypatch) -> Path:
    from citab_cli.core import headers

    monkeypatch.setattr(headers, "load_encoder", lambda model: FakeEncoder())
    return _ingest_registry(registry, tmp_path / "p")


def test_pretraining_adds_them_to_the_tabular_objectives_and_probes_leave_them_out(
    registry: Path, tmp_path: Path, monkeypatch
):
    from citab_cli.core.evaluation import probe
    from citab_cli.core.training import loop

    project = _registry_project(registry, tmp_path, monkeypatch)
    seen: list[str] = []
    result = loop.pretrain(Project(project), tiny("adni,aibl", epochs=1), "r",
                           hooks=loop.Hooks(message=seen.append))  # fmt: skip
    assert result.steps > 0
    assert any("subject(s) without a scan join the tabular objectives, 2 a batch beside its 4 "
               "pairs" in s for s in seen), seen  # fmt: skip
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    assert all(np.isfinite(r["mtr"]) for r in records if "mtr" in r)
    said: list[str] = []
    (report,) = probe.probe(Project(project), "best.safetensors", ["adni"], fractions=(1.0,),
                            seeds=1, resamples=20, message=said.append)  # fmt: skip
    assert any(f"cohort adni: {EXTRA} subject(s) without a scan left out" in s for s in said)
    with open(project / "cohorts" / "adni" / "subjects.csv", newline="") as handle:
        scanned_test = [r for r in csv.DictReader(handle) if r["image"] and r["split"] == "test"]
    assert len(report.y_test) == sum(1 for r in scanned_test if r["label"])
    # with train.table_only 0 they are left out of pretraining too, and it says so
    seen.clear()
    loop.pretrain(Project(project), tiny("adni,aibl", epochs=1, table_only=0.0), "without",
                  hooks=loop.Hooks(message=seen.append))  # fmt: skip
    assert any(f"cohort adni: {EXTRA} subject(s) without a scan left out" in s for s in seen)


@pytest.mark.parametrize("world", [1, 2])
def test_every_process_holds_its_pairs_first_then_subjects_without_a_scan(
    registry: Path, tmp_path: Path, monkeypatch, world: int
):
    """Each process's batch is batch_size subjects with a scan, then its share of the subjects
    without one: no process can hold a batch without pairs, so the gathered contrastive loss
    always has its negatives; the draws are the same on every process and every run."""
    from citab_cli.core import headers
    from citab_cli.core.runtime.dataset import load_cohort
    from citab_cli.core.runtime.distributed import Distributed
    from citab_cli.core.training.sampling import make_schedule, table_only_items

    project = _registry_project(registry, tmp_path, monkeypatch)
    headers.encode_headers(Project(project))
    cache = headers.load_cache(Project(project), headers.encoder_id(None))
    cohorts = [load_cohort(Project(project), c, cache, table_only=True) for c in ("adni", "aibl")]
    train = tiny("adni,aibl", batch_size=3, table_only=1.0).train
    seen_extra = []
    for rank in range(world):
        dist = Distributed(rank, world, rank)
        schedule = make_schedule(train, cohorts, dist)
        assert schedule.extra == 3
        again = list(make_schedule(train, cohorts, dist).batches(train, 0, 0, dist))
        for items, same in zip(schedule.batches(train, 0, 0, dist), again, strict=True):
            np.testing.assert_array_equal(items, same)
            assert len(items) == 3 + 3
            scanned = [cohorts[c].has_scan[r] for c, r in items]
            assert all(scanned[:3]) and not any(scanned[3:])
            assert all(cohorts[c].splits[r] == "train" for c, r in items)
        seen_extra.append(next(iter(schedule.batches(train, 0, 0, dist)))[3:])
    # the processes' shares are consecutive parts of one draw of the step
    whole = table_only_items(schedule.table_only, 3 * world, train.seed, 0, Distributed(0, 1, 0))
    np.testing.assert_array_equal(np.concatenate(seen_extra), whole)


def test_a_subject_without_a_scan_never_reaches_an_image_loss():
    """The batch's extra rows change MTR and nothing that reads a scan: ITC, ITM and their
    scores equal those of the pairs alone."""
    import torch

    from citab_cli.core.model.citab import build_model
    from citab_cli.core.model.objective import pretraining_loss
    from tests.helpers import make_batch, tiny_model

    config = tiny_model()
    torch.manual_seed(0)
    model = build_model(config).eval()
    images = torch.randn(4, 1, *config.image.shape, generator=torch.Generator().manual_seed(1))
    everyone = make_batch(b=6, c=5, seed=2)
    pairs = everyone.select(torch.arange(4))
    cohorts = torch.tensor([0, 0, 1, 1, 0, 1])

    def losses(batch, groups):
        return pretraining_loss(model, images, batch, groups, torch.Generator().manual_seed(3))

    with_extra, alone = losses(everyone, cohorts), losses(pairs, cohorts[:4])
    for key in ("itc", "itm", "itm_accuracy", "itm_auc"):
        torch.testing.assert_close(with_extra[key], alone[key])
    assert not torch.isclose(with_extra["mtr"], alone["mtr"])


@pytest.mark.slow  # covered in the default suite by the two-rank schedule test above, the image
# losses test, and test_pretrain.py's two-process run
def test_two_processes_pretrain_with_subjects_without_a_scan(
    registry: Path, tmp_path: Path, monkeypatch
):
    """torchrun, two processes on the CPU: each holds its pairs and its share of the subjects
    without a scan; the gathered ITC and the run finish."""
    from citab_cli.core.runtime import checkpoint_file
    from tests.helpers import embedded_copy, torchrun

    project = embedded_copy(_registry_project(registry, tmp_path, monkeypatch), tmp_path / "e")
    done = torchrun("-m", "citab_cli", "pretrain", "--cohorts", "adni,aibl", "--preset", "tiny",
                    "--epochs", "1", "--batch-size", "2", "--run-name", "ddp", "--device", "cpu",
                    "--project", str(project))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join((done.stdout + done.stderr).split())
    assert "without a scan join the tabular objectives, 1 a batch beside its 2 pairs" in said
    assert checkpoint_file.load(project / "runs/ddp/last.safetensors")[1]["step"] > 0


@pytest.fixture(scope="module")
def registry_pretrained(registry: Path, tmp_path_factory) -> Path:
    """The registry's cohorts ingested with their subjects without a scan, pretrained 1 epoch."""
    from citab_cli.core.training import loop
    from tests.helpers import embedded_copy

    source = _ingest_registry(registry, tmp_path_factory.mktemp("registry_project") / "p")
    project = embedded_copy(source, source.parent / "e")
    loop.pretrain(Project(project), tiny("adni,aibl", epochs=1), "r")
    return project


def test_embed_writes_every_subject_with_nan_where_a_scan_is_read(
    registry_pretrained: Path, tmp_path: Path
):
    import pandas as pd
    import torch

    from citab_cli.core.runtime.dataset import Collator
    from citab_cli.core.runtime.embedding import cohort_items, embed_subjects
    from citab_cli.core.runtime.pretrained import load_checkpoint, read_cohorts

    out = tmp_path / "e.csv"
    result = run("embed", "--ckpt", "best.safetensors", "-o", out, "--cohorts", "adni",
                 "--project", registry_pretrained)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{EXTRA} subject(s) without a scan: tabular CLS only" in " ".join(result.output.split())
    frame = pd.read_csv(out)
    assert len(frame) == 16 + EXTRA and (~frame["has_scan"]).sum() == EXTRA
    without = frame[~frame["has_scan"]]
    tabular = [c for c in frame.columns if c.startswith("tabular_cls_")]
    scanned_cells = [c for c in frame.columns if c.startswith(("multimodal_", "image_pooled_"))]
    assert without[scanned_cells].isna().all().all() and without[tabular].notna().all().all()
    assert frame[frame["has_scan"]][scanned_cells].notna().all().all()
    # a batch that mixes subjects with and without a scan embeds the scanned ones as alone
    project = Project(registry_pretrained)
    loaded = load_checkpoint(project, "best.safetensors")
    (every,) = read_cohorts(project, loaded, ["adni"], lambda t: None, table_only=True)
    (scanned,) = read_cohorts(project, loaded, ["adni"], lambda t: None)
    model, cpu = loaded.model(), torch.device("cpu")
    mixed = embed_subjects(model, Collator.for_model([every], loaded.config.model),
                           cohort_items(np.arange(every.size)), 4, cpu)  # fmt: skip
    alone = embed_subjects(model, Collator.for_model([scanned], loaded.config.model),
                           cohort_items(np.arange(scanned.size)), 4, cpu)  # fmt: skip
    for key in ("multimodal", "tabular", "image"):
        np.testing.assert_allclose(mixed[key][every.has_scan], alone[key], rtol=1e-5, atol=1e-5)


def test_predict_writes_a_row_for_every_subject_and_predicts_those_with_a_scan(
    registry_pretrained: Path, tmp_path: Path
):
    import pandas as pd

    from citab_cli.core.evaluation import finetune

    report = finetune.finetune(Project(registry_pretrained), "best.safetensors", "adni",
                               epochs=1, resamples=20)  # fmt: skip
    # the classifier scores no subject without a scan; the table baselines score them
    section = json.loads((report.folder / "report.json").read_text())["without_scan"]
    with open(registry_pretrained / "cohorts" / "adni" / "subjects.csv", newline="") as handle:
        test = [r for r in csv.DictReader(handle) if r["split"] == "test" and r["label"]]
    groups = section["groups"]
    assert section["without_scan"] == EXTRA
    assert groups["without a scan"]["subjects"] == sum(1 for r in test if not r["image"])
    assert groups["with and without a scan"]["subjects"] == len(test)
    assert "finetuned" not in groups["without a scan"]["results"]
    assert {"raw_table", "raw_table_gbdt"} <= set(groups["without a scan"]["results"])
    assert len(report.y_test) == sum(1 for r in test if r["image"])
    assert "## Subjects without a scan" in (report.folder / "report.md").read_text()
    out = tmp_path / "p.csv"
    result = run("predict", "--ckpt", report.model_file, "--cohort", "adni", "-o", out,
                 "--project", registry_pretrained)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{EXTRA} subject(s) without a scan: no prediction" in " ".join(result.output.split())
    frame = pd.read_csv(out, keep_default_na=False)
    assert len(frame) == 16 + EXTRA
    without = frame[frame["has_scan"].astype(str) == "False"]
    assert len(without) == EXTRA and (without["predicted"] == "").all()
    assert (frame[frame["has_scan"].astype(str) == "True"]["predicted"] != "").all()


def test_a_probe_scores_subjects_with_and_without_a_scan_on_what_reads_the_table(
    registry_pretrained: Path,
):
    from citab_cli.core.evaluation import probe

    light = {"fractions": (1.0,), "seeds": 1, "resamples": 20}
    light["features"] = ("citab", "citab_tabular", "random_tabular", "raw_table", "raw_image")
    project = Project(registry_pretrained)
    (scanned,) = probe.probe(project, "best.safetensors", ["adni"], **light)
    (both,) = probe.probe(project, "best.safetensors", ["adni"], subjects="all", **light)
    (without,) = probe.probe(project, "best.safetensors", ["adni"], subjects="without-scan",
                             **light)  # fmt: skip
    with open(registry_pretrained / "cohorts" / "adni" / "subjects.csv", newline="") as handle:
        test = [r for r in csv.DictReader(handle) if r["split"] == "test" and r["label"]]
    assert len(scanned.y_test) == sum(1 for r in test if r["image"])
    assert len(both.y_test) == len(test)
    assert len(without.y_test) == sum(1 for r in test if not r["image"])
    assert "citab" in scanned.summary and "raw_image" in scanned.summary
    assert set(both.summary) == set(without.summary) and "citab" not in both.summary
    assert {"citab_tabular", "random_tabular", "raw_table"} <= set(both.summary)
    with pytest.raises(CitabError, match="--subjects sometimes: choose one of"):
        probe.probe(project, "best.safetensors", ["adni"], subjects="sometimes", **light)
