"""caption: image captioning with BLIP, BLIP-2, LLaVA-style and other image-text-to-text models."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mmbatch.core.columns import Column

from .base import register
from .generation import GenerationConfig
from .image_text import chat_prompt, generate_texts, load_image_text_model
from .model import ModelOperator


class CaptionConfig(GenerationConfig):
    image: str = Field("pixels", description="pixel column from decode_image")
    output: str = Field("caption", description="output text column")
    prompt: str | None = Field(
        None,
        description="text prompt: BLIP conditional prefix, or the user turn of a chat-template model",
    )


@register("caption")
class Caption(ModelOperator[CaptionConfig]):
    """Caption images with greedy/beam/sampled generation.

    Input: ``image`` (pixels). Output: ``output`` (string). Model: any checkpoint served by
    ``AutoModelForImageTextToText`` with its ``AutoProcessor``; chat-template models get
    ``prompt`` as the user turn and their answer without the prompt.
    """

    default_batch_size = 16

    def inputs(self) -> dict[str, str]:
        return {self.config.image: "RGB pixels"}

    def outputs(self) -> dict[str, str]:
        return {self.config.output: "generated caption"}

    def load(self, path: str) -> None:
        self.model, self.processor = load_image_text_model(self, path)
        self.prompt = chat_prompt(self.processor, self.config.prompt)

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        images = list(batch[self.config.image])
        kwargs: dict[str, Any] = {"images": images}
        if self.prompt is not None:
            kwargs |= {"text": [self.prompt] * len(images), "padding": True}
        return {self.config.output: generate_texts(self, len(images), **kwargs)}
