"""Which run `citab pretrain` starts or resumes, and with what configuration.

A new run takes a preset, the keys of a --config YAML merged over it, then the options given on
the command line. A resumed run keeps the configuration in its config.yaml; options repeated on
--resume must equal the run's own values, and the first one that would change it is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from citab_cli.core import yaml_io
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.runtime import presets
from citab_cli.core.runtime.run_config import (
    PretrainConfig,
    differences,
    pretrain_preset,
    with_epochs,
)
from citab_cli.core.training.run import load_run_config

#: Which option sets each key of the run configuration (the rest come from --preset/--config).
OPTION_OF = {
    "cohorts": "--cohorts",
    "exclude_criteria": "--exclude-criteria",
    "train.epochs": "--epochs",
    "train.batch_size": "--batch-size",
    "train.seed": "--seed",
    "train.balance_cohorts": "--balance-cohorts/--proportional",
    "train.include_val": "--include-val/--train-only",
}


@dataclass(frozen=True)
class RunRequest:
    """What `citab pretrain` was asked for; None is an option not given."""

    cohorts: list[str] | None = None
    preset: str | None = None
    config_file: Path | None = None
    run: str | None = None
    resume: bool = False
    exclude_criteria: bool | None = None
    #: TrainConfig fields set by their own options.
    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    balance_cohorts: bool | None = None
    include_val: bool | None = None

    def train_options(self) -> dict[str, object]:
        """The TrainConfig fields the options set (None: not given)."""
        given = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "balance_cohorts": self.balance_cohorts,
            "include_val": self.include_val,
        }
        return {k: v for k, v in given.items() if v is not None}


def load_config(preset: str, path: Path | None) -> PretrainConfig:
    """The preset, with the keys of the YAML file at `path` (if any) merged over it."""
    base = pretrain_preset(preset)
    if path is None:
        return base
    return yaml_io.load_model(  # type: ignore[return-value]
        path, PretrainConfig, "pretraining config", defaults=base.model_dump(mode="json")
    )


def resolve_run(
    project: Project, request: RunRequest, now: datetime | None = None
) -> tuple[str, PretrainConfig]:
    """(run name, configuration): a resumed run's own, or the preset with --config and the
    options over it. A new run without --run is named <preset>-<date>-<time> (`now`)."""
    if not request.resume:
        if not request.cohorts:
            raise CitabError("name the cohorts to pretrain on: --cohorts adni,nacc,aibl")
        chosen = request.preset or presets.DEFAULT
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        name = request.run or f"{chosen}-{stamp}"
        project.run_files(name)  # the name is checked before any work
        return name, _apply(load_config(chosen, request.config_file), request)
    name = request.run or project.newest_run()
    if name is None:
        raise CitabError(f"{project.root} has no runs to resume; start one with `citab pretrain`")
    files = project.run_files(name)
    if not files.config.is_file():
        raise CitabError(f"{files.directory}: no run to resume; start it without --resume")
    saved = load_run_config(files)
    if request.epochs is not None and request.epochs > saved.train.epochs:
        saved = with_epochs(saved, request.epochs)  # extending the run: the one change allowed
    _refuse_changes(saved, name, request)
    return name, saved


def _apply(base: PretrainConfig, request: RunRequest, cohorts: list[str] | None = None):
    """`base` with the request's training options and cohorts over it."""
    update: dict = {"train": base.train.model_copy(update=request.train_options())}
    cohorts = cohorts if cohorts is not None else request.cohorts
    if cohorts is not None:
        update["cohorts"] = cohorts
    if request.exclude_criteria is not None:
        update["exclude_criteria"] = request.exclude_criteria
    return base.model_copy(update=update)


def _refuse_changes(saved: PretrainConfig, name: str, request: RunRequest) -> None:
    """Options repeated on --resume must equal the run's own settings; name the first change."""
    base = saved
    if request.preset is not None or request.config_file is not None:
        base = load_config(request.preset or presets.DEFAULT, request.config_file)
        # the grid and the header size come from the project, not from an option
        model = base.model.model_copy(
            update={"header_dim": saved.model.header_dim, "image": saved.model.image}
        )
        base = base.model_copy(update={"model": model})
    cohorts = request.cohorts if request.cohorts is not None else list(saved.cohorts)
    changed = differences(saved, _apply(base, request, cohorts))
    if not changed:
        return
    key, was, now = changed[0]
    option = OPTION_OF.get(key) or ("--config" if request.config_file is not None else "--preset")
    more = f" (and {len(changed) - 1} more setting(s))" if len(changed) > 1 else ""
    longer = " (--epochs may only grow, to extend the run)" if key == "train.epochs" else ""
    raise CitabError(
        f"{option} changes {key} of run '{name}' from {was} to {now}{more}; a resumed run keeps "
        f"its settings{longer}: drop {option}, or start a new run with another --run"
    )
