"""What the COCO caption metrics (CIDEr-D, BLEU, ROUGE-L, METEOR) share: their config and
the per-block PTB tokenisation of predictions and references.

Every row is one image: a prediction string and its references (a ``list<string>`` column,
or a ``string`` column for one reference per row). Rows are scored independently of their ids;
pycocoevalcap itself keys by image id, so the equality with it holds for unique ids, which the
engine guarantees (ids are only used to label per-row scores).
"""

from __future__ import annotations

from typing import Literal

from mmbatch.core.metric import Metric, MetricConfig
from mmbatch.core.requirements import Requirements

from ._common import ids_of, reference_lists, strings
from .ptb import ptb_tokenize


class CaptionConfig(MetricConfig):
    prediction: str
    """String column with the generated caption."""
    references: str
    """Column with the reference captions: ``list<string>`` or ``string``."""
    tokenizer: Literal["ptb", "none"] = "ptb"
    """``ptb``: pycocoevalcap's PTBTokenizer (Java), as COCOEvalCap does; ``none``: the text is
    already tokenised (tokens separated by spaces)."""
    per_row: bool = False
    """Also write each row's score: ``<output>/metrics/<name>-rows.parquet`` (``id``, ``<name>``)."""


class CaptionMetric(Metric[CaptionConfig]):
    """Base of the caption metrics: columns, requirements and tokenisation."""

    requires = Requirements(("pycocoevalcap",), "metrics", executables=("java",))

    def requirements(self) -> Requirements:
        return self.requires if self.config.tokenizer == "ptb" else self.requires.without_executables()

    def input_columns(self) -> list[str]:
        return [self.config.prediction, self.config.references]

    def rows(self, batch: dict[str, list]) -> tuple[list, list[str], list[list[str]]]:
        """``(ids, predictions, references)`` of a block, tokenised as configured."""
        preds = strings(batch, self.config.prediction)
        refs = reference_lists(batch, self.config.references)
        ids = ids_of(batch)
        if self.config.tokenizer == "none" or not preds:
            return ids, list(preds), refs
        flat = [s for p, rs in zip(preds, refs, strict=True) for s in (p, *rs)]
        tokens = iter(ptb_tokenize(flat))
        tok_preds: list[str] = []
        tok_refs: list[list[str]] = []
        for rs in refs:
            tok_preds.append(next(tokens))
            tok_refs.append([next(tokens) for _ in rs])
        return ids, tok_preds, tok_refs
