"""The model core: tokens, P-MoLin, encoders, presets."""

from __future__ import annotations

import pytest
import torch
import yaml
from pydantic import ValidationError

from citab_cli.core.errors import CitabError
from citab_cli.core.layers.prototype_mixture import PrototypeMixture
from citab_cli.core.layers.resnet3d import ResNet3d, feature_grid
from citab_cli.core.layers.tabular_batch import TabularBatch
from citab_cli.core.model.citab import TabularEncoder, build_model, parameter_counts
from citab_cli.core.model.config import PRESETS, ModelConfig, preset
from citab_cli.core.model.objective import pretraining_loss
from tests.helpers import E, make_batch


def permute(batch: TabularBatch, order: torch.Tensor) -> TabularBatch:
    fields = {}
    for name in TabularBatch.__dataclass_fields__:
        value = getattr(batch, name)
        fields[name] = value[:, order] if value is not None else None
    return TabularBatch(**fields)


def pad(batch: TabularBatch, extra: int) -> TabularBatch:
    """The same rows with `extra` absent column slots holding garbage."""
    g = torch.Generator().manual_seed(99)
    fields = {}
    for name in TabularBatch.__dataclass_fields__:
        value = getattr(batch, name)
        if value is None:
            fields[name] = None
            continue
        shape = (value.shape[0], extra, *value.shape[2:])
        if value.dtype == torch.bool:
            filler = (
                torch.zeros(shape, dtype=torch.bool)
                if name == "present"
                else torch.randint(0, 2, shape, generator=g).bool()
            )
        elif value.dtype == torch.long:
            filler = torch.zeros(shape, dtype=torch.long)
        else:
            filler = torch.randn(shape, generator=g) * 100
        fields[name] = torch.cat([value, filler], dim=1)
    return TabularBatch(**fields)


def encoder(**overrides) -> TabularEncoder:
    torch.manual_seed(0)
    args = dict(
        header_dim=E,
        dim=16,
        layers=2,
        heads=4,
        experts=3,
        expert_ratio=1.75,
        linear_experts=False,
        shared_prototypes=False,
        gate="dot",
        gate_temperature=1.0,
        categorical_as_levels=True,
    )
    args.update(overrides)
    return TabularEncoder(**args).eval()


def test_output_is_invariant_to_column_order():
    model, batch = encoder(), make_batch()
    order = torch.tensor([3, 0, 4, 2, 1])
    a, b = model(batch), model(permute(batch, order))
    torch.testing.assert_close(a.cls, b.cls, atol=1e-5, rtol=0)
    real = batch.present[:, order]
    torch.testing.assert_close(
        a.tokens[:, 1:][:, order][real], b.tokens[:, 1:][real], atol=1e-5, rtol=0
    )


def test_output_is_invariant_to_absent_columns():
    model, batch = encoder(), make_batch()
    torch.testing.assert_close(model(batch).cls, model(pad(batch, 4)).cls, atol=1e-5, rtol=0)


def test_a_missing_cell_changes_the_output_an_absent_column_does_not():
    model, batch = encoder(), make_batch()
    base = model(batch).cls
    missing = batch.with_missing(
        torch.zeros_like(batch.present).index_fill_(1, torch.tensor([3]), True)
    )
    assert not torch.allclose(model(missing).cls, base, atol=1e-4)
    absent = TabularBatch(
        **{
            **batch.__dict__,
            "present": batch.present.clone().index_fill_(1, torch.tensor([3]), False),
        }
    )
    changed = model(absent).cls
    assert not torch.allclose(changed, base, atol=1e-4)
    # ... and removing the column altogether is the same as marking it absent
    keep = torch.tensor([0, 1, 2, 4])
    torch.testing.assert_close(model(permute(batch, keep)).cls, changed, atol=1e-5, rtol=0)


