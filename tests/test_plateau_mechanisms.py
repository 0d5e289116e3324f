"""Mechanisms tested against the pretraining plateau (docs/results.md §1): cohort-pure batches
(`train.batches: cohort`) and BatchNorm in the ITC projection heads (`model.projection_norm`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from citab_cli.core.model.citab import build_model
from citab_cli.core.model.config import ModelConfig, preset
from citab_cli.core.runtime.distributed import Distributed
from citab_cli.core.runtime.run_config import PretrainConfig
from citab_cli.core.training.sampling import cohort_batches, make_schedule
from tests.helpers import E, tiny

SIZES = [70, 45, 17]


def _items(sizes=SIZES) -> np.ndarray:
    return np.concatenate(
        [np.stack([np.full(n, c), np.arange(n)], 1) for c, n in enumerate(sizes)]
    ).astype(np.int64)


def test_cohort_batches_hold_one_cohort_and_keep_its_share_over_an_epoch():
    items, size = _items(), 8
    batches = cohort_batches(items, SIZES, size, seed=3, epoch=0, balance=False)
    assert batches.shape == (len(items) // size, size, 2)
    assert all(len(set(batch[:, 0])) == 1 for batch in batches)  # one cohort per batch
    assert all(len({tuple(i) for i in batch}) == size for batch in batches)  # no repeats
    counts = np.bincount(batches[:, 0, 0], minlength=3)
    for c, n in enumerate(SIZES):  # its share of the subjects, up to one batch either way
        assert abs(counts[c] - n / size) <= 1.0 + 1e-9, (c, counts)
    # every row exists in its cohort, and a cohort's batches cover its subjects before any repeat
    assert all(0 <= r < SIZES[c] for c, r in batches.reshape(-1, 2))
    for c in range(3):
        rows = batches[batches[:, 0, 0] == c][:, :, 1].ravel()
        assert len(set(rows)) == min(len(rows), SIZES[c])


def test_cohort_batches_are_deterministic_and_change_with_the_epoch():
    items = _items()

    def draw(epoch: int) -> np.ndarray:
        return cohort_batches(items, SIZES, 8, seed=3, epoch=epoch, balance=False)

    assert np.array_equal(draw(1), draw(1))
    assert not np.array_equal(draw(1), draw(2))


def test_balanced_cohort_batches_give_each_cohort_about_the_same_share():
    sizes = [400, 400, 40]
    counts = np.zeros(3)
    for epoch in range(10):
        batches = cohort_batches(_items(sizes), sizes, 8, seed=0, epoch=epoch, balance=True)
        counts += np.bincount(batches[:, 0, 0], minlength=3)
    share = counts / counts.sum()
    assert np.all(np.abs(share - 1 / 3) < 0.05), share  # proportional would give 40/840 ~ 0.05


def test_every_rank_of_one_step_reads_the_same_cohort():
    class Cohort:
        def __init__(self, n):
            self.size, self.splits = n, np.array(["train"] * n)
            self.has_scan = np.ones(n, bool)

    config = tiny("adni", batch_size=4, epochs=1).train.model_copy(update={"batches": "cohort"})
    cohorts = [Cohort(n) for n in SIZES]
    steps = []
    for rank in (0, 1):
        dist = Distributed(rank, 2, rank)
        schedule = make_schedule(config, cohorts, dist)
        steps.append(list(schedule.batches(config, 0, 0, dist)))
    assert len(steps[0]) == len(steps[1]) == sum(SIZES) // 8
    for mine, theirs in zip(*steps, strict=True):
        assert len(mine) == len(theirs) == 4
        assert len(set(mine[:, 0]) | set(theirs[:, 0])) == 1  # one cohort across both ranks
        assert not {tuple(i) for i in mine} & {tuple(i) for i in theirs}  # different subjects


def test_mixed_batches_stay_the_default():
    assert PretrainConfig().train.batches == "mixed"


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_projection_norm_round_trips_through_yaml_and_a_checkpoint(tmp_path: Path, norm: str):
    from citab_cli.core.runtime import checkpoint_file

    config = preset("tiny").model_copy(update={"header_dim": E, "projection_norm": norm})
    assert ModelConfig.model_validate(yaml.safe_load(yaml.safe_dump(config.model_dump()))) == config
    torch.manual_seed(0)
    model = build_model(config)
    layers = [m for m in model.image_projection if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(layers) == (2 if norm == "batchnorm" else 0)
    model.train()
    model.image_projection(torch.randn(6, model.image.out_channels))  # moves running stats
    model.eval()
    checkpoint_file.save(tmp_path / "m.safetensors", model.state_dict(), checkpoint_file.MODEL,
                         {"config": config.model_dump(mode="json")})  # fmt: skip
    tensors, document = checkpoint_file.load(tmp_path / "m.safetensors")
    again = build_model(ModelConfig.model_validate(document["config"])).eval()
    again.load_state_dict(tensors)
    x = torch.randn(3, model.image.out_channels)
    assert torch.equal(model.image_projection(x), again.image_projection(x))


def test_a_configuration_written_before_projection_norm_reads_as_none():
    written = preset("tiny").model_dump(mode="json")
    written.pop("projection_norm")
    assert ModelConfig.model_validate(written).projection_norm == "none"


def test_batchnorm_projection_takes_away_what_every_subject_shares():
    torch.manual_seed(0)
    config = preset("tiny").model_copy(update={"header_dim": E, "projection_norm": "batchnorm"})
    model = build_model(config).train().requires_grad_(False)
    shared = torch.randn(1, model.image.out_channels) * 10  # a large common component
    features = shared + torch.randn(32, model.image.out_channels) * 0.1
    out = torch.nn.functional.normalize(model.image_projection(features), dim=-1)
    cosine = (out @ out.T)[~torch.eye(32, dtype=torch.bool)].mean()
    assert abs(float(cosine)) < 0.1  # centred: subjects no longer point the same way
    plain = build_model(config.model_copy(update={"projection_norm": "none"})).requires_grad_(False)
    out = torch.nn.functional.normalize(plain.image_projection(features), dim=-1)
    assert float((out @ out.T)[~torch.eye(32, dtype=torch.bool)].mean()) > 0.9


def test_every_screened_candidate_is_a_valid_run_configuration():
    from citab_cli.core import yaml_io
    from citab_cli.core.runtime.run_config import pretrain_preset
    from tests.benchmark_scripts import load

    screen = load("plateau_screen")
    base = pretrain_preset("tiny").model_dump(mode="json")
    for name in screen.CANDIDATES:
        merged = yaml_io.merge(base, screen.candidate_config(name, 256, 64))
        config = PretrainConfig.model_validate(merged)
        assert config.train.steps == 256 and config.train.validate_every_steps == 64
    both = screen.candidate_config("lr3e-3+cohort-batches", 512, 64)
    assert both["train"]["learning_rate"] == 3e-3 and both["train"]["batches"] == "cohort"
    with pytest.raises(SystemExit, match="unknown candidate 'wide'"):
        screen.candidate_config("wide", 256, 64)
