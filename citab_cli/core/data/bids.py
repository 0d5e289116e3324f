"""A BIDS dataset read as one cohort: `participants.tsv` joined with every `phenotype/*.tsv` and
each subject's `sub-*_sessions.tsv` (one session per subject, by a stated rule), the T1w scan of
that session (one per session, by a stated rule) and the columns' meanings from the JSON
sidecars. pybids finds the files; the tables are read here, cell for cell, as text."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from citab_cli.core.data import bids_tables as tables
from citab_cli.core.data.bids_tables import (
    PARTICIPANTS,
    SESSION_COLUMN,
    session_label,
)
from citab_cli.core.errors import CitabError
from citab_cli.core.schema.dictionary import Entry
from citab_cli.core.schema.raw_table import RawTable

DESCRIPTION_FILE = "dataset_description.json"
#: Sessions are ordered by the first of these columns of the sessions table that every one of a
#: subject's sessions fills, else by their labels (natural order: M6 before M12).
ORDER_COLUMNS = ("acq_time", "age")


@dataclass(frozen=True)
class Rules:
    """How one session per subject and one T1w per session are chosen.

    session: 'first', 'last' or a session label ('ses-M000' or 'M000'); acq: keep only T1w files
    with this acq- label; run: 'first' or 'last' run when several T1w files remain (None: two
    files are an error)."""

    session: str = "first"
    acq: str | None = None
    run: str | None = None

    def describe(self) -> str:
        """The rules in words, for the summary and the manifest."""
        if self.session in ("first", "last"):
            session = f"the {self.session} session with a T1w (by acq_time, else age, else label)"
        else:
            session = f"session {session_label(self.session)}"
        scan = f"acq-{self.acq} only" if self.acq else "any acquisition"
        run = f"{self.run} run" if self.run else "exactly one file required"
        return f"{session}; T1w: {scan}, {run}"


@dataclass
class Scan:
    """The T1w chosen for one subject: file, session and its JSON sidecar's fields."""

    path: Path
    session: str | None
    sidecar: dict


@dataclass
class Dataset:
    """A BIDS dataset read as one table: one row per participant, in participants.tsv order."""

    root: Path
    name: str
    table: RawTable
    columns: dict[str, Entry]  # column -> its meaning from a JSON sidecar
    scans: dict[str, Scan]  # participant_id -> its chosen T1w
    sessions: dict[str, str]  # participant_id -> its chosen session
    rules: Rules
    skipped: list[str] = field(default_factory=list)  # T1w files not chosen, and why
    notes: list[str] = field(default_factory=list)

    @property
    def cohort(self) -> str:
        """A safe cohort name from the dataset's Name (else its folder's name)."""
        return safe_name(self.name or self.root.name)

    def record(self) -> dict:
        """What the manifest keeps of the dataset: rules, sessions, scans and their sidecars."""
        return {
            "root": str(self.root),
            "name": self.name,
            "rules": self.rules.describe(),
            "scans": {
                subject: {
                    "file": scan.path.relative_to(self.root).as_posix(),
                    "session": scan.session,
                    "sidecar": scan.sidecar,
                }
                for subject, scan in self.scans.items()
            },
            "sessions_without_scan": {
                s: v for s, v in self.sessions.items() if s not in self.scans and v
            },
            "skipped": self.skipped,
            "described_by": {c: e.source for c, e in self.columns.items()},
        }


def is_bids(path: Path) -> bool:
    """Whether `path` is a BIDS root: a folder with dataset_description.json."""
    return path.is_dir() and (path / DESCRIPTION_FILE).is_file()


def safe_name(text: str) -> str:
    """`text` as a cohort name: lower case, runs of other characters as '-', at most 64."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:64]
    return name or "bids"


def _natural(label: str) -> list:
    """A sort key that puts M6 before M12."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]


