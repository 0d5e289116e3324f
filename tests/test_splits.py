"""Subject-level, label-stratified splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import yaml

from citab_cli.core.data.splits import assign
from citab_cli.core.settings import SplitSettings
from tests.helpers import SHAPE, assert_user_error, ingest, read_rows, tree_hash, write_rows


def test_stratified_deterministic_and_order_free():
    subjects = [f"S{i:03d}" for i in range(100)]
    labels = ["CN"] * 50 + ["MCI"] * 30 + ["AD"] * 15 + [None] * 5
    split = assign(subjects, labels, SplitSettings())
    assert split == assign(subjects, labels, SplitSettings())
    by = Counter(zip(split, labels, strict=True))
    assert by[("test", "CN")] == 10 and by[("test", "MCI")] == 6 and by[("test", "AD")] == 3
    assert by[("val", "CN")] == 5 and by[("train", "CN")] == 35
    reverse = assign(subjects[::-1], labels[::-1], SplitSettings())
    assert dict(zip(subjects, split, strict=True)) == dict(
        zip(subjects[::-1], reverse, strict=True)
    )
    assert split != assign(subjects, labels, SplitSettings(seed=1))


def test_small_classes_still_reach_test_and_train():
    subjects = [f"S{i}" for i in range(7)]
    labels = ["CN"] * 4 + ["AD"] * 3
    split = assign(subjects, labels, SplitSettings())
    for label in ("CN", "AD"):
        got = {s for s, lab in zip(split, labels, strict=True) if lab == label}
        assert {"train", "test"} <= got


def _subjects_csv(root: Path, cohort: str) -> dict[str, str]:
    return {r["subject"]: r["split"] for r in read_rows(root / f"cohorts/{cohort}/subjects.csv")}


def test_split_fractions_and_seed_chosen_at_the_first_ingest(raw_dir: Path, tmp_path: Path):
    root = tmp_path / "p"
    args = ("--shape", SHAPE, "--split", "0.5,0.25,0.25", "--split-seed", 7)
    assert ingest(raw_dir, "adni", root, *args).exit_code == 0
    written = yaml.safe_load((root / "citab.yaml").read_text())["split"]
    assert written == {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 7}
    counts = Counter(_subjects_csv(root, "adni").values())
    assert counts["train"] < 0.6 * sum(counts.values())
    assert (
        ingest(raw_dir, "nacc", root, "--split", "0.5,0.25,0.25", "--split-seed", 7).exit_code == 0
    )
    before = tree_hash(root)
    refused = ingest(raw_dir, "aibl", root, "--split", "0.7,0.1,0.2")
    assert_user_error(refused, "split was fixed at its first ingest", "0.5/0.25/0.25, seed 7")
    assert tree_hash(root) == before
    assert_user_error(ingest(raw_dir, "aibl", root, "--split", "0.7,0.2"), "three fractions")


def test_a_splits_file_gives_each_subject_its_split(raw_dir: Path, tmp_path: Path):
    root = tmp_path / "p"
    subjects = sorted({r["PTID"] for r in read_rows(raw_dir / "adni.csv")})
    official = {s: ("test" if i % 4 == 0 else "Validation" if i % 4 == 1 else "train")
                for i, s in enumerate(subjects)}  # fmt: skip
    table = tmp_path / "official.csv"
    write_rows(table, [{"PTID": s, "split": k} for s, k in official.items()]
               + [{"PTID": "999_S_9999", "split": "train"}])  # fmt: skip
    result = ingest(raw_dir, "adni", root, "--shape", SHAPE, "--splits", table)
    assert result.exit_code == 0, result.output
    stored = _subjects_csv(root, "adni")
    expected = {k: "val" if v == "Validation" else v for k, v in official.items()}
    assert stored == {s: expected[s] for s in stored}
    manifest = json.loads((root / "cohorts/adni/manifest.json").read_text())
    assert manifest["split_source"]["file"] == str(table.resolve())
    assert any("1 subject(s) of official.csv are not in the cohort" in w
               for w in manifest["warnings"])  # fmt: skip
    short = tmp_path / "short.csv"
    write_rows(short, [{"subject": s, "split": "train"} for s in subjects[:-2]])
    message = assert_user_error(ingest(raw_dir, "adni", tmp_path / "q", "--splits", short),
                                "2 subject(s) of the cohort have no split")  # fmt: skip
    assert subjects[-1] in message
    bad = tmp_path / "bad.csv"
    write_rows(bad, [{"subject": s, "split": "holdout"} for s in subjects])
    assert_user_error(ingest(raw_dir, "adni", tmp_path / "q", "--splits", bad),
                      "bad.csv:2", "'holdout' is not train, val or test")  # fmt: skip
    assert not (tmp_path / "q").exists()


def test_a_hand_written_citab_yaml_is_completed_at_the_first_ingest(raw_dir: Path, tmp_path: Path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "citab.yaml").write_text("split: {train: 0.6, val: 0.2, test: 0.2, seed: 3}\n")
    result = ingest(raw_dir, "adni", root, "--shape", SHAPE)  # nothing stored yet: no refusal
    assert result.exit_code == 0, result.output
    settings = yaml.safe_load((root / "citab.yaml").read_text())
    assert settings["split"]["seed"] == 3 and settings["image"]["shape"] == [SHAPE] * 3
    other = tmp_path / "o"
    other.mkdir()
    (other / "citab.yaml").write_text(f"image: {{shape: [{SHAPE}, {SHAPE}, {SHAPE}]}}\n")
    assert ingest(raw_dir, "adni", other).exit_code == 0
    spacing = yaml.safe_load((other / "citab.yaml").read_text())["image"]["spacing"]
    assert spacing == [192 / SHAPE] * 3  # the field of view kept, not 1.5 mm voxels
    third = tmp_path / "t"
    third.mkdir()
    (third / "citab.yaml").write_text("image: {shape: 24, space: mni152}\n")
    assert_user_error(ingest(raw_dir, "adni", third), "image.space is set by citab")
    (third / "citab.yaml").write_text("image: {shape: 24}\n")
    assert_user_error(ingest(raw_dir, "adni", third, "--shape", 32), "--shape", "disagrees")
    assert (third / "citab.yaml").read_text() == "image: {shape: 24}\n"
