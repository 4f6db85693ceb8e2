"""generate: text-to-image with diffusers (Stable Diffusion 1.x/2.x, SDXL, ControlNet)."""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import pyarrow as pa
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.models import check_model_ref, torch_dtype
from mmbatch.core.requirements import Requirements

from .base import register
from .model import ModelConfig, ModelOperator


class GenerateConfig(ModelConfig):
    prompt: str = Field("prompt", description="prompt column")
    negative_prompt: str | None = Field(None, description="column of negative prompts (null or empty: none)")
    seed: str = Field("seed", description="integer seed column; rows without one get derived_seed(id)")
    id_column: str = Field("id", description="row id: derived seeds and the names of saved files")
    base_seed: int = Field(0, description="mixed into the seeds derived from row ids")
    output: str = Field("image", description="PNG column; also <output>_width/_height/_seed/_nsfw")
    guidance_scale: float = Field(7.5, ge=0)
    num_inference_steps: int = Field(50, ge=1)
    height: int | None = Field(None, ge=8, multiple_of=8, description="default: the model's (512 for SD 1.5)")
    width: int | None = Field(None, ge=8, multiple_of=8, description="default: the model's")
    scheduler: str | None = Field(
        None, pattern=r"^[A-Za-z0-9]+Scheduler$",
        description="diffusers scheduler class, e.g. DPMSolverMultistepScheduler, from the model's scheduler config",
    )
    controlnet: str | None = Field(None, description="ControlNet model: hub id, local folder or URL")
    control_image: str = Field("canny", description="conditioning pixel column (with controlnet)")
    controlnet_conditioning_scale: float = Field(1.0, ge=0)
    attention_slicing: bool = Field(False, description="compute attention in slices: less memory, slower")
    vae_tiling: bool = Field(False, description="decode latents in tiles: large sizes in less memory")
    batch_invariant: bool = Field(
        False, description="one row at a time: images bit-identical whatever the batch (slower on GPU)"
    )
    save_dir: str | None = Field(
        None, description="also write <save_dir>/<id>.png (any fsspec URL; storage_options apply)"
    )


