"""Options and option parsers shared by several commands."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from citab_cli.core.errors import CitabError

ProjectOption = typer.Option(
    Path("."), "--project", "-p", help="Project directory.", show_default=True
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def device_option(what: str):
    """--device for a command that runs the model; `what` says what runs there."""
    verb = "run" if " and " in what else "runs"
    return typer.Option(
        Device.auto,
        "--device",
        help=f"Where {what} {verb}: auto takes this process's CUDA device when PyTorch sees one "
        "(bf16 autocast, channels-last), else the CPU.",
    )


def names(text: str | None) -> list[str] | None:
    """'a, b' -> ['a', 'b']; None or empty -> None."""
    found = [c.strip() for c in text.split(",") if c.strip()] if text else []
    return found or None


def default(text: str) -> str:
    """A "[default: ...]" note for help text (escaped, so Rich does not take it for markup)."""
    return f"\\[default: {text}]"


def parse_triple(text: str | None, what: str, cast: type) -> tuple | None:
    """'S' -> (S, S, S); 'A,B,C' -> (A, B, C); None -> None."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(cast(p) for p in parts)
    except ValueError:
        raise CitabError(
            f"--{what} '{text}' is not a number or three numbers (e.g. 128 or 160,208,176)"
        ) from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) <= 0:
        raise CitabError(
            f"--{what} '{text}' must be one positive number or three (e.g. 128 or 160,208,176)"
        )
    return values
