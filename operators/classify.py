"""classify: image classification (ViT-style heads) or CLIP zero-shot against job labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from .embed import features
from .models import ModelConfig, ModelOperator
from .registry import register


def topk_columns(probs: Any, label_names: list[str], output: str, k: int) -> dict[str, Any]:
    """Rows of class probabilities (torch, [n, classes]) -> the three label columns shared by
    every classifier: ``output`` (top-1), ``<output>_topk`` and ``<output>_scores``."""
    import torch

    k = min(k, probs.shape[-1])
    scores, idx = torch.topk(probs.float().cpu(), k, dim=-1)
    topk = [[label_names[j] for j in row] for row in idx.tolist()]
    return {
        output: [t[0] for t in topk],
        f"{output}_topk": topk,
        f"{output}_scores": list(scores.numpy().astype(np.float32)),
    }


class LabelOutputs:
    """The outputs of every classifier: ``<output>`` (top-1 label), ``<output>_topk``
    (list<string>) and ``<output>_scores`` (list<float32>)."""

    config: Any

    def outputs(self) -> dict[str, str]:
        o = self.config.output
        return {o: "top-1 label", f"{o}_topk": "top-k labels", f"{o}_scores": "top-k probabilities"}

    def output_types(self) -> dict[str, pa.DataType]:
        o = self.config.output
        return {o: pa.string(), f"{o}_topk": pa.list_(pa.string()), f"{o}_scores": pa.list_(pa.float32())}


class ClassifyConfig(ModelConfig):
    image: str = Field("pixels", description="pixel column from decode_image")
    output: str = Field("label", description="top-1 label column; also <output>_topk and <output>_scores")
    top_k: int = Field(5, ge=1)
    labels: list[str] | None = Field(
        None, description="zero-shot: candidate labels scored by a CLIP-style model"
    )
    template: str = Field("a photo of a {}.", description="zero-shot prompt; {} is the label")


@register("classify")
class Classify(LabelOutputs, ModelOperator):
    """Top-k image labels.

    Without ``labels``: ``AutoModelForImageClassification`` (ViT, ConvNeXt, ...) and its
    softmax over ``id2label``. With ``labels``: zero-shot with a CLIP-style ``AutoModel``
    (softmax of ``logit_scale * cos(image, template.format(label))``); the label texts are
    embedded once per worker. Input: ``image`` (pixels). Outputs: ``output`` (string),
    ``<output>_topk`` (list<string>), ``<output>_scores`` (list<float32>).
    """

    Config = ClassifyConfig
    default_batch_size = 32

    def inputs(self) -> dict[str, str]:
        return {self.config.image: "RGB pixels"}

    def load(self, path: str) -> None:
        import torch
        from transformers import (
            AutoImageProcessor,
            AutoModel,
            AutoModelForImageClassification,
            AutoProcessor,
        )

        cfg: ClassifyConfig = self.config  # type: ignore[assignment]
        if cfg.labels:
            self.model = self.load_model(AutoModel, path)
            self.processor = self.load_processor(AutoProcessor, path)
            prompts = [cfg.template.format(label) for label in cfg.labels]
            text = self.processor(text=prompts, padding=True, return_tensors="pt")
            with torch.inference_mode():
                emb = features(self.model.get_text_features(**{k: v.to(self.device) for k, v in text.items()}))
            self.text_embeds = torch.nn.functional.normalize(emb.float(), dim=-1)
            self.label_names = list(cfg.labels)
        else:
            self.model = self.load_model(AutoModelForImageClassification, path)
            self.processor = self.load_processor(AutoImageProcessor, path)
            id2label = self.model.config.id2label
            self.label_names = [id2label[i] for i in range(len(id2label))]

    def probabilities(self, images: list[np.ndarray]) -> Any:
        import torch

        cfg: ClassifyConfig = self.config  # type: ignore[assignment]
        inputs = self.processor(images=images, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.model_dtype)
        with torch.inference_mode():
            if cfg.labels:
                img = features(self.model.get_image_features(pixel_values=pixel_values))
                img = torch.nn.functional.normalize(img.float(), dim=-1)
                logits = self.model.logit_scale.exp().float() * img @ self.text_embeds.T
            else:
                logits = self.model(pixel_values=pixel_values).logits.float()
        return logits.softmax(dim=-1).cpu()

    def process(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        cfg: ClassifyConfig = self.config  # type: ignore[assignment]
        return topk_columns(self.probabilities(batch[cfg.image]), self.label_names, cfg.output, cfg.top_k)
