"""answer: visual question answering with BLIP VQA, LLaVA-style chat VLMs and multi-image models."""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.files import PathAccessKeys
from mmbatch.core.requirements import Requirements

from .base import register
from .generation import GenerationConfig
from .image import DecodeImageConfig, read_image
from .image_text import chat_prompt, generate_texts, load_image_text_model
from .model import ModelOperator
from .vllm_backend import BackendKeys, VllmEngine, is_vllm, vllm_requirements


class AnswerConfig(GenerationConfig, PathAccessKeys, BackendKeys):
    image: str = Field(
        "pixels",
        description="per row one image (HxWx3 pixels from decode_image) or several: an (N, H, W, 3) "
        "array (decode_video frames) or a list of encoded images / paths (decoded here)",
    )
    question: str | None = Field(
        None, description="the question for every row; {column} fields are filled from the row"
    )
    question_column: str = Field("question", description="column of questions, used when question is unset")
    image_token: str = Field(
        "<image>", description="in a question: where each of the row's images goes (default: all first)"
    )
    output: str = Field("answer", description="output text column")


def template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def row_images(value: Any, allowed_roots: list[str] | None = None) -> list[Any]:
    """One row's images as PIL images: one HxWx3 array, an (N, H, W, 3) array, or a list of
    arrays / encoded bytes / paths. A missing image is an error."""
    from PIL import Image

    if isinstance(value, np.ndarray):
        value = [value] if value.ndim == 3 else list(value)
    if not value:
        raise ValueError("the row has no images")
    limits = DecodeImageConfig()
    images = []
    for k, item in enumerate(value):
        if item is None:
            raise ValueError(f"image {k} of the row is missing (null)")
        if not isinstance(item, np.ndarray):
            item = read_image(item, None, limits.max_pixels, limits.storage_options, allowed_roots=allowed_roots)[0]
        images.append(Image.fromarray(np.asarray(item, dtype=np.uint8)))
    return images


@register("answer")
class Answer(ModelOperator[AnswerConfig]):
    """Answer a question about each row's image(s).

    Models: BLIP VQA (``AutoModelForVisualQuestionAnswering``) and image-text-to-text chat
    models (LLaVA, Idefics2/3, ... through ``load_image_text_model``): the question is the
    user turn of the processor's chat template, batched with left padding, answers without the
    prompt. Rows may hold several images (Idefics2-style models), placed at ``image_token``
    markers in the question. BLIP VQA rows are batched by question length: transformers'
    ``BlipForQuestionAnswering.generate`` ignores the question padding mask, so padded rows
    would get other answers than the same row alone.

    Inputs: ``image``; ``question_column`` or the fields of the ``question`` template.
    Output: ``output`` (string). An empty question, a missing image or a wrong number of
    markers is an error row. Resources: 1 actor, 1 CPU by default; set ``resources.gpus``.
    ``backend: vllm`` (chat-template models vLLM serves): one vLLM engine per worker gets the
    same prompts and images; a request vLLM refuses (prompt over the context, too many
    images) is an error row (see :mod:`mmbatch.operators.vllm_backend`).
    """

    default_batch_size = 16

    def inputs(self) -> dict[str, str]:
        cfg = self.config
        cols = {cfg.image: "image(s)"}
        if cfg.question is None:
            cols[cfg.question_column] = "question text"
        else:
            cols |= {f: "question template field" for f in template_fields(cfg.question)}
        return cols

    def outputs(self) -> dict[str, str]:
        return {self.config.output: "generated answer"}

    def requirements(self) -> Requirements:
        return vllm_requirements(self.requires) if is_vllm(self) else self.requires

    def load(self, path: str) -> None:
        from transformers import AutoConfig, AutoModelForVisualQuestionAnswering, AutoProcessor

        if is_vllm(self):
            self.processor = self.load_processor(AutoProcessor, path)
            self.chat = getattr(self.processor, "chat_template", None) is not None
            self.by_length = False
            self.engine = VllmEngine.load(self, path)
            return
        config = self.load_processor(AutoConfig, path)
        if any(a.endswith("ForQuestionAnswering") for a in config.architectures or []):
            self.model = self.load_model(AutoModelForVisualQuestionAnswering, path)
            self.processor = self.load_processor(AutoProcessor, path)
        else:
            self.model, self.processor = load_image_text_model(self, path)
        self.chat = getattr(self.processor, "chat_template", None) is not None
        self.by_length = self.model.config.model_type == "blip"

    def question(self, batch: dict[str, Column], i: int) -> str:
        cfg = self.config
        if cfg.question is None:
            text = str(batch[cfg.question_column][i])
        else:
            text = cfg.question.format(**{f: batch[f][i] for f in template_fields(cfg.question)})
        if not text.strip():
            raise ValueError("empty question")
        return text

    def generate(self, images: list[list[Any]], prompts: list[str]) -> list[str]:
        return generate_texts(
            self, len(prompts), text=prompts, padding=True, images=images if self.chat else [im[0] for im in images]
        )

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config
        n = len(batch[cfg.image])
        errors: list[str | None] = [None] * n
        rows: dict[int, tuple[list[Any], str]] = {}
        for i in range(n):
            try:
                images, text = row_images(batch[cfg.image][i], cfg.allowed_roots), self.question(batch, i)
                if not self.chat and len(images) != 1:
                    raise ValueError(f"this model takes one image per question, the row has {len(images)}")
                rows[i] = (images, chat_prompt(self.processor, text, len(images), cfg.image_token) or text)
            except ValueError as exc:
                errors[i] = f"{type(exc).__name__}: {exc}"
        answers: list[str | None] = [None] * n
        if is_vllm(self):
            idx = list(rows)
            outs, failed = self.engine.generate([rows[i][1] for i in idx], [rows[i][0] for i in idx])
            for i, out, error in zip(idx, outs, failed, strict=True):
                answers[i], errors[i] = out, error
            return {cfg.output: answers, "error": errors}
        groups: dict[int, list[int]] = {}
        for i, (_, prompt) in rows.items():
            key = len(self.processor.tokenizer(prompt)["input_ids"]) if self.by_length else 0
            groups.setdefault(key, []).append(i)
        for idx in groups.values():
            texts = self.generate([rows[i][0] for i in idx], [rows[i][1] for i in idx])
            for i, text in zip(idx, texts, strict=True):
                answers[i] = text
        return {cfg.output: answers, "error": errors}
