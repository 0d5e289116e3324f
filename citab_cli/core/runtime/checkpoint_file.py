"""Checkpoints: safetensors files that describe themselves. Never pickle.

A checkpoint holds tensors plus one JSON document in the safetensors metadata (key "citab"):
the citab version, what kind of file it is, the configuration, the cohorts the model was trained
on (schema fingerprints and column lists), the header encoder, the step and the metrics, and a
sha256 checksum of the tensors, verified on load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from citab_cli import __version__
from citab_cli.core import atomic
from citab_cli.core.errors import CitabError

FORMAT = "citab-checkpoint"
MODEL = "model"
STATE = "training-state"
#: A fine-tuned diagnosis classifier (network and head).
CLASSIFIER = "classifier"


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(
            tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        )
    return digest.hexdigest()


def save(path: Path, tensors: dict[str, torch.Tensor], kind: str, meta: dict[str, Any]) -> None:
    """Write atomically: the previous file at `path` stays whole until the new one is complete."""
    from safetensors.torch import save as to_bytes

    plain = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    document = {
        "format": FORMAT,
        "kind": kind,
        "citab_version": __version__,
        **meta,
        "checksum": _checksum(plain),
    }
    data = to_bytes(plain, metadata={"citab": json.dumps(document)})
    try:
        atomic.write_bytes(path, data)
    except OSError as exc:
        raise CitabError(
            f"{path}: cannot write the checkpoint ({exc.strerror or exc}); free disk "
            "space or check permissions; the previous checkpoint is intact"
        ) from None


def _safetensors_header(data: bytes) -> dict | None:
    """The JSON header when `data` is laid out as a safetensors file (an 8-byte little-endian
    header length, then that many bytes of JSON object), else None."""
    if len(data) < 10:
        return None
    length = int.from_bytes(data[:8], "little")
    if length < 2 or 8 + length > len(data) or data[8:9] != b"{":
        return None
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, UnicodeDecodeError):
        return None
    return header if isinstance(header, dict) else None


def _looks_like_pickle(data: bytes) -> bool:
    """torch.save output: a zip archive, or a pickle stream of protocol 2 or later."""
    return data[:4] == b"PK\x03\x04" or (data[:1] == b"\x80" and data[1:2] in b"\x02\x03\x04\x05")


def load(path: Path, kind: str | None = MODEL) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata document); every problem with the file is a CitabError.

    The format is decided by what parses: a file whose header reads as safetensors is one,
    whatever its first bytes happen to be (its header length can start with 0x80 or "PK").
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as from_bytes

    if not path.is_file():
        raise CitabError(f"{path}: checkpoint not found; check the path")
    data = path.read_bytes()
    header = _safetensors_header(data)
    if header is None and _looks_like_pickle(data):
        raise CitabError(
            f"{path}: this is a pickle (torch.save) file; citab loads safetensors "
            "only, because unpickling a file can run arbitrary code"
        )
    try:
        if header is None:
            raise ValueError("no safetensors header")
        tensors = from_bytes(data)
        document = json.loads(header.get("__metadata__", {}).get("citab", "null"))
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError, AttributeError):
        raise CitabError(
            f"{path}: not a readable safetensors file (truncated or corrupt); use "
            "another checkpoint or re-run"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CitabError(
            f"{path}: a safetensors file, but not a citab checkpoint (no citab metadata)"
        )
    if kind is not None and document.get("kind") != kind:
        raise CitabError(f"{path}: holds a {document.get('kind')}, not a {kind}")
    if document.get("checksum") != _checksum(tensors):
        raise CitabError(f"{path}: checksum mismatch, the file is corrupt; use another checkpoint")
    return tensors, document


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata document of a checkpoint, read from its header alone (no tensors, no
    checksum); {} when the file is missing or is not a citab checkpoint."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            document = json.loads((handle.metadata() or {}).get("citab", "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def optimizer_tensors(
    optimizer: torch.optim.Optimizer, names: dict[int, str]
) -> dict[str, torch.Tensor]:
    """Adam-style state flattened to named tensors: optimizer/<parameter>/<field>."""
    out = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for field, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value):
                    out[f"optimizer/{names[id(param)]}/{field}"] = value
    return out


def restore_optimizer(
    optimizer: torch.optim.Optimizer, names: dict[int, str], tensors: dict[str, torch.Tensor]
) -> None:
    """Put state flattened by `optimizer_tensors` back into `optimizer`: each state tensor of the
    parameter's shape on its device in its memory layout (fused Adam checks that moments and
    channels-last weights have the same strides), and the step count where the optimizer reads
    it (on the device for fused or capturable Adam, else on the CPU)."""
    for group in optimizer.param_groups:
        on_device = bool(group.get("fused") or group.get("capturable"))
        for param in group["params"]:
            prefix = f"optimizer/{names[id(param)]}/"
            state = {}
            for key, value in tensors.items():
                if not key.startswith(prefix):
                    continue
                field = key[len(prefix) :]
                if value.shape == param.shape:
                    state[field] = torch.empty_like(param, dtype=value.dtype).copy_(value)
                elif field == "step" and value.dim() == 0:
                    state[field] = value.to(param.device if on_device else "cpu")
                else:
                    state[field] = value.to(param.device)
            if state:
                optimizer.state[param] = state
