"""One model-loading path for every operator.

A model is named by a hub id, a local folder, or an object-store URL (``s3://``,
``gs://``, ... any fsspec protocol). URLs are copied once per node into a local cache
(``$MMBATCH_CACHE``, default ``~/.cache/mmbatch``) under a file lock, so concurrent
actors on one node download once. Weights load from safetensors only unless the job
sets ``allow_pickle: true``; ``trust_remote_code`` stays off unless the job sets it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .base import OpConfig, Operator

LOCAL_PROTOCOLS = {"", "file", "local"}


class ModelConfig(OpConfig):
    """Keys shared by every model step."""

    model: str = Field(description="hub id, local folder, or object-store URL (s3://, gs://, ...)")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: the checkpoint's dtype on GPU, float32 on CPU"
    )
    allow_pickle: bool = Field(False, description="allow .bin/.pt (pickle) weights; default safetensors only")
    trust_remote_code: bool = False
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for an object-store model URL"
    )
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per worker (default: the step's cpus, at least 1)"
    )


def cache_root() -> Path:
    return Path(os.environ.get("MMBATCH_CACHE", Path.home() / ".cache" / "mmbatch"))


def _protocol(path: str) -> str:
    return path.split("://", 1)[0] if "://" in path else ""


def resolve_local_path(path_or_url: str, storage_options: dict[str, Any] | None = None) -> str:
    """A local path for ``path_or_url``: local paths and hub ids are returned as given;
    object-store URLs (file or folder) are copied once per node into the cache."""
    protocol = _protocol(path_or_url)
    if protocol in LOCAL_PROTOCOLS:
        return path_or_url.split("://", 1)[-1]
    import fsspec
    from filelock import FileLock

    key = hashlib.sha256(path_or_url.encode()).hexdigest()[:16]
    name = path_or_url.rstrip("/").rsplit("/", 1)[-1] or "model"
    target = cache_root() / "models" / f"{key}-{name}"
    done = target.parent / f"{target.name}.complete"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f"{target.name}.lock")):
        if not done.exists():
            fs, remote = fsspec.core.url_to_fs(path_or_url, **(storage_options or {}))
            if not fs.exists(remote):
                raise FileNotFoundError(f"model not found: {path_or_url}")
            if fs.isdir(remote):
                fs.get(remote.rstrip("/") + "/", str(target), recursive=True)
            else:
                fs.get(remote, str(target))
            done.touch()
    return str(target)


def torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return "auto" if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


class ModelOperator(Operator):
    """An operator backed by a transformers/diffusers model; owns device, dtype and threads."""

    Config = ModelConfig
    default_batch_size = 16
    requires = ("torch", "transformers")
    extra = "vision"

    def __init__(self, config: ModelConfig, resources=None, label: str = "") -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, resources, label)
        self.device = "cpu"

    def setup(self) -> None:
        import torch

        cfg: ModelConfig = self.config  # type: ignore[assignment]
        torch.set_num_threads(cfg.threads or max(1, int(round(self.resources.cpus))))
        self.device = "cuda" if self.resources.gpus > 0 and torch.cuda.is_available() else "cpu"
        self.load(resolve_local_path(cfg.model, cfg.storage_options))

    def load(self, path: str) -> None:
        """Load model and processor from ``path`` (a local folder or a hub id)."""
        raise NotImplementedError

    def pretrained_kwargs(self) -> dict[str, Any]:
        cfg: ModelConfig = self.config  # type: ignore[assignment]
        kw: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
        if cfg.revision:
            kw["revision"] = cfg.revision
        return kw

    def from_pretrained(self, cls: Any, path: str, dtype: Any = None, **extra: Any) -> Any:
        """``cls.from_pretrained`` (transformers or diffusers) under the job's loading policy:
        ``dtype`` (default: the step's), safetensors only unless ``allow_pickle``, revision and
        ``trust_remote_code``; moved to this worker's device."""
        cfg: ModelConfig = self.config  # type: ignore[assignment]
        kw = self.pretrained_kwargs() | {"dtype": torch_dtype(cfg.dtype, self.device) if dtype is None else dtype}
        if not cfg.allow_pickle:
            kw["use_safetensors"] = True
        try:
            loaded = cls.from_pretrained(path, **(kw | extra))
        except OSError as exc:
            if not cfg.allow_pickle and "safetensors" in str(exc).lower():
                raise OSError(
                    f"{path}: no safetensors weights found; if you trust this checkpoint, "
                    f"set allow_pickle: true on the step ({exc})"
                ) from exc
            raise
        return loaded.to(self.device)

    def load_model(self, auto_cls: Any, path: str, **extra: Any) -> Any:
        """A transformers model through :meth:`from_pretrained`, in eval mode."""
        return self.from_pretrained(auto_cls, path, **extra).eval()

    def load_processor(self, auto_cls: Any, path: str, **extra: Any) -> Any:
        return auto_cls.from_pretrained(path, **self.pretrained_kwargs(), **extra)

    @property
    def model_dtype(self) -> Any:
        return next(self.model.parameters()).dtype  # type: ignore[attr-defined]
