"""Advisory locks so two commands never write the same place at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from citab_cli.core.errors import CitabError


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@contextlib.contextmanager
def hold(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on directory `path` (or its nearest existing parent) while the
    block runs; if another process holds it, stop at once with a clear message.

    The lock lives on the directory itself, so it leaves no file behind.
    """
    target = _existing(path)
    fd = os.open(target, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CitabError(
                f"another citab command is {what} ({target} is locked); wait for "
                "it to finish, then run this again"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
