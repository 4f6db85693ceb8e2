"""Image-text-to-text models (BLIP, BLIP-2, LLaVA, Idefics, ...), shared by ``caption`` and
``answer``: loading through transformers' Auto classes, and prompts built with the
processor's chat template."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from .generation import GenerationConfig, generate_kwargs, strip_prompt
from .model import ModelOperator

# What a processor may return for the prepare stage to split it into rows: one fixed-shape
# pixel array per image, and token ids per row (re-padded in the worker).
SPLITTABLE = frozenset({"pixel_values", "input_ids", "attention_mask"})


class PreprocessKeys(BaseModel):
    """Where an image-text step runs its processor."""

    preprocess: Literal["tasks", "worker"] = Field(
        "tasks",
        description="tasks: the processor (resize, normalise, prompt tokens) runs in parallel CPU tasks "
        "before the model worker, which only runs generate; worker: in the model worker, for processors "
        "whose outputs are not one fixed-shape array per image (Qwen2-VL, LLaVA-NeXT tiling, Idefics2) "
        "and for answer rows with several images",
    )


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


def generate_inputs(op: ModelOperator[Any], inputs: Any) -> list[str]:
    """``op.model.generate`` on model inputs already on the device -> the decoded texts,
    without the prompt that decoder-only models echo."""
    cfg: GenerationConfig = op.config
    with op.on_device():
        out = op.model.generate(**inputs, **generate_kwargs(cfg))
    out = strip_prompt(out, inputs.get("input_ids"))
    return [t.strip() for t in op.processor.batch_decode(out, skip_special_tokens=True)]


def generate_texts(op: ModelOperator[Any], n: int, **processor_kwargs: Any) -> list[str]:
    """``op.processor(**processor_kwargs)`` -> ``op.model.generate`` with the step's generation
    keys -> the ``n`` decoded texts. The list arguments are the rows; they run in the
    largest sub-batches that fit the device."""

    def run(start: int, stop: int) -> list[str]:
        kwargs = {k: v[start:stop] if isinstance(v, list) else v for k, v in processor_kwargs.items()}
        inputs = op.processor(**kwargs, return_tensors="pt").to(op.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(op.model_dtype)
        return generate_inputs(op, inputs)

    return op.fitted(n, run)


def check_splittable(op: ModelOperator[Any], prompt: str | None) -> None:
    """Refuse, before any row, a processor whose outputs the prepare stage cannot split into
    rows (tried on one blank image)."""
    try:
        enc = op.processor(images=[np.zeros((32, 32, 3), np.uint8)], text=None if prompt is None else [prompt],
                           return_tensors="np")
    except Exception as exc:  # noqa: BLE001 - any failure means: not this way
        problem = f"fails on a flat list of images ({type(exc).__name__}: {exc})"
    else:
        extra = sorted(set(enc) - SPLITTABLE)
        if extra:
            problem = f"also returns {', '.join(extra)}"
        elif "pixel_values" not in enc or np.asarray(enc["pixel_values"]).shape[0] != 1:
            problem = "does not return one pixel array per image"
        else:
            return
    raise ValueError(
        f"{op.label}: the processor of {op.config.model} ({type(op.processor).__name__}) {problem}, so it "
        "cannot run in the prepare tasks; set preprocess: worker on this step"
    )


def prepare_inputs(op: ModelOperator[Any], images: list[Any], prompts: list[str] | None) -> dict[str, Any]:
    """The processor in a CPU task: ``pixel_values`` as one ``(n, ...)`` array in the step's
    transfer dtype, and each row's prompt token ids without padding."""
    enc = op.processor(images=images, text=prompts, return_tensors="np", **({"padding": True} if prompts else {}))
    out: dict[str, Any] = {"pixel_values": np.asarray(enc["pixel_values"]).astype(op.transfer_dtype, copy=False)}
    if prompts is not None:
        mask = np.asarray(enc["attention_mask"]).astype(bool)
        out["input_ids"] = [row[keep] for row, keep in zip(np.asarray(enc["input_ids"]), mask, strict=True)]
    return out


def generate_prepared(op: ModelOperator[Any], pixels: np.ndarray, input_ids: list[Any] | None) -> list[str]:
    """``generate`` on prepared rows: the pixels copied to the device as they are, the
    prompt ids padded as the processor pads them; in the largest sub-batches that fit."""

    def run(start: int, stop: int) -> list[str]:
        inputs: dict[str, Any] = {"pixel_values": op.tensor(pixels[start:stop], op.model_dtype)}
        if input_ids is not None:
            rows = [np.asarray(r).tolist() for r in input_ids[start:stop]]
            padded = op.processor.tokenizer.pad({"input_ids": rows}, return_tensors="pt")
            inputs |= {k: v.to(op.device) for k, v in padded.items()}
        return generate_inputs(op, inputs)

    return op.fitted(len(pixels), run)
