"""The CLI reference page (docs/cli.md), generated from the Typer app itself.

Regenerate with `python -m citab_cli.cli_reference > docs/cli.md`; a test fails when the
page and the app disagree.
"""

from __future__ import annotations

from enum import Enum

import typer


def _options(command) -> list[str]:
    rows = []
    for param in command.params:
        if param.param_type_name == "argument":
            rows.append(
                f"| `{(param.metavar or param.name).upper()}` (argument) | "
                f"{'required' if param.required else 'optional'} | |"
            )
            continue
        if param.param_type_name != "option" or param.hidden or param.name == "help":
            continue
        names = " / ".join(f"`{n}`" for n in (*param.opts, *param.secondary_opts))
        default = (
            "required"
            if param.required
            else ("" if param.default in (None, False) else f"`{param.default}`")
        )
        if hasattr(param.default, "value"):
            default = f"`{param.default.value}`"
        choices = ""
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, Enum):
            choices = " (" + ", ".join(f"`{c.value}`" for c in annotation) + ")"
        text = (param.help or "").replace("\\[", "[").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {names}{choices} | {default} | {text} |")
    return rows


def _walk(group, prefix: str) -> list[str]:
    out = []
    for name in sorted(group.commands):
        command = group.commands[name]
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):
            out += _walk(command, path)
            continue
        summary = " ".join((command.help or "").strip().split("\n\n")[0].split())
        out += [
            f"## `{path}`",
            "",
            summary,
            "",
            "| option | default | meaning |",
            "|---|---|---|",
            *_options(command),
            "",
        ]
    return out


def render(app: typer.Typer) -> str:
    group = typer.main.get_command(app)
    lines = [
        "# Command-line reference",
        "",
        "Generated from the application (`python -m citab_cli.cli_reference`). Every "
        "command also prints this with `--help`. Exit status: 0 success, 1 a problem with "
        "the input (one line saying what, where and how to fix it), 2 wrong usage.",
        "",
    ]
    return "\n".join(lines + _walk(group, "citab")) + "\n"


if __name__ == "__main__":
    from citab_cli.app import app

    print(render(app), end="")
