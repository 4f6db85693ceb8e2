"""CIDEr-D, equal to ``pycocoevalcap.cider.Cider`` after ``PTBTokenizer`` on the whole corpus.

CIDEr-D weighs n-grams by tf-idf, and the idf uses corpus-wide numbers: the document
frequency of every n-gram (in how many images' references it occurs) and ``log(#images)``.
So it takes two passes:

1. each block is tokenised and counts its document frequencies; the driver sums them and
   broadcasts ``(document frequencies, log(#images))``;
2. each block is tokenised again and every row scored with pycocoevalcap's own
   ``CiderScorer.compute_cider`` (n = 4, sigma = 6, clipping, x10, its quirks included),
   only with the corpus-wide numbers in place of the block's.

Per-row scores are therefore the reference's bits; the corpus value is their mean, summed
exactly (identical for any blocking; within 1e-15 of ``np.mean``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mmbatch.core.metric import MetricResult, register_metric

from ._common import ScoreSum
from .captions import CaptionMetric

N = 4
SIGMA = 6.0


class DocumentFrequency(dict):
    """Corpus document frequencies; unseen n-grams read as 0.0 without being inserted
    (``CiderScorer`` indexes its ``document_frequency`` like a ``defaultdict(float)``)."""

    def __missing__(self, key: Any) -> float:
        return 0.0


@dataclass
class DocFreqState:
    """Pass 1 state: n-gram -> number of images whose references contain it; #images."""

    df: Counter
    images: int


@dataclass
class CorpusStats:
    """The broadcast of pass 2."""

    document_frequency: DocumentFrequency
    ref_len: float
    """``np.log(float(#images))``, as ``CiderScorer.compute_cider`` computes it."""


def _block_scorer(preds: list[str], refs: list[list[str]], base: type | None = None, **kw: Any) -> Any:
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    scorer = (base or CiderScorer)(n=N, sigma=SIGMA, **kw)
    for pred, rs in zip(preds, refs, strict=True):
        scorer += (pred, rs)
    return scorer


def _corpus_scorer_class() -> type:
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    class CorpusCiderScorer(CiderScorer):
        """A block's ``CiderScorer`` that scores with the corpus-wide statistics."""

        def __init__(self, n: int, sigma: float, stats: CorpusStats) -> None:
            super().__init__(n=n, sigma=sigma)
            self.document_frequency = stats.document_frequency
            self._corpus_ref_len = stats.ref_len

        @property
        def ref_len(self) -> float:
            return self._corpus_ref_len

        @ref_len.setter
        def ref_len(self, value: Any) -> None:
            # compute_cider() sets log(#images of this block): keep the corpus value
            pass

    return CorpusCiderScorer


@register_metric("cider")
class Cider(CaptionMetric):
    """CIDEr-D (pycocoevalcap ``Cider``); per-row: each image's CIDEr-D."""

    passes = 2

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> Any:
        ids, preds, refs = self.rows(batch)
        if pass_index == 0:
            scorer = _block_scorer(preds, refs)
            scorer.compute_doc_freq()
            return DocFreqState(Counter(scorer.document_frequency), len(preds))
        if not preds:
            return ScoreSum.of([], [], self.config.per_row)
        scorer = _block_scorer(preds, refs, base=_corpus_scorer_class(), stats=broadcast)
        return ScoreSum.of(ids, scorer.compute_cider(), self.config.per_row)

    def merge(self, states: list[Any]) -> Any:
        if states and isinstance(states[0], DocFreqState):
            df: Counter = Counter()
            for s in states:
                df.update(s.df)
            return DocFreqState(df, sum(s.images for s in states))
        return ScoreSum.merge(states)

    def after_pass(self, pass_index: int, merged: Any) -> CorpusStats:
        import numpy as np

        if not isinstance(merged, DocFreqState):  # no blocks at all
            merged = DocFreqState(Counter(), 0)
        ref_len = float(np.log(float(merged.images))) if merged.images else math.nan
        return CorpusStats(DocumentFrequency(merged.df), ref_len)

    def finalize(self, merged: ScoreSum, broadcast: Any) -> MetricResult:
        return MetricResult(
            name=self.output_name,
            value=merged.mean(),
            count=merged.count,
            row_scores=merged.row_scores(self.output_name),
        )
