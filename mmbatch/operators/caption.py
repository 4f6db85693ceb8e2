"""caption: image captioning with BLIP, BLIP-2, LLaVA-style and other image-text-to-text models."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from mmbatch.core.columns import Column
from mmbatch.core.requirements import Requirements

from .base import register
from .generation import GenerationConfig
from .image_prep import plain_processor_class
from .image_text import (
    PreprocessKeys,
    chat_prompt,
    check_splittable,
    generate_inputs,
    generate_prepared,
    generate_texts,
    load_image_text_model,
    prepare_inputs,
)
from .model import ModelOperator
from .pixels import DeviceDecodeKeys, processor_inputs
from .vllm_backend import BackendKeys, VllmEngine, is_vllm, vllm_requirements


class CaptionConfig(GenerationConfig, PreprocessKeys, BackendKeys, DeviceDecodeKeys):
    image: str = Field("pixels", description="pixel column from decode_image (with decode_on_device: "
                       "the column of encoded image bytes)")
    output: str = Field("caption", description="output text column")
    prompt: str | None = Field(
        None,
        description="text prompt: BLIP conditional prefix, or the user turn of a chat-template model",
    )

    @model_validator(mode="after")
    def _device_decode_runs_transformers(self) -> CaptionConfig:
        if self.decode_on_device and self.backend == "vllm":
            raise ValueError("decode_on_device runs the processor in the worker; vLLM runs its own: "
                             "decode the images with a decode_image step instead")
        return self


@register("caption")
class Caption(ModelOperator[CaptionConfig]):
    """Caption images with greedy/beam/sampled generation.

    Input: ``image`` (pixels). Output: ``output`` (string). Model: any checkpoint served by
    ``AutoModelForImageTextToText`` with its ``AutoProcessor``; chat-template models get
    ``prompt`` as the user turn and their answer without the prompt. The processor runs in
    parallel CPU tasks (``preprocess: tasks``), the worker only runs ``generate``; with
    ``decode_on_device`` the worker decodes the encoded images and runs the processor on
    its device.
    ``backend: vllm``: one vLLM engine per worker gets the same prompt and the images (vLLM
    runs the processor; see :mod:`mmbatch.operators.vllm_backend`).
    """

    default_batch_size = 16
    gpu_batch_size = 256

    def inputs(self) -> dict[str, str]:
        return {self.config.image: self.config.image_input()}

    def outputs(self) -> dict[str, str]:
        return {self.config.output: "generated caption"}

    def requirements(self) -> Requirements:
        return vllm_requirements(self.requires) if is_vllm(self) else self.requires

    def prepared(self) -> dict[str, str]:
        if self.config.preprocess != "tasks" or is_vllm(self) or self.config.decode_on_device:
            return {}
        cols = {self.column("pixel_values"): "the processor's pixel_values per image"}
        if self.config.prompt is not None:
            cols[self.column("input_ids")] = "the prompt's token ids (not padded)"
        return cols

    def load_processors(self, path: str) -> None:
        from transformers import AutoProcessor

        self.processor = self.load_processor(AutoProcessor, path)
        self.prompt = chat_prompt(self.processor, self.config.prompt)

    def prepares_pixels_only(self, path: str) -> bool:
        # BLIP's processor without a prompt or chat template gives pixel_values alone;
        # others may build a prompt (image tokens, a template) even then
        return self.config.prompt is None and plain_processor_class(path) == "BlipProcessor"

    def setup_prepare(self) -> None:
        super().setup_prepare()
        if self.image_prep is None:
            check_splittable(self, self.prompt)

    def load(self, path: str) -> None:
        if is_vllm(self):
            self.load_processors(path)
            self.engine = VllmEngine.load(self, path)
            return
        self.model, self.processor = load_image_text_model(self, path)
        self.prompt = chat_prompt(self.processor, self.config.prompt)

    def prepare(self, batch: dict[str, Column]) -> dict[str, Any]:
        if self.image_prep is not None:
            return {self.column("pixel_values"): self.pixel_values(batch[self.config.image])}
        images = list(batch[self.config.image])
        prepared = prepare_inputs(self, images, None if self.prompt is None else [self.prompt] * len(images))
        return {self.column(k): v for k, v in prepared.items()}

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        if is_vllm(self):
            from PIL import Image

            images = [[Image.fromarray(np.asarray(x, dtype=np.uint8))] for x in batch[self.config.image]]
            texts, errors = self.engine.generate([self.prompt or ""] * len(images), images)
            return {self.config.output: texts, "error": errors}
        if self.device_decoded():
            texts, errors = self.on_encoded(batch[self.config.image], self.caption_images)
            return {self.config.output: texts, "error": errors}
        if self.prepared():
            pixels = batch[self.column("pixel_values")]
            assert isinstance(pixels, np.ndarray)
            ids = batch.get(self.column("input_ids"))
            return {self.config.output: generate_prepared(self, pixels, None if ids is None else list(ids))}
        images = list(batch[self.config.image])
        kwargs: dict[str, Any] = {"images": images}
        if self.prompt is not None:
            kwargs |= {"text": [self.prompt] * len(images), "padding": True}
        return {self.config.output: generate_texts(self, len(images), **kwargs)}

    def caption_images(self, images: list[Any]) -> list[str]:
        """Captions of images decoded on the device (:meth:`on_encoded`), the processor run there."""
        text: dict[str, Any] = {} if self.prompt is None else {"text": [self.prompt] * len(images), "padding": True}
        inputs = processor_inputs(self.processor, images, self.device, **text)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model_dtype)
        return generate_inputs(self, inputs)
