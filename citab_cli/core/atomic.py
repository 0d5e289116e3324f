"""Atomic writes: a file or directory appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def umask() -> int:
    """The process's current umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary sibling and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically (see `write_bytes`)."""
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of `target`; on clean exit it replaces `target`.

    On any exception (KeyboardInterrupt included) the temporary directory is removed and
    `target` is left exactly as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    os.chmod(stage, 0o777 & ~umask())
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    os.replace(stage, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


#: Name parts of the temporary siblings `staged_directory` makes.
STAGED_MARKS = (".staging-", ".old-")


def remove_leftovers(directory: Path) -> tuple[int, int]:
    """Remove the temporary siblings `staged_directory` left in `directory` when its process
    was killed (call it only while holding the lock that every writer there holds, so none of
    them is in use): (folders removed, bytes freed)."""
    if not directory.is_dir():
        return 0, 0
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(".")
             and any(mark in p.name for mark in STAGED_MARKS)]  # fmt: skip
    freed = 0
    for folder in found:
        freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
    return len(found), freed


@contextlib.contextmanager
def removed_if_created(*paths: Path) -> Iterator[None]:
    """Remove those of `paths` (directories) that did not exist before, if the block fails."""
    missing = [p for p in paths if not p.exists()]
    try:
        yield
    except BaseException:
        # Deepest first, and only when empty: never remove something a user put there.
        for path in sorted(missing, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
