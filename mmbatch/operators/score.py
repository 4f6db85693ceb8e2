"""score: per-row metric scores as a column (WER per utterance, CLIPScore per pair, ...).

The step wraps the metric of the same name from the metric registry, so a row's score is
exactly the per-row score that metric reports (``per_row: true``). Only metrics whose
per-row score depends on that row alone can be a step; CIDEr's depends on the whole corpus
(document frequencies): ask for it with ``per_row: true`` in ``metrics:`` instead.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import ConfigDict, Field, ValidationError, model_validator

from mmbatch.core.columns import Column
from mmbatch.core.metric import METRICS, AnyMetric, MetricError, build_metric, row_scores
from mmbatch.core.requirements import Requirements
from mmbatch.core.resources import Resources

from .base import OpConfig, Operator, register


class ScoreConfig(OpConfig):
    """``metric`` plus that metric's own keys, exactly as in a ``metrics:`` entry."""

    model_config = ConfigDict(frozen=True, extra="allow", protected_namespaces=())

    metric: str = Field(
        description="a row-local metric (wer, cer, clip_score, vqa_accuracy, bleu, rouge_l, meteor); "
        "the other keys are that metric's (prediction, reference(s), images, text, name, ...)"
    )

    def metric_entry(self) -> dict[str, Any]:
        return {"metric": self.metric, **(self.model_extra or {}), "per_row": True}

    @model_validator(mode="after")
    def _check_metric(self) -> ScoreConfig:
        try:
            cls = METRICS.get(self.metric)
        except MetricError as exc:
            raise ValueError(str(exc)) from None
        if not cls.row_local:
            raise ValueError(
                f"metric '{self.metric}' has no score of a row on its own; put it under metrics: "
                "(with per_row: true where it offers per-row scores, e.g. cider)"
            )
        if "per_row" in (self.model_extra or {}):
            raise ValueError("per_row: a score step always writes per-row scores; drop the key")
        try:
            build_metric(self.metric_entry())
        except ValidationError as exc:
            keys = ", ".join(k for k in cls.Config.model_fields if k not in ("per_row", "resources"))
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"metric '{self.metric}': {problems} (its keys: {keys})") from None
        return self


@register("score")
class Score(Operator[ScoreConfig]):
    """Per-row scores of a row-local metric, as one float64 column.

    Inputs: the metric's columns (a row with a null there gets a null score, not an error).
    Output: the metric's ``name`` (default: the metric, e.g. ``wer``). Resources: 1 actor,
    1 CPU (``clip_score`` loads its CLIP there; give it ``gpus`` to use one).
    """

    default_batch_size = 64
    null_inputs_are_errors = False

    def __init__(self, config: ScoreConfig, resources: Resources | None = None, label: str = "") -> None:
        super().__init__(config, resources, label)
        self.metric: AnyMetric = build_metric(config.metric_entry())

    def requirements(self) -> Requirements:
        return self.metric.requirements()

    def inputs(self) -> dict[str, str]:
        return {c: f"read by {self.metric.name}" for c in self.metric.input_columns()}

    def outputs(self) -> dict[str, str]:
        return {self.metric.output_name: f"per-row {self.metric.name} (null where an input is null)"}

    def output_types(self) -> dict[str, pa.DataType]:
        return {self.metric.output_name: pa.float64()}

    def setup(self) -> None:
        self.metric.setup()

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        return {self.metric.output_name: row_scores(self.metric, batch)}
