"""sha256 of files, read in blocks so a large scan never sits in memory whole, and of arrays'
contents."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Bytes read at a time.
BLOCK = 1 << 20


def feed_file(digest: hashlib._Hash, path: Path) -> None:
    """Add the bytes of the file at `path` to `digest`, one block at a time."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file at `path`."""
    digest = hashlib.sha256()
    feed_file(digest, path)
    return digest.hexdigest()


def arrays_sha256(*arrays, extra: str = "") -> str:
    """The hex sha256 of some arrays' contents, their dtypes and shapes included, and `extra`
    (what else the key depends on)."""
    import numpy as np

    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update(extra.encode())
    return digest.hexdigest()
