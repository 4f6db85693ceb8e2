"""classify: image classification (ViT-style heads) or CLIP zero-shot against job labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from mmbatch.core.models import pooled

from .base import register
from .labels import Classifier, LabelConfig, label_names


class ClassifyConfig(LabelConfig):
    image: str = Field("pixels", description="pixel column from decode_image")
    labels: list[str] | None = Field(
        None, description="zero-shot: candidate labels scored by a CLIP-style model"
    )
    template: str = Field("a photo of a {}.", description="zero-shot prompt; {} is the label")


@register("classify")
class Classify(Classifier[ClassifyConfig]):
    """Top-k image labels.

    Without ``labels``: ``AutoModelForImageClassification`` (ViT, ConvNeXt, ...) and its
    softmax over ``id2label``. With ``labels``: zero-shot with a CLIP-style ``AutoModel``
    (softmax of ``logit_scale * cos(image, template.format(label))``); the label texts are
    embedded once per worker. Input: ``image`` (pixels). Outputs: ``output`` (string),
    ``<output>_topk`` (list<string>), ``<output>_scores`` (list<float32>).
    """

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

        cfg = self.config
        if cfg.labels:
            self.model = self.load_model(AutoModel, path)
            self.processor = self.load_processor(AutoProcessor, path)
            prompts = [cfg.template.format(label) for label in cfg.labels]
            text = self.processor(text=prompts, padding=True, return_tensors="pt")
            with torch.inference_mode():
                emb = pooled(self.model.get_text_features(**{k: v.to(self.device) for k, v in text.items()}))
            self.text_embeds = torch.nn.functional.normalize(emb.float(), dim=-1)
            self.label_names = list(cfg.labels)
        else:
            self.model = self.load_model(AutoModelForImageClassification, path)
            self.processor = self.load_processor(AutoImageProcessor, path)
            self.label_names = label_names(self.model.config)

    def probabilities(self, images: list[np.ndarray]) -> Any:
        import torch

        cfg = self.config
        inputs = self.processor(images=images, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.model_dtype)
        with torch.inference_mode():
            if cfg.labels:
                img = pooled(self.model.get_image_features(pixel_values=pixel_values))
                img = torch.nn.functional.normalize(img.float(), dim=-1)
                logits = self.model.logit_scale.exp().float() * img @ self.text_embeds.T
            else:
                logits = self.model(pixel_values=pixel_values).logits.float()
        return logits.softmax(dim=-1).cpu()

    def process(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        cfg = self.config
        return self.label_columns(self.probabilities(batch[cfg.image]))