def derived_seed(row_id: Any, base_seed: int = 0) -> int:
    """The seed of a row without one: the first 63 bits of sha256("<base_seed>:<id>")."""
    digest = hashlib.sha256(f"{base_seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def file_name(row_id: Any) -> str:
    """``<id>.png`` with characters other than letters, digits, ``.``, ``_``, ``-`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(row_id)) + ".png"


@register("generate")
class Generate(ModelOperator[GenerateConfig]):
    """Generate one image per row from its prompt.

    The pipeline comes from ``AutoPipelineForText2Image`` (``StableDiffusionPipeline``, SDXL, ...;
    with ``controlnet``: the matching ControlNet pipeline, conditioned on ``control_image``).
    Every row has its own ``torch.Generator`` (on the CPU, seeded from ``seed``, else from
    :func:`derived_seed` of the row id), so a row's image does not depend on the other rows of
    its batch or on the worker (exactly so with ``batch_invariant``; otherwise up to the float
    rounding of batched kernels).

    Inputs: ``prompt``; optional ``negative_prompt``, ``seed``, ``id_column``; ``control_image``
    (pixels) with ``controlnet``. Outputs: ``output`` (PNG bytes), ``<output>_width``,
    ``<output>_height``, ``<output>_seed``, ``<output>_nsfw`` (the safety checker's flag, null
    without one). An empty prompt is an error row; so is a row that does not fit in memory.
    Resources: 1 actor, 1 CPU by default; give it ``resources.gpus`` (fp16 under ``dtype: auto``).
    """

    default_batch_size = 4
    requires = Requirements(("torch", "diffusers", "transformers"), "diffusion")

    def inputs(self) -> dict[str, str]:
        cfg = self.config
        cols = {cfg.prompt: "text prompt"}
        if cfg.controlnet:
            cols[cfg.control_image] = "ControlNet conditioning pixels"
        if cfg.save_dir:
            cols[cfg.id_column] = "row id (file name)"
        return cols

    def optional_inputs(self) -> dict[str, str]:
        cfg = self.config
        cols = {cfg.seed: "integer seed", cfg.id_column: "row id (derived seed)"}
        if cfg.negative_prompt:
            cols[cfg.negative_prompt] = "negative prompt"
        return cols

    def outputs(self) -> dict[str, str]:
        o = self.config.output
        return {
            o: "generated image, PNG bytes",
            f"{o}_width": "width in pixels",
            f"{o}_height": "height in pixels",
            f"{o}_seed": "the seed the image was generated with",
            f"{o}_nsfw": "safety checker flag (null without a checker)",
        }

    def output_types(self) -> dict[str, pa.DataType]:
        o = self.config.output
        return {o: pa.binary(), f"{o}_width": pa.int64(), f"{o}_height": pa.int64(),
                f"{o}_seed": pa.int64(), f"{o}_nsfw": pa.bool_()}  # fmt: skip

    def preflight(self) -> None:
        super().preflight()
        if self.config.controlnet:
            check_model_ref(self.config.controlnet, self.config.storage_options, "controlnet")

    def load_diffusers(self, cls: Any, path: str, **extra: Any) -> Any:
        """``cls.from_pretrained`` under the job's loading policy (as ``load_model``): dtype
        (``auto``: float16 on GPU, float32 on CPU), safetensors only unless ``allow_pickle``."""
        import torch

        dtype = torch_dtype(self.config.dtype, self.device)
        return self.from_pretrained(cls, path, dtype=torch.float16 if dtype == "auto" else dtype, **extra)

    def load(self, path: str) -> None:
        import diffusers

        cfg = self.config
        extra = {}
        if cfg.controlnet:
            extra["controlnet"] = self.load_diffusers(
                diffusers.ControlNetModel, self.policy.local(cfg.controlnet), revision=None
            )
        self.pipe = self.load_diffusers(diffusers.AutoPipelineForText2Image, path, **extra)
        if cfg.scheduler:
            scheduler_cls = getattr(diffusers, cfg.scheduler, None)
            if scheduler_cls is None or not issubclass(scheduler_cls, diffusers.SchedulerMixin):
                raise ValueError(f"scheduler: diffusers has no scheduler class {cfg.scheduler!r}")
            self.pipe.scheduler = scheduler_cls.from_config(self.pipe.scheduler.config)
        if cfg.attention_slicing:
            self.pipe.enable_attention_slicing()
        if cfg.vae_tiling:
            self.pipe.vae.enable_tiling()
        self.pipe.set_progress_bar_config(disable=True)

    def seeds(self, batch: dict[str, Column]) -> list[int | None]:
        cfg = self.config
        n = len(batch[cfg.prompt])
        given = batch.get(cfg.seed, [None] * n)
        ids = batch.get(cfg.id_column, [None] * n)
        return [
            int(s) if s is not None else (derived_seed(i, cfg.base_seed) if i is not None else None)
            for s, i in zip(given, ids, strict=True)
        ]

    def run(self, batch: dict[str, Column], rows: list[int], seeds: list[int]) -> Any:
        import torch
        from PIL import Image

        cfg = self.config
        kw: dict[str, Any] = {
            "prompt": [batch[cfg.prompt][i] for i in rows],
            "guidance_scale": cfg.guidance_scale,
            "num_inference_steps": cfg.num_inference_steps,
            "height": cfg.height,
            "width": cfg.width,
            "generator": [torch.Generator("cpu").manual_seed(seeds[i]) for i in rows],
        }
        if cfg.negative_prompt:
            if cfg.negative_prompt not in batch:
                raise KeyError(f"negative_prompt column '{cfg.negative_prompt}' is not in the input")
            kw["negative_prompt"] = [batch[cfg.negative_prompt][i] or "" for i in rows]
        if cfg.controlnet:
            kw["image"] = [Image.fromarray(batch[cfg.control_image][i]) for i in rows]
            kw["controlnet_conditioning_scale"] = cfg.controlnet_conditioning_scale
        try:
            # one call at a time: the engine runs two calls per GPU actor, and a pipeline's
            # scheduler keeps per-call state (step index, past model outputs)
            with self.on_device():
                return self.pipe(**kw)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not isinstance(exc, torch.OutOfMemoryError) and "alloc" not in str(exc).lower():
                raise
            if self.device == "cuda":
                torch.cuda.empty_cache()
            size = f"{cfg.width or 'default'}x{cfg.height or 'default'}"
            raise MemoryError(
                f"out of memory generating {len(rows)} image(s) of {size} on {self.device}: lower "
                "batch_size or height/width, set attention_slicing: true and vae_tiling: true, "
                f"or give the step more memory ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config
        o = cfg.output
        seeds = self.seeds(batch)
        errors: list[str | None] = [None] * len(seeds)
        for i, (prompt, seed) in enumerate(zip(batch[cfg.prompt], seeds, strict=True)):
            if not str(prompt).strip():
                errors[i] = "empty prompt"
            elif seed is None:
                errors[i] = f"no '{cfg.seed}' value and no '{cfg.id_column}' to derive a seed from"
        good = [i for i, e in enumerate(errors) if e is None]
        out: dict[str, list[Any]] = {c: [None] * len(seeds) for c in self.outputs()}
        groups = [[i] for i in good] if cfg.batch_invariant else [good]
        for rows in filter(None, groups):
            result = self.run(batch, rows, [s or 0 for s in seeds])  # rows in ``good`` have a seed
            flags = getattr(result, "nsfw_content_detected", None) or [None] * len(rows)
            for i, image, flag in zip(rows, result.images, flags, strict=True):
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                out[o][i] = buf.getvalue()
                out[f"{o}_width"][i], out[f"{o}_height"][i] = image.size
                out[f"{o}_seed"][i], out[f"{o}_nsfw"][i] = seeds[i], flag
        if cfg.save_dir and good:
            import fsspec

            fs, root = fsspec.core.url_to_fs(cfg.save_dir, **cfg.storage_options)
            fs.makedirs(root, exist_ok=True)
            for i in good:
                fs.pipe_file(f"{root.rstrip('/')}/{file_name(batch[cfg.id_column][i])}", out[o][i])
        return out | {"error": errors}
