"""Prototype routing: how strongly each cohort's columns are sent to each P-MoLin prototype."""

from __future__ import annotations

import numpy as np
import torch

from citab_cli.core import headers
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.model.citab import CITab
from citab_cli.core.runtime.dataset import Collator, load_cohort
from citab_cli.core.runtime.embedding import cohort_items

#: Subjects per forward pass while reading gates.
BATCH = 32
#: Columns listed per prototype in a report.
TOP_COLUMNS = 5


def routing(project: Project, model: CITab, device) -> dict | None:
    """Mean gate per (cohort, column) x layer x prototype over every ingested subject:
    {"matrix": (R, L, K), "labels": R row names "cohort: column", "cohorts" and "headers": each
    row's cohort and header text, "top": prototype -> columns}. None for a model without
    P-MoLin (tabular.ffn: dense)."""
    if model.config.tabular.ffn != "pmolin":
        return None
    cache = headers.load_cache(project, project.load_settings().header_encoder)
    rows, labels, cohorts, texts = [], [], [], []
    for name in project.cohorts():
        try:
            cohort = load_cohort(project, name, cache)
        except CitabError:
            continue  # a cohort without header vectors yet
        collator = Collator.for_model([cohort], model.config)
        sums = None
        counts = np.zeros(len(cohort.columns))
        for start in range(0, cohort.size, BATCH):
            idx = np.arange(start, min(start + BATCH, cohort.size))
            table = collator.table(cohort_items(idx)).to(device)
            with torch.no_grad():
                gates = model.encode_tabular(table).gates  # per layer (B, 1 + C, K)
            stacked = torch.stack(gates, 2)[:, 1:]  # (B, C, L, K) without CLS
            present = table.present[..., None, None].float()
            part = (stacked * present).sum(0).cpu().numpy()[: len(cohort.columns)]
            sums = part if sums is None else sums + part
            counts += table.present.sum(0).cpu().numpy()[: len(cohort.columns)]
        means = sums / np.maximum(counts, 1)[:, None, None]
        for j, column in enumerate(cohort.columns):
            rows.append(means[j])
            labels.append(f"{name}: {column}")
            cohorts.append(name)
            texts.append(cohort.texts[j])
    matrix = np.stack(rows)  # (R, L, K)
    top = {}
    for layer in range(matrix.shape[1]):
        for k in range(matrix.shape[2]):
            best = np.argsort(-matrix[:, layer, k])[:TOP_COLUMNS]
            top[f"layer {layer + 1}, prototype {k + 1}"] = [
                {"column": labels[i], "gate": float(matrix[i, layer, k])} for i in best
            ]
    return {"matrix": matrix, "labels": labels, "cohorts": cohorts, "headers": texts, "top": top}
