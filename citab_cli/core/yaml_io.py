"""Strict YAML loading: errors carry the file and line, duplicate keys are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from citab_cli.core.errors import CitabError


def _node_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at `loc` (a pydantic error location), as deep as it goes."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
            key_node = next((k for k, _ in node.value if k.value == str(key)), None)
            if match is None:
                break
            line = key_node.start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _check_duplicate_keys(node: yaml.Node | None, path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                raise CitabError(
                    f"{path}:{key.start_mark.line + 1}: key '{name}' appears twice "
                    f"(first on line {seen[name]}); keep one"
                )
            seen[name] = key.start_mark.line + 1
            _check_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, path)


def merge(base: dict, override: dict) -> dict:
    """`base` with the keys of `override` replacing or, for mappings, merging into its own."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_model(
    path: Path, model: type[BaseModel], what: str, defaults: dict | None = None
) -> BaseModel:
    """Parse `path` as YAML and validate it as `model` (its keys merged over `defaults`);
    every problem is a CitabError naming the file and, where it can, the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CitabError(f"{path}: {what} file not found; check the path") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise CitabError(
            f"{path}: cannot read the {what} file ({exc.__class__.__name__}); "
            "it must be a UTF-8 YAML text file"
        ) from None
    return parse_model(text, path, model, what, defaults)


def parse_model(
    text: str, path: Path, model: type[BaseModel], what: str, defaults: dict | None = None
) -> BaseModel:
    """YAML text parsed strictly into `model` (over `defaults`); errors name `path` and the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_duplicate_keys(node, path)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        raise CitabError(f"{where}: malformed YAML ({problem}); fix the syntax there") from None
    except yaml.YAMLError as exc:
        raise CitabError(f"{path}: malformed YAML ({exc}); fix the syntax") from None
    if not isinstance(data, dict):
        raise CitabError(
            f"{path}: a {what} must be a YAML mapping of keys to values, not {type(data).__name__}"
        )
    try:
        return model.model_validate(merge(defaults, data) if defaults else data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = _node_line(node, loc)
        where = f"{path}:{line}" if line else str(path)
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = f"unknown key '{loc[-1]}' at {dotted}; remove it or fix its spelling"
        elif err["type"] == "missing":
            msg = f"required key '{dotted}' is missing; add it"
        else:
            msg = f"{dotted}: {err['msg']}"
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise CitabError(f"{where}: {msg}{suffix}") from None


def dump(data: dict[str, Any]) -> str:
    """YAML for a dict, keys in their order."""
    return yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )
