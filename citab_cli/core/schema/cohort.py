"""Cohort schemas: how one cohort's raw table maps onto citab's columns and classes."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from citab_cli.core import yaml_io
from citab_cli.core.errors import CitabError

RawValue = str | int | float
COHORT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def token(value: RawValue | None) -> str:
    """The canonical text of a raw cell or a code from a schema, for comparing the two.

    Numbers compare by value (`"1.0"`, `"1"` and YAML's `1` are one token); text compares exactly
    after trimming surrounding spaces.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text
        if not text or text.lower() in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}:
            return text
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return repr(number)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _token_keys(value: object) -> object:
    """Mapping keys as tokens, so YAML's `1:` and `"1":` are one code."""
    return {token(k): v for k, v in value.items()} if isinstance(value, dict) else value


def _token_list(value: object) -> object:
    return [token(v) for v in value] if isinstance(value, list) else value


CodeMap = Annotated[dict[str, str], BeforeValidator(_token_keys)]
Codes = Annotated[list[str], BeforeValidator(_token_list)]
#: Roles a column can play in the age + sex (+ education) floor of every evaluation report.
Covariate = Literal["age", "sex", "education"]


class NumericColumn(_Strict):
    """A numeric column: description, unit, range, missing codes, parsing of censored values,
    normalisation."""

    type: Literal["numeric"]
    description: str = Field(min_length=3)
    unit: str | None = None
    range: tuple[float, float] | None = None
    missing: Codes = []
    parse: dict[str, float] = {}
    normalize: Literal["range", "zscore"] | None = None
    required: bool = True
    criterion: bool = False
    covariate: Covariate | None = None

    @field_validator("range")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError("range must be [low, high] with low < high")
        return v

    @model_validator(mode="after")
    def _normalize_needs_range(self) -> NumericColumn:
        if self.normalize == "range" and self.range is None:
            raise ValueError("normalize: range needs a range: [low, high]")
        return self

    @property
    def normalization(self) -> str:
        """How values become z: 'range' when the schema gives one (unless `normalize` says
        otherwise), else 'zscore'."""
        return self.normalize or ("range" if self.range is not None else "zscore")


class CategoricalColumn(_Strict):
    """A categorical column: description and raw code -> level name."""

    type: Literal["categorical"]
    description: str = Field(min_length=3)
    levels: CodeMap = Field(min_length=1)
    missing: Codes = []
    required: bool = True
    criterion: bool = False
    covariate: Covariate | None = None

    @property
    def level_names(self) -> list[str]:
        """Canonical level labels in schema order; a cell stores its index in this list."""
        return list(dict.fromkeys(self.levels.values()))

    @property
    def level_lookup(self) -> dict[str, int]:
        """Raw code -> index of its level name."""
        names = self.level_names
        return {raw: names.index(label) for raw, label in self.levels.items()}


Column = Annotated[NumericColumn | CategoricalColumn, Field(discriminator="type")]


class VisitSpec(_Strict):
    """The visit column and its baseline code: one row per subject is kept."""

    column: str
    baseline: Annotated[str, BeforeValidator(token)]


Preprocess = Literal["t1-linear", "minimal"]


class _ImageOptions(_Strict):
    #: the pipeline: t1-linear for scanner output, minimal for skull-stripped, registered scans
    preprocess: Preprocess | None = None
    #: with DICOM folders holding several series: the T1 series' description (a regular
    #: expression, e.g. "MPRAGE|T1") or number
    series: str | int | None = None


class ImageByPattern(_ImageOptions):
    """Scans found by a glob with {column} fields under --images."""

    pattern: str

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return _check_pattern(v)


class ImageByColumn(_ImageOptions):
    """Scans named by a column of paths relative to --images."""

    column: str


class ImageByBids(_ImageOptions):
    """Scans found in a BIDS tree (sub-<subject>/[ses-<session>/]anat/*_T1w.nii*)."""

    bids: Literal[True]
    session: str | None = None


def _check_pattern(v: str) -> str:
    if not re.search(r"\{[^{}]+\}", v):
        raise ValueError(
            "an image pattern needs at least one {COLUMN} field, e.g. '**/*_I{IMAGEUID}.nii*'"
        )
    if v.startswith("/") or ".." in Path(v).parts:
        raise ValueError("an image pattern must stay inside --images (no '/' start, no '..')")
    return v


class LabelSpec(_Strict):
    """The label column and its raw value -> class mapping (None: unlabelled)."""

    column: str
    classes: Annotated[dict[str, str | None], BeforeValidator(_token_keys)] = Field(min_length=1)

    @property
    def class_names(self) -> list[str]:
        """The classes, in the order the mapping first names them."""
        return list(dict.fromkeys(c for c in self.classes.values() if c is not None))

    @property
    def lookup(self) -> dict[str, str | None]:
        """Raw value -> class (None for values kept unlabelled)."""
        return dict(self.classes)


