"""Image-text-to-text models (BLIP, BLIP-2, LLaVA, Idefics, ...), shared by ``caption`` and
``answer``: loading through transformers' Auto classes, and prompts built with the
processor's chat template."""

from __future__ import annotations

from typing import Any

from .generation import GenerationConfig, generate_kwargs, strip_prompt
from .model import ModelOperator


def load_image_text_model(op: ModelOperator[Any], path: str) -> tuple[Any, Any]:
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


def generate_texts(op: ModelOperator[Any], n: int, **processor_kwargs: Any) -> list[str]:
    """``op.processor(**processor_kwargs)`` -> ``op.model.generate`` with the step's generation
    keys -> the ``n`` decoded texts, without the prompt that decoder-only models echo. The
    list arguments are the rows; they run in the largest sub-batches that fit the device."""
    cfg: GenerationConfig = op.config

    def run(start: int, stop: int) -> list[str]:
        kwargs = {k: v[start:stop] if isinstance(v, list) else v for k, v in processor_kwargs.items()}
        inputs = op.processor(**kwargs, return_tensors="pt").to(op.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(op.model_dtype)
        with op.on_device():
            out = op.model.generate(**inputs, **generate_kwargs(cfg))
        out = strip_prompt(out, inputs.get("input_ids"))
        return [t.strip() for t in op.processor.batch_decode(out, skip_special_tokens=True)]

    return op.fitted(n, run)
