"""A pretraining run's folder: its name, its files, and what is written to them.

```
runs/<run>/config.yaml              the resolved configuration
           metrics.jsonl            one line per logged step and per validation
           best.safetensors         the model at its best validation
           last.safetensors         the model at the last checkpoint
           last.state.safetensors   model + optimizer + progress, to resume from
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from citab_cli.core import atomic, headers, yaml_io
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.training import checkpoint, records
from citab_cli.core.training.config import PretrainConfig
from citab_cli.core.training.dataset import CohortData
from citab_cli.core.training.distributed import Distributed

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
BEST = "best.safetensors"
LAST = "last.safetensors"
STATE = "last.state.safetensors"


@dataclass
class Progress:
    """How far a run has come: what `last.state.safetensors` records besides the tensors."""

    step: int = 0
    best: dict = field(default_factory=dict)  # validation scores of best.safetensors
    skipped: int = 0  # steps skipped for a non-finite loss
    bad_in_a_row: int = 0  # consecutive non-finite steps (not saved)


def run_dir(project: Project, run: str) -> Path:
    if not run or "/" in run or run.startswith("."):
        raise CitabError(f"'{run}' is not a valid run name; use letters, digits, '-' and '_'")
    return project.runs_dir / run


def newest_run(project: Project) -> str:
    runs = sorted(project.runs(), key=lambda r: (project.runs_dir / r).stat().st_mtime)
    if not runs:
        raise CitabError(f"{project.root} has no runs to resume; start one with `citab pretrain`")
    return runs[-1]


def resolve_config(config: PretrainConfig, project: Project, header_dim: int) -> PretrainConfig:
    """The config as it will run: image shape from the project, header size from the encoder."""
    shape = project.load_settings().image.shape
    model = config.model.model_copy(
        update={
            "header_dim": header_dim,
            "image": config.model.image.model_copy(update={"shape": shape}),
        }
    )
    return config.model_copy(update={"model": model})


def load_run_config(directory: Path) -> PretrainConfig:
    return yaml_io.load_model(directory / CONFIG_FILE, PretrainConfig, "run config")  # type: ignore[return-value]


def check_resumable(
    document: dict, config: PretrainConfig, cohorts: list[CohortData], path: Path, world: int
) -> None:
    """A saved state continues only with its own configuration, cohort schemas and number of
    processes (the data order, the epochs and the schedule are laid out for that number)."""
    saved_world = document.get("world_size", 1)
    if saved_world != world:
        how = (
            "without torchrun"
            if saved_world == 1
            else f"under torchrun with {saved_world} processes in total over all machines"
        )
        raise CitabError(
            f"{path}: this run was trained with {_processes(saved_world)} and is resumed with "
            f"{_processes(world)}; resume it {how}, or start a new run"
        )
    if document["config"] != config.model_dump(mode="json"):
        raise CitabError(
            f"{path}: saved with another configuration than {path.parent / CONFIG_FILE}; "
            "restore the run's config.yaml or start a new run"
        )
    for c in cohorts:
        saved = document["cohorts"].get(c.name)
        if saved is None or saved["schema_fingerprint"] != c.schema_fingerprint:
            raise CitabError(
                f"{path}: cohort '{c.name}' was re-ingested with another schema since "
                "this run started; start a new run"
            )


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a resumed run continues from."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        record_step = record.get("step", record.get("validation", {}).get("step", 0))
        if record_step <= step:
            kept.append(line)
    atomic.write_text(path, "".join(f"{line}\n" for line in kept))


def parameter_names(model: torch.nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


class RunWriter:
    """Writes a run's files; only the main process writes (the others' calls do nothing)."""

    def __init__(
        self,
        directory: Path,
        config: PretrainConfig,
        cohorts: list[CohortData],
        cache: headers.HeaderCache,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        steps_per_epoch: int,
        dist: Distributed,
        momentum: torch.nn.Module | None = None,
        tensorboard: bool = False,
    ):
        self.directory = directory
        self.config = config
        self.cohorts = cohorts
        self.cache = cache
        self.model = model
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self.world = dist.world
        self.main = dist.main
        self.momentum = momentum  # momentum encoders and their queue, resumed with the run
        self.tensorboard = records.TensorBoard(directory) if tensorboard and self.main else None

    def start(self) -> None:
        """A new run: its resolved configuration and an empty metrics log."""
        if self.main:
            atomic.write_text(
                self.directory / CONFIG_FILE, yaml_io.dump(self.config.model_dump(mode="json"))
            )
            (self.directory / METRICS_FILE).write_text("")

    def environment(self, project_root: Path, device: str) -> None:
        """environment.json: versions, devices and processes of this start (or resume)."""
        if self.main:
            records.write_environment(
                self.directory, records.environment(project_root, self.world, device)
            )

    def restore(self, tensors: dict[str, torch.Tensor], document: dict) -> Progress:
        """Load a saved state into the model and optimizer; the progress it recorded."""
        check_resumable(document, self.config, self.cohorts, self.directory / STATE, self.world)
        prefix = "model/"
        self.model.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
        checkpoint.restore_optimizer(self.optimizer, parameter_names(self.model), tensors)
        if self.momentum is not None:
            prefix = "momentum/"
            self.momentum.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        progress = Progress(document["step"], document.get("best", {}), document.get("skipped", 0))
        if self.main:
            truncate_metrics(self.directory / METRICS_FILE, progress.step)
        return progress

    def log(self, record: dict) -> None:
        if not self.main:
            return
        with open(self.directory / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.log(record)
        if "validation" in record:
            records.draw_curves(self.directory, METRICS_FILE)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def _metadata(self, step: int, metrics: dict) -> dict:
        return {
            "config": self.config.model_dump(mode="json"),
            "cohorts": {
                c.name: {"schema_fingerprint": c.schema_fingerprint, "columns": c.columns}
                for c in self.cohorts
            },
            "header_encoder": {"id": self.cache.encoder_id, "dim": self.cache.dim},
            "step": step,
            "epoch": step // self.steps_per_epoch,
            "world_size": self.world,
            "metrics": metrics,
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def save_best(self, progress: Progress, scores: dict) -> None:
        if self.main:
            meta = self._metadata(progress.step, scores)
            checkpoint.save(self.directory / BEST, self.model.state_dict(), checkpoint.MODEL, meta)

    def save_state(self, progress: Progress) -> None:
        """last.safetensors (the model) and last.state.safetensors (everything to resume)."""
        if not self.main:
            return
        meta = self._metadata(progress.step, {})
        state = dict(self.model.state_dict())
        checkpoint.save(self.directory / LAST, state, checkpoint.MODEL, meta)
        tensors = {f"model/{k}": v for k, v in state.items()}
        tensors.update(checkpoint.optimizer_tensors(self.optimizer, parameter_names(self.model)))
        if self.momentum is not None:
            tensors.update({f"momentum/{k}": v for k, v in self.momentum.state_dict().items()})
        meta.update(best=progress.best, skipped=progress.skipped)
        checkpoint.save(self.directory / STATE, tensors, checkpoint.STATE, meta)
