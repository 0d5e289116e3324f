"""A cohort's raw CSV read as text, cell for cell: what drafting a schema, reading a data
dictionary and ingesting all start from."""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from citab_cli.core.errors import CitabError


@dataclass
class RawTable:
    """A CSV read as text, cell for cell: nothing converted, nothing guessed."""

    path: Path
    columns: list[str]
    rows: dict[str, list[str]]  # column -> cells, one per data row
    sha256: str

    @property
    def n_rows(self) -> int:
        """Data rows in the table."""
        return len(next(iter(self.rows.values()))) if self.rows else 0


def read_csv(path: Path) -> RawTable:
    """Read `path` as a UTF-8 CSV of text cells; refuse anything that is not one."""
    import pandas as pd

    if not path.is_file():
        raise CitabError(f"{path}: CSV file not found; check the path")
    data = path.read_bytes()
    if not data.strip():
        raise CitabError(
            f"{path}: the CSV file is empty; export the table with a header row "
            "and one row per visit"
        )
    if b"\x00" in data[:65536]:
        raise CitabError(
            f"{path}: this is a binary file, not a CSV; export the table as comma-separated text"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CitabError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "re-save the CSV as UTF-8"
        ) from None
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        raise CitabError(
            f"{path}: line 1: malformed header ({exc}); save the table as a plain CSV"
        ) from None
    names = [h.strip() for h in header]
    if not any(names):
        raise CitabError(
            f"{path}: line 1 is not a header row; the first line must name the columns"
        )
    dupes = [n for n, k in Counter(names).items() if k > 1]
    if dupes:
        raise CitabError(
            f"{path}: line 1: column '{dupes[0]}' appears twice in the header; rename or remove one"
        )
    if "" in names:
        raise CitabError(
            f"{path}: line 1: column {names.index('') + 1} has no name; name it or remove it"
        )
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.ParserError as exc:
        raise CitabError(
            f"{path}: malformed CSV ({str(exc).strip()}); check quoting and the "
            "number of fields on that line"
        ) from None
    except pd.errors.EmptyDataError:
        raise CitabError(f"{path}: the CSV file has no header row; add one") from None
    if len(frame) == 0:
        raise CitabError(f"{path}: the CSV has a header but no data rows; export the rows too")
    frame.columns = names
    return RawTable(
        path=path,
        columns=names,
        rows={c: [str(v) for v in frame[c].tolist()] for c in names},
        sha256=hashlib.sha256(data).hexdigest(),
    )


def shown(value: str, limit: int = 40) -> str:
    """A cell as it goes into a one-line message: control characters escaped, long text cut."""
    text = value.strip().encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."
