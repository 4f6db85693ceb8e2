"""One model-loading path for operators and metrics.

A model is named by a hub id, a local folder, or an object-store URL (``s3://``,
``gs://``, ... any fsspec protocol). URLs are copied once per node into a local cache
(``$MMBATCH_CACHE``, default ``~/.cache/mmbatch``) under a file lock, so concurrent
workers on one node download once. Weights load from safetensors only unless the job
sets ``allow_pickle: true``; ``trust_remote_code`` stays off unless the job sets it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

LOCAL_PROTOCOLS = {"", "file", "local"}


def cache_root() -> Path:
    return Path(os.environ.get("MMBATCH_CACHE", Path.home() / ".cache" / "mmbatch"))


def protocol(path: str) -> str:
    return path.split("://", 1)[0] if "://" in path else ""


def resolve_local_path(path_or_url: str, storage_options: dict[str, Any] | None = None) -> str:
    """A local path for ``path_or_url``: local paths and hub ids are returned as given;
    object-store URLs (file or folder) are copied once per node into the cache, with
    ``storage_options`` (endpoint, credentials, ...)."""
    if protocol(path_or_url) in LOCAL_PROTOCOLS:
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
    """``auto``: the checkpoint's dtype on a GPU, float32 on a CPU; else that torch dtype."""
    import torch

    if name == "auto":
        return "auto" if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def pooled(features: Any) -> Any:
    """The tensor of ``get_image_features`` / ``get_text_features``: transformers 5 returns
    a model output (its ``pooler_output``), 4.x returned the tensor itself."""
    return features.pooler_output if hasattr(features, "pooler_output") else features


@dataclass(frozen=True)
class LoadPolicy:
    """How a step or metric may load its weights (from its config keys)."""

    revision: str | None = None
    allow_pickle: bool = False
    trust_remote_code: bool = False
    storage_options: dict[str, Any] = field(default_factory=dict)

    def local(self, path_or_url: str) -> str:
        """``path_or_url`` as a local path (object-store URLs copied with this policy's options)."""
        return resolve_local_path(path_or_url, self.storage_options)

    def pretrained_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.revision:
            kw["revision"] = self.revision
        return kw

    def from_pretrained(self, cls: Any, path: str, *, dtype: Any = None, device: str = "cpu", **extra: Any) -> Any:
        """``cls.from_pretrained(path)`` (transformers or diffusers) under this policy:
        safetensors only unless ``allow_pickle``, revision and ``trust_remote_code``; in
        ``dtype`` when given; moved to ``device``."""
        kw = self.pretrained_kwargs()
        if dtype is not None:
            kw["dtype"] = dtype
        if not self.allow_pickle:
            kw["use_safetensors"] = True
        try:
            loaded = cls.from_pretrained(path, **(kw | extra))
        except OSError as exc:
            if not self.allow_pickle and "safetensors" in str(exc).lower():
                raise OSError(
                    f"{path}: no safetensors weights found; if you trust this checkpoint, "
                    f"set allow_pickle: true ({exc})"
                ) from exc
            raise
        return loaded.to(device) if hasattr(loaded, "to") else loaded

    def processor(self, cls: Any, path: str, **extra: Any) -> Any:
        """A processor / tokenizer / feature extractor (no weights) under this policy."""
        return cls.from_pretrained(path, **self.pretrained_kwargs(), **extra)

    def torch_state_dict(self, path: str) -> dict[str, Any]:
        """A raw state dict file: ``.safetensors``, or a pickle (``.pt``/``.pth``) read with
        ``weights_only=True`` (tensors and plain containers only, no code)."""
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return dict(load_file(path))
        import torch

        return dict(torch.load(path, map_location="cpu", weights_only=True))


class LoadKeys(BaseModel):
    """The job-file keys of every step or metric that loads weights: mixed into its config."""

    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    allow_pickle: bool = Field(False, description="allow .bin/.pt (pickle) weights; default safetensors only")
    trust_remote_code: bool = Field(False, description="run the model repository's own code (off by default)")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for object-store model URLs (endpoint_url, key, ...)"
    )

    def policy(self) -> LoadPolicy:
        return LoadPolicy(self.revision, self.allow_pickle, self.trust_remote_code, dict(self.storage_options))


