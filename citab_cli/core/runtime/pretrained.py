"""A checkpoint read against a project: resolved by name, checked against the project's header
encoder, image grid and cohort schemas, and the cohorts it is evaluated on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from citab_cli.core import headers
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.runtime import checkpoint_file
from citab_cli.core.runtime.dataset import CohortData, load_cohort, without_scan_notes
from citab_cli.core.runtime.run_config import PretrainConfig


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint read and checked against a project: its path, run, configuration, metadata and
    tensors."""

    path: Path
    run: str
    config: PretrainConfig
    document: dict
    tensors: dict[str, torch.Tensor]

    def without_criteria(self, requested: bool, cohort: CohortData | None = None) -> bool:
        """The one rule for a cohort's criterion columns (schema `criterion: true`: they define
        the diagnosis): a fine-tuned classifier reads cohorts as it was fine-tuned, without them
        if it was fine-tuned with --exclude-criteria (one fine-tuned with them is refused
        --exclude-criteria: it never saw its input without them); a pretrained checkpoint reads
        them as the command asks (`requested`). `cohort` names its criterion columns in a
        refusal."""
        if self.document.get("kind") != checkpoint_file.CLASSIFIER:
            return requested
        fine_tuned_without = bool(self.document.get("exclude_criteria", False))
        if requested and not fine_tuned_without:
            shown = ""
            if cohort is not None:
                named = [c for c, f in zip(cohort.columns, cohort.criterion, strict=True) if f]
                shown = f" ({', '.join(named) or 'none marked in this cohort'})"
            raise CitabError(
                f"{self.path}: this classifier was fine-tuned with the criterion columns{shown}; "
                "use it without --exclude-criteria, or fine-tune one with --exclude-criteria"
            )
        return fine_tuned_without

    def model(self) -> CITab:
        """The network with the checkpoint's weights, in eval mode."""
        model = build_model(self.config.model)
        model.load_state_dict(self.tensors)
        return model.eval()

    def seen(self, cohort: str) -> bool:
        """Whether `cohort` was among the pretraining cohorts."""
        return cohort in self.document.get("cohorts", {})


def resolve_checkpoint(project: Project, ckpt: str) -> Path:
    """A path as given, or a bare file name (best.safetensors) in the newest run that has it."""
    given = Path(ckpt)
    if given.exists() or len(given.parts) > 1:
        return given
    newest = project.newest_run(having=ckpt)
    if newest is None:
        raise CitabError(f"no run in {project.runs_dir} has {ckpt}; pass a path, or pretrain first")
    return project.run_files(newest).directory / ckpt


def load_checkpoint(
    project: Project, ckpt: str, kinds: tuple[str, ...] = (checkpoint_file.MODEL,)
) -> LoadedCheckpoint:
    """A checkpoint of one of `kinds`, checked against the project's encoder and image grid."""
    path = resolve_checkpoint(project, ckpt)
    tensors, document = checkpoint_file.load(path, kind=None)
    if document.get("kind") not in kinds:
        raise CitabError(
            f"{path}: holds a {document.get('kind')}; this command takes a "
            f"{' or a '.join(kinds)} checkpoint"
        )
    config = PretrainConfig.model_validate(document["config"])
    settings = project.load_settings()
    encoder = document["header_encoder"]
    if encoder["id"] != settings.header_encoder:
        raise CitabError(
            f"{path}: trained with header encoder '{encoder['id']}', this project "
            f"uses '{settings.header_encoder}'; run `citab embed-headers --model` "
            "with the checkpoint's encoder"
        )
    if tuple(config.model.image.shape) != tuple(settings.image.shape):
        raise CitabError(
            f"{path}: trained on images of {tuple(config.model.image.shape)}, this "
            f"project stores {tuple(settings.image.shape)}; use the checkpoint's project"
        )
    return LoadedCheckpoint(path, path.parent.name, config, document, tensors)


def check_cohort(loaded: LoadedCheckpoint, project: Project, cohort: str) -> None:
    """A cohort the checkpoint saw must still have the schema it was pretrained with."""
    seen = loaded.document.get("cohorts", {}).get(cohort)
    fingerprint = project.manifest(cohort)["schema"]["fingerprint"]
    if seen is not None and seen["schema_fingerprint"] != fingerprint:
        raise CitabError(
            f"{loaded.path}: cohort '{cohort}' was pretrained with another "
            "schema (another project, or re-ingested since); probe it with a "
            "checkpoint of this project"
        )


def read_cohorts(
    project: Project,
    loaded: LoadedCheckpoint,
    names: list[str],
    message: Callable[[str], None],
    check_schema: bool = True,
    table_only: bool = False,
) -> list[CohortData]:
    """The named cohorts with their header vectors, labelled or not; with `check_schema`, a
    cohort the checkpoint saw must still have the schema it saw; with `table_only` their
    subjects without a scan too (else they are left out, and said to be)."""
    known = project.cohorts()
    for name in names:
        if name not in known:
            raise CitabError(
                f"cohort '{name}' is not ingested in {project.root} (ingested: "
                f"{', '.join(known) or 'none'}); fix the cohort name"
            )
        if check_schema:
            check_cohort(loaded, project, name)
    cache = headers.ensure_embedded(project, names, message)
    cohorts = [load_cohort(project, n, cache, table_only) for n in names]
    for line in without_scan_notes(cohorts):
        message(line)
    return cohorts


def prepare_cohorts(
    project: Project,
    loaded: LoadedCheckpoint,
    names: list[str],
    message: Callable[[str], None],
    task: str,
    table_only: bool = False,
) -> list[CohortData]:
    """The named cohorts, checked against the checkpoint, with their header vectors (with
    `table_only`, their subjects without a scan too); each must have labelled subjects, and
    all one class set."""
    data = read_cohorts(project, loaded, names, message, table_only=table_only)
    for cohort in data:
        if not any(cohort.labels):
            raise CitabError(
                f"cohort '{cohort.name}' has no labelled subjects; give its schema "
                "a label: mapping and re-ingest"
            )
    class_sets = {tuple(sorted({lab for lab in c.labels if lab})) for c in data}
    if len(class_sets) > 1:
        listed = "; ".join(
            f"{c.name}: {'/'.join(sorted({lab for lab in c.labels if lab}))}" for c in data
        )
        raise CitabError(
            f"the cohorts do not share one class set ({listed}); {task} them one "
            "at a time or map their labels to the same classes"
        )
    return data
