"""The base of every model step: device, dtype and threads of its worker, and loading
under the job's policy (:mod:`mmbatch.core.models`: hub id, local folder or object-store
URL; safetensors only unless ``allow_pickle``; ``trust_remote_code`` only when set)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field

from mmbatch.core.models import LoadKeys, torch_dtype
from mmbatch.core.requirements import Requirements
from mmbatch.core.resources import Resources

from .base import OpConfig, Operator


class ModelConfig(OpConfig, LoadKeys):
    """Keys shared by every model step."""

    model: str = Field(description="hub id, local folder, or object-store URL (s3://, gs://, ...)")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: the checkpoint's dtype on GPU, float32 on CPU"
    )
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per worker (default: the step's cpus, at least 1)"
    )


MC = TypeVar("MC", bound=ModelConfig)


class ModelOperator(Operator[MC]):
    """An operator backed by a transformers/diffusers model; owns device, dtype and threads.

    Subclasses implement :meth:`load` (called by ``setup`` with a local path or hub id) and
    set ``self.model``."""

    default_batch_size = 16
    requires: ClassVar[Requirements] = Requirements(("torch", "transformers"), "vision")
    model: Any
    processor: Any

    def __init__(self, config: MC, resources: Resources | None = None, label: str = "") -> None:
        super().__init__(config, resources, label)
        self.device = "cpu"
        self.policy = config.policy()

    def setup(self) -> None:
        import torch

        torch.set_num_threads(self.config.threads or self.resources.threads)
        self.device = "cuda" if self.resources.gpus > 0 and torch.cuda.is_available() else "cpu"
        self.load(self.policy.local(self.config.model))

    def load(self, path: str) -> None:
        """Load model and processor from ``path`` (a local folder or a hub id)."""
        raise NotImplementedError

    def from_pretrained(self, cls: Any, path: str, dtype: Any = None, **extra: Any) -> Any:
        """``cls.from_pretrained`` (transformers or diffusers) under the job's loading policy,
        in ``dtype`` (default: the step's), on this worker's device."""
        dtype = torch_dtype(self.config.dtype, self.device) if dtype is None else dtype
        return self.policy.from_pretrained(cls, path, dtype=dtype, device=self.device, **extra)

    def load_model(self, auto_cls: Any, path: str, **extra: Any) -> Any:
        """A transformers model through :meth:`from_pretrained`, in eval mode."""
        return self.from_pretrained(auto_cls, path, **extra).eval()

    def load_processor(self, auto_cls: Any, path: str, **extra: Any) -> Any:
        return self.policy.processor(auto_cls, path, **extra)

    @property
    def model_dtype(self) -> Any:
        return next(self.model.parameters()).dtype
