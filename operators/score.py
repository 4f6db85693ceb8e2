"""score: per-row metric scores as a column (WER per utterance, CLIPScore per pair, ...).

The step wraps the metric of the same name from ``mmbatch.pipelines.metrics``, so a row's
score is exactly the per-row score that metric reports (``per_row: true``). Only metrics
whose per-row score depends on that row alone can be a step; CIDEr's depends on the whole
corpus (document frequencies): ask for it with ``per_row: true`` in ``metrics:`` instead.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import ConfigDict, Field, model_validator

from .base import OpConfig, Operator
from .registry import register


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
        from pydantic import ValidationError

        from mmbatch.pipelines.metrics import MetricError, build_metric, get_metric

        try:
            cls = get_metric(self.metric)
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
            keys = ", ".join(k for k in cls.Config.model_fields if k != "per_row")
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"metric '{self.metric}': {problems} (its keys: {keys})") from None
        return self


@register("score")
class Score(Operator):
    """Per-row scores of a row-local metric, as one float64 column.

    Inputs: the metric's columns (a row with a null there gets a null score, not an error).
    Output: the metric's ``name`` (default: the metric, e.g. ``wer``). Resources: 1 actor,
    1 CPU (``clip_score`` loads its CLIP there; give it ``gpus`` to use one).
    """

    Config = ScoreConfig
    default_batch_size = 64
    null_inputs_are_errors = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from mmbatch.pipelines.metrics import build_metric

        self.metric = build_metric(self.config.metric_entry())  # type: ignore[attr-defined]

    def inputs(self) -> dict[str, str]:
        return {c: f"read by {self.metric.name}" for c in self.metric.input_columns()}

    def outputs(self) -> dict[str, str]:
        return {self.metric.output_name: f"per-row {self.metric.name} (null where an input is null)"}

    def output_types(self) -> dict[str, pa.DataType]:
        return {self.metric.output_name: pa.float64()}

    def setup(self) -> None:
        from mmbatch.pipelines.metrics import check_requirements

        check_requirements(self.metric)
        self.metric.setup()

    def process(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        from mmbatch.pipelines.metrics import compute_local

        columns = self.metric.input_columns()
        n = len(batch[columns[0]])
        scores: list[float | None] = [None] * n
        keep = [i for i in range(n) if all(batch[c][i] is not None for c in columns)]
        if keep:
            sub: dict[str, list[Any]] = {c: [batch[c][i] for i in keep] for c in columns}
            sub["id"] = keep  # positions: metrics key their per-row scores by "id"
            rows = compute_local(self.metric, [sub], ready=True).row_scores or {}
            for i, s in zip(rows.get("id", []), rows.get(self.metric.output_name, []), strict=True):
                scores[i] = float(s)
        return {self.metric.output_name: scores}