def test_categorical_modes_differ_only_on_categorical_cells():
    levels, numeric = encoder(), encoder(categorical_as_levels=False)
    batch = make_batch()
    a = levels.tokenizer.cell_tokens(batch)
    b = numeric.tokenizer.cell_tokens(batch)
    assert torch.allclose(a[:, 0], b[:, 0]) and not torch.allclose(a[:, 1], b[:, 1])


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("gate", ["dot", "cosine"])
def test_prototype_mixture_equals_a_per_expert_loop(linear: bool, gate: str):
    torch.manual_seed(1)
    layer = PrototypeMixture(16, 4, 1.75, linear=linear, gate=gate, temperature=0.7)
    x = torch.randn(2, 5, 16)
    out, gates = layer(x)
    protos = layer.prototypes
    xs, ps = (
        (torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(protos, dim=-1))
        if gate == "cosine"
        else (x, protos)
    )
    expected_gates = torch.softmax(xs @ ps.T / 0.7, dim=-1)
    expected = torch.zeros_like(x)
    for k in range(4):
        hidden = x @ layer.w_in[k] + layer.b_in[k]
        expert = (
            hidden if linear else torch.nn.functional.gelu(hidden) @ layer.w_out[k] + layer.b_out[k]
        )
        expected += expected_gates[..., k : k + 1] * expert
    torch.testing.assert_close(gates, expected_gates)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert (gates >= 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(2, 5))


def test_shared_prototypes_are_one_parameter():
    model = encoder(shared_prototypes=True)
    first, second = (b.feed_forward.prototypes for b in model.blocks)
    assert first is second
    assert sum(p is first for p in model.parameters()) == 1


def test_gates_are_returned_per_layer():
    out = encoder()(make_batch())
    assert len(out.gates) == 2 and out.gates[0].shape == (3, 6, 3)


def test_feature_grid_matches_the_network():
    net = ResNet3d(10, 4).eval()
    for shape in [(16, 20, 18), (24, 24, 24), (17, 33, 9)]:
        with torch.no_grad():
            got = net(torch.zeros(1, 1, *shape)).shape[2:]
        assert tuple(got) == feature_grid(shape)


def test_paper_resnet50_gives_a_10x7x6_map():
    with torch.device("meta"):
        net = ResNet3d(50, 64)
        out = net(torch.empty(1, 1, 160, 208, 176))
    assert tuple(out.shape) == (1, 2048, 10, 7, 6)
    assert feature_grid((160, 208, 176)) == (10, 7, 6)


def test_paper_preset_parameter_counts():
    with torch.device("meta"):
        counts = parameter_counts(build_model(preset("paper")))
    assert counts["image_encoder"] == 46_155_072
    assert counts["tabular_encoder"] == 22_799_360
    assert counts["fusion"] == 13_874_688
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


@pytest.mark.parametrize("mtr", [0.0, 1.0])
def test_tiny_preset_forward_and_backward(mtr: float):
    config = preset("tiny").model_copy(
        update={"header_dim": E, "loss": preset("tiny").loss.model_copy(update={"mtr_weight": mtr})}
    )
    torch.manual_seed(0)
    model = build_model(config)
    images = torch.randn(4, 1, *config.image.shape)
    batch = make_batch(b=4)
    losses = pretraining_loss(model, images, batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    for module in (
        model.tabular.tokenizer.adapter,
        model.image.stem[0],
        model.matching_head,
        model.image_projection[0],
        model.tabular_projection[0],
    ):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
    if mtr:
        assert losses["mtr"] > 0 and model.numeric_head.weight.grad.abs().sum() > 0
    out = model(images, batch)
    assert out["multimodal"].shape == (4, config.tabular.dim)
    assert out["image"].shape == (4, model.image.out_channels)


def test_wrong_image_shape_is_refused():
    model = build_model(preset("tiny").model_copy(update={"header_dim": E}))
    with pytest.raises(ValueError, match="configured image shape"):
        model.encode_image(torch.zeros(1, 1, 32, 32, 32))


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip(name: str):
    config = preset(name)
    again = ModelConfig.model_validate(
        yaml.safe_load(yaml.safe_dump(config.model_dump(mode="json")))
    )
    assert again == config


def test_configs_are_strict():
    with pytest.raises(ValidationError):
        ModelConfig.model_validate({"tabular": {"dim": 32, "heads": 4, "colour": 1}})
    with pytest.raises(ValidationError):
        ModelConfig.model_validate({"tabular": {"dim": 30, "heads": 4}})
    with pytest.raises(CitabError, match="unknown preset"):
        preset("huge")
