"""``backend: vllm`` for ``caption`` and ``answer``: the worker holds one ``vllm.LLM`` and
hands it the batch's prompts with their images (``multi_modal_data``); vLLM runs the
processor, schedules the requests (continuous batching, paged KV cache) and detokenizes.

The prompts are the ones the transformers backend builds (``chat_prompt``: the processor's
chat template), so both backends see the same text. vLLM is imported only in the worker
(``pip install 'mmbatch[vllm]'``; it pins its own torch, so it is not part of ``all``).

Generation keys map onto ``SamplingParams``: greedy is ``temperature=0``; ``do_sample``
uses ``temperature``/``top_p`` (default 1) with a seed per row derived from the step's
``seed``, the row's prompt and its pixels, so a row gets the same sample in any batch;
``max_new_tokens``, ``min_new_tokens``, ``repetition_penalty`` carry over. vLLM does no beam
search: ``num_beams`` must stay 1.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from mmbatch.core.models import torch_dtype
from mmbatch.core.requirements import Requirements

from .generation import GenerationConfig
from .model import ModelOperator

# On CPU vLLM's gpu_memory_utilization is a fraction of the machine's RAM: reserve a fixed
# KV cache there instead.
CPU_KV_CACHE_BYTES = 1 << 30
VLLM_ONLY = ("tensor_parallel_size", "max_model_len", "max_images", "kv_cache_bytes")


class BackendKeys(BaseModel):
    """The model runtime of an image-text generation step."""

    backend: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="transformers: model.generate on the step's batches; vllm: one vLLM engine per worker "
        "(pip install 'mmbatch[vllm]'), fed the batch's prompts and images",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one model is split over (= resources.gpus)")
    max_model_len: int | None = Field(None, ge=1, description="vllm: context length, prompt + answer (default: the model's)")
    max_images: int = Field(1, ge=1, description="vllm: images per prompt the engine makes room for")
    kv_cache_bytes: int | None = Field(
        None, ge=1, description="vllm: KV cache size (default: the gpus fraction of the GPU's memory; 1 GiB on CPU)"
    )

    @model_validator(mode="after")
    def _check_backend(self) -> BackendKeys:
        if self.backend != "vllm":
            given = sorted(k for k in VLLM_ONLY if k in self.model_fields_set)
            if given:
                raise ValueError(f"{', '.join(given)}: only with backend: vllm")
            return self
        if getattr(self, "num_beams", 1) != 1:
            raise ValueError("backend: vllm does no beam search (num_beams must be 1)")
        if "preprocess" in self.model_fields_set and getattr(self, "preprocess", None) == "tasks":
            raise ValueError("backend: vllm runs the processor inside vLLM; preprocess: tasks does not apply")
        return self


def is_vllm(op: ModelOperator[Any]) -> bool:
    return getattr(op.config, "backend", "transformers") == "vllm"


def vllm_requirements(base: Requirements) -> Requirements:
    """``base`` (torch, transformers for the processor's chat template) plus vLLM."""
    return base.with_modules("vllm", extra="vllm")


def row_seed(seed: int, prompt: str, images: list[Any]) -> int:
    """A sampling seed for one row: the step's ``seed``, the prompt and the images' pixels."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(seed).encode())
    h.update(prompt.encode())
    for im in images:
        h.update(f"{im.mode}{im.size}".encode())
        h.update(im.tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


def sampling_kwargs(cfg: GenerationConfig) -> dict[str, Any]:
    """``SamplingParams`` keys from the step's generation keys (without the per-row seed)."""
    kw: dict[str, Any] = {"max_tokens": cfg.max_new_tokens, "min_tokens": cfg.min_new_tokens or 0}
    if cfg.repetition_penalty is not None:
        kw["repetition_penalty"] = cfg.repetition_penalty
    if cfg.do_sample:
        kw |= {"temperature": cfg.temperature or 1.0, "top_p": cfg.top_p or 1.0}
    else:
        kw["temperature"] = 0.0
    return kw


def engine_kwargs(op: ModelOperator[Any], path: str) -> dict[str, Any]:
    """``vllm.LLM`` arguments for this step on this worker's device."""
    cfg = op.config
    dtype = torch_dtype(cfg.dtype, op.device)
    kw: dict[str, Any] = {
        "model": path,
        "tokenizer": path,
        "dtype": dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch."),
        "trust_remote_code": cfg.trust_remote_code,
        "load_format": "auto" if cfg.allow_pickle else "safetensors",
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "max_model_len": cfg.max_model_len,
        "limit_mm_per_prompt": {"image": cfg.max_images},
        "seed": 0,
    }
    if cfg.revision:
        kw["revision"] = kw["tokenizer_revision"] = cfg.revision
    gpus = op.resources.gpus
    if op.device == "cpu":
        kw["kv_cache_memory_bytes"] = cfg.kv_cache_bytes or CPU_KV_CACHE_BYTES
        kw["enforce_eager"] = True  # no torch.compile warm-up on CPU
    elif cfg.kv_cache_bytes is not None:
        kw["kv_cache_memory_bytes"] = cfg.kv_cache_bytes
    elif 0 < gpus < 1:
        kw["gpu_memory_utilization"] = gpus  # a fractional GPU: the share this actor reserved
    return kw


def _counter(request_id: str) -> str:
    """``LLM``'s own request number: ``enqueue`` returns it with the engine's random suffix
    (``"14-1a2b3c4d"``), the outputs carry it without (``"14"``)."""
    return request_id.split("-", 1)[0]


class VllmEngine:
    """One ``vllm.LLM`` serving a worker of an image-text step, with that step's sampling."""

    def __init__(self, op: ModelOperator[Any], llm: Any) -> None:
        self.op, self.llm = op, llm
        self.sampling = sampling_kwargs(op.config)

    @classmethod
    def load(cls, op: ModelOperator[Any], path: str) -> VllmEngine:
        """Start vLLM on this worker's device for ``op`` (the model at ``path``)."""
        cfg = op.config
        if op.device != "cpu" and cfg.tensor_parallel_size > max(1, int(op.resources.gpus)):
            raise ValueError(
                f"tensor_parallel_size {cfg.tensor_parallel_size} needs resources.gpus >= "
                f"{cfg.tensor_parallel_size} (the actor reserves {op.resources.gpus})"
            )
        from vllm import LLM

        return cls(op, LLM(**engine_kwargs(op, path)))

    def params(self, prompt: str, images: list[Any]) -> Any:
        from vllm import SamplingParams

        cfg = self.op.config
        seed = row_seed(cfg.seed, prompt, images) if cfg.do_sample and cfg.seed is not None else None
        return SamplingParams(**self.sampling, seed=seed)

    def generate(self, prompts: list[str], images: list[list[Any]]) -> tuple[list[str | None], list[str | None]]:
        """Texts and per-row errors (None where the row succeeded): a request vLLM refuses
        (a prompt over the context, an image its processor rejects, too many images) is that
        row's error; the other rows run as one batch."""
        n = len(prompts)
        texts: list[str | None] = [None] * n
        errors: list[str | None] = [None] * n
        rows: dict[str, int] = {}
        with self.op.on_device():
            for i, (prompt, ims) in enumerate(zip(prompts, images, strict=True)):
                request = {"prompt": prompt, "multi_modal_data": {"image": ims if len(ims) > 1 else ims[0]}}
                try:
                    (rid,) = self.llm.enqueue(request, self.params(prompt, ims), use_tqdm=False)
                except Exception as exc:  # noqa: BLE001 - this request only
                    errors[i] = f"{type(exc).__name__}: {exc}"
                    continue
                rows[_counter(rid)] = i
            outputs = self.llm.wait_for_completion(use_tqdm=False) if rows else []
        for out in outputs:
            i = rows.pop(_counter(out.request_id))
            done = out.outputs[0]
            if done.finish_reason in ("abort", "error"):
                errors[i] = f"RuntimeError: vLLM finished the request with '{done.finish_reason}'"
            else:
                texts[i] = done.text.strip()
        for i in rows.values():
            errors[i] = "RuntimeError: vLLM returned no output for the request"
        return texts, errors
