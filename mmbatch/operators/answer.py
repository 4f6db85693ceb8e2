"""answer: visual question answering with BLIP VQA, LLaVA-style chat VLMs and multi-image models."""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from pydantic import Field

from mmbatch.core.columns import Column, scatter
from mmbatch.core.files import PathAccessKeys
from mmbatch.core.requirements import Requirements

from .base import register
from .generation import GenerationConfig
from .image import DecodeImageConfig, read_image
from .image_text import (
    PreprocessKeys,
    chat_prompt,
    check_splittable,
    generate_prepared,
    generate_texts,
    load_image_text_model,
    prepare_inputs,
)
from .model import ModelOperator
from .vllm_backend import BackendKeys, VllmEngine, is_vllm, vllm_requirements

Row = tuple[list[Any], str]
"""One row's images and its prompt (the question in the chat template, if any)."""


class AnswerConfig(GenerationConfig, PathAccessKeys, PreprocessKeys, BackendKeys):
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
    prompt. Rows may hold several images (Idefics2-style models, ``preprocess: worker``),
    placed at ``image_token`` markers in the question. BLIP VQA rows are batched by question
    length: transformers' ``BlipForQuestionAnswering.generate`` ignores the question padding
    mask, so padded rows would get other answers than the same row alone.

    ``preprocess: tasks`` (default): images are read, questions built and the processor run
    (pixel values, prompt token ids) in parallel CPU tasks before the model worker, which only
    pads the prompts and runs ``generate``; one image per row. ``preprocess: worker``: all of it
    in the model worker, for several images per row or processors whose outputs are not one
    fixed-shape array per image (Idefics2).

    Inputs: ``image``; ``question_column`` or the fields of the ``question`` template.
    Output: ``output`` (string). An empty question, a missing image or a wrong number of
    markers is an error row. Resources: 1 actor, 1 CPU by default; set ``resources.gpus``.
    ``backend: vllm`` (chat-template models vLLM serves): one vLLM engine per worker gets the
    same prompts and images; a request vLLM refuses (prompt over the context, too many
    images) is an error row (see :mod:`mmbatch.operators.vllm_backend`).
    """

    default_batch_size = 16
    gpu_batch_size = 256

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

    def prepared(self) -> dict[str, str]:
        if self.config.preprocess != "tasks" or is_vllm(self):
            return {}
        return {
            self.column("pixel_values"): "the processor's pixel_values of the row's image",
            self.column("input_ids"): "the prompt's token ids (not padded)",
        }

    def load_processors(self, path: str) -> None:
        from transformers import AutoConfig, AutoProcessor

        config = self.load_processor(AutoConfig, path)
        self.vqa = any(a.endswith("ForQuestionAnswering") for a in config.architectures or [])
        self.by_length = config.model_type == "blip"
        self.processor = self.load_processor(AutoProcessor, path)
        self.chat = getattr(self.processor, "chat_template", None) is not None

    def setup_prepare(self) -> None:
        super().setup_prepare()
        check_splittable(self, self.prompt("What is it?", 1))

    def load(self, path: str) -> None:
        from transformers import AutoModelForVisualQuestionAnswering

        self.load_processors(path)
        if is_vllm(self):  # vLLM runs the processor itself; the processor here builds the prompts
            self.by_length = False
            self.engine = VllmEngine.load(self, path)
            return
        if self.vqa:
            self.model = self.load_model(AutoModelForVisualQuestionAnswering, path)
        else:  # the processor again, its tokenizer padding on the left for decoder-only models
            self.model, self.processor = load_image_text_model(self, path)

    def question(self, batch: dict[str, Column], i: int) -> str:
        cfg = self.config
        if cfg.question is None:
            text = str(batch[cfg.question_column][i])
        else:
            text = cfg.question.format(**{f: batch[f][i] for f in template_fields(cfg.question)})
        if not text.strip():
            raise ValueError("empty question")
        return text

    def prompt(self, text: str, n_images: int) -> str:
        """The question as the model reads it: in the chat template with the images, if any."""
        return chat_prompt(self.processor, text, n_images, self.config.image_token) or text

    def rows(self, batch: dict[str, Column]) -> tuple[dict[int, Row], list[str | None]]:
        """Each row's images and prompt, and the errors of the rows that have none."""
        cfg = self.config
        n = len(batch[cfg.image])
        errors: list[str | None] = [None] * n
        rows: dict[int, Row] = {}
        for i in range(n):
            try:
                images, text = row_images(batch[cfg.image][i], cfg.allowed_roots), self.question(batch, i)
                if not self.chat and len(images) != 1:
                    raise ValueError(f"this model takes one image per question, the row has {len(images)}")
                prompt = self.prompt(text, len(images))
                if self.prepared() and len(images) != 1:
                    raise ValueError(
                        f"the row has {len(images)} images and the prepare tasks take one image per row; "
                        "set preprocess: worker on this step"
                    )
                rows[i] = (images, prompt)
            except ValueError as exc:
                errors[i] = f"{type(exc).__name__}: {exc}"
        return rows, errors

    def answer(
        self, n: int, rows: Iterable[int], length: Callable[[int], int], generate: Callable[[list[int]], list[str]]
    ) -> list[str | None]:
        """``generate`` on groups of ``rows`` -> ``n`` answers (None for rows not given): one
        group, or for BLIP VQA one per prompt ``length`` (its generate ignores padding)."""
        groups: dict[int, list[int]] = {}
        for i in rows:
            groups.setdefault(length(i) if self.by_length else 0, []).append(i)
        answers: list[str | None] = [None] * n
        for idx in groups.values():
            for i, text in zip(idx, generate(idx), strict=True):
                answers[i] = text
        return answers

    def prepare(self, batch: dict[str, Column]) -> dict[str, Any]:
        rows, errors = self.rows(batch)
        n, good = len(errors), list(rows)
        pixels: Column = [None] * n
        ids: list[Any] = [None] * n
        if good:
            enc = prepare_inputs(self, [rows[i][0][0] for i in good], [rows[i][1] for i in good])
            pixels = np.zeros((n, *enc["pixel_values"].shape[1:]), enc["pixel_values"].dtype)
            pixels[good] = enc["pixel_values"]  # the error rows' zeros become nulls
            ids = scatter(enc["input_ids"], good, n)
        return {self.column("pixel_values"): pixels, self.column("input_ids"): ids, "error": errors}

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config
        if self.prepared():
            pixels, ids = batch[self.column("pixel_values")], list(batch[self.column("input_ids")])
            assert isinstance(pixels, np.ndarray)
            return {cfg.output: self.answer(
                len(ids), range(len(ids)), lambda i: len(ids[i]),
                lambda idx: generate_prepared(self, pixels[idx], [ids[i] for i in idx]),
            )}  # fmt: skip
        rows, errors = self.rows(batch)
        if is_vllm(self):
            answers: list[str | None] = [None] * len(errors)
            idx = list(rows)
            outs, failed = self.engine.generate([rows[i][1] for i in idx], [rows[i][0] for i in idx])
            for i, out, error in zip(idx, outs, failed, strict=True):
                answers[i], errors[i] = out, error
            return {cfg.output: answers, "error": errors}

        def generate(idx: list[int]) -> list[str]:
            images, prompts = [rows[i][0] for i in idx], [rows[i][1] for i in idx]
            return generate_texts(
                self, len(idx), text=prompts, padding=True, images=images if self.chat else [im[0] for im in images]
            )

        tokens = self.processor.tokenizer
        answers = self.answer(len(errors), rows, lambda i: len(tokens(rows[i][1])["input_ids"]), generate)
        return {cfg.output: answers, "error": errors}
