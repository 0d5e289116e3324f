"""The paper's two ideas as switches: `tabular.column_identity: header | learned` and
`tabular.ffn: pmolin | dense`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from citab_cli.core.model.citab import TabularEncoder, build_model
from citab_cli.core.model.config import ModelConfig, TabularConfig, preset
from tests.helpers import E, make_batch


def _encoder(config: TabularConfig, header_dim: int = E) -> TabularEncoder:
    torch.manual_seed(0)
    model = build_model(ModelConfig(header_dim=header_dim, tabular=config))
    return model.tabular.eval()


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _with_ids(batch, vocabulary: int = 6, seed: int = 1):
    """The batch with vocabulary ids for its slots, levels and level candidates."""
    g = torch.Generator().manual_seed(seed)
    b, c, levels = batch.level_candidates.shape[:3]
    return replace(
        batch,
        column_ids=torch.randint(0, vocabulary + 1, (b, c), generator=g),
        level_ids=torch.randint(0, vocabulary + 1, (b, c), generator=g),
        candidate_ids=torch.randint(0, vocabulary + 1, (b, c, levels), generator=g),
    )


@pytest.mark.parametrize("name", ["tiny", "small", "paper"])
def test_dense_feed_forward_has_the_parameters_of_pmolin(name: str):
    tabular = preset(name).tabular
    pmolin = _encoder(tabular).blocks
    dense = _encoder(tabular.model_copy(update={"ffn": "dense"})).blocks
    assert abs(_count(dense) - _count(pmolin)) / _count(pmolin) < 0.002
    assert all(type(b.feed_forward).__name__ == "FeedForward" for b in dense)


def test_shapes_with_both_switches_and_gates_only_with_pmolin():
    batch = _with_ids(make_batch())
    tiny = preset("tiny").tabular
    for identity in ("header", "learned"):
        for ffn in ("pmolin", "dense"):
            update = {"column_identity": identity, "ffn": ffn, "vocabulary": list("abcdef")}
            config = tiny.model_copy(update=update)
            out = _encoder(config)(batch)
            assert out.tokens.shape == (3, 6, tiny.dim) and out.keep.shape == (3, 6)
            assert len(out.gates) == (tiny.layers if ffn == "pmolin" else 0)


def test_learned_identity_ignores_the_header_vectors():
    vocabulary = ["AGE", "MMSE", "SEX", "SEX: female", "SEX: male", "APOE"]
    learned = preset("tiny").tabular.model_copy(
        update={"column_identity": "learned", "vocabulary": vocabulary}
    )
    encoder = _encoder(learned)
    batch = _with_ids(make_batch())
    other = make_batch(seed=7)  # other header vectors, same cells
    swapped = replace(
        batch,
        column_vectors=other.column_vectors,
        level_vectors=other.level_vectors,
        level_candidates=other.level_candidates,
    )
    with torch.no_grad():
        assert torch.equal(encoder(batch).tokens, encoder(swapped).tokens)
        header = _encoder(preset("tiny").tabular)
        assert not torch.allclose(header(batch).tokens, header(swapped).tokens)
        renamed = replace(batch, column_ids=(batch.column_ids + 1) % (len(vocabulary) + 1))
        assert not torch.allclose(encoder(batch).tokens, encoder(renamed).tokens)
    assert encoder.tokenizer.identity.num_embeddings == len(vocabulary) + 1
    with pytest.raises(ValueError, match="needs the batch's column and level ids"):
        encoder(make_batch())


def test_switches_round_trip_through_yaml_and_a_checkpoint(tmp_path: Path):
    from citab_cli.core.runtime import checkpoint_file

    tabular = preset("tiny").tabular.model_copy(
        update={"column_identity": "learned", "vocabulary": ["AGE", "MMSE"], "ffn": "dense"}
    )
    config = preset("tiny").model_copy(update={"header_dim": E, "tabular": tabular})
    text = yaml.safe_dump(config.model_dump(mode="json"))
    assert ModelConfig.model_validate(yaml.safe_load(text)) == config
    model = build_model(config)
    checkpoint_file.save(tmp_path / "m.safetensors", model.state_dict(), checkpoint_file.MODEL,
                         {"config": config.model_dump(mode="json")})  # fmt: skip
    tensors, document = checkpoint_file.load(tmp_path / "m.safetensors")
    again = build_model(ModelConfig.model_validate(document["config"]))
    again.load_state_dict(tensors)  # no key surgery: same names, same shapes
    assert "tabular.tokenizer.identity.weight" in tensors


def test_prototype_balance_needs_pmolin():
    with pytest.raises(ValueError, match="prototype_balance needs tabular.ffn: pmolin"):
        TabularConfig(ffn="dense", prototype_balance=0.1)


def test_collator_gives_one_name_one_id_across_cohorts(embedded: Path):
    from citab_cli.core import headers
    from citab_cli.core.data.project import Project
    from citab_cli.core.runtime.dataset import Collator, identity_vocabulary, load_cohort

    project = Project(embedded)
    cache = headers.ensure_embedded(project, ["adni", "aibl"])
    cohorts = [load_cohort(project, name, cache) for name in ("adni", "aibl")]
    vocabulary = identity_vocabulary(cohorts)
    shared = sorted(set(cohorts[0].columns) & set(cohorts[1].columns))
    assert shared  # ADNI- and AIBL-like tables share some column names (AGE, PTGENDER)
    collator = Collator(cohorts, True, vocabulary)
    batch = collator.table(torch.tensor([[0, 0], [1, 0]]).numpy())
    for name in shared:
        first = batch.column_ids[0, cohorts[0].columns.index(name)]
        second = batch.column_ids[1, cohorts[1].columns.index(name)]
        assert first == second == vocabulary.index(name) + 1
    unknown = Collator(cohorts, True, ["nothing"]).table(torch.tensor([[0, 0]]).numpy())
    assert int(unknown.column_ids.max()) == 0


def test_pretraining_and_probing_with_both_ideas_switched_off(embedded: Path):
    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation import probe
    from citab_cli.core.explain.routing import routing
    from citab_cli.core.runtime.pretrained import load_checkpoint
    from citab_cli.core.training import loop
    from tests.helpers import tiny

    config = tiny("nacc,aibl", epochs=1)
    tabular = config.model.tabular.model_copy(update={"column_identity": "learned",
                                                      "ffn": "dense"})  # fmt: skip
    config = config.model_copy(update={"model": config.model.model_copy(update={
        "tabular": tabular})})  # fmt: skip
    project = Project(embedded)
    loop.pretrain(project, config, "ablated")
    loaded = load_checkpoint(project, "best.safetensors")
    assert loaded.config.model.tabular.column_identity == "learned"
    assert "SEX" in loaded.config.model.tabular.vocabulary
    (report,) = probe.probe(project, "best.safetensors", ["adni"], (1.0,), 1, resamples=20)
    assert "random_image" in report.summary  # adni was never pretrained on: unknown names
    assert routing(project, loaded.model(), torch.device("cpu")) is None
