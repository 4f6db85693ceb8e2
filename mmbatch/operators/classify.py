"""classify: image classification (ViT-style heads) or CLIP zero-shot against job labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.models import pooled

from .base import register
from .labels import Classifier, LabelConfig, label_names
from .pixels import DeviceDecodeKeys


class ClassifyConfig(LabelConfig, DeviceDecodeKeys):
    image: str = Field("pixels", description="pixel column from decode_image (with decode_on_device: "
                       "the column of encoded image bytes)")
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
    embedded once per worker. The image processor runs in a prepare stage of CPU tasks, or
    with ``decode_on_device`` on the worker's device. Input: ``image`` (pixels, or encoded
    bytes). Outputs: ``output`` (string), ``<output>_topk``
    (list<string>), ``<output>_scores`` (list<float32>).
    """

    default_batch_size = 32
    gpu_batch_size = 256

    def inputs(self) -> dict[str, str]:
        return {self.config.image: self.config.image_input()}

    def prepared(self) -> dict[str, str]:
        if self.config.decode_on_device:
            return {}
        return {self.column("pixel_values"): "the processor's pixel_values, (3, H, W) per row"}

    def prepares_pixels_only(self, path: str) -> bool:
        return True

    def load_processors(self, path: str) -> None:
        from transformers import AutoImageProcessor, AutoProcessor

        self.processor = self.load_processor(AutoProcessor if self.config.labels else AutoImageProcessor, path)

    def load(self, path: str) -> None:
        import torch
        from transformers import AutoModel, AutoModelForImageClassification

        cfg = self.config
        self.load_processors(path)
        if cfg.labels:
            self.model = self.load_model(AutoModel, path)
            prompts = [cfg.template.format(label) for label in cfg.labels]
            text = self.processor(text=prompts, padding=True, return_tensors="pt")
            with torch.inference_mode():
                emb = pooled(self.model.get_text_features(**{k: v.to(self.device) for k, v in text.items()}))
            self.text_embeds = torch.nn.functional.normalize(emb.float(), dim=-1)
            self.label_names = list(cfg.labels)
        else:
            self.model = self.load_model(AutoModelForImageClassification, path)
            self.label_names = label_names(self.model.config)

    def prepare(self, batch: dict[str, Column]) -> dict[str, Any]:
        return {self.column("pixel_values"): self.pixel_values(batch[self.config.image])}

    def class_probabilities(self, values: Any) -> Any:
        """Class probabilities of ``pixel_values`` on the device (under its lock)."""
        import torch

        if self.config.labels:
            img = pooled(self.model.get_image_features(pixel_values=values))
            img = torch.nn.functional.normalize(img.float(), dim=-1)
            logits = self.model.logit_scale.exp().float() * img @ self.text_embeds.T
        else:
            logits = self.model(pixel_values=values).logits.float()
        return logits.softmax(dim=-1).cpu()

    def decoded_probabilities(self, images: list[Any]) -> Any:
        """Class probabilities of images decoded on the device (:meth:`on_encoded`)."""
        with self.on_device():
            return self.class_probabilities(self.device_pixels(images))

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        import torch

        if self.device_decoded():
            rows, errors = self.on_encoded(batch[self.config.image], self.decoded_probabilities)
            none = torch.zeros(len(self.label_names))  # a failed row's output is masked as null
            return self.label_columns(torch.stack([none if r is None else r for r in rows])) | {"error": errors}
        pixels = batch[self.column("pixel_values")]
        assert isinstance(pixels, np.ndarray)
        return self.label_columns(torch.cat(self.on_pixels(pixels, self.class_probabilities)))
