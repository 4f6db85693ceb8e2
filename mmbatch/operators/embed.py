"""embed: CLIP-style image and/or text embeddings, L2-normalised float32."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from mmbatch.core.models import pooled

from .base import register
from .model import ModelConfig, ModelOperator


class EmbedConfig(ModelConfig):
    image: str | None = Field("pixels", description="pixel column from decode_image; null to skip images")
    text: str | None = Field(None, description="string column to embed as text")
    image_output: str = "image_embedding"
    text_output: str = "text_embedding"
    normalize: bool = Field(True, description="L2-normalise the embeddings")

    @model_validator(mode="after")
    def _needs_input(self) -> EmbedConfig:
        if self.image is None and self.text is None:
            raise ValueError("embed needs an image column, a text column, or both")
        return self


def to_numpy(t: Any, normalize: bool) -> np.ndarray:
    import torch

    t = t.float()
    if normalize:
        t = torch.nn.functional.normalize(t, dim=-1)
    return t.cpu().numpy().astype(np.float32)


@register("embed")
class Embed(ModelOperator[EmbedConfig]):
    """Image and/or text embeddings from any model with ``get_image_features`` /
    ``get_text_features`` (CLIP, SigLIP, ...), loaded with ``AutoModel``/``AutoProcessor``.

    Inputs: ``image`` (pixels) and/or ``text``. Outputs: ``image_output`` /
    ``text_output`` as list<float32>. Resources: 1 actor, 1 CPU by default; set
    ``resources.gpus`` to run on GPUs.
    """

    default_batch_size = 32

    def inputs(self) -> dict[str, str]:
        cfg = self.config
        cols = {}
        if cfg.image:
            cols[cfg.image] = "RGB pixels"
        if cfg.text:
            cols[cfg.text] = "text"
        return cols

    def outputs(self) -> dict[str, str]:
        cfg = self.config
        cols = {}
        if cfg.image:
            cols[cfg.image_output] = "image embedding, list<float32>"
        if cfg.text:
            cols[cfg.text_output] = "text embedding, list<float32>"
        return cols

    def load(self, path: str) -> None:
        from transformers import AutoModel, AutoProcessor

        self.model = self.load_model(AutoModel, path)
        self.processor = self.load_processor(AutoProcessor, path)

    def embed_images(self, images: list[np.ndarray]) -> Any:
        import torch

        inputs = self.processor(images=images, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.model_dtype)
        with torch.inference_mode():
            return pooled(self.model.get_image_features(pixel_values=pixel_values))

    def embed_texts(self, texts: list[str]) -> Any:
        import torch

        inputs = self.processor(text=texts, padding=True, truncation=True, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            return pooled(self.model.get_text_features(**inputs))

    def process(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        cfg = self.config
        out: dict[str, Any] = {}
        if cfg.image:
            out[cfg.image_output] = to_numpy(self.embed_images(batch[cfg.image]), cfg.normalize)
        if cfg.text:
            out[cfg.text_output] = to_numpy(self.embed_texts(batch[cfg.text]), cfg.normalize)
        return out
