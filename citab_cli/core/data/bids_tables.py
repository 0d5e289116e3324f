"""The tables of a BIDS dataset read as text (`n/a` blank), their JSON sidecars read as column
meanings, and the tables joined into one row per participant."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from citab_cli.core.errors import CitabError
from citab_cli.core.schema.dictionary import Entry
from citab_cli.core.schema.raw_table import RawTable

PARTICIPANTS = "participants.tsv"
SUBJECT_COLUMN = "participant_id"
SESSION_COLUMN = "session_id"
#: The standard's missing value; read as a blank cell, which schemas treat as missing.
NA = "n/a"
#: Where a column name repeats across tables, the later one is renamed `<table>_<column>`.
RENAMED = "{table}_{column}"


def session_label(text: str) -> str:
    """'ses-M000' or 'M000' -> 'M000'."""
    return text.removeprefix("ses-")


def read_json(path: Path, root: Path) -> dict:
    """A JSON object from `path`, or one line saying what is wrong with it."""
    where = path.relative_to(root).as_posix()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CitabError(
            f"{root / where}: line {exc.lineno}: not valid JSON ({exc.msg}); fix the sidecar"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CitabError(f"{root / where}: cannot be read ({exc}); fix the file") from None
    if not isinstance(document, dict):
        raise CitabError(f"{root / where}: a JSON object is expected at the top; fix the sidecar")
    return document


@dataclass
class Tsv:
    """A BIDS table: its path, header and rows of text cells (`n/a` blank)."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]]


def read_tsv(path: Path, need: tuple[str, ...] = (SUBJECT_COLUMN,)) -> Tsv:
    """A BIDS table as text cells, `n/a` blank; refuses a table without the columns `need`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CitabError(f"{path}: cannot be read as UTF-8 text ({exc}); re-save it") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise CitabError(f"{path}: empty; a BIDS table needs a header row")
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = [h.strip() for h in next(reader)]
    for column in need:
        if column not in header:
            raise CitabError(
                f"{path}: no '{column}' column (it has {', '.join(header[:6])}); BIDS tables "
                f"are tab-separated and name each row's subject in {column}"
            )
    rows = []
    for number, cells in enumerate(reader, start=2):
        if len(cells) != len(header):
            raise CitabError(
                f"{path}: line {number} has {len(cells)} fields, the header {len(header)}; "
                "fix the row (BIDS tables are tab-separated)"
            )
        rows.append(
            {h: "" if c.strip() == NA else c.strip() for h, c in zip(header, cells, strict=True)}
        )
    return Tsv(path, header, rows)


def sidecar_entries(sidecar: Path, table: str, columns: list[str], root: Path) -> dict[str, Entry]:
    """The column meanings in JSON `sidecar` of the table named `table` (none if it has none)."""
    if not sidecar.is_file():
        return {}
    document = read_json(sidecar, root)
    source = sidecar.relative_to(root).as_posix()
    out = {}
    for column, meaning in document.items():
        if column not in columns:
            raise CitabError(
                f"{sidecar}: describes a column '{column}' that {table} does not have; "
                "remove the entry or fix its name"
            )
        if not isinstance(meaning, dict):
            raise CitabError(
                f"{sidecar}: the entry of '{column}' must be an object with Description, "
                "Levels, Units; fix the sidecar"
            )
        out[column] = _entry(meaning, source, sidecar, column)
    return out


def _entry(meaning: dict, source: str, sidecar: Path, column: str) -> Entry:
    text = meaning.get("Description") or meaning.get("LongName") or ""
    levels = meaning.get("Levels") or {}
    if not isinstance(text, str) or not isinstance(levels, dict):
        raise CitabError(
            f"{sidecar}: '{column}': Description must be text and Levels an object of "
            "value -> meaning; fix the sidecar"
        )
    unit = meaning.get("Units")
    names = {}
    for value, meaning_of in levels.items():
        if isinstance(meaning_of, dict):  # BIDS 1.9 allows {"Description": ...} per level
            meaning_of = meaning_of.get("Description") or meaning_of.get("LongName") or value
        names[str(value)] = " ".join(str(meaning_of).split())
    return Entry(
        " ".join(text.split()),
        str(unit) if unit else None,
        levels=names or None,
        source=source,
    )


def participants(root: Path) -> Tsv:
    """participants.tsv, every participant_id a unique sub-<label>."""
    if not (root / PARTICIPANTS).is_file():
        raise CitabError(
            f"{root}: no {PARTICIPANTS}; citab reads the cohort's table from it (one row per "
            f"participant, a {SUBJECT_COLUMN} column)"
        )
    table = read_tsv(root / PARTICIPANTS)
    seen: set[str] = set()
    for number, row in enumerate(table.rows, start=2):
        subject = row[SUBJECT_COLUMN]
        if not subject.startswith("sub-"):
            raise CitabError(
                f"{table.path}: line {number}: participant_id '{subject}' must read "
                "sub-<label>; fix the row"
            )
        if subject in seen:
            raise CitabError(
                f"{table.path}: line {number}: {subject} appears twice; keep one row "
                "per participant"
            )
        seen.add(subject)
    return table


@dataclass
class Joined:
    """Tables joined into one row per participant (participants.tsv's rows, in its order):
    their cells, the table each column came from, the sidecars' meanings, the files read."""

    root: Path
    ids: list[str]
    cells: dict[str, list[str]]
    sources: dict[str, str]
    meanings: dict[str, Entry]
    files: list[Path]
    notes: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, table: Tsv, meanings: dict[str, Entry]) -> Joined:
        """participants.tsv alone."""
        cells = {c: [r[c] for r in table.rows] for c in table.columns}
        ids = cells[SUBJECT_COLUMN]
        return cls(root, ids, cells, {c: PARTICIPANTS for c in table.columns}, meanings,
                   [table.path])  # fmt: skip

    def read(self, path: Path) -> None:
        """Record a file read (for the digest), if it exists."""
        if path.is_file():
            self.files.append(path)

    def add(self, table: str, header: list[str], values: dict[str, list[str]], meaning) -> None:
        """Another table's columns, one value per participant; a repeated name is renamed."""
        for column in header:
            if column in (SUBJECT_COLUMN, SESSION_COLUMN):
                continue
            target = column
            if target in self.cells:
                target = RENAMED.format(table=table, column=column)
                self.notes.append(f"column '{column}' of {table} is read as '{target}' "
                                  f"({self.sources[column]} has one of that name)")  # fmt: skip
            self.cells[target] = values[column]
            self.sources[target] = table
            if column in meaning:
                self.meanings[target] = meaning[column]

    def table(self) -> RawTable:
        """The joined table as a raw table (participant_id first), with one digest of every
        file read."""
        ordered = [SUBJECT_COLUMN, *[c for c in self.cells if c != SUBJECT_COLUMN]]
        return RawTable(path=self.root / PARTICIPANTS, columns=ordered,
                        rows={c: self.cells[c] for c in ordered},
                        sha256=digest(self.files, self.root))  # fmt: skip

    def columns(self) -> dict[str, Entry]:
        """The meaning of every described feature column."""
        return {c: e for c, e in self.meanings.items() if c in self.cells and c != SUBJECT_COLUMN}


