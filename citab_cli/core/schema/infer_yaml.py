"""Writing a drafted schema as YAML a person can review: every proposal in place, with a
comment saying what it rests on (how many cells carry a code) and what is left to do."""

from __future__ import annotations

from pathlib import Path

import yaml

from citab_cli.core import yaml_io
from citab_cli.core.schema.cohort import CohortSchema
from citab_cli.core.schema.infer_plan import Plan
from citab_cli.core.schema.infer_values import typed
from citab_cli.core.schema.raw_table import RawTable

HEADER = [
    "# Review every TODO. Descriptions are what the model reads: write each one the way another",
    "# cohort would describe the same measurement, with its unit. Check the label classes (map",
    "# them to shared names such as CN / MCI / AD, or null to keep those rows unlabelled), the",
    "# visit baseline, the image pattern ({COLUMN} fields are filled from each row), the missing",
    "# codes and censored values, and which columns define the diagnosis (criterion: true).",
]


def flow(value) -> str:
    """One YAML value on one line: {a: 1, b: [2, 3]}, quoted where needed."""
    text = yaml.safe_dump(
        value, default_flow_style=True, width=10**9, allow_unicode=True, sort_keys=False
    )
    return text.strip().removesuffix("...").strip()


def _codes_comment(wide: dict[str, tuple[int, int]]) -> str:
    return "; ".join(f"{code or 'blank'}: {cells} cells in {cols} columns"
                     for code, (cols, cells) in wide.items())  # fmt: skip


def _column_comment(own: dict[str, int], censored: dict[str, int]) -> str:
    parts = []
    if own:
        parts.append("missing " + ", ".join(f"{c} ({n} cells)" for c, n in sorted(own.items())))
    if censored:
        parts.append("censored " + ", ".join(f"{c} ({n})" for c, n in sorted(censored.items())))
    return f"  # {'; '.join(parts)}" if parts else ""


def _label(plan: Plan) -> list[str]:
    lines = ["label:", f"  column: {flow(plan.label)}", "  classes:"]
    for level, canonical in plan.classes.items():
        todo = "" if canonical else "  # TODO: a class (CN, MCI, AD, ...) or null for unlabelled"
        lines.append(f"    {flow(typed(level))}: {flow(canonical)}{todo}")
    return lines


def render(document: dict, table: RawTable) -> tuple[str, CohortSchema]:
    """The YAML text of a draft and the schema it parses to (it must parse: a draft always
    passes `citab schema check`)."""
    plan: Plan = document["plan"]
    wide: dict = document["cohort_wide"]
    lines = [f"# Draft schema for {document['csv']}, written by `citab schema infer`.", *HEADER]
    lines += [
        f"cohort: {flow(document['cohort'])}",
        "description: "
        + flow(document.get("description") or f"TODO: describe this export ({document['csv']})"),
        f"subject: {flow(plan.subject)}  # {plan.subject_how}",
    ]
    if plan.visit is not None:
        visit = {"column": plan.visit, "baseline": typed(plan.baseline or "")}
        lines.append(f"visit: {flow(visit)}  # TODO: check the baseline value")
    lines.append(f"image: {flow(plan.image)}  # {plan.image_why}")
    if plan.label is not None:
        lines += _label(plan)
    missing = [""] + [typed(code) for code in wide if code != ""]
    comment = f"  # {_codes_comment(wide)}" if wide else ""
    lines.append(f"missing: {flow(missing)}{comment}")
    drop = list(plan.drop)
    why = "; ".join(f"{c}: {w}" for c, w in plan.drop.items())
    lines.append(f"drop: {flow(drop)}" + (f"  # {why}" if why else ""))
    lines.append("columns:" if document["columns"] else "columns: {}")
    for name, (spec, own, censored) in document["columns"].items():
        lines.append(f"  {flow(name)}: {flow(spec)}{_column_comment(own, censored)}")
    text = "\n".join(lines) + "\n"
    schema = yaml_io.parse_model(text, Path(document["csv"]), CohortSchema, "drafted schema")
    return text, schema  # type: ignore[return-value]
