"""Generation options shared by every step that calls ``model.generate``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .model import ModelConfig


class GenerationConfig(ModelConfig):
    max_new_tokens: int | None = Field(30, ge=1, description="None: the model's own limit")
    min_new_tokens: int | None = Field(None, ge=1, description="generate at least this many tokens")
    num_beams: int = Field(1, ge=1)
    do_sample: bool = False
    temperature: float | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int | None = Field(None, description="seed set before each batch when sampling")


def generate_kwargs(cfg: GenerationConfig) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "num_beams": cfg.num_beams,
        "do_sample": cfg.do_sample,
    }
    for key in ("min_new_tokens", "temperature", "top_p", "repetition_penalty"):
        value = getattr(cfg, key)
        if value is not None:
            kw[key] = value
    if cfg.do_sample and cfg.seed is not None:
        import torch

        torch.manual_seed(cfg.seed)
    return kw


def strip_prompt(sequences: Any, input_ids: Any | None) -> Any:
    """Drop the prompt tokens that decoder-only models echo at the start of each output."""
    if input_ids is None or sequences.shape[1] < input_ids.shape[1]:
        return sequences
    n = input_ids.shape[1]
    if bool((sequences[:, :n] == input_ids.to(sequences.device)).all()):
        return sequences[:, n:]
    return sequences
