"""The base of every model step: device, dtype and threads of its worker, and loading
under the job's policy (:mod:`mmbatch.core.models`: hub id, local folder or object-store
URL; safetensors only unless ``allow_pickle``; ``trust_remote_code`` only when set)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.models import LoadKeys, check_model_ref, torch_dtype
from mmbatch.core.requirements import Requirements
from mmbatch.core.resources import Resources

from .base import OpConfig, Operator
from .image_prep import ImagePrep, standard_image_prep
from .pixels import DeviceDecodeKeys, decode_batch, processor_inputs


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
T = TypeVar("T")
R = TypeVar("R")


class ModelOperator(Operator[MC]):
    """An operator backed by a transformers/diffusers model; owns device, dtype and threads.

    Subclasses implement :meth:`load` (called by ``setup`` with a local path or hub id) and
    set ``self.model``."""

    default_batch_size = 16
    requires: ClassVar[Requirements] = Requirements(("torch", "transformers"), "vision")
    model: Any
    processor: Any
    image_prep: ImagePrep | None = None
    """The prepare stage's image processor in torch alone, where the step's processor is a
    standard one and its prepare needs nothing else (:mod:`.image_prep`)."""

    def __init__(self, config: MC, resources: Resources | None = None, label: str = "") -> None:
        super().__init__(config, resources, label)
        self.device = "cpu"
        self.policy = config.policy()
        self.device_lock = threading.Lock()
        self.fit_size: int | None = None

    def setup(self) -> None:
        import torch

        torch.set_num_threads(self.config.threads or self.resources.threads)
        self.device = "cuda" if self.resources.gpus > 0 and torch.cuda.is_available() else "cpu"
        self.load(self.policy.local(self.config.model))

    def setup_prepare(self) -> None:
        import torch

        torch.set_num_threads(1)  # one prepare task per CPU
        path = self.policy.local(self.config.model)
        if self.prepares_pixels_only(path) and not self.config.trust_remote_code:
            self.image_prep = standard_image_prep(path)
        if self.image_prep is None:
            self.load_processors(path)

    def device_decoded(self) -> str | None:
        """The image column this step decodes itself, on its device (``decode_on_device``:
        encoded bytes in, no ``decode_image`` step and no prepare stage for it), or None."""
        cfg = self.config
        return cfg.image if isinstance(cfg, DeviceDecodeKeys) and cfg.decode_on_device else None

    def media_inputs(self) -> set[str]:
        column = self.device_decoded()
        return {column} if column else set()

    def prepared_from(self) -> set[str]:
        return super().prepared_from() - self.media_inputs()

    def prepares_pixels_only(self, path: str) -> bool:
        """Whether this step's prepare stage computes the images' ``pixel_values`` alone
        (no text, no other processor output) with the processor in ``path``: then a standard
        image processor runs without transformers' imports (:mod:`.image_prep`)."""
        return False

    def pixel_values(self, images: Column) -> np.ndarray:
        """The processor's ``pixel_values`` of a batch of ``HxWx3`` uint8 images, one
        ``(n, 3, H, W)`` array in the step's transfer dtype (exactly the processor's values
        when that is float32)."""
        if self.image_prep is not None:
            out = self.image_prep.pixel_values(images, self.transfer_dtype)
        else:
            out = np.asarray(self.processor(images=list(images), return_tensors="np")["pixel_values"])
        return out.astype(self.transfer_dtype, copy=False)

    def preflight(self) -> None:
        check_model_ref(self.config.model, self.config.storage_options)

    def load(self, path: str) -> None:
        """Load model and processor from ``path`` (a local folder or a hub id)."""
        raise NotImplementedError

    def load_processors(self, path: str) -> None:
        """Load what :meth:`prepare` needs (processors, configs; no weights)."""
        raise NotImplementedError(f"operator '{self.name}' has no prepare stage")

    # -- the device side of a batch ---------------------------------------------------------
    @contextmanager
    def on_device(self) -> Iterator[None]:
        """One batch at a time on the device. A GPU worker runs two calls at once (the engine
        asks Ray for two concurrent calls per actor), so one batch's conversion and copies
        overlap the other's compute; the model itself runs them one after the other. So
        make the batch's tensors (:meth:`tensor`: the copy into pinned memory) before
        entering, not inside."""
        import torch

        with self.device_lock, torch.inference_mode():
            yield

    def tensor(self, array: np.ndarray, dtype: Any = None) -> Any:
        """A batch array as a tensor on this worker's device: from pinned memory, without
        blocking, on CUDA; in ``dtype`` when given."""
        import torch

        with warnings.catch_warnings():  # Arrow-backed arrays are read-only; the tensor is never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.startswith("cuda"):
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t if dtype is None else t.to(dtype)

    @property
    def transfer_dtype(self) -> np.dtype[Any]:
        """The dtype prepared float tensors travel in: the step's float16, else float32 (the
        model casts on the device; numpy has no bfloat16)."""
        return np.dtype(np.float16) if self.config.dtype == "float16" else np.dtype(np.float32)

    def fitted(self, n: int, run: Callable[[int, int], list[T]]) -> list[T]:
        """``run(start, stop)`` over rows ``[0, n)`` in the largest sub-batches that fit the
        device: the whole batch first; on CUDA out-of-memory, half as many rows, and so on.
        The size that worked is kept for the worker's later batches and reported as the
        step's ``batch`` (the summary says what was chosen)."""
        import torch

        size = min(n, self.fit_size or n)
        out: list[T] = []
        start = 0
        while start < n:
            stop = min(n, start + size)
            try:
                out += run(start, stop)
            except torch.OutOfMemoryError:
                if size == 1:
                    raise MemoryError(f"one row does not fit on {self.device}: lower its size or use a bigger device") from None
                torch.cuda.empty_cache()
                size = self.fit_size = max(1, size // 2)
                continue
            start = stop
        self.stats["batch"] = max(self.stats.get("batch", 0), size)
        return out

    def on_pixels(self, pixels: np.ndarray, forward: Callable[[Any], T]) -> list[T]:
        """``forward(values)`` on the device for the rows of ``pixels`` (prepared
        ``pixel_values``), in the largest sub-batches that fit (:meth:`fitted`): each
        sub-batch's tensor made before taking the device lock, the forward under it."""

        def run(start: int, stop: int) -> list[T]:
            values = self.tensor(pixels[start:stop], self.model_dtype)  # copied while the other call computes
            with self.on_device():
                return [forward(values)]

        return self.fitted(len(pixels), run)

    def on_encoded(
        self, encoded: Column, forward: Callable[[list[Any]], Iterable[R]]
    ) -> tuple[list[R | None], list[str | None]]:
        """``forward(images)`` for the rows of ``encoded`` (image bytes) that decode on this
        worker's device (:func:`~.pixels.decode_batch`: nvJPEG on CUDA, PIL for the rest), in
        the largest sub-batches that fit (:meth:`fitted`). ``images`` are ``(3, H, W)`` uint8
        tensors on the device; ``forward`` returns one result per image and takes the device
        lock (:meth:`on_device`) itself. Returns one result per row (None where the row
        failed) and each row's error (None where it did not). The step's ``decoded_by_pil``
        counts the rows that could not be decoded on the device (the run summary shows it)."""
        cfg = self.config
        assert isinstance(cfg, DeviceDecodeKeys), f"{self.name} does not decode images"

        def run(start: int, stop: int) -> list[tuple[list[R | None], list[str | None]]]:
            images, errors, by_pil = decode_batch(encoded[start:stop], self.device, cfg.max_pixels, cfg.allowed_roots)
            self.stats["decoded_by_pil"] = self.stats.get("decoded_by_pil", 0) + by_pil  # the summary says how many
            good = [i for i, e in enumerate(errors) if e is None]
            results: list[R | None] = [None] * (stop - start)
            if good:
                for i, result in zip(good, forward([images[i] for i in good]), strict=True):
                    results[i] = result
            return [(results, errors)]

        parts = self.fitted(len(encoded), run)
        return [r for results, _ in parts for r in results], [e for _, errors in parts for e in errors]

    def device_pixels(self, images: list[Any]) -> Any:
        """The ``pixel_values`` of decoded images (:meth:`on_encoded`), computed on the device
        by the step's image processor, in the model's dtype."""
        return processor_inputs(getattr(self.processor, "image_processor", self.processor), images,
                                self.device)["pixel_values"].to(self.model_dtype)

    def column(self, key: str) -> str:
        """The name of a prepared column of this step (transient, never written)."""
        return f"_{self.label}/{key}"

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