def digest(paths: list[Path], root: Path) -> str:
    """One sha256 over every table and sidecar read (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def session_columns(ids, sessions, tables: dict[str, Tsv], root: Path):
    """The chosen session's row of each participant's sessions table, as columns."""
    header: list[str] = []
    for table in tables.values():
        header += [c for c in table.columns if c not in header]
    values = {c: [""] * len(ids) for c in header}
    for i, subject in enumerate(ids):
        table = tables.get(subject)
        if table is None or subject not in sessions:
            continue
        for row in table.rows:
            if session_label(row[SESSION_COLUMN]) == sessions[subject]:
                for column, value in row.items():
                    values[column][i] = value
                break
    meaning = sidecar_entries(root / "sessions.json", "any sub-*_sessions.tsv", header, root)
    return header, values, meaning


def phenotype_columns(table: Tsv, ids: list[str], sessions: dict[str, str], notes: list[str]):
    """A phenotype table's columns, one value per participant: its row of the participant's
    chosen session when the table has session_id, else the participant's only row."""
    by_session = SESSION_COLUMN in table.columns
    values = {c: [""] * len(ids) for c in table.columns}
    position = {s: i for i, s in enumerate(ids)}
    strangers = set()
    for number, row in enumerate(table.rows, start=2):
        subject = row[SUBJECT_COLUMN]
        if subject not in position:
            strangers.add(subject)
            continue
        if by_session and session_label(row[SESSION_COLUMN]) != sessions.get(subject):
            continue
        i = position[subject]
        if values[SUBJECT_COLUMN][i]:
            raise CitabError(
                f"{table.path}: line {number}: {subject} has a second row"
                + (" for its session" if by_session else "; add a session_id column or keep one")
            )
        for column, value in row.items():
            values[column][i] = value
    if strangers:
        notes.append(f"{table.path.name}: {len(strangers)} participant(s) not in {PARTICIPANTS} "
                     f"were left out ({sorted(strangers)[0]}, ...)")  # fmt: skip
    return table.columns, values