def fingerprint(path_or_url: str, storage_options: dict[str, Any] | None = None, revision: str | None = None) -> str:
    """What identifies a model's weights: for a local folder or file and an object-store URL,
    a hash of every file's name and size (and the content of small files: configs,
    tokenizers); for a hub id, the id and revision."""
    if protocol(path_or_url) in LOCAL_PROTOCOLS:
        local = Path(path_or_url.split("://", 1)[-1]).expanduser()
        if not local.exists():
            return f"hub:{path_or_url}@{revision or 'main'}"
        files = sorted(p for p in ([local] if local.is_file() else local.rglob("*")) if p.is_file())
        h = hashlib.sha256()
        for f in files:
            size = f.stat().st_size
            h.update(f"{f.relative_to(local) if f != local else f.name}:{size}\n".encode())
            if size <= 1 << 20:
                h.update(f.read_bytes())
        return f"sha256:{h.hexdigest()[:16]}"
    import fsspec

    fs, remote = fsspec.core.url_to_fs(path_or_url, **(storage_options or {}))
    entries = fs.find(remote, detail=True) if fs.isdir(remote) else {remote: fs.info(remote)}
    h = hashlib.sha256()
    for name, info in sorted(entries.items()):
        h.update(f"{name}:{info.get('size')}:{info.get('ETag') or info.get('etag') or ''}\n".encode())
    return f"sha256:{h.hexdigest()[:16]}"


MODEL_FILES = ("config.json", "model_index.json", "model.bin", "model.safetensors", "preprocessor_config.json")
"""A folder holding one of these is a model folder (transformers, diffusers, CTranslate2)."""


_LOCAL_REFS: ContextVar[list[tuple[str, str]] | None] = ContextVar("mmbatch_local_model_refs", default=None)


@contextmanager
def collect_local_refs() -> Iterator[list[tuple[str, str]]]:
    """Within the block, every local path :func:`check_model_ref` accepts is appended to the
    list yielded, as (what, absolute path): the paths every node must see."""
    seen: list[tuple[str, str]] = []
    token = _LOCAL_REFS.set(seen)
    try:
        yield seen
    finally:
        _LOCAL_REFS.reset(token)


def check_model_ref(ref: str, storage_options: dict[str, Any] | None = None, what: str = "model") -> None:
    """Fail now, not in a worker after the data is read, when ``ref`` cannot be loaded: a
    local path that does not exist or holds no model, an object-store URL with nothing
    there, or (offline) a hub id that is not in the local cache. Raises ``ValueError``.
    A local path accepted is recorded for :func:`collect_local_refs`."""
    if protocol(ref) not in LOCAL_PROTOCOLS:
        import fsspec

        fs, remote = fsspec.core.url_to_fs(ref, **(storage_options or {}))
        if not fs.exists(remote):
            raise ValueError(f"{what} {ref}: nothing there")
        return
    local = Path(ref.split("://", 1)[-1]).expanduser()
    looks_local = ref.startswith(("/", ".", "~", "file://")) or ref.count("/") > 1 or local.exists()
    if looks_local:
        if not local.exists():
            raise ValueError(f"{what} {ref}: no such file or folder")
        if local.is_dir() and not any((local / name).exists() for name in MODEL_FILES):
            raise ValueError(f"{what} {ref}: the folder holds no model ({', '.join(MODEL_FILES[:3])}, ...)")
        refs = _LOCAL_REFS.get()
        if refs is not None:
            refs.append((what, str(local.resolve())))
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return
        if not any(isinstance(try_to_load_from_cache(ref, name), str) for name in ("config.json", "model_index.json")):
            raise ValueError(f"{what} {ref}: not a local folder, and not in the Hugging Face cache (HF_HUB_OFFLINE is set)")
