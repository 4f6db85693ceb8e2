"""CLIPScore of (image, text) pairs with torchmetrics' ``CLIPScore`` semantics.

Features as torchmetrics computes them: ``CLIPModel`` + ``CLIPProcessor`` from ``model`` (a
local folder, an object-store URL copied once per node, or a hub id); images go through the
processor, texts through ``processor(text=..., padding=True)`` and, like torchmetrics, are
cut to the model's ``max_position_embeddings`` tokens when longer. Per pair
``s = 100 * cos(image, text)`` in float32.

- ``mode: torchmetrics``: ``max(mean(s), 0)`` -- torchmetrics clamps the *mean*, not the rows;
  per-row scores are ``s``;
- ``mode: paper`` (Hessel et al. 2021): ``mean(2.5 * max(cos, 0))``; per-row scores likewise.

Rows are independent; blocks add exact sums of the per-row scores (float64), so the value
differs from torchmetrics' float32 running sum only by that sum's rounding (< 1e-5 relative).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mmbatch.core.metric import Metric, MetricConfig, MetricResult, register_metric
from mmbatch.core.models import LoadKeys, pooled
from mmbatch.core.requirements import Requirements

from ._common import ScoreSum, column, decode_rgb, ids_of, strings, torch_device

PAPER_WEIGHT = 2.5


class ClipScoreConfig(MetricConfig, LoadKeys):
    images: str
    """Column with encoded image bytes (PNG/JPEG/...) or local paths."""
    text: str
    """String column with the caption / prompt of each image."""
    model: str = "openai/clip-vit-large-patch14"
    """CLIP checkpoint: local folder, object-store URL or hub id (torchmetrics' default)."""
    mode: Literal["torchmetrics", "paper"] = "torchmetrics"
    """``torchmetrics``: max(mean(100 * cos), 0); ``paper``: mean(2.5 * max(cos, 0))."""
    batch_size: int = Field(64, ge=1)
    device: str | None = None
    """``cuda``/``cpu``; default: CUDA when the worker has a GPU."""
    per_row: bool = False
    """Also write each row's score: ``<output>/metrics/<name>-rows.parquet`` (``id``, ``<name>``)."""


@register_metric("clip_score")
class ClipScore(Metric[ClipScoreConfig]):
    """CLIPScore (torchmetrics ``CLIPScore``, or the paper's 2.5 * max(cos, 0))."""

    row_local = True

    requires = Requirements(("transformers", "torch"), "metrics")

    def __init__(self, config: ClipScoreConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._processor: Any = None
        self._device = "cpu"

    def __getstate__(self) -> dict[str, Any]:
        """Ship the config, not a loaded model: workers load their own in ``setup``."""
        state = dict(self.__dict__)
        state["_model"] = None
        state["_processor"] = None
        return state

    def input_columns(self) -> list[str]:
        return [self.config.images, self.config.text]

    def setup(self) -> None:
        if self._model is not None:
            return
        from transformers import CLIPModel, CLIPProcessor

        policy = self.config.policy()
        path = policy.local(self.config.model)
        self._device = torch_device(self.config.device)
        self._model = policy.from_pretrained(CLIPModel, path, device=self._device).eval()
        self._processor = policy.processor(CLIPProcessor, path)

    def cosines(self, images: list[Any], texts: list[str]) -> Any:
        """float32 ``cos(image_i, text_i)`` for PIL images and strings, as torchmetrics."""
        import torch

        self.setup()
        out = []
        max_len = getattr(getattr(self._model.config, "text_config", None), "max_position_embeddings", None)
        for start in range(0, len(texts), self.config.batch_size):
            stop = start + self.config.batch_size
            with torch.no_grad():
                pixels = self._processor(images=images[start:stop], return_tensors="pt", padding=True)
                img = pooled(self._model.get_image_features(pixels["pixel_values"].to(self._device)))
                tok = self._processor(text=texts[start:stop], return_tensors="pt", padding=True)
                ids, mask = tok["input_ids"], tok["attention_mask"]
                if max_len is not None and mask.shape[-1] > max_len:
                    ids, mask = ids[..., :max_len], mask[..., :max_len]
                txt = pooled(self._model.get_text_features(ids.to(self._device), mask.to(self._device)))
            img = img / img.norm(p=2, dim=-1, keepdim=True)
            txt = txt / txt.norm(p=2, dim=-1, keepdim=True)
            out.append((img * txt).sum(axis=-1).float().cpu())
        return torch.cat(out)

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> ScoreSum:
        ids = ids_of(batch)
        texts = strings(batch, self.config.text)
        images = [decode_rgb(v, self.config.images, ids[i]) for i, v in enumerate(column(batch, self.config.images))]
        if not texts:
            return ScoreSum.of([], [], self.config.per_row)
        cos = self.cosines(images, texts)
        if self.config.mode == "paper":
            scores = (PAPER_WEIGHT * cos.double().clamp(min=0)).tolist()
        else:
            scores = (100 * cos).tolist()  # float32 like torchmetrics, then summed in float64
        return ScoreSum.of(ids, scores, self.config.per_row)

    def merge(self, states: list[ScoreSum]) -> ScoreSum:
        return ScoreSum.merge(states)

    def finalize(self, merged: ScoreSum, broadcast: Any) -> MetricResult:
        mean = merged.mean()
        value = max(mean, 0.0) if self.config.mode == "torchmetrics" else mean
        return MetricResult(
            self.output_name, value, merged.count,
            details={"mean_before_clamp": mean} if self.config.mode == "torchmetrics" else {},
            row_scores=merged.row_scores(self.output_name),
        )
