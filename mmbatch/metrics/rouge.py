"""ROUGE-L, equal to ``pycocoevalcap.rouge.Rouge`` on the same PTB-tokenised text.

Each row is scored by pycocoevalcap's own ``Rouge.calc_score`` (LCS-based F-measure with
beta = 1.2, best precision and best recall over the references); the corpus value is the
mean over rows, summed exactly. Per-row: each row's ROUGE-L.
"""

from __future__ import annotations

from typing import Any

from mmbatch.core.metric import MetricResult, register_metric

from ._common import ScoreSum
from .captions import CaptionMetric


@register_metric("rouge_l")
class RougeL(CaptionMetric):
    """ROUGE-L (pycocoevalcap ``Rouge``)."""

    row_local = True

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> ScoreSum:
        from pycocoevalcap.rouge.rouge import Rouge

        ids, preds, refs = self.rows(batch)
        rouge = Rouge()
        scores = [rouge.calc_score([p], rs) for p, rs in zip(preds, refs, strict=True)]
        return ScoreSum.of(ids, scores, self.config.per_row)

    def merge(self, states: list[ScoreSum]) -> ScoreSum:
        return ScoreSum.merge(states)

    def finalize(self, merged: ScoreSum, broadcast: Any) -> MetricResult:
        return MetricResult(
            name=self.output_name,
            value=merged.mean(),
            count=merged.count,
            row_scores=merged.row_scores(self.output_name),
        )