def _layout(root: Path):
    """pybids' index of the dataset: its files and their sidecars' fields (the tables are read
    here)."""
    import warnings

    from bids import BIDSLayout, BIDSLayoutIndexer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            indexer = BIDSLayoutIndexer(validate=False, index_metadata=True)
            return BIDSLayout(root, validate=False, indexer=indexer)
    except Exception as exc:  # pybids raises its own error types for unreadable datasets
        raise CitabError(
            f"{root}: pybids cannot index this dataset ({exc}); check dataset_description.json"
        ) from None


def _t1w_files(layout) -> dict[str, dict[str | None, list]]:
    """subject label -> session label (None without sessions) -> its T1w NIfTI files, in path
    order."""
    found: dict[str, dict[str | None, list]] = {}
    files = layout.get(suffix="T1w", extension=[".nii", ".nii.gz"], datatype="anat")
    for file in sorted(files, key=lambda f: f.path):
        entities = file.get_entities(metadata=False)
        sessions = found.setdefault(str(entities["subject"]), {})
        sessions.setdefault(entities.get("session"), []).append(file)
    return found


def _choose_scan(files: list, rules: Rules, where: str, skipped: list[str], root: Path):
    """The one T1w of a session by the rules, the others listed as skipped; None if none
    is left."""

    def rel(file) -> str:
        return Path(file.path).relative_to(root).as_posix()

    keep = files
    if rules.acq is not None:
        keep = [f for f in files if f.get_entities(metadata=False).get("acquisition") == rules.acq]
        skipped += [f"{rel(f)}: not acq-{rules.acq}" for f in files if f not in keep]
    if len(keep) > 1 and rules.run is not None:
        ordered = sorted(keep, key=lambda f: int(f.get_entities(metadata=False).get("run") or 0))
        chosen = ordered[0] if rules.run == "first" else ordered[-1]
        skipped += [f"{rel(f)}: not the {rules.run} run" for f in keep if f is not chosen]
        keep = [chosen]
    if len(keep) > 1:
        names = ", ".join(rel(f) for f in keep[:4])
        raise CitabError(
            f"{root}: {where} has {len(keep)} T1w files ({names}); choose one with --acq LABEL "
            "or --run first|last"
        )
    return keep[0] if keep else None


def _order_key(rows: list[dict[str, str]], column: str):
    """Per session label, its value in `column` as a sortable key, if every row fills it."""
    keys = {}
    for row in rows:
        value = row.get(column, "")
        if not value:
            return None
        try:
            number = float(value)
            keys[session_label(row[SESSION_COLUMN])] = (0, number if math.isfinite(number) else 0)
        except ValueError:
            keys[session_label(row[SESSION_COLUMN])] = (1, value)  # ISO times sort as text
    return keys


def _choose_session(
    labels: list[str], rows: list[dict[str, str]], with_scan: set[str], rules: Rules
) -> str | None:
    """One session of a subject by the rules: the given label, or the first or last session
    that has a T1w (of all sessions when none has)."""
    if rules.session not in ("first", "last"):
        wanted = session_label(rules.session)
        return wanted if wanted in labels else None
    pool = [s for s in labels if s in with_scan] or labels
    if not pool:
        return None
    order = None
    for column in ORDER_COLUMNS:
        order = _order_key([r for r in rows if session_label(r[SESSION_COLUMN]) in pool], column)
        if order is not None and set(order) >= set(pool):
            break
        order = None
    ordered = sorted(pool, key=(lambda s: order[s]) if order else _natural)
    return ordered[0] if rules.session == "first" else ordered[-1]


