"""Studies that can tell: controls with a known answer, the power of a comparison, cross-fitted
held-out cohorts, and baselines without artefacts; toys whose answers are known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation.hierarchical import hierarchical_difference
from citab_cli.core.evaluation.labels import LabelLayout
from citab_cli.core.evaluation.scoring import Scoring
from citab_cli.core.workflows import study_power
from citab_cli.core.workflows.study_tables import ORACLE_ROW, Row, table
from tests.helpers import run, tiny


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _probabilities(y: np.ndarray, skill: float, seed: int) -> np.ndarray:
    """Probabilities over 3 classes whose true class gets `skill` extra mass."""
    rng = np.random.default_rng(seed)
    p = rng.random((len(y), 3))
    p[np.arange(len(y)), y] += skill
    return p / p.sum(1, keepdims=True)


# -- power ------------------------------------------------------------------------------------


def test_the_smallest_detectable_effect_shrinks_as_subjects_grow():
    """Ten times the subjects: about a third of the smallest detectable effect, measured by the
    bootstrap and by the rule of thumb alike."""
    found = {}
    for n in (60, 600):
        y = np.random.default_rng(n).integers(0, 3, n)
        method = [[_probabilities(y, 0.5, 1)]]
        baseline = [[_probabilities(y, 0.3, 2)]]
        result = hierarchical_difference(y, method, baseline, "balanced_accuracy", 2000)
        assert result["n"] == n
        assert result["mde"] == pytest.approx(2.8016 * result["se"], rel=1e-3)
        found[n] = result["mde"]
    assert 0.22 < found[600] / found[60] < 0.45  # sqrt(1/10) = 0.32
    small, _ = study_power.expected_detectable([10, 10, 10])
    large, holm = study_power.expected_detectable([100, 100, 100], family=13)
    assert large == pytest.approx(small / np.sqrt(10)) and holm > large
    # the rule of thumb: 2.8 sqrt(d / n) with balanced classes, and its inverse
    assert large == pytest.approx(2.8016 * np.sqrt(study_power.DISAGREEMENT / 300), rel=1e-3)


def test_rule_of_thumb_inverts():
    n = study_power.subjects_needed(0.05)
    assert study_power.expected_detectable([n / 3] * 3)[0] == pytest.approx(0.05, rel=0.01)
    assert 300 < n < 400  # with d = 0.11: about 350 subjects for a 0.05 difference


def test_a_table_adjusts_its_family_and_gives_the_oracle_share():
    """The oracle row is a control: outside Holm's family, and the denominator of the share of
    the available gain recovered by the comparison against the raw table."""
    y = np.random.default_rng(0).integers(0, 3, 300)
    perfect = np.eye(3)[y] * 0.9 + 0.1 / 3
    raw, method, twin = (_probabilities(y, s, k) for s, k in ((0.2, 1), (0.6, 2), (0.2, 3)))
    rows = [
        Row("reference − raw table", y, [[method]], [[raw]], against_raw=True),
        Row("reference − twin", y, [[method]], [[twin]]),
        Row(ORACLE_ROW, y, [[perfect]], [[raw]], family=False),
    ]
    entries = table(rows, "balanced_accuracy", 500)
    first, second, oracle = entries
    assert first["family"] and not oracle["family"]
    assert first["share"] == pytest.approx(first["difference"] / oracle["difference"])
    assert 0 < first["share"] < 1 and "share" not in second
    assert first["verdict"] == "better"
    # Holm over two comparisons: the strictest step is at 2.5%, so its detectable effect is larger
    assert first["mde_holm"] > first["mde"] and oracle["mde_holm"] == oracle["mde"]


# -- cross-fitting ----------------------------------------------------------------------------


def _layout(n: int = 60) -> LabelLayout:
    y = np.arange(n) % 3
    splits = np.array(["train"] * (n // 2) + ["val"] * (n // 6) + ["test"] * (n - n // 2 - n // 6))
    rows = {s: np.nonzero(splits == s)[0] for s in ("train", "val", "test")}
    return LabelLayout(["CN", "MCI", "AD"], y, rows)


@pytest.mark.parametrize("fraction", [0.1, 1.0])
def test_cross_fitting_scores_every_subject_once_and_never_trains_on_it(fraction: float):
    labels = _layout()
    scoring = Scoring.cross_fitted(labels, 5)
    assert len(scoring.rows) == 60 and scoring.folds == 5
    for seed in (0, 1):
        seen = np.zeros(len(scoring.rows), int)
        for train, scored in scoring.fits(labels.y, fraction, seed):
            seen[scored] += 1
            assert not set(train) & set(scoring.rows[scored])  # no fold sees its test subjects
            assert set(labels.y[train]) == {0, 1, 2}  # the fraction drawn inside the fold
            assert len(train) <= round(fraction * 48) + 3
        assert (seen == 1).all()  # every subject scored exactly once
    plain = Scoring.test_split(labels, labels)
    ((train, scored),) = plain.fits(labels.y, 1.0, 0)
    assert set(train) == set(labels.rows["train"]) and len(scored) == len(labels.rows["test"])


def test_cross_fitting_refuses_a_class_of_one():
    labels = _layout()
    y = labels.y.copy()
    y[y == 2] = 1
    y[0] = 2
    with pytest.raises(CitabError, match="2 labelled subjects of every class"):
        Scoring.cross_fitted(LabelLayout(labels.classes, y, labels.rows), 5)


def test_a_cross_fitted_probe_scores_every_labelled_subject_of_an_unseen_cohort(pretrained: Path):
    from citab_cli.core.evaluation import probe

    project = Project(pretrained)
    with pytest.raises(CitabError, match="never saw"):
        probe.probe(project, "best.safetensors", ["adni"], (1.0,), 1, resamples=50, cross_fit=2)
    root = pretrained.parent / "unseen"
    if not root.exists():
        import shutil

        shutil.copytree(pretrained, root)
        from citab_cli.core.training import loop as pretraining

        pretraining.pretrain(Project(root), tiny("nacc,aibl", epochs=1), "no-adni")
    (report,) = probe.probe(
        Project(root), str(root / "runs/no-adni/best.safetensors"), ["adni"], (1.0,), 1,
        resamples=50, cross_fit=3,
    )  # fmt: skip
    labelled = [r for r in _rows(root / "cohorts/adni/subjects.csv") if r["label"]]
    assert len(report.rows) == len(labelled) and len(set(report.rows.tolist())) == len(labelled)
    assert "cross-fitted over all" in report.design and "(2 folds)" in report.design  # 2 AD
    document = json.loads((report.folder / "report.json").read_text())
    assert document["scored"]["subjects"] == len(labelled)
    assert "every labelled subject once" in (report.folder / "report.md").read_text()


# -- baselines without artefacts ---------------------------------------------------------------


def test_each_pretraining_seed_meets_its_own_random_twin():
    """The twin is the run's own initialisation: equal to what pretraining starts from with the
    same seed, and different for another seed."""
    from citab_cli.core.evaluation.probe import random_twin
    from citab_cli.core.training.loop import _build

    config = tiny("adni", seed=1)
    twin = random_twin(config).state_dict()
    start = _build(config, torch.device("cpu"))[0].state_dict()
    assert all(torch.equal(twin[k], start[k]) for k in twin)
    other = random_twin(tiny("adni", seed=2)).state_dict()
    assert any(not torch.equal(twin[k], other[k]) for k in twin if twin[k].is_floating_point())


def test_batchnorm_statistics_are_re_estimated_on_the_cohort(pretrained: Path):
    from citab_cli.core import headers
    from citab_cli.core.evaluation.probe import random_twin
    from citab_cli.core.runtime.dataset import Collator, load_cohort
    from citab_cli.core.runtime.embedding import cohort_items, reestimate_batchnorm
    from citab_cli.core.runtime.pretrained import load_checkpoint

    project = Project(pretrained)
    loaded = load_checkpoint(project, "best.safetensors")
    cohort = load_cohort(project, "adni", headers.ensure_embedded(project, ["adni"]))
    collator = Collator.for_model([cohort], loaded.config.model)
    items = cohort_items(np.nonzero(cohort.splits == "train")[0])
    for network in (loaded.model(), random_twin(loaded.config)):
        first = next(m for m in network.modules() if isinstance(m, torch.nn.BatchNorm3d))
        seen: list[torch.Tensor] = []
        first.register_forward_hook(lambda m, args, out, seen=seen: seen.append(args[0].detach()))
        count = reestimate_batchnorm(network, collator, items, len(items), torch.device("cpu"))
        assert count > 0 and not network.training and first.momentum == 0.1
        (batch,) = seen  # one batch: the running mean is that batch's mean exactly
        assert torch.allclose(first.running_mean, batch.mean((0, 2, 3, 4)), atol=1e-5)
        assert int(first.num_batches_tracked) == 1


# -- negative control: shuffled pairs ---------------------------------------------------------


def test_shuffled_pairs_derange_scans_within_each_cohort_and_pretraining_split(pretrained: Path):
    from citab_cli.core import headers
    from citab_cli.core.runtime.dataset import Collator, load_cohort
    from citab_cli.core.training.sampling import shuffled_pairs

    project = Project(pretrained)
    cache = headers.ensure_embedded(project, ["adni", "nacc"])
    cohorts = [load_cohort(project, c, cache) for c in ("adni", "nacc")]
    config = tiny("adni,nacc", pairs="shuffled", seed=4)
    shuffled = shuffled_pairs(cohorts, config.train)
    for before, after in zip(cohorts, shuffled, strict=True):
        train = np.nonzero(before.splits == "train")[0]
        rows = after.image_rows
        assert sorted(rows[train]) == sorted(train)  # a permutation of the train scans
        assert (rows[train] != train).all()  # nobody keeps their own scan
        others = np.setdiff1d(np.arange(before.size), train)
        assert (rows[others] == others).all()  # val and test scans never move
        row = int(train[0])
        got = Collator([after]).images(np.array([[0, row]]))[0, 0]
        assert np.array_equal(got, before.images[rows[row]])
    again = shuffled_pairs(cohorts, config.train)
    assert all(
        np.array_equal(a.image_rows, b.image_rows) for a, b in zip(shuffled, again, strict=True)
    )
    other = shuffled_pairs(cohorts, tiny("adni,nacc", pairs="shuffled", seed=5).train)
    assert not np.array_equal(other[0].image_rows, shuffled[0].image_rows)


def test_a_run_counted_in_steps_stops_validates_and_warms_up_where_told():
    from citab_cli.core.runtime.distributed import SINGLE
    from citab_cli.core.training.sampling import make_schedule

    class Cohort:
        size = 40
        splits = np.array(["train"] * 40)
        has_scan = np.ones(40, bool)

    config = tiny("adni", batch_size=4, steps=23, warmup_steps=5, validate_every_steps=7)
    schedule = make_schedule(config.train, [Cohort()], SINGLE)
    assert schedule.steps_per_epoch == 10 and schedule.total_steps == 23
    assert schedule.warmup_steps == 5
    assert [s for s in range(1, 24) if schedule.validates_after(s)] == [7, 14, 21, 23]
    assert len(list(schedule.batches(config.train, 2, 0, SINGLE))) == 3  # the last epoch, cut
    assert schedule.epochs_begun(23) == 3
    epochs = make_schedule(tiny("adni", batch_size=4, epochs=2).train, [Cohort()], SINGLE)
    assert epochs.total_steps == 20 and [s for s in range(1, 21) if epochs.validates_after(s)] == [
        10,
        20,
    ]


# -- the positive control ---------------------------------------------------------------------


def test_the_positive_control_has_large_mostly_unlabelled_sources_and_a_balanced_target(
    tmp_path: Path,
):
    out = tmp_path / "raw"
    result = run("synth", out, "--control", "positive", "--subjects", 30, "--shape", 16)
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "truth.json").read_text())
    assert truth["control"]["target"] == "aibl"
    cohorts = truth["cohorts"]
    assert cohorts["aibl"]["subjects"] == 30 and cohorts["aibl"]["labelled"] == 30
    assert cohorts["aibl"]["prevalence"] == pytest.approx([1 / 3] * 3)
    for source in ("adni", "nacc"):
        assert cohorts[source]["subjects"] == 60
        assert 0.05 < cohorts[source]["labelled"] / 60 < 0.4  # one in five, drawn
    rows = _rows(out / "truth.csv")
    assert {"severity", "severity_image", "severity_tabular", "labelled"} <= set(rows[0])
    hidden = {r["subject"] for r in rows if r["cohort"] == "adni" and r["labelled"] == "no"}
    table = _rows(out / "adni.csv")
    assert hidden and all(r["DX"] == "" for r in table if r["PTID"] in hidden)
    refused = run("synth", tmp_path / "x", "--control", "positive", "--cohorts", "adni,nacc")
    assert refused.exit_code == 1 and "needs the cohorts aibl" in refused.output


def test_ingest_keeps_the_synthetic_truth_and_the_oracle_reads_it(pretrained: Path):
    from citab_cli.core import headers
    from citab_cli.core.evaluation.oracle import scan_latent
    from citab_cli.core.runtime.dataset import load_cohort

    project = Project(pretrained)
    cohort = load_cohort(project, "nacc", headers.ensure_embedded(project, ["nacc"]))
    latent = scan_latent(project, cohort)
    assert latent is not None and latent.shape == (cohort.size,)
    kept = {r["subject"]: r for r in _rows(pretrained / "cohorts/nacc/truth.csv")}
    assert list(kept) == cohort.subjects
    assert latent[0] == pytest.approx(float(kept[cohort.subjects[0]]["severity_image"]))


def test_only_a_complete_synthetic_truth_is_kept(raw: Path, tmp_path: Path):
    from citab_cli.core.data.manifest import synthetic_truth

    subjects = [r["subject"] for r in _rows(raw / "truth.csv") if r["cohort"] == "aibl"]
    text = synthetic_truth(raw / "aibl.csv", subjects)
    assert text is not None and text.splitlines()[0] == "subject,severity,severity_tabular,"\
        "severity_image" and len(text.splitlines()) == len(subjects) + 1  # fmt: skip
    assert synthetic_truth(raw / "aibl.csv", [*subjects, "someone else"]) is None
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "aibl.csv").write_bytes((raw / "aibl.csv").read_bytes())
    assert synthetic_truth(elsewhere / "aibl.csv", subjects) is None  # not written by synth
    (elsewhere / "truth.json").write_text("{}")
    (elsewhere / "truth.csv").write_bytes((raw / "truth.csv").read_bytes())
    assert synthetic_truth(elsewhere / "aibl.csv", subjects) is None  # not citab's truth.json


def test_no_share_of_a_gain_the_oracle_does_not_show():
    """On scans that carry nothing the oracle's interval straddles 0: no share is given."""
    y = np.random.default_rng(1).integers(0, 3, 200)
    raw, method = _probabilities(y, 0.3, 1), _probabilities(y, 0.6, 2)
    rows = [
        Row("reference − raw table", y, [[method]], [[raw]], against_raw=True),
        Row(ORACLE_ROW, y, [[raw]], [[raw]], family=False),  # the oracle gains nothing
    ]
    first, oracle = table(rows, "balanced_accuracy", 300)
    assert oracle["verdict"] == "not detected" and "share" not in first
