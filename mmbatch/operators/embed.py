"""embed: CLIP-style image and/or text embeddings, L2-normalised float32."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from mmbatch.core.columns import Column
from mmbatch.core.models import pooled

from .base import register
from .model import ModelConfig, ModelOperator
from .pixels import DeviceDecodeKeys, decode_batch, device_pixel_values


class EmbedConfig(ModelConfig, DeviceDecodeKeys):
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
    ``text_output`` as ``fixed_size_list<float32>[d]``. The processor (resize, crop,
    normalise, tokenise) runs in a prepare stage of CPU tasks; the workers only run the
    model. Resources: 1 actor, 1 CPU by default; set ``resources.gpus`` to run on GPUs.
    """

    default_batch_size = 32
    gpu_batch_size = 256

    def inputs(self) -> dict[str, str]:
        cfg = self.config
        cols = {}
        if cfg.image:
            cols[cfg.image] = "encoded image bytes" if cfg.decode_on_device else "RGB pixels"
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

    def media_inputs(self) -> set[str]:
        return {self.config.image} if self.config.image and self.config.decode_on_device else set()

    def prepared_from(self) -> set[str]:
        return {c for c in self.inputs() if not (c == self.config.image and self.config.decode_on_device)}

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
            out[cfg.image_output], out["error"] = self.embed_encoded(batch[cfg.image])
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

    def embed_encoded(self, encoded: Column) -> tuple[np.ndarray, list[str | None]]:
        """Embeddings of encoded images decoded and preprocessed on this worker's device, in
        the largest sub-batches that fit it; rows that cannot be decoded get an error and a
        zero row (masked as null)."""

        def run(start: int, stop: int) -> list[tuple[list[str | None], np.ndarray | None]]:
            images, errors = decode_batch(encoded[start:stop], self.device, self.config.max_pixels,
                                          self.config.allowed_roots)
            good = [images[i] for i, e in enumerate(errors) if e is None]
            if not good:
                return [(errors, None)]
            with self.on_device():
                pixels = device_pixel_values(self.processor.image_processor, good, self.device)
                features = self.model.get_image_features(pixel_values=pixels.to(self.model_dtype))
                return [(errors, to_numpy(pooled(features), self.config.normalize))]

        parts = self.fitted(len(encoded), run)
        errors = [e for part_errors, _ in parts for e in part_errors]
        embeddings = [emb for _, emb in parts if emb is not None]
        if not embeddings:
            return np.zeros((len(errors), 0), np.float32), errors
        out = np.zeros((len(errors), embeddings[0].shape[1]), np.float32)
        out[[i for i, e in enumerate(errors) if e is None]] = np.concatenate(embeddings)
        return out, errors