def read(root: Path, rules: Rules = Rules()) -> Dataset:
    """The dataset at `root` as one table with its scans; refuses what it cannot read."""
    if not is_bids(root):
        raise CitabError(
            f"{root}: not a BIDS dataset (no {DESCRIPTION_FILE}); give the dataset's root folder"
        )
    root = root.resolve()
    description = tables.read_json(root / DESCRIPTION_FILE, root)
    name = description.get("Name") if isinstance(description.get("Name"), str) else ""
    people = tables.participants(root)
    sidecar = root / "participants.json"
    joined = tables.Joined.start(
        root, people, tables.sidecar_entries(sidecar, PARTICIPANTS, people.columns, root)
    )
    for path in (root / DESCRIPTION_FILE, sidecar, root / "sessions.json"):
        joined.read(path)
    ids = joined.ids
    layout = _layout(root)
    t1w = _t1w_files(layout)
    sessions_tables = _sessions_tables(layout, root, set(ids))
    joined.files += [t.path for t in sessions_tables.values()]
    chosen, sessions, skipped = _scans_and_sessions(ids, t1w, sessions_tables, rules, root)
    strays = sorted(set(t1w) - {i.removeprefix("sub-") for i in ids})
    if strays:
        joined.notes.append(f"{len(strays)} subject folder(s) with a T1w are not in "
                            f"{PARTICIPANTS} and were left out (sub-{strays[0]}, ...)")  # fmt: skip
    if sessions_tables:
        joined.add("sessions", *tables.session_columns(ids, sessions, sessions_tables, root))
    for path in sorted((root / "phenotype").glob("*.tsv")):
        table = tables.read_tsv(path)
        joined.read(path)
        joined.read(path.with_suffix(".json"))
        header, values = tables.phenotype_columns(table, ids, sessions, joined.notes)
        meaning = tables.sidecar_entries(path.with_suffix(".json"), f"phenotype/{path.name}",
                                         table.columns, root)  # fmt: skip
        joined.add(f"phenotype/{path.stem}", header, values, meaning)
    return Dataset(root=root, name=name, table=joined.table(), columns=joined.columns(),
                   scans=chosen, sessions=sessions, rules=rules,
                   skipped=skipped, notes=joined.notes)  # fmt: skip


def _sessions_tables(layout, root: Path, participants: set[str]) -> dict[str, tables.Tsv]:
    """participant_id -> its sub-*_sessions.tsv; a table of a subject that participants.tsv
    lacks is refused."""
    out = {}
    for file in layout.get(suffix="sessions", extension=".tsv"):
        path = Path(file.path)
        subject = f"sub-{file.get_entities(metadata=False)['subject']}"
        if subject not in participants:
            raise CitabError(
                f"{path}: {subject} has a sessions table but no row in {root / PARTICIPANTS}; "
                "add the participant's row or remove the folder"
            )
        out[subject] = tables.read_tsv(path, need=(SESSION_COLUMN,))
    return out


def _scans_and_sessions(ids, t1w, sessions_tables, rules: Rules, root: Path):
    """Each participant's chosen session and T1w scan, and the T1w files left aside."""
    import warnings

    chosen: dict[str, Scan] = {}
    sessions: dict[str, str] = {}
    skipped: list[str] = []
    for subject in ids:
        scans = t1w.get(subject.removeprefix("sub-"), {})
        with_scan = {s for s in scans if s is not None}
        table = sessions_tables.get(subject)
        rows = table.rows if table else []
        listed = [session_label(r[SESSION_COLUMN]) for r in rows]
        labels = list(dict.fromkeys(listed + sorted(with_scan, key=_natural)))
        session = _choose_session(labels, rows, with_scan, rules) if labels else None
        if session is not None:
            sessions[subject] = session
        for ses, files in scans.items():
            if labels and ses != session:
                skipped += [f"{Path(f.path).relative_to(root).as_posix()}: not the chosen "
                            "session" for f in files]  # fmt: skip
        files = scans.get(session if labels else None, [])
        where = f"{subject}" + (f" ses-{session}" if session else "")
        file = _choose_scan(files, rules, where, skipped, root) if files else None
        if file is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sidecar = file.get_metadata()
            chosen[subject] = Scan(Path(file.path), session, _plain(sidecar))
    return chosen, sessions, skipped


def _plain(value):
    """A sidecar's fields as plain JSON values."""
    return json.loads(json.dumps(value, default=str))
