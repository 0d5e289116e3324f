"""Validation during pretraining, on the val split without augmentation: the SSL losses, how
well the matching head tells true pairs from hard negatives, image <-> table retrieval (all
label-free), and quick linear probes of the three embeddings (label-based)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from citab_cli.core.losses.matching import match_auc
from citab_cli.core.model.citab import CITab, TabularOutput
from citab_cli.core.model.objective import pretraining_loss
from citab_cli.core.runtime.augment import AugmentConfig, second_view
from citab_cli.core.runtime.dataset import CohortData, Collator, subjects_in
from citab_cli.core.runtime.device import autocast, image_layout
from citab_cli.core.runtime.embedding import cohort_items, embed_subjects, encoded_batches
from citab_cli.core.training.diagnostics import effective_rank
from citab_cli.core.training.sampling import step_generator, subject_ids

#: The recall@k of image <-> table retrieval logged at each validation.
RECALL_AT = (1, 5)
#: Embeddings probed at each validation, by their name in `embed_subjects`.
PROBED = ("multimodal", "tabular", "image")
#: The label-free and label-based monitors `train.select` can choose best.safetensors by:
#: (score name, whether higher is better).
MONITORS = {
    "ssl_loss": ("val_loss", False),
    "retrieval": ("val_recall_at_5", True),
    "probe": ("val_probe_bacc", True),
}
#: Pairs with another subject of the cohort per subject, for the matching AUC.
MATCH_NEGATIVES = 16
#: The validation scores a best checkpoint records.
BEST_KEYS = ("step", "epoch", "monitor", "val_loss", "val_recall_at_5", "val_probe_bacc")


def retrieval_recall(
    image: torch.Tensor, table: torch.Tensor, groups: torch.Tensor | None = None, ks=RECALL_AT
) -> dict[str, float]:
    """Recall@k of finding each subject's table from its image and its image from its table,
    averaged over both directions: image, table (N, P) projected features, row i = subject i.

    With `groups` (N,) cohort ids, each subject is looked up among its own cohort only: another
    cohort's table is told apart by its columns, so a model that knew nothing but the cohort
    would otherwise score well above chance. Chance is then k / the cohort's size."""
    image = torch.nn.functional.normalize(image.float(), dim=-1)
    table = torch.nn.functional.normalize(table.float(), dim=-1)
    similarity = image @ table.T  # (N, N)
    if groups is not None:
        similarity = similarity.masked_fill(groups[:, None] != groups[None, :], -torch.inf)
    truth = torch.arange(len(image), device=image.device)
    out = {}
    for k in ks:
        k = min(k, len(image))
        image_to_table = (similarity.topk(k, dim=1).indices == truth[:, None]).any(1)
        table_to_image = (similarity.T.topk(k, dim=1).indices == truth[:, None]).any(1)
        out[f"val_recall_at_{k}"] = float((image_to_table.float().mean() +
                                           table_to_image.float().mean()) / 2)  # fmt: skip
    return out


def recall_chance(groups: torch.Tensor, ks=RECALL_AT) -> dict[str, float]:
    """Chance level of within-cohort recall@k: a subject of a cohort of n is found among k
    guesses with probability min(k, n) / n; averaged over subjects, sum of min(k, n) / N."""
    _, sizes = torch.unique(groups, return_counts=True)
    total = float(sizes.sum())
    return {f"val_recall_at_{k}_chance": float(sizes.clamp(max=k).sum()) / total for k in ks}


@torch.no_grad()
def _losses(model, collator, val, batch_size, device, seed, augment) -> dict[str, float]:
    totals: dict[str, float] = {}
    batches = 0
    for start in range(0, len(val), batch_size):
        chunk = val[start : start + batch_size]
        if len(chunk) < 2:
            continue
        images = image_layout(torch.from_numpy(collator.images(chunk)), device)
        views = None
        if model.config.loss.objective == "simclr":  # the scan as it is, and augmented
            views = second_view(images, augment, seed, 0, subject_ids(chunk))
        with autocast(device):
            losses = pretraining_loss(
                model,
                images,
                collator.table(chunk).to(device),
                torch.as_tensor(chunk[:, 0], device=device),
                step_generator(seed, start, device),
                views=views,
            )
        for key in ("loss", "itc", "itm", "mtr", "itm_accuracy", "scarf", "simclr"):
            if key in losses:
                totals[key] = totals.get(key, 0.0) + float(losses[key])
        batches += 1
    scores = {f"val_{k}": v / max(batches, 1) for k, v in totals.items()}
    if not batches:
        scores["val_loss"] = math.inf
    return scores


