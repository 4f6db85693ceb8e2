"""Corpus BLEU-1..4, equal to ``pycocoevalcap.bleu.Bleu(4)`` (its ``closest`` reference
length) on the same PTB-tokenised text.

Corpus BLEU only needs integer sums over the rows: hypothesis length, the closest reference
length, and per n the number of n-grams and of clipped matches. Blocks add those integers;
the final formula is pycocoevalcap's ``BleuScorer.compute_score`` run on the totals, so the
value is the reference's bit for bit. ``value`` is BLEU-4; ``details`` holds ``bleu_1`` ..
``bleu_4``, ``testlen`` and ``reflen``. Per-row: each sentence's BLEU-4 as pycocoevalcap lists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmbatch.core.metric import MetricResult, register_metric

from ._common import ScoreSum
from .captions import CaptionMetric

N = 4


@dataclass
class BleuState:
    testlen: int = 0
    reflen: int = 0
    guess: list[int] = field(default_factory=lambda: [0] * N)
    correct: list[int] = field(default_factory=lambda: [0] * N)
    rows: ScoreSum = field(default_factory=ScoreSum)
    """Count, and per-row BLEU-4 when asked for."""


def _scores(comps: list[dict]) -> tuple[list[float], list[list[float]]]:
    """pycocoevalcap's corpus BLEU-1..4 and per-sentence lists for cooked sentences."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=N)
    scorer.crefs = [None] * len(comps)
    scorer.ctest = list(comps)
    return scorer.compute_score(option="closest")


@register_metric("bleu")
class Bleu(CaptionMetric):
    """BLEU-1..4 (pycocoevalcap ``Bleu``); value: BLEU-4."""

    row_local = True

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> BleuState:
        from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

        ids, preds, refs = self.rows(batch)
        state = BleuState()
        per_row: list[float] = []
        for pred, rs in zip(preds, refs, strict=True):
            comps = cook_test(pred, cook_refs(rs, n=N), n=N)
            testlen = comps["testlen"]
            state.testlen += testlen
            state.reflen += min((abs(ln - testlen), ln) for ln in comps["reflen"])[1]
            for k in range(N):
                state.guess[k] += comps["guess"][k]
                state.correct[k] += comps["correct"][k]
            if self.config.per_row:
                per_row.append(_scores([comps])[1][N - 1][0])
        state.rows = ScoreSum(count=len(preds))
        if self.config.per_row:
            state.rows = ScoreSum.of(ids, per_row, keep_rows=True)
        return state

    def merge(self, states: list[BleuState]) -> BleuState:
        return BleuState(
            testlen=sum(s.testlen for s in states),
            reflen=sum(s.reflen for s in states),
            guess=[sum(s.guess[k] for s in states) for k in range(N)],
            correct=[sum(s.correct[k] for s in states) for k in range(N)],
            rows=ScoreSum.merge([s.rows for s in states]),
        )

    def finalize(self, merged: BleuState, broadcast: Any) -> MetricResult:
        count = merged.rows.count
        if count == 0:
            bleus = [float("nan")] * N
        else:
            total = {"testlen": merged.testlen, "reflen": [merged.reflen],
                     "guess": merged.guess, "correct": merged.correct}
            bleus = [float(b) for b in _scores([total])[0]]
        details = {f"bleu_{k + 1}": bleus[k] for k in range(N)}
        details.update(testlen=float(merged.testlen), reflen=float(merged.reflen))
        return MetricResult(
            name=self.output_name,
            value=bleus[N - 1],
            count=count,
            details=details,
            row_scores=merged.rows.row_scores(self.output_name),
        )
