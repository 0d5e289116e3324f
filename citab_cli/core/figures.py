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


#: The PNG text chunk that records the height in pixels of a figure's smallest text, so a page
#: can show the figure large enough to read it.
SMALLEST_TEXT = "citab:smallest-text-px"
#: The smallest text a page may show, in CSS pixels.
LEGIBLE_PX = 9.0


def smallest_text_px(fig, dpi: float) -> float | None:
    """The font size of the smallest visible text of `fig`, in pixels of a PNG at `dpi`."""
    from matplotlib.text import Text

    sizes = [
        t.get_fontsize()
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_figure() is not None
    ]
    return min(sizes) * dpi / 72 if sizes else None


def save(fig, path: Path, dpi: int = 120) -> None:
    """Write `fig` as a PNG at `path` atomically (with its smallest text's size in pixels),
    then close it."""
    buffer = io.BytesIO()
    smallest = smallest_text_px(fig, dpi)
    metadata = {SMALLEST_TEXT: f"{smallest:.2f}"} if smallest else {}
    fig.savefig(buffer, format="png", dpi=dpi, metadata=metadata)
    pyplot().close(fig)
    atomic.write_bytes(path, buffer.getvalue())


def readable_width(path: Path) -> int | None:
    """The narrowest width, in CSS pixels, at which the PNG's smallest text is `LEGIBLE_PX`
    tall (None when the PNG does not say how small its text is)."""
    import math

    from PIL import Image

    with Image.open(path) as image:
        width, text = image.width, image.info.get(SMALLEST_TEXT)
    if not text:
        return None
    return math.ceil(width * LEGIBLE_PX / float(text))