@dataclass
class Encoded:
    """One cohort's subjects through the encoders, in the order given."""

    image_tokens: torch.Tensor  # (N, T, D) what the fusion reads of each scan
    table: TabularOutput  # tokens (N, 1 + C, D) and their mask
    image: torch.Tensor  # (N, C_img) pooled image features
    cls: torch.Tensor  # (N, D) tabular CLS


@torch.no_grad()
def encode_cohort(
    model: CITab, collator: Collator, rows: np.ndarray, batch_size: int, device: torch.device
) -> Encoded:
    """rows (N, 2) [cohort, row] of one cohort (so every row has the same columns)."""
    parts = list(encoded_batches(model, collator, rows, batch_size, device))
    return Encoded(
        torch.cat([image.tokens for image, _ in parts]),
        TabularOutput(
            torch.cat([table.tokens for _, table in parts]),
            torch.cat([table.keep for _, table in parts]),
            [],
        ),
        torch.cat([image.pooled for image, _ in parts]),
        torch.cat([table.cls for _, table in parts]),
    )


@torch.no_grad()
def matching_auc(
    model: CITab,
    cohorts: list[Encoded],
    batch_size: int,
    device: torch.device,
    seed: int,
    negatives: int = MATCH_NEGATIVES,
) -> float | None:
    """How well the matching head tells each subject's own table from another subject's of the
    same cohort: per cohort, the AUC of the head's match score over the true pairs against
    `negatives` pairs per subject drawn uniformly among the cohort's other subjects; the mean
    over cohorts (None when no cohort has two subjects). Chance is 0.5. The yardstick does not
    move with `loss.itm_hardness` or with how subjects fall into batches, so runs compare."""
    generator = torch.Generator().manual_seed(seed)
    aucs = []
    for cohort in cohorts:
        n = len(cohort.cls)
        if n < 2:
            continue
        own = torch.arange(n)
        other = (
            own.repeat(negatives) + torch.randint(1, n, (negatives * n,), generator=generator)
        ) % n
        image_index = torch.cat([own, own.repeat(negatives)])
        table_index = torch.cat([own, other])
        scores = []
        for start in range(0, len(image_index), batch_size):
            i = image_index[start : start + batch_size].to(device)
            t = table_index[start : start + batch_size].to(device)
            with autocast(device):
                table = TabularOutput(cohort.table.tokens[t], cohort.table.keep[t], [])
                fused = model.fusion(table, cohort.image_tokens[i])
            # the head in full precision: bf16 scores would tie pairs the head tells apart
            scores.append(model.matching_head(fused.float()))
        aucs.append(float(match_auc(torch.cat(scores), positives=n)))
    return float(np.mean(aucs)) if aucs else None


def embedding_ranks(encoded: list[Encoded]) -> dict[str, float]:
    """The effective rank of the pooled image features and of the tabular CLS, within each
    cohort (another cohort's offset would add a direction of its own), averaged over cohorts:
    val_rank_image, val_rank_tabular."""
    out = {}
    for name, pick in (("image", lambda e: e.image), ("tabular", lambda e: e.cls)):
        ranks = [effective_rank(pick(e)) for e in encoded if len(e.cls) >= 2]
        if ranks:
            out[f"val_rank_{name}"] = float(np.mean(ranks))
    return out


