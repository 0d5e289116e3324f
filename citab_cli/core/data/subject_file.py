"""Per-subject tables that leave citab (embeddings, predictions): Parquet or CSV by the file's
suffix, written batch by batch into a temporary sibling that replaces the file only when
complete, so an interrupted run leaves no partial file."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citab_cli.core import atomic
from citab_cli.core.errors import CitabError

#: Output formats by file suffix.
FORMATS = {".parquet": "parquet", ".csv": "csv"}
#: The Parquet schema's metadata key that holds citab's JSON record of how the file was made.
METADATA_KEY = "citab"
#: A CSV file's record of how it was made sits beside it, under its name plus this suffix.
CSV_METADATA_SUFFIX = ".json"
#: Column kinds a subject file holds.
KINDS = ("string", "float32", "bool")


def file_format(path: Path) -> str:
    """'parquet' or 'csv' from `path`'s suffix; a clear error for anything else."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise CitabError(
            f"-o {path}: the file name must end in .parquet or .csv (the suffix picks the format)"
        )
    if path.is_dir():
        raise CitabError(f"-o {path} is a directory; give a file name ending in .parquet or .csv")
    return kind


def metadata_path(path: Path) -> Path:
    """Where the record of how a CSV file was made is written."""
    return path.with_name(path.name + CSV_METADATA_SUFFIX)


def read_metadata(path: Path) -> dict:
    """citab's record of how a subject file was made (Parquet schema metadata, or the CSV's
    sidecar)."""
    if file_format(path) == "csv":
        return json.loads(metadata_path(path).read_text())
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[METADATA_KEY.encode()])


@dataclass(frozen=True)
class Column:
    """One column of a subject file: its name and kind (one of KINDS)."""

    name: str
    kind: str


class SubjectFileWriter:
    """Appends batches of rows to a temporary file; `commit` puts it in place."""

    def __init__(self, path: Path, columns: list[Column], metadata: dict, temporary: Path):
        """Open the temporary file `temporary` for the final `path` (use `subject_file`)."""
        self.path, self.columns, self.metadata = path, columns, metadata
        self.temporary = temporary
        self.format = file_format(path)
        self.rows = 0
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            types = {"string": pa.string(), "float32": pa.float32(), "bool": pa.bool_()}
            self._schema = pa.schema(
                [pa.field(c.name, types[c.kind]) for c in columns],
                metadata={METADATA_KEY: json.dumps(metadata)},
            )
            self._parquet = pq.ParquetWriter(str(temporary), self._schema)
        else:
            self._handle = open(temporary, "w", newline="", encoding="utf-8")  # noqa: SIM115
            self._csv = csv.writer(self._handle)
            self._csv.writerow([c.name for c in columns])

    def write(self, batch: dict[str, list | np.ndarray]) -> None:
        """Append rows: `batch` maps every column name to equally long values (None: empty)."""
        lengths = {len(batch[c.name]) for c in self.columns}
        if len(lengths) != 1:
            raise ValueError(f"columns of one batch differ in length: {sorted(lengths)}")
        if self.format == "parquet":
            import pyarrow as pa

            arrays = [pa.array(list(batch[c.name]), type=f.type)
                      for c, f in zip(self.columns, self._schema, strict=True)]  # fmt: skip
            self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        else:
            values = [_csv_cells(batch[c.name], c.kind) for c in self.columns]
            self._csv.writerows(zip(*values, strict=True))
        self.rows += lengths.pop()

    def _close(self) -> None:
        if self.format == "parquet":
            self._parquet.close()
        else:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def commit(self) -> None:
        """Close the temporary file and put it (and a CSV's metadata) in place."""
        self._close()
        if self.format == "csv":
            atomic.write_text(metadata_path(self.path), json.dumps(self.metadata, indent=2) + "\n")
        os.replace(self.temporary, self.path)

    def abandon(self) -> None:
        """Close and remove the temporary file; the final path is left as it was."""
        with contextlib.suppress(Exception):
            self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temporary)


def _csv_cells(values, kind: str) -> list[str]:
    if kind == "float32":
        return [str(v) for v in np.asarray(values, np.float32)]  # shortest exact float32
    if kind == "bool":
        return ["true" if v else "false" for v in values]
    return ["" if v is None else str(v) for v in values]


@contextlib.contextmanager
def subject_file(path: Path, columns: list[Column], metadata: dict) -> Iterator[SubjectFileWriter]:
    """A writer for a subject file at `path`: complete when the block ends cleanly; on any
    exception (an interrupt included) the partial file is removed and `path` is untouched."""
    path = Path(path)
    file_format(path)
    with atomic.removed_if_created(*reversed(path.parent.parents), path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        os.chmod(name, 0o666 & ~atomic.umask())
        try:
            writer = SubjectFileWriter(path, columns, metadata, Path(name))
        except BaseException:
            os.unlink(name)
            raise
        try:
            yield writer
        except BaseException:
            writer.abandon()
            raise
        writer.commit()
