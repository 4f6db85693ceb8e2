"""Corpus WER and CER, equal to jiwer 4 ``process_words`` / ``process_characters`` (their
default transforms) run on all pairs at once.

jiwer aligns every (reference, hypothesis) pair on its own and sums the hits (H),
substitutions (S), deletions (D) and insertions (I); corpus WER = (S + D + I) / (H + S + D).
Each block runs jiwer on its pairs and keeps those four integers; blocks add them.
Like jiwer, a corpus whose references hold no word at all scores I (the insertion count).
Empty references are allowed (jiwer 4 accepts them). Per-row: each pair's WER (CER), with the
same rule for an empty reference.

``normalizer: whisper_english`` first applies Whisper's English text normaliser
(``whisper_normalizer.english.EnglishTextNormalizer``, the openai-whisper code with its
``english.json`` spelling map) to both sides, as the Whisper papers score English.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal

from mmbatch.core.metric import Metric, MetricConfig, MetricError, MetricResult, register_metric
from mmbatch.core.requirements import Requirements

from ._common import ScoreSum, ids_of, strings


class ErrorRateConfig(MetricConfig):
    prediction: str
    """String column with the hypothesis (the transcript)."""
    reference: str
    """String column with the reference transcript."""
    normalizer: Literal["none", "whisper_english"] = "none"
    """``whisper_english``: Whisper's English text normaliser on both sides first (jiwer's default
    transforms apply either way)."""
    per_row: bool = False
    """Also write each row's score: ``<output>/metrics/<name>-rows.parquet`` (``id``, ``<name>``)."""


@functools.cache
def _whisper_english() -> Any:
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as e:
        raise MetricError(
            "normalizer 'whisper_english' needs the whisper-normalizer package: "
            "pip install 'mmbatch[metrics]'"
        ) from e
    return EnglishTextNormalizer()


def _pair_counts(chunks: list[Any]) -> tuple[int, int, int, int]:
    """(H, S, D, I) of one pair from jiwer's alignment chunks (as jiwer counts them)."""
    h = s = d = i = 0
    for c in chunks:
        if c.type == "equal":
            h += c.ref_end_idx - c.ref_start_idx
        elif c.type == "substitute":
            s += c.ref_end_idx - c.ref_start_idx
        elif c.type == "delete":
            d += c.ref_end_idx - c.ref_start_idx
        elif c.type == "insert":
            i += c.hyp_end_idx - c.hyp_start_idx
    return h, s, d, i


def error_rate(h: int, s: int, d: int, i: int) -> float:
    """jiwer's rate: (S + D + I) / (H + S + D), or I when the reference has no unit."""
    n = h + s + d
    return float(i) if n == 0 else float(s + d + i) / float(n)


@dataclass
class ErrorCounts:
    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    rows: ScoreSum = field(default_factory=ScoreSum)
    """Row count, and per-row rates when asked for."""


class _ErrorRate(Metric[ErrorRateConfig]):
    row_local = True
    requires = Requirements(("jiwer",), "metrics")
    unit: str = "word"

    def input_columns(self) -> list[str]:
        return [self.config.prediction, self.config.reference]

    def requirements(self) -> Requirements:
        if self.config.normalizer == "whisper_english":
            return self.requires.with_modules("whisper_normalizer")
        return self.requires

    def setup(self) -> None:
        if self.config.normalizer == "whisper_english":
            _whisper_english()

    def _process(self, refs: list[str], hyps: list[str]) -> Any:
        import jiwer

        return jiwer.process_words(refs, hyps) if self.unit == "word" else jiwer.process_characters(refs, hyps)

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> ErrorCounts:
        hyps = strings(batch, self.config.prediction)
        refs = strings(batch, self.config.reference)
        ids = ids_of(batch)
        if not hyps:
            return ErrorCounts(rows=ScoreSum.of([], [], self.config.per_row))
        if self.config.normalizer == "whisper_english":
            norm = _whisper_english()
            hyps, refs = [norm(x) for x in hyps], [norm(x) for x in refs]
        out = self._process(refs, hyps)
        counts = ErrorCounts(out.hits, out.substitutions, out.deletions, out.insertions)
        if self.config.per_row:
            rates = [error_rate(*_pair_counts(chunks)) for chunks in out.alignments]
            counts.rows = ScoreSum.of(ids, rates, keep_rows=True)
        else:
            counts.rows = ScoreSum(count=len(hyps))
        return counts

    def merge(self, states: list[ErrorCounts]) -> ErrorCounts:
        return ErrorCounts(
            hits=sum(s.hits for s in states),
            substitutions=sum(s.substitutions for s in states),
            deletions=sum(s.deletions for s in states),
            insertions=sum(s.insertions for s in states),
            rows=ScoreSum.merge([s.rows for s in states]),
        )

    def finalize(self, merged: ErrorCounts, broadcast: Any) -> MetricResult:
        h, s, d, i = merged.hits, merged.substitutions, merged.deletions, merged.insertions
        count = merged.rows.count
        return MetricResult(
            name=self.output_name,
            value=error_rate(h, s, d, i) if count else float("nan"),
            count=count,
            details={
                "hits": float(h),
                "substitutions": float(s),
                "deletions": float(d),
                "insertions": float(i),
                f"reference_{self.unit}s": float(h + s + d),
            },
            row_scores=merged.rows.row_scores(self.output_name),
        )


@register_metric("wer")
class WordErrorRate(_ErrorRate):
    """Corpus word error rate (jiwer ``process_words``)."""

    unit = "word"


@register_metric("cer")
class CharacterErrorRate(_ErrorRate):
    """Corpus character error rate (jiwer ``process_characters``; spaces count as characters)."""

    unit = "char"
