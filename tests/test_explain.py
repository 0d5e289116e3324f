"""`citab explain` and the attribution methods."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from citab_cli.core.data.project import Project
from citab_cli.core.evaluation import explain as core
from citab_cli.core.evaluation.attribution import grad_cam, integrated_gradients
from tests.conftest import assert_user_error, run
from tests.test_probe import pretrained  # noqa: F401  (fixture)


def test_integrated_gradients_completeness():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    )

    def f(x):
        return net(x)[:, 0]

    x = torch.randn(3, 4, 3)
    attributions = integrated_gradients(f, x, steps=256)
    expected = (f(x) - f(torch.zeros_like(x))).detach()
    torch.testing.assert_close(attributions.sum(1), expected, atol=1e-3, rtol=1e-3)


def test_a_planted_dependence_ranks_first():
    w = torch.randn(5)

    def f(x):  # depends on column 2 only
        return torch.tanh(x[:, 2] @ w)

    x = torch.randn(4, 6, 5)
    strength = integrated_gradients(f, x, steps=64).abs().mean(0)
    assert int(strength.argmax()) == 2 and strength[[0, 1, 3, 4, 5]].abs().max() == 0


def test_grad_cam_shape_range():
    features = torch.randn(2, 4, 3, 3, 2, requires_grad=True)
    score = (features[:, 1] ** 2).sum((1, 2, 3)) - features[:, 0].sum((1, 2, 3))
    cam = grad_cam(features, score, (12, 12, 8))
    assert cam.shape == (2, 12, 12, 8)
    assert torch.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1 + 1e-6


def test_explain_report(pretrained: Path):  # noqa: F811
    result = core.explain(Project(pretrained), "best.safetensors", "adni", "2", steps=8)
    folder = result.folder
    document = json.loads((folder / "report.json").read_text())
    assert document["model"] == "pretrained model with a linear probe"
    assert len(document["subjects"]) == 2
    names = {p.name for p in folder.iterdir()}
    assert {
        "report.json",
        "report.md",
        "tabular_attributions.png",
        "prototype_routing.png",
    } <= names
    from PIL import Image

    for png in [p for p in folder.iterdir() if p.suffix == ".png"]:
        assert Image.open(png).size[0] > 100
    subject = document["subjects"][0]
    cam = nib.load(folder / subject["gradcam_nifti"]).get_fdata()
    assert cam.shape == (24, 24, 24) and np.isfinite(cam).all() and cam.min() >= 0
    # one heatmap row per column of every ingested cohort
    rows = {m["column"] for members in document["prototypes"].values() for m in members}
    assert rows and all(r.split(": ")[0] in {"adni", "nacc", "aibl"} for r in rows)
    manifests = [
        json.loads((pretrained / f"cohorts/{c}/manifest.json").read_text())
        for c in ("adni", "nacc", "aibl")
    ]
    assert document["prototype_rows"] == [
        f"{c}: {col['name']}"
        for c, m in zip(
            ("adni", "aibl", "nacc"), sorted(manifests, key=lambda m: m["cohort"]), strict=True
        )
        for col in m["columns"]
    ]
    assert document["cohort_attributions"]["columns"][0]["header"] == result.ranking[0][0]


def test_explain_a_finetuned_classifier(pretrained: Path):  # noqa: F811
    from citab_cli.core.evaluation import finetune

    report = finetune.finetune(
        Project(pretrained), "best.safetensors", "adni", epochs=1, resamples=10
    )
    result = run(
        "explain",
        "--ckpt",
        report.model_file,
        "--cohort",
        "adni",
        "--subjects",
        1,
        "--steps",
        4,
        "--project",
        pretrained,
    )
    assert result.exit_code == 0, result.output
    assert "columns that drive the predicted diagnosis" in result.output


def test_bad_subjects_and_cohorts(pretrained: Path):  # noqa: F811
    assert_user_error(
        run(
            "explain",
            "--ckpt",
            "best.safetensors",
            "--cohort",
            "adni",
            "--subjects",
            "NOBODY",
            "--project",
            pretrained,
        ),
        "subject 'NOBODY' is not in cohort 'adni'",
    )
    assert_user_error(
        run("explain", "--ckpt", "best.safetensors", "--cohort", "oasis", "--project", pretrained),
        "not ingested",
    )
