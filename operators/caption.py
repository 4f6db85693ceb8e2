"""caption: image captioning with BLIP, BLIP-2, LLaVA-style and other image-text-to-text models."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .generation import GenerationConfig, generate_kwargs, strip_prompt
from .models import ModelOperator
from .registry import register


class CaptionConfig(GenerationConfig):
    image: str = Field("pixels", description="pixel column from decode_image")
    output: str = Field("caption", description="output text column")
    prompt: str | None = Field(
        None,
        description="text prompt: BLIP conditional prefix, or the user turn of a chat-template model",
    )


def load_image_text_model(op: ModelOperator, path: str) -> tuple[Any, Any]:
    """Model + processor through transformers' image-text-to-text Auto class (BLIP, BLIP-2,
    LLaVA, ...), falling back to vision-to-sequence where a release still routes it there."""
    import transformers
    from transformers import AutoProcessor

    errors = []
    for name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq"):
        auto_cls = getattr(transformers, name, None)
        if auto_cls is None:
            continue
        try:
            model = op.load_model(auto_cls, path)
            break
        except ValueError as exc:  # architecture not mapped by this Auto class
            errors.append(f"{name}: {exc}")
    else:
        raise ValueError(f"no image-text-to-text model class for {path}: {'; '.join(errors)}")
    processor = op.load_processor(AutoProcessor, path)
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None and not model.config.is_encoder_decoder and model.config.model_type != "blip":
        tokenizer.padding_side = "left"  # decoder-only: batched generation needs left padding
    return model, processor


def chat_prompt(processor: Any, text: str | None, n_images: int = 1, image_token: str | None = None) -> str | None:
    """The processor's chat template around ``text`` as the user turn, if it has one: the
    images where ``image_token`` stands in ``text`` (IDEFICS-style interleaving), else all
    ``n_images`` before the text."""
    if getattr(processor, "chat_template", None) is None:
        return text
    content: list[dict[str, Any]] = []
    if text and image_token and image_token in text:
        parts = text.split(image_token)
        if len(parts) - 1 != n_images:
            raise ValueError(f"the question has {len(parts) - 1} {image_token} markers for {n_images} images")
        for k, part in enumerate(parts):
            if k:
                content.append({"type": "image"})
            if part.strip():
                content.append({"type": "text", "text": part})
    else:
        content = [{"type": "image"} for _ in range(n_images)]
        if text:
            content.append({"type": "text", "text": text})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


@register("caption")
class Caption(ModelOperator):
    """Caption images with greedy/beam/sampled generation.

    Input: ``image`` (pixels). Output: ``output`` (string). Model: any checkpoint served by
    ``AutoModelForImageTextToText`` with its ``AutoProcessor``; chat-template models get
    ``prompt`` as the user turn and their answer without the prompt.
    """

    Config = CaptionConfig
    default_batch_size = 16

    def inputs(self) -> dict[str, str]:
        return {self.config.image: "RGB pixels"}

    def outputs(self) -> dict[str, str]:
        return {self.config.output: "generated caption"}

    def load(self, path: str) -> None:
        self.model, self.processor = load_image_text_model(self, path)
        self.prompt = chat_prompt(self.processor, self.config.prompt)

    def process(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        import torch

        cfg: CaptionConfig = self.config  # type: ignore[assignment]
        images = batch[cfg.image]
        kwargs: dict[str, Any] = {"images": images, "return_tensors": "pt"}
        if self.prompt is not None:
            kwargs["text"] = [self.prompt] * len(images)
            kwargs["padding"] = True
        inputs = self.processor(**kwargs).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model_dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **generate_kwargs(cfg))
        out = strip_prompt(out, inputs.get("input_ids"))
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return {cfg.output: [t.strip() for t in texts]}