@torch.no_grad()
def validate(
    model: CITab,
    collator: Collator,
    cohorts: list[CohortData],
    batch_size: int,
    device: torch.device,
    seed: int,
    augment: AugmentConfig | None = None,
) -> dict:
    """Validation scores (in the training precision). Label-free: val_loss (and its parts),
    val_itm_accuracy (on the negatives ITM trains with), val_itm_auc (see `matching_auc`),
    val_recall_at_1/5 (within each cohort) and their chance levels (val_recall_at_k_chance),
    val_rank_image and val_rank_tabular (`embedding_ranks`). Label-based:
    val_probe_{multimodal,tabular,image} and val_probe_bacc (the multimodal one)."""
    model.eval()
    val = subjects_in(cohorts, {"val"})
    scores = _losses(model, collator, val, batch_size, device, seed, augment or AugmentConfig())
    if len(val) >= 2:
        ids = np.unique(val[:, 0])
        encoded = [encode_cohort(model, collator, val[val[:, 0] == c], batch_size, device)
                   for c in ids]  # fmt: skip
        image = model.image_projection(torch.cat([e.image for e in encoded]).float())
        table = model.tabular_projection(torch.cat([e.cls for e in encoded]).float())
        groups = torch.cat(
            [torch.full((len(e.cls),), int(c)) for c, e in zip(ids, encoded, strict=True)]
        )
        scores.update(retrieval_recall(image, table, groups.to(device)))
        scores.update(recall_chance(groups))
        scores.update(embedding_ranks(encoded))
        if model.config.loss.itm_weight > 0:
            auc = matching_auc(model, encoded, batch_size, device, seed)
            if auc is not None:
                scores["val_itm_auc"] = auc
    probes = quick_probes(model, collator, cohorts, batch_size, device)
    scores.update({f"val_probe_{name}": value for name, value in probes.items()})
    if "multimodal" in probes:
        scores["val_probe_bacc"] = probes["multimodal"]
    model.train()
    return scores


def quick_probes(
    model: CITab,
    collator: Collator,
    cohorts: list[CohortData],
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """Per embedding, the mean over cohorts of the val balanced accuracy of a class-balanced
    logistic regression fitted on the labelled train subjects' embeddings."""
    import warnings

    scores: dict[str, list[float]] = {name: [] for name in PROBED}
    with warnings.catch_warnings():  # small val splits: predicted classes absent from the truth
        warnings.simplefilter("ignore")
        for ci, cohort in enumerate(cohorts):
            _probe_cohort(model, collator, cohort, ci, batch_size, device, scores)
    return {name: float(np.mean(v)) for name, v in scores.items() if v}


def _probe_cohort(model, collator, cohort, ci, batch_size, device, scores) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labelled = np.array([label is not None for label in cohort.labels]) & cohort.has_scan
    rows = {s: np.nonzero(labelled & (cohort.splits == s))[0] for s in ("train", "val")}
    labels = np.array([label or "" for label in cohort.labels])
    if len(rows["val"]) == 0 or len(set(labels[rows["train"]])) < 2:
        return
    items = cohort_items(np.concatenate([rows["train"], rows["val"]]), ci)
    embedded = embed_subjects(model, collator, items, batch_size, device)
    n_train = len(rows["train"])
    for name in PROBED:
        x = embedded[name]
        probe = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")
        )
        probe.fit(x[:n_train], labels[rows["train"]])
        predicted = probe.predict(x[n_train:])
        scores[name].append(balanced_accuracy_score(labels[rows["val"]], predicted))


def better(scores: dict, best: dict, select: str = "ssl_loss") -> bool:
    """Whether validation `scores` beat the `best` so far by the monitor `select` (falling
    back to the validation loss when the monitor is missing, e.g. no labels for the probe)."""
    if not best:
        return True
    key, higher = MONITORS[select]
    if key not in scores or key not in best:
        key, higher = MONITORS["ssl_loss"]
    if scores[key] == best[key]:
        return scores["val_loss"] < best["val_loss"]
    return scores[key] > best[key] if higher else scores[key] < best[key]


def describe(scores: dict) -> str:
    """One line of validation scores for the console."""
    text = f"validation after epoch {scores['epoch']}: loss {scores['val_loss']:.4f}"
    if "val_recall_at_5" in scores:
        text += f", retrieval R@5 {scores['val_recall_at_5']:.3f}"
        chance = scores.get("val_recall_at_5_chance")
        if chance is not None:
            few = "; too few validation subjects a cohort to say much" if chance >= 0.5 else ""
            text += f" (chance {chance:.3f}{few})"
    matching = [f"AUC {scores['val_itm_auc']:.3f}"] if "val_itm_auc" in scores else []
    if "val_itm_accuracy" in scores:  # balanced over true pairs and negatives
        matching.append(f"balanced accuracy {scores['val_itm_accuracy']:.3f}")
    if matching:
        text += f", matching {' and '.join(matching)} (chance 0.5)"
    if "val_probe_bacc" in scores:
        text += f", probe balanced accuracy (label-based) {scores['val_probe_bacc']:.3f}"
    return text
