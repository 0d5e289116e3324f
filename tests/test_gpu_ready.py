"""What the first CUDA run needs, shown on the CPU where it can be: tensors on the right device,
optimiser state laid out like its parameters, full-precision logits under bf16 autocast, an
out-of-memory error never reported as a bad scan, and ranks that meet at every barrier. The
tests marked `gpu` run the same paths on a CUDA device and skip without one."""

from __future__ import annotations

import pytest
import torch

from citab_cli.core.model import objective as objectives
from citab_cli.core.model.citab import build_model
from citab_cli.core.model.config import preset
from tests.helpers import E, make_batch


def _model(**loss):
    config = preset("tiny").model_copy(update={"header_dim": E})
    config = config.model_copy(update={"loss": config.loss.model_copy(update=loss)})
    torch.manual_seed(0)
    return build_model(config)


def test_the_momentum_queue_lives_where_the_model_lives():
    with torch.device("meta"):
        model = _model(queue_size=16, itc_same_cohort=False)
    objective = objectives.PretrainingObjective(model)
    assert {b.device.type for b in objective.buffers()} == {"meta"}
    moved = objectives.PretrainingObjective(_model(queue_size=16, itc_same_cohort=False))
    moved = moved.to("meta")
    assert {t.device.type for t in [*moved.buffers(), *moved.parameters()]} == {"meta"}
    assert moved.momentum.image_queue.shape == (16, preset("tiny").projection_dim)


@pytest.mark.parametrize("fused", [False, True])
def test_resumed_adam_state_has_the_strides_of_channels_last_weights(fused: bool):
    """The moments come back laid out like their (channels-last 3D) parameters, and the step
    where the optimizer reads it."""
    from citab_cli.core.runtime import checkpoint_file
    from citab_cli.core.training.run import parameter_names

    model = _model().to(memory_format=torch.channels_last_3d)
    conv = next(p for p in model.parameters() if p.dim() == 5 and p.shape[1] > 1)
    assert not conv.is_contiguous()  # channels-last: strides differ from a contiguous copy
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    names = parameter_names(model)
    flat = checkpoint_file.optimizer_tensors(optimizer, names)
    saved = {k: v.contiguous() for k, v in flat.items()}  # as safetensors stores them
    fresh = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    checkpoint_file.restore_optimizer(fresh, names, saved)
    state = fresh.state[conv]
    assert state["exp_avg"].stride() == conv.stride()
    assert state["exp_avg_sq"].stride() == conv.stride()
    assert torch.equal(state["exp_avg"], optimizer.state[conv]["exp_avg"])
    assert state["step"].device == (conv.device if fused else torch.device("cpu"))
    fresh.step()  # fused Adam refuses mismatched strides; a plain step must run too


def test_logits_are_float32_inside_bf16_autocast(monkeypatch):
    """ITC similarities, ITM match scores and classifier logits in full precision: at tau 0.1
    bf16 would move them in steps of 0.03-0.06 and tie pairs the head tells apart."""
    from citab_cli.core.evaluation.classifier import Classifier
    from citab_cli.core.losses.contrastive import itc_loss

    g = torch.Generator().manual_seed(0)
    image, table = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, logits = itc_loss(image.bfloat16(), table.bfloat16(), 0.1)
    assert logits.dtype == torch.float32
    seen = []
    real = objectives.itm_loss
    monkeypatch.setattr(
        objectives, "itm_loss", lambda s, positives: seen.append(s) or real(s, positives)
    )
    model = _model()
    images = torch.randn(3, 1, *preset("tiny").image.shape, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        objectives.pretraining_loss(
            model, images, make_batch(), None, torch.Generator().manual_seed(1)
        )
        scores = Classifier(model, 3)(images, make_batch())
    assert seen and seen[0].dtype == torch.float32
    assert scores.dtype == torch.float32


def _scan():
    import nibabel as nib
    import numpy as np

    return nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))


class _Failing:
    """A stand-in brain extractor that raises `error`."""

    def __init__(self, error: Exception):
        self.error = error

    def mask(self, volume):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: an illegal memory access was encountered"),
    ],  # fmt: skip
)
def test_a_gpu_failure_in_brain_extraction_stops_ingest_instead_of_skipping(
    monkeypatch, tmp_path, error
):
    from pathlib import Path

    from citab_cli.core.errors import CitabError
    from citab_cli.core.scans import engines, pipelines, t1_linear

    monkeypatch.setattr(t1_linear, "_extractor", lambda cuda: _Failing(error))
    with pytest.raises(t1_linear.DeviceFailure, match="failed on the GPU") as caught:
        t1_linear._brain_mask(_scan(), Path("scan.nii.gz"))
    assert "fewer --workers" in str(caught.value) and isinstance(caught.value, CitabError)

    def preprocess(path, job):
        raise caught.value

    monkeypatch.setattr(pipelines, "preprocess_file", preprocess)
    with pytest.raises(t1_linear.DeviceFailure):  # not returned as one bad scan among many
        engines.scan_task(0, tmp_path / "scan.nii.gz", None)


def test_a_scan_without_a_brain_is_still_a_bad_scan(monkeypatch):
    from pathlib import Path

    from citab_cli.core.scans import t1_linear

    monkeypatch.setattr(t1_linear, "_extractor", lambda cuda: _Failing(ValueError("empty mask")))
    with pytest.raises(t1_linear.CitabError, match="found no brain") as caught:
        t1_linear._brain_mask(_scan(), Path("scan.nii.gz"))
    assert not isinstance(caught.value, t1_linear.DeviceFailure)


