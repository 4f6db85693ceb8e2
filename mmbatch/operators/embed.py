"""embed: CLIP-style image and/or text embeddings, L2-normalised float32."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from mmbatch.core.columns import Column
from mmbatch.core.models import pooled

from .base import register
from .model import ModelConfig, ModelOperator
from .pixels import DeviceDecodeKeys


class EmbedConfig(ModelConfig, DeviceDecodeKeys):
    image: str | None = Field("pixels", description="pixel column from decode_image (with decode_on_device: "
                              "encoded image bytes); null to skip images")
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

    Inputs: ``image`` (pixels, or encoded bytes) and/or ``text``. Outputs: ``image_output``
    / ``text_output`` as ``fixed_size_list<float32>[d]``. The processor (resize, crop,
    normalise, tokenise) runs in a prepare stage of CPU tasks; the workers only run the
    model (with ``decode_on_device``, they decode and preprocess the images on their
    device). Resources: 1 actor, 1 CPU by default; set ``resources.gpus`` to run on GPUs.
    """

    default_batch_size = 32
    gpu_batch_size = 256

    def inputs(self) -> dict[str, str]:
        cfg = self.config
        cols = {}
        if cfg.image:
            cols[cfg.image] = cfg.image_input()
        if cfg.text:
            cols[cfg.text] = "text"
        return cols

    def outputs(self) -> dict[str, str]:
        cfg = self.config
        cols = {}
        if cfg.image:
            cols[cfg.image_output] = "image embedding, fixed_size_list<float32>[d]"
        if cfg.text:
            cols[cfg.text_output] = "text embedding, fixed_size_list<float32>[d]"
        return cols

    def prepared(self) -> dict[str, str]:
        cfg, cols = self.config, {}
        if cfg.image and not cfg.decode_on_device:
            cols[self.column("pixel_values")] = "the processor's pixel_values, (3, H, W) per row"
        if cfg.text:
            cols[self.column("input_ids")] = "token ids (truncated, not padded)"
        return cols

    def prepares_pixels_only(self, path: str) -> bool:
        return self.config.text is None

    def load_processors(self, path: str) -> None:
        from transformers import AutoProcessor

        self.processor = self.load_processor(AutoProcessor, path)

    def load(self, path: str) -> None:
        from transformers import AutoModel

        self.model = self.load_model(AutoModel, path)
        self.load_processors(path)

    def prepare(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg, out = self.config, dict[str, Any]()
        if cfg.image and not cfg.decode_on_device:
            out[self.column("pixel_values")] = self.pixel_values(batch[cfg.image])
        if cfg.text:
            ids = self.processor.tokenizer(list(batch[cfg.text]), truncation=True)["input_ids"]
            out[self.column("input_ids")] = [np.asarray(i, dtype=np.int64) for i in ids]
        return out

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config
        out: dict[str, Any] = {}
        if cfg.image and cfg.decode_on_device:
            rows, out["error"] = self.on_encoded(batch[cfg.image], self.image_embeddings)
            out[cfg.image_output] = stacked(rows)
        elif cfg.image:
            pixels = batch[self.column("pixel_values")]
            assert isinstance(pixels, np.ndarray)
            out[cfg.image_output] = np.concatenate(self.on_pixels(
                pixels, lambda values: to_numpy(pooled(self.model.get_image_features(pixel_values=values)), cfg.normalize)
            ))
        if cfg.text:
            ids = [np.asarray(i).tolist() for i in batch[self.column("input_ids")]]
            padded = self.processor.tokenizer.pad({"input_ids": ids}, return_tensors="np")
            with self.on_device():
                features = self.model.get_text_features(**{k: self.tensor(v) for k, v in padded.items()})
                out[cfg.text_output] = to_numpy(pooled(features), cfg.normalize)
        return out

    def image_embeddings(self, images: list[Any]) -> np.ndarray:
        """Embeddings of images decoded on the device (:meth:`on_encoded`), preprocessed there."""
        with self.on_device():
            features = self.model.get_image_features(pixel_values=self.device_pixels(images))
            return to_numpy(pooled(features), self.config.normalize)


def stacked(rows: list[np.ndarray | None]) -> np.ndarray:
    """Rows of one embedding each as one ``(n, d)`` array; a failed row (None) is zeros (its
    output is masked as null)."""
    dims = {r.shape for r in rows if r is not None}
    if not dims:
        return np.zeros((len(rows), 0), np.float32)
    zeros = np.zeros(dims.pop(), np.float32)
    return np.stack([zeros if r is None else r for r in rows])
