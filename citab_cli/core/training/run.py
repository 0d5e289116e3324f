"""What a pretraining run writes to its files (runs/<run>/, laid out by `RunFiles` in
data/project.py): the resolved configuration, the metrics log, the checkpoints, and what a
resumed run reads back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from citab_cli.core import atomic, headers, yaml_io
from citab_cli.core.data.project import Project, RunFiles
from citab_cli.core.errors import CitabError
from citab_cli.core.runtime import checkpoint_file
from citab_cli.core.runtime.dataset import CohortData, identity_vocabulary
from citab_cli.core.runtime.distributed import Distributed
from citab_cli.core.runtime.run_config import PretrainConfig, extends
from citab_cli.core.training import records


@dataclass
class Progress:
    """How far a run has come: what `last.state.safetensors` records besides the tensors."""

    step: int = 0
    best: dict = field(default_factory=dict)  # validation scores of best.safetensors
    skipped: int = 0  # steps skipped for a non-finite loss
    bad_in_a_row: int = 0  # consecutive non-finite steps (not saved)


def resolve_config(
    config: PretrainConfig, project: Project, header_dim: int, cohorts: list[CohortData]
) -> PretrainConfig:
    """The config as it will run: image shape from the project, header size from the encoder,
    and with a learned column identity the vocabulary of the pretraining cohorts."""
    shape = project.load_settings().image.shape
    update: dict = {
        "header_dim": header_dim,
        "image": config.model.image.model_copy(update={"shape": shape}),
    }
    if config.model.tabular.column_identity == "learned":
        vocabulary = identity_vocabulary(cohorts)
        update["tabular"] = config.model.tabular.model_copy(update={"vocabulary": vocabulary})
    return config.model_copy(update={"model": config.model.model_copy(update=update)})


def load_run_config(files: RunFiles) -> PretrainConfig:
    """The configuration a run was started with (its config.yaml), checked."""
    return yaml_io.load_model(files.config, PretrainConfig, "run config")  # type: ignore[return-value]


@dataclass
class SavedRun:
    """A run's last state and configuration, and the one place that decides whether the run may
    continue: `open` before anything is embedded (the state must name the project's header
    encoder), then `may_resume` once the request is resolved."""

    files: RunFiles
    tensors: dict
    document: dict
    stored: PretrainConfig  # its config.yaml

    @classmethod
    def open(cls, project: Project, files: RunFiles) -> SavedRun:
        """The run's last state, refused if it was trained with another header encoder than
        the project's."""
        tensors, document = checkpoint_file.load(files.state, kind=checkpoint_file.STATE)
        encoder, current = document["header_encoder"]["id"], project.load_settings().header_encoder
        if encoder != current:
            raise CitabError(
                f"{files.state}: trained with header encoder '{encoder}', the project now uses "
                f"'{current}'; run `citab embed-headers --model` with the run's encoder, or "
                "start a new run"
            )
        return cls(files, tensors, document, load_run_config(files))

    def may_resume(self, config: PretrainConfig, cohorts: list[CohortData], world: int) -> bool:
        """Whether the run continues with `config` (resolved) on `cohorts` in `world` processes;
        True when the request extends it (more epochs: the one change a resumed run accepts).
        Its config.yaml and saved state must equal the request or be extended by it, the
        number of processes must be the same (the data order, the epochs and the schedule are
        laid out for it), and the cohorts ingested with the same schemas; a refusal names the
        file and what to do."""
        files, document = self.files, self.document
        requested = config.model_dump(mode="json")
        stored = self.stored.model_dump(mode="json")
        if stored != requested and not extends(stored, requested):
            raise CitabError(
                f"{files.config} differs from the requested configuration; "
                "a resumed run keeps its configuration (drop the changed options)"
            )
        saved_world = document.get("world_size", 1)
        if saved_world != world:
            how = (
                "without torchrun"
                if saved_world == 1
                else f"under torchrun with {saved_world} processes in total over all machines"
            )
            raise CitabError(
                f"{files.state}: this run was trained with {_processes(saved_world)} and is "
                f"resumed with {_processes(world)}; resume it {how}, or start a new run"
            )
        # read through the configuration model: keys added since the state was saved take
        # their defaults, as they do for config.yaml
        saved_config = PretrainConfig.model_validate(document["config"]).model_dump(mode="json")
        if saved_config != requested and not extends(saved_config, requested):
            raise CitabError(
                f"{files.state}: saved with another configuration than {files.config}; "
                "restore the run's config.yaml or start a new run"
            )
        for c in cohorts:
            saved = document["cohorts"].get(c.name)
            if saved is None or saved["schema_fingerprint"] != c.schema_fingerprint:
                raise CitabError(
                    f"{files.state}: cohort '{c.name}' was re-ingested with another schema "
                    "since this run started; start a new run"
                )
        return stored != requested


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a resumed run continues from."""
    if not path.is_file():
        return
    kept = [
        record
        for record in records.read_metrics(path)
        if record.get("step", record.get("validation", {}).get("step", 0)) <= step
    ]
    atomic.write_text(path, "".join(json.dumps(record) + "\n" for record in kept))


def parameter_names(model: torch.nn.Module) -> dict[int, str]:
    """id(parameter) -> its dotted name in `model`."""
    return {id(p): name for name, p in model.named_parameters()}


class RunWriter:
    """Writes a run's files; only the main process writes (the others' calls do nothing)."""

    def __init__(
        self,
        files: RunFiles,
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
        self.files = files
        self.config = config
        self.cohorts = cohorts
        self.cache = cache
        self.model = model
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self.world = dist.world
        self.main = dist.main
        self.momentum = momentum  # momentum encoders and their queue, resumed with the run
        self.tensorboard = (
            records.TensorBoard(files.tensorboard) if tensorboard and self.main else None
        )

    def start(self) -> None:
        """A new run: its resolved configuration and an empty metrics log."""
        if self.main:
            atomic.write_text(self.files.config, yaml_io.dump(self.config.model_dump(mode="json")))
            self.files.metrics.write_text("")

    def extend(self) -> None:
        """A resumed run given more epochs: its config.yaml says so from now on."""
        if self.main:
            atomic.write_text(self.files.config, yaml_io.dump(self.config.model_dump(mode="json")))

    def environment(self, project_root: Path, device: str) -> None:
        """environment.json: versions, devices and processes of this start (or resume)."""
        if self.main:
            records.write_environment(
                self.files.environment, records.environment(project_root, self.world, device)
            )

    def restore(self, tensors: dict[str, torch.Tensor], document: dict) -> Progress:
        """Load a saved state (cleared by `SavedRun.may_resume`) into the model and optimizer;
        the progress it recorded."""
        prefix = "model/"
        self.model.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
        checkpoint_file.restore_optimizer(self.optimizer, parameter_names(self.model), tensors)
        if self.momentum is not None:
            prefix = "momentum/"
            self.momentum.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        progress = Progress(document["step"], document.get("best", {}), document.get("skipped", 0))
        if self.main:
            truncate_metrics(self.files.metrics, progress.step)
        return progress

    def log(self, record: dict) -> None:
        """One line of metrics.jsonl (and TensorBoard); curves.png redrawn at validations."""
        if not self.main:
            return
        with open(self.files.metrics, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.log(record)
        if "validation" in record:
            records.draw_curves(self.files.metrics, self.files.curves)

    def close(self) -> None:
        """Close the TensorBoard writer, if any."""
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
        """best.safetensors: the model now, with the validation scores that made it best."""
        if self.main:
            meta = self._metadata(progress.step, scores)
            checkpoint_file.save(
                self.files.best, self.model.state_dict(), checkpoint_file.MODEL, meta
            )

    def save_state(self, progress: Progress) -> None:
        """last.safetensors (the model) and last.state.safetensors (everything to resume)."""
        if not self.main:
            return
        meta = self._metadata(progress.step, {})
        state = dict(self.model.state_dict())
        checkpoint_file.save(self.files.last, state, checkpoint_file.MODEL, meta)
        tensors = {f"model/{k}": v for k, v in state.items()}
        tensors.update(
            checkpoint_file.optimizer_tensors(self.optimizer, parameter_names(self.model))
        )
        if self.momentum is not None:
            tensors.update({f"momentum/{k}": v for k, v in self.momentum.state_dict().items()})
        meta.update(best=progress.best, skipped=progress.skipped)
        checkpoint_file.save(self.files.state, tensors, checkpoint_file.STATE, meta)
