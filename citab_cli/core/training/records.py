"""What a run leaves to read besides its checkpoints: the environment it ran in, the curves of
its losses and validation scores, and (optionally) TensorBoard event files."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

from citab_cli import __version__
from citab_cli.core import atomic, figures
from citab_cli.core.errors import CitabError

#: Panels of curves.png: (title, [(metric key, label)]).
PANELS = (
    ("training losses", [("loss", "loss"), ("itc", "ITC"), ("itm", "ITM"), ("mtr", "MTR")]),
    (
        "validation losses",
        [("val_loss", "loss"), ("val_itc", "ITC"), ("val_itm", "ITM"), ("val_mtr", "MTR")],
    ),  # fmt: skip
    (
        "label-free validation",
        [
            ("val_recall_at_1", "retrieval R@1"),
            ("val_recall_at_5", "retrieval R@5"),
            ("val_recall_at_5_chance", "R@5 by chance"),
            ("val_itm_accuracy", "matching accuracy"),
            ("val_itm_auc", "matching AUC"),
        ],
    ),  # fmt: skip
    (
        "validation probes (label-based)",
        [
            ("val_probe_multimodal", "multimodal"),
            ("val_probe_tabular", "tabular CLS"),
            ("val_probe_image", "image"),
        ],
    ),  # fmt: skip
)


def _git_commit(folder: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def environment(project_root: Path, world: int, device: str) -> dict:
    """citab, Python, torch, CUDA/cuDNN, GPUs, processes, and the project's git commit."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "citab": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "device": device,
        "world_size": world,
        "project_git_commit": _git_commit(project_root),
    }


def write_environment(path: Path, record: dict) -> None:
    """environment.json, written atomically."""
    atomic.write_text(path, json.dumps(record, indent=2) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl, in order; a line cut short by a crash is passed over."""
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _read(metrics: Path) -> tuple[list[dict], list[dict]]:
    steps, validations = [], []
    for record in read_metrics(metrics):
        if "validation" in record:
            validations.append(record["validation"])
        elif "step" in record:
            steps.append(record)
    return steps, validations


def draw_curves(metrics: Path, curves: Path) -> None:
    """curves.png from metrics.jsonl: losses against steps, validation scores against steps."""
    import warnings

    steps, validations = _read(metrics)
    plt = figures.pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig, axes = plt.subplots(2, 2, figsize=(10, 7), layout="constrained")
        for ax, (title, series) in zip(axes.flat, PANELS, strict=True):
            records = steps if title == "training losses" else validations
            for key, label in series:
                points = [(r["step"], r[key]) for r in records if key in r]
                if points and key.endswith("_chance"):
                    ax.plot(*zip(*points, strict=True), linestyle="--", color="0.5", label=label)
                elif points:
                    ax.plot(*zip(*points, strict=True), marker="." if records is validations
                            else None, label=label)  # fmt: skip
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("step")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        figures.save(fig, curves, dpi=100)


class TensorBoard:
    """Mirrors metrics.jsonl into TensorBoard event files under runs/<run>/tensorboard/."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CitabError(
                "--logger tensorboard needs the tensorboard package: pip install "
                "'citab-cli[tensorboard]' (or pip install tensorboard)"
            ) from None
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, record: dict) -> None:
        """Scalars of one metrics.jsonl record, under train/ or validation/."""
        if "validation" in record:
            scores = record["validation"]
            step = scores.get("step", 0)
            for key, value in scores.items():
                if isinstance(value, int | float) and key not in ("step", "epoch"):
                    self._writer.add_scalar(f"validation/{key}", value, step)
        else:
            step = record.get("step", 0)
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("step", "epoch"):
                    self._writer.add_scalar(f"train/{key}", value, step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