def test_one_ingest_worker_per_gpu_uses_it():
    from citab_cli.core.scans.t1_linear import extraction_device

    assert [extraction_device(k, 2) for k in range(4)] == [0, 1, None, None]
    assert extraction_device(0, 0) is None


def test_ranks_meet_at_the_header_cache_barrier_when_one_finds_it_written(project, tmp_path):
    from pathlib import Path

    from tests.helpers import torchrun

    script = Path(__file__).parent / "scripts" / "ddp_headers.py"
    done = torchrun(str(script), str(project), str(tmp_path), timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "rank0.ok").is_file() and (tmp_path / "rank1.ok").is_file()


def test_the_process_group_gets_a_timeout_longer_than_a_validation(monkeypatch):
    from datetime import timedelta

    from citab_cli.core.runtime import distributed

    calls = []
    monkeypatch.setattr(
        torch.distributed, "init_process_group", lambda *a, **k: calls.append((a, k))
    )
    distributed.start_process_group("cuda:0")
    distributed.start_process_group("cpu")
    assert [a[0] for a, _ in calls] == ["nccl", "gloo"]
    assert all(k["timeout"] >= timedelta(minutes=30) for _, k in calls)


def test_scans_leave_the_host_as_float16_and_arrive_as_float32(pretrained):
    """Half the bytes on the way to the device, and the same values once widened there."""
    import numpy as np

    from citab_cli.core import headers
    from citab_cli.core.data.project import Project
    from citab_cli.core.runtime.dataset import Collator, load_cohort
    from citab_cli.core.runtime.device import image_layout, to_device

    project = Project(pretrained)
    cohort = load_cohort(project, "adni", headers.ensure_embedded(project, ["adni"]))
    items = np.array([[0, 0], [0, 3]])
    host = Collator([cohort]).images(items)
    assert host.dtype == np.float16
    arrived = image_layout(torch.from_numpy(host), torch.device("cpu"))
    assert arrived.dtype == torch.float32
    expected = np.asarray(cohort.images[[0, 3]], np.float32)[:, None]
    assert np.array_equal(arrived.numpy(), expected)
    assert torch.equal(to_device(np.arange(4), torch.device("cpu")), torch.arange(4))


def test_the_suite_runs_on_the_cpu_unless_a_test_is_marked_gpu():
    import os

    assert not torch.cuda.is_available()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def _suite():
    from tests.benchmark_scripts import load

    return load("gpu_suite")


def test_a_variant_past_its_cap_is_stopped_and_the_suite_goes_on(tmp_path):
    suite = _suite()
    args = type("Args", (), {"preset": "tiny", "device": "cpu", "steps": 1, "subjects": 6,
                             "quick": True})()  # fmt: skip
    entry = suite.run_variant("slow", "model_step", [], 0.5, args, tmp_path)
    assert "stopped at its cap" in entry["error"]
    report = suite.main(["--device", "cpu", "--preset", "tiny", "--quick", "--budget", "1",
                         "--out", str(tmp_path / "suite.json")])  # fmt: skip
    assert all("does not fit" in v["skipped"] for v in report["variants"].values())
    assert list(report["variants"])[-1] == "bf16_cl_compile_b12"  # compile runs last


@pytest.mark.slow
def test_the_gpu_suite_rehearses_on_the_cpu_from_the_source_tree(tmp_path):
    """`benchmarks/gpu_suite.py --device cpu --preset tiny --quick`, as the GPU run will start
    it: from the source tree, PYTHONPATH unset; every variant measures (about 80 s)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = tmp_path / "suite.json"
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "gpu_suite.py"), "--device", "cpu",
         "--preset", "tiny", "--quick", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["missing"] == {}
    for name, entry in report["variants"].items():
        assert entry.get("samples_per_s", 0) > 0, (name, entry)
    first = json.loads((tmp_path / "suite-variants" / "bf16_cl_b12.json").read_text())
    assert first["citab_source"] == str(root / "citab_cli")
    assert first["model_step"]["bf16"] and first["model_step"]["channels_last"]


@pytest.mark.gpu
def test_a_run_with_the_momentum_queue_stops_and_resumes_on_cuda(embedded):
    from citab_cli.core.data.project import Project
    from citab_cli.core.runtime import checkpoint_file
    from citab_cli.core.training import loop
    from tests.helpers import tiny

    config = tiny(epochs=2, checkpoint_every=2)
    loss = config.model.loss.model_copy(update={"queue_size": 16, "itc_same_cohort": False})
    config = config.model_copy(update={"model": config.model.model_copy(update={"loss": loss})})
    project = Project(embedded)
    hooks = loop.Hooks(stop=lambda step: step == 3)
    first = loop.pretrain(project, config, "gpu", device="cuda", hooks=hooks)
    assert first.stopped_early
    done = loop.pretrain(project, config, "gpu", resume=True, device="cuda")
    assert not done.stopped_early and done.steps > first.steps
    tensors, _ = checkpoint_file.load(project.run_files("gpu").last)
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


@pytest.mark.gpu
def test_probe_and_finetune_run_on_cuda(pretrained):
    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation import finetune, probe

    project = Project(pretrained)
    (report,) = probe.probe(project, "best.safetensors", ["adni"], (1.0,), 1, device="cuda",
                            resamples=20)  # fmt: skip
    assert report.summary["citab"]["1"]["balanced_accuracy"]["mean"] >= 0
    tuned = finetune.finetune(project, "best.safetensors", "adni", "trainable", epochs=2,
                              device="cuda", resamples=20)  # fmt: skip
    assert "finetuned" in tuned.summary
