"""The project's settings at an ingest: fixed by the first ingest (from the command's options and
a citab.yaml written by hand beforehand, completed), and checked against by every later one."""

from __future__ import annotations

from pathlib import Path

from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.settings import (
    ImageSettings,
    ProjectSettings,
    SplitSettings,
    default_spacing,
    mni_grid,
    native_grid,
)

#: Grid keys citab derives at the first ingest from the pipeline; a hand-written file omits them.
DERIVED_IMAGE_KEYS = ("space", "affine")


def space_of(pipeline: str) -> str:
    """The grid's space for a pipeline: MNI152 for t1-linear, native otherwise."""
    return "mni152" if pipeline == "t1-linear" else "native"


def _triple(value, key: str, path: Path) -> tuple | None:
    if value is None:
        return None
    values = value if isinstance(value, list | tuple) else [value]
    if len(values) == 1:
        values = list(values) * 3
    if len(values) != 3 or not all(isinstance(v, int | float) for v in values):
        raise CitabError(f"{path}: image.{key} must be one number or three, e.g. [128, 128, 128]")
    return tuple(values)


def _agree(given, written, option: str, path: Path):
    """The command's value, else the hand-written one; both, and they must be equal."""
    if given is not None and written is not None and tuple(given) != tuple(written):
        raise CitabError(
            f"--{option} {given} disagrees with {path} ({option}: {list(written)}); give one"
        )
    return given if given is not None else written


def _hand_written(project: Project) -> dict:
    """A citab.yaml written before the first ingest, as plain data ({} when there is none)."""
    import yaml

    path = project.settings_path
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CitabError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise CitabError(f"{path}: must be a mapping of settings (image:, split:, ...)")
    derived = [k for k in DERIVED_IMAGE_KEYS if k in (data.get("image") or {})]
    if derived:
        raise CitabError(
            f"{path}: image.{derived[0]} is set by citab at the first ingest from the pipeline; "
            "remove it (write image.shape, and image.spacing if you want another voxel size)"
        )
    return data


def _grid(shape, spacing, pipeline: str, extra: dict) -> ImageSettings:
    grid = shape or ImageSettings().shape
    if pipeline == "t1-linear":
        step, affine = mni_grid(grid, spacing)
    else:
        step = spacing or default_spacing(grid)
        affine = native_grid(grid, step)
    return ImageSettings(shape=grid, spacing=step, affine=affine, space=space_of(pipeline), **extra)


def first_settings(
    project: Project, shape, spacing, pipeline: str, split: SplitSettings | None
) -> ProjectSettings:
    """The settings a project's first ingest fixes: the options, completed by a hand-written
    citab.yaml (the grid derived from its shape, or from the spacing it gives)."""
    written = _hand_written(project)
    path = project.settings_path
    image = dict(written.get("image") or {})
    shape = _agree(shape, _triple(image.pop("shape", None), "shape", path), "shape", path)
    spacing = _agree(spacing, _triple(image.pop("spacing", None), "spacing", path), "spacing", path)
    try:
        chosen = split
        if written.get("split") is not None:
            mine = SplitSettings.model_validate(written["split"])
            if split is not None and split != mine:
                raise CitabError(
                    f"--split {split.train:g},{split.val:g},{split.test:g} (seed {split.seed}) "
                    f"disagrees with {path}; give one"
                )
            chosen = mine
        rest = {k: v for k, v in written.items() if k not in ("image", "split")}
        return ProjectSettings(
            image=_grid(shape, spacing, pipeline, image), split=chosen or SplitSettings(), **rest
        )
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc", ()))
        reason = first["msg"].removeprefix("Value error, ")
        raise CitabError(f"{path if written else 'settings'}: {where + ': ' if where else ''}"
                         f"{reason}") from None  # fmt: skip


def settled_settings(
    project: Project, shape, spacing, pipeline: str, split: SplitSettings | None
) -> ProjectSettings:
    """The settings of a project that holds cohorts; options that would change them refused."""
    settings = project.load_settings()
    path = project.settings_path
    if shape is not None and tuple(shape) != settings.image.shape:
        raise CitabError(
            f"{path}: this project stores images as {settings.image.shape}; omit --shape, or use "
            "a new --project"
        )
    if spacing is not None and tuple(spacing) != settings.image.spacing:
        raise CitabError(
            f"{path}: this project stores images at {settings.image.spacing} mm; omit --spacing, "
            "or use a new --project"
        )
    if settings.image.space != space_of(pipeline):
        other = "t1-linear" if settings.image.space == "mni152" else "minimal"
        raise CitabError(
            f"{path}: this project's grid holds {other} scans ({settings.image.space} space), "
            f"not {pipeline} ones; ingest with --preprocess {other}, or into a new --project"
        )
    if split is not None and split != settings.split:
        s = settings.split
        raise CitabError(
            f"{path}: this project's split was fixed at its first ingest ({s.train:g}/{s.val:g}/"
            f"{s.test:g}, seed {s.seed}); omit --split/--split-seed, or give --splits FILE"
        )
    return settings


def project_settings(
    project: Project, shape, spacing, pipeline: str, split: SplitSettings | None = None
) -> tuple[ProjectSettings, bool]:
    """(settings, whether this ingest fixes them): a project without cohorts yet takes them from
    the options and a hand-written citab.yaml; one with cohorts keeps its own."""
    if project.cohorts():
        return settled_settings(project, shape, spacing, pipeline, split), False
    return first_settings(project, shape, spacing, pipeline, split), True
