"""Figures: matplotlib on its file-only backend, and PNGs written atomically."""

from __future__ import annotations

import io
from pathlib import Path

from citab_cli.core import atomic


def pyplot():
    """matplotlib's pyplot on the file-only backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, dpi: int = 120) -> None:
    """Write `fig` as a PNG at `path` atomically, then close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    atomic.write_bytes(path, buffer.getvalue())