class CohortSchema(_Strict):
    """A cohort schema: identifiers, visit, image, label, missing codes, dropped and feature
    columns."""

    cohort: str
    description: str = ""
    subject: str
    visit: VisitSpec | None = None
    image: str | ImageByPattern | ImageByColumn | ImageByBids
    label: LabelSpec | None = None
    missing: Codes = ["", "NA"]
    drop: list[str] = []
    columns: dict[str, Column] = Field(min_length=1)

    @field_validator("cohort")
    @classmethod
    def _cohort_name(cls, v: str) -> str:
        if not COHORT_NAME.match(v):
            raise ValueError("cohort must be a short lower-case name (letters, digits, '-', '_')")
        return v

    @field_validator("image")
    @classmethod
    def _pattern_has_field(cls, v):
        return _check_pattern(v) if isinstance(v, str) else v

    @property
    def image_pattern(self) -> str | None:
        """The glob of a pattern image entry (either form), else None."""
        if isinstance(self.image, str):
            return self.image
        return self.image.pattern if isinstance(self.image, ImageByPattern) else None

    @property
    def image_preprocess(self) -> str | None:
        """The pipeline the schema names for its scans, if any."""
        return None if isinstance(self.image, str) else self.image.preprocess

    @property
    def image_series(self) -> str | int | None:
        """The DICOM series the schema names, if any."""
        return None if isinstance(self.image, str) else self.image.series

    @model_validator(mode="after")
    def _column_roles(self) -> CohortSchema:
        features = set(self.columns)
        for role, name in self.role_columns().items():
            if role != "visit" and name in features:
                leak = " (it would leak the diagnosis)" if role == "label" else ""
                raise ValueError(
                    f"the {role} column '{name}' cannot also be a feature column{leak}"
                )
        roles: dict[str, str] = {}
        for name, column in self.columns.items():
            if column.covariate is not None:
                if column.covariate in roles:
                    raise ValueError(
                        f"columns '{roles[column.covariate]}' and '{name}' are both "
                        f"covariate: {column.covariate}; mark one"
                    )
                roles[column.covariate] = name
        clash = sorted(features & set(self.drop))
        if clash:
            raise ValueError(f"column '{clash[0]}' is both in drop and in columns; keep one")
        for name in self.image_fields():
            if name in self.drop:
                raise ValueError(
                    f"column '{name}' is used by the image pattern and cannot be "
                    "dropped (the image path is stored)"
                )
        for role, name in self.role_columns().items():
            if name in self.drop:
                raise ValueError(f"column '{name}' is the {role} column and cannot be dropped")
        return self

    def role_columns(self) -> dict[str, str]:
        """Role -> column of every non-feature column the CSV must have (subject, visit, label,
        image)."""
        roles = {"subject": self.subject}
        if self.visit is not None:
            roles["visit"] = self.visit.column
        if self.label is not None:
            roles["label"] = self.label.column
        if isinstance(self.image, ImageByColumn):
            roles["image"] = self.image.column
        return roles

    def image_fields(self) -> list[str]:
        """Columns an image pattern refers to ({FIELD} placeholders)."""
        pattern = self.image_pattern
        if pattern is not None:
            return list(dict.fromkeys(re.findall(r"\{([^{}]+)\}", pattern)))
        return []

    def fingerprint(self) -> str:
        """sha256 of the schema's canonical JSON: equal schemas, equal fingerprints."""
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


def unfinished(schema: CohortSchema) -> list[str]:
    """What a person must still write in a drafted schema: column descriptions and level names
    left as TODO, and a label that maps no value to a class. Empty when the schema is done."""

    def todo(text: str | None) -> bool:
        return text is not None and "TODO" in str(text)

    places = []
    described = [n for n, c in schema.columns.items() if todo(c.description)]
    if described:
        places.append(f"TODO description of {', '.join(described)}")
    for name, column in schema.columns.items():
        levels = [raw for raw, level in getattr(column, "levels", {}).items() if todo(level)]
        if levels:
            places.append(f"TODO level name(s) of {name} ({', '.join(map(str, levels))})")
    if schema.label is not None:
        named = [str(c) for c in schema.label.classes.values() if todo(c)]
        if named:
            places.append(f"TODO class name(s) of label {schema.label.column}")
        elif not schema.label.class_names:
            places.append(f"label {schema.label.column} maps no value to a class")
    return places


def load_schema(path: Path, draft: bool = False) -> CohortSchema:
    """A schema file, validated (errors name the line); unless `draft`, one with TODOs left is
    refused, every place named in one message."""
    schema = yaml_io.load_model(path, CohortSchema, "cohort schema")
    places = [] if draft else unfinished(schema)  # type: ignore[arg-type]
    if places:
        raise CitabError(
            f"{path}: the schema is still a draft: {'; '.join(places)}. Write them (the model "
            "reads descriptions and level names as text) and run `citab schema check` again"
        )
    return schema  # type: ignore[return-value]


def shipped_schema_dir() -> Path:
    """Where the schemas shipped with citab live (inside a wheel, or the source checkout)."""
    package = Path(__file__).resolve().parents[2]  # citab_cli/
    inside = package / "shipped_schemas"
    return inside if inside.is_dir() else package.parent / "schemas"


def shipped_schemas() -> list[str]:
    """The cohorts citab ships schemas for."""
    return sorted(p.stem for p in shipped_schema_dir().glob("*.yaml"))


def find_schema(
    cohort: str, explicit: Path | None, project_schema: Path, csv_path: Path | None = None
) -> Path:
    """The schema for `cohort`: `explicit`, else the project's copy, else `<cohort>.yaml` next
    to the CSV (as `citab synth` writes it), else the shipped one."""
    if explicit is not None:
        if not explicit.is_file():
            raise CitabError(f"{explicit}: schema file not found; check the --schema path")
        return explicit
    if project_schema.is_file():
        return project_schema
    if csv_path is not None and (csv_path.parent / f"{cohort}.yaml").is_file():
        return csv_path.parent / f"{cohort}.yaml"
    shipped = shipped_schema_dir() / f"{cohort}.yaml"
    if shipped.is_file():
        return shipped
    raise CitabError(
        f"no schema for cohort '{cohort}': pass --schema FILE (draft one with "
        f"`citab schema infer CSV -o {cohort}.yaml`), or use a shipped cohort name "
        f"({', '.join(shipped_schemas())})"
    )
