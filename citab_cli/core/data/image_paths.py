"""Finding each row's image file under `--images`, without ever leaving that folder."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from citab_cli.core.errors import CitabError
from citab_cli.core.schema.cohort import CohortSchema, ImageByBids, ImageByColumn

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class MissingImage:
    """A row whose scan was not found: its CSV line, subject and what was looked for."""

    line: int
    subject: str
    looked_for: str


def list_files(root: Path) -> list[str]:
    """Every file under `root` as a POSIX path relative to it (symlinks listed, not followed)."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        found.extend((rel / f).as_posix() for f in sorted(files) if not f.startswith("."))
    return found


def list_folders(root: Path) -> list[str]:
    """Every folder under `root` (relative POSIX paths), for images stored as DICOM series."""
    found: list[str] = []
    for folder, dirs, _ in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        found.extend((rel / d).as_posix() for d in dirs)
    return found


def _glob_regex(pattern: str, fields: dict[str, str]) -> re.Pattern[str]:
    """Compile a glob with `{FIELD}` placeholders; `**/` spans folders, `*` and `?` do not."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "{":
            end = pattern.index("}", i)
            out.append(re.escape(fields[pattern[i + 1 : end]]))
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def bids_label(subject: str) -> str:
    """A subject ID as a BIDS label: letters and digits only (`002_S_0295` -> `002S0295`)."""
    return re.sub(r"[^A-Za-z0-9]", "", subject)


def _inside(path: Path, root: Path, where: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise CitabError(
            f"{where}: image '{path.relative_to(root)}' leads outside --images "
            f"{root} (a symlink); copy the file itself into the images folder"
        )
    return resolved


def resolve(
    schema: CohortSchema,
    images_root: Path,
    csv_path: Path,
    subjects: list[str],
    lines: list[int],
    keys: list[dict[str, str]],
) -> tuple[list[Path | None], list[MissingImage]]:
    """Each row's image file (None where there is none) and the list of rows without one."""
    if not images_root.is_dir():
        raise CitabError(f"{images_root}: the --images folder does not exist; check the path")
    root = images_root.resolve()
    files = list_files(root)
    nifti = [f for f in files if f.endswith(NIFTI_SUFFIXES)]
    found: list[Path | None] = []
    missing: list[MissingImage] = []
    spec = schema.image
    pattern = schema.image_pattern
    folders = None
    for subject, line, cells in zip(subjects, lines, keys, strict=True):
        where = f"{csv_path}: line {line}"
        matches: list[str]
        if pattern is not None:
            if any(not v for v in cells.values()):
                empty = next(c for c, v in cells.items() if not v)
                missing.append(MissingImage(line, subject, f"(no {empty} in this row)"))
                found.append(None)
                continue
            regex = _glob_regex(pattern, cells)
            values = list(cells.values())
            matches = [f for f in files if all(v in f for v in values) and regex.match(f)]
            if not matches:  # a folder of DICOM files may stand for the scan
                folders = folders if folders is not None else list_folders(root)
                matches = [f for f in folders if all(v in f for v in values) and regex.match(f)]
            looked_for = pattern.format(**cells)
        elif isinstance(spec, ImageByColumn):
            raw = cells[spec.column]
            if not raw:
                missing.append(MissingImage(line, subject, f"(no {spec.column} in this row)"))
                found.append(None)
                continue
            rel = Path(raw)
            if rel.is_absolute() or ".." in rel.parts:
                raise CitabError(
                    f"{where}, column '{spec.column}': image path '{raw}' must be "
                    f"relative to --images and stay inside it (no absolute paths, "
                    "no '..'); fix the path"
                )
            target = root / rel
            matches = [rel.as_posix()] if target.exists() or target.is_symlink() else []
            looked_for = rel.as_posix()
        else:
            assert isinstance(spec, ImageByBids)
            label = bids_label(subject)
            session = f"{spec.session}/" if spec.session else "(?:ses-[^/]+/)?"
            regex = re.compile(rf"sub-{re.escape(label)}/{session}anat/[^/]*T1w\.nii(?:\.gz)?\Z")
            matches = [f for f in nifti if regex.match(f)]
            looked_for = f"sub-{label}/{spec.session + '/' if spec.session else ''}anat/*T1w.nii*"
        if not matches:
            missing.append(MissingImage(line, subject, looked_for))
            found.append(None)
            continue
        if len(matches) > 1:
            shown = ", ".join(matches[:4]) + (", ..." if len(matches) > 4 else "")
            raise CitabError(
                f"{where}: subject '{subject}' matches {len(matches)} image files "
                f"({shown}); make the schema's image: pattern pick exactly one"
            )
        found.append(_inside(root / matches[0], root, where))
    return found, missing


def describe_missing(missing: list[MissingImage], images_root: Path, csv_path: Path) -> str:
    """One error message for the rows without a scan: the first five, how many more, and the
    fixes."""
    shown = "; ".join(f"line {m.line} ({m.subject}: {m.looked_for})" for m in missing[:5])
    more = f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
    return (
        f"{csv_path}: {len(missing)} image(s) not found under {images_root}: {shown}{more}; "
        "add the files, fix the schema's image: entry, or pass --on-missing-image skip"
    )
