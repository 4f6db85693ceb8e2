"""Exact image<->text retrieval Recall@K from two embedding columns.

Every row holds an image embedding and a text embedding (``list<float>``). Without ``group``,
row i's image matches exactly row i's text. With ``group`` (e.g. the COCO image id, 5 caption
rows per image), the rows of one group share one image -- the gallery holds it once (the
first row's embedding) -- and every text of the group matches it.

- image->text: each distinct image queries all texts; a hit at K if any of its texts is in
  the top K;
- text->image: each text queries all distinct images; a hit at K if its image is in the top K.

Scores are cosine similarities (``normalize: true``, embeddings L2-normalised) or raw dot
products, computed exactly in float64 in blocks of ``block_size`` queries (no approximate
index). A query's rank is the number of non-matching candidates scoring strictly higher
than its best match (ties count in the query's favour). ``value`` is the mean of all the
recalls; ``details`` holds ``image_to_text_R@K`` and ``text_to_image_R@K`` (fractions).

Retrieval needs every embedding at once: the mergeable state is the embeddings themselves
(float32), concatenated on the driver -- N x dim x 8 bytes for the two columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, field_validator

from mmbatch.core.metric import Metric, MetricConfig, MetricError, MetricResult, register_metric
from mmbatch.core.requirements import Requirements

from ._common import column, ids_of


class RecallConfig(MetricConfig):
    image_embedding: str
    """``list<float>`` column with each row's image embedding."""
    text_embedding: str
    """``list<float>`` column with each row's text embedding."""
    group: str | None = None
    """Column with an image id: rows sharing it share one image (several captions per image)."""
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10])
    normalize: bool = True
    """Cosine similarity (L2-normalise the embeddings); false: raw dot products."""
    block_size: int = Field(1024, ge=1)
    """Queries per matrix product."""

    @field_validator("ks")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError(f"ks must be a non-empty list of positive integers, got {v}")
        return sorted(set(v))


@dataclass
class EmbeddingState:
    images: list[Any] = field(default_factory=list)
    """float32 arrays, one per block."""
    texts: list[Any] = field(default_factory=list)
    groups: list = field(default_factory=list)


def _matrix(values: list, name: str, ids: list) -> Any:
    import numpy as np

    for i, v in enumerate(values):
        if v is None:
            raise MetricError(f"column '{name}' of row {ids[i]!r} is null")
    try:
        return np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    except ValueError as e:
        raise MetricError(f"column '{name}' holds embeddings of different lengths") from e


def _unit(x: Any, what: str) -> Any:
    import numpy as np

    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
        raise MetricError(f"a {what} embedding is zero or not finite: cosine similarity is undefined")
    return x / norms


def _ranks(queries: Any, candidates: Any, positive: Any, block_size: int) -> Any:
    """For each query, how many non-matching candidates score above its best match.

    ``positive(start, stop)`` -> bool matrix (queries[start:stop] x candidates)."""
    import numpy as np

    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), block_size):
        stop = min(start + block_size, len(queries))
        scores = queries[start:stop] @ candidates.T
        pos = positive(start, stop)
        best = np.where(pos, scores, -np.inf).max(axis=1)
        ranks[start:stop] = ((scores > best[:, None]) & ~pos).sum(axis=1)
    return ranks


def retrieval_recalls(
    images: Any, texts: Any, groups: list | None, ks: list[int], normalize: bool, block_size: int
) -> tuple[dict[str, float], int, int]:
    """``(details, #image queries, #text queries)`` for row-aligned embedding matrices."""
    import numpy as np

    if images.shape[1] != texts.shape[1]:
        raise MetricError(
            f"image embeddings have {images.shape[1]} dimensions, text embeddings {texts.shape[1]}"
        )
    n = len(texts)
    if groups is None:
        image_of_text = np.arange(n)
        gallery = images
    else:
        first: dict[Any, tuple[int, int]] = {}  # group -> (image index, its first row)
        for row, g in enumerate(groups):
            first.setdefault(g, (len(first), row))
        image_of_text = np.array([first[g][0] for g in groups], dtype=np.int64)
        gallery = images[[row for _, row in first.values()]]
    gallery = gallery.astype(np.float64)
    texts = texts.astype(np.float64)
    if normalize:
        gallery, texts = _unit(gallery, "image"), _unit(texts, "text")
    m = len(gallery)
    i2t = _ranks(gallery, texts, lambda a, b: np.arange(a, b)[:, None] == image_of_text[None, :], block_size)
    t2i = _ranks(texts, gallery, lambda a, b: image_of_text[a:b, None] == np.arange(m)[None, :], block_size)
    details: dict[str, float] = {}
    for k in ks:
        details[f"image_to_text_R@{k}"] = float(np.mean(i2t < k))
    for k in ks:
        details[f"text_to_image_R@{k}"] = float(np.mean(t2i < k))
    return details, m, n


@register_metric("recall_at_k")
class RecallAtK(Metric[RecallConfig]):
    """Image->text and text->image Recall@K (exact, all pairs)."""

    requires = Requirements(("numpy",), "metrics")

    def input_columns(self) -> list[str]:
        cols = [self.config.image_embedding, self.config.text_embedding]
        return cols + ([self.config.group] if self.config.group else [])

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> EmbeddingState:
        ids = ids_of(batch)
        images = _matrix(column(batch, self.config.image_embedding), self.config.image_embedding, ids)
        texts = _matrix(column(batch, self.config.text_embedding), self.config.text_embedding, ids)
        groups = list(column(batch, self.config.group)) if self.config.group else []
        for i, g in enumerate(groups):
            if g is None:
                raise MetricError(f"column '{self.config.group}' of row {ids[i]!r} is null")
        return EmbeddingState([images], [texts], groups)

    def merge(self, states: list[EmbeddingState]) -> EmbeddingState:
        return EmbeddingState(
            [m for s in states for m in s.images if len(m)],
            [m for s in states for m in s.texts if len(m)],
            [g for s in states for g in s.groups],
        )

    def finalize(self, merged: EmbeddingState, broadcast: Any) -> MetricResult:
        import numpy as np

        if not merged.texts:
            return MetricResult(self.output_name, math.nan, 0)
        images = np.concatenate(merged.images)
        texts = np.concatenate(merged.texts)
        details, n_images, n_texts = retrieval_recalls(
            images, texts, merged.groups if self.config.group else None,
            self.config.ks, self.config.normalize, self.config.block_size,
        )
        details["images"] = float(n_images)
        recalls = [v for k, v in details.items() if "_R@" in k]
        return MetricResult(self.output_name, float(np.mean(recalls)), n_texts, details)
