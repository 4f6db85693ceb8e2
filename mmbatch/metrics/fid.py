"""FID with pytorch-fid's model, preprocessing and formula, from mergeable Gaussian statistics.

Activations: ``pytorch_fid.inception.InceptionV3`` (the TF-FID InceptionV3 architecture) with
the FID weights read from ``weights`` (a local ``.pth``/``.safetensors`` file or an
object-store URL, copied once per node); without ``weights``, pytorch-fid downloads its
default file itself. Each image is decoded to RGB with PIL and turned into a tensor with
``ToTensor`` exactly like pytorch-fid's ``ImagePathDataset``; the model resizes to 299 and
scales to [-1, 1] itself. Images of one size are batched together (``batch_size``).

State per block: float64 count, mean and centred sum of outer products of the activations
(Chan et al.'s pairwise update merges blocks; a single block gives ``np.mean`` and
``np.cov`` bit for bit, and the merged moments avoid the cancellation of raw sums of
squares). ``finalize`` forms mu and sigma (ddof 1, like ``np.cov``) and calls
``pytorch_fid.fid_score.calculate_frechet_distance`` against either a second image column of
the same rows (``reference``) or a pytorch-fid ``.npz`` with ``mu`` and ``sigma``
(``reference_stats``, local path or URL). ``details`` holds both image counts.
The state is dims x dims float64 per block (32 MiB at 2048 dims).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from mmbatch.core.metric import Metric, MetricConfig, MetricError, MetricResult, register_metric
from mmbatch.core.models import LoadKeys, LoadPolicy
from mmbatch.core.requirements import Requirements

from ._common import column, decode_rgb, ids_of, torch_device

_BUILD_LOCK = threading.Lock()


class FidConfig(MetricConfig, LoadKeys):
    images: str
    """Column with the generated images: encoded bytes (PNG/JPEG/...) or local paths."""
    reference: str | None = None
    """Column with the reference images (same form), in the same rows."""
    reference_stats: str | None = None
    """pytorch-fid ``.npz`` (``mu``, ``sigma``) of the reference set: local path or URL."""
    weights: str | None = None
    """FID InceptionV3 weights (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``):
    local path or object-store URL. None: pytorch-fid downloads them (needs internet)."""
    dims: Literal[64, 192, 768, 2048] = 2048
    batch_size: int = Field(50, ge=1)
    device: str | None = None
    """``cuda``/``cpu``; default: CUDA when the worker has a GPU."""

    @model_validator(mode="after")
    def _one_reference(self) -> FidConfig:
        if (self.reference is None) == (self.reference_stats is None):
            raise ValueError("fid needs exactly one of 'reference' (a column) or 'reference_stats' (.npz)")
        return self


@dataclass
class Moments:
    """Count, mean and centred sum of outer products (float64) of activation vectors."""

    n: int
    mean: Any
    m2: Any

    @classmethod
    def of(cls, acts: Any) -> Moments | None:
        import numpy as np

        if len(acts) == 0:
            return None
        mean = np.mean(acts, axis=0)
        centred = acts - mean
        return cls(len(acts), mean, np.dot(centred.T, centred))

    @classmethod
    def merge(cls, parts: list[Moments | None]) -> Moments | None:
        out: Moments | None = None
        for p in parts:
            if p is None:
                continue
            if out is None:
                out = cls(p.n, p.mean.copy(), p.m2.copy())
                continue
            n = out.n + p.n
            delta = p.mean - out.mean
            out.m2 = out.m2 + p.m2 + delta[:, None] * delta[None, :] * (out.n * p.n / n)
            out.mean = out.mean + delta * (p.n / n)
            out.n = n
        return out

    def mu_sigma(self, what: str) -> tuple[Any, Any]:
        import numpy as np

        if self.n < 2:
            raise MetricError(f"fid needs at least 2 {what} images for a covariance, got {self.n}")
        return self.mean, self.m2 * np.true_divide(1, self.n - 1)  # as np.cov


@dataclass
class FidState:
    images: Moments | None
    reference: Moments | None


def load_inception(dims: int, weights: str | None, device: str, policy: LoadPolicy | None = None) -> Any:
    """pytorch-fid's ``InceptionV3`` for ``dims`` with the given FID weights, in eval mode.

    The weights are a ``.safetensors`` file or pytorch-fid's own ``.pth``, read with
    ``torch.load(weights_only=True)`` (tensors only, no code: the form it is published in)."""
    from pytorch_fid import inception as fid_inception

    block = fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
    if weights is None:
        model = fid_inception.InceptionV3([block])
    else:
        from unittest import mock

        policy = policy or LoadPolicy()
        state = policy.torch_state_dict(policy.local(weights))
        # pytorch-fid builds the FID architecture and loads its weights in one function
        # (fid_inception_v3); hand it our state dict instead of its download.
        with _BUILD_LOCK, mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: state):
            model = fid_inception.InceptionV3([block])
    return model.to(device).eval()


def activations(model: Any, images: list[Any], batch_size: int, device: str) -> Any:
    """pool activations (float64, one row per image), as pytorch-fid's ``get_activations``."""
    import numpy as np
    import torch
    import torchvision.transforms as TF
    from torch.nn.functional import adaptive_avg_pool2d

    to_tensor = TF.ToTensor()
    out: list[Any] = []
    i = 0
    while i < len(images):
        j = i + 1
        while j < len(images) and j - i < batch_size and images[j].size == images[i].size:
            j += 1
        batch = torch.stack([to_tensor(img) for img in images[i:j]]).to(device)
        with torch.no_grad():
            pred = model(batch)[0]
        if pred.size(2) != 1 or pred.size(3) != 1:
            pred = adaptive_avg_pool2d(pred, output_size=(1, 1))
        out.append(pred.squeeze(3).squeeze(2).cpu().numpy().astype(np.float64))
        i = j
    return np.concatenate(out)


@register_metric("fid")
class Fid(Metric[FidConfig]):
    """Fréchet Inception Distance (pytorch-fid)."""

    requires = Requirements(("pytorch_fid", "torchvision", "scipy"), "metrics")

    def __init__(self, config: FidConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._device = "cpu"

    def __getstate__(self) -> dict[str, Any]:
        """Ship the config, not a loaded model: workers load their own in ``setup``."""
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    def input_columns(self) -> list[str]:
        return [self.config.images] + ([self.config.reference] if self.config.reference else [])

    def setup(self) -> None:
        if self._model is None:
            self._device = torch_device(self.config.device)
            self._model = load_inception(self.config.dims, self.config.weights, self._device, self.config.policy())

    def _moments(self, batch: dict[str, list], name: str) -> Moments | None:
        ids = ids_of(batch)
        images = [decode_rgb(v, name, ids[i]) for i, v in enumerate(column(batch, name))]
        if not images:
            return None
        self.setup()
        return Moments.of(activations(self._model, images, self.config.batch_size, self._device))

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> FidState:
        images = self._moments(batch, self.config.images)
        ref = self._moments(batch, self.config.reference) if self.config.reference else None
        return FidState(images, ref)

    def merge(self, states: list[FidState]) -> FidState:
        return FidState(Moments.merge([s.images for s in states]), Moments.merge([s.reference for s in states]))

    def finalize(self, merged: FidState, broadcast: Any) -> MetricResult:
        import numpy as np
        from pytorch_fid.fid_score import calculate_frechet_distance

        if merged.images is None:
            return MetricResult(self.output_name, float("nan"), 0)
        mu1, sigma1 = merged.images.mu_sigma("generated")
        if self.config.reference_stats:
            with np.load(self.config.policy().local(self.config.reference_stats)) as f:
                mu2, sigma2 = f["mu"][:], f["sigma"][:]
            n_ref = float("nan")
        else:
            if merged.reference is None:
                raise MetricError("fid: no reference images")
            mu2, sigma2 = merged.reference.mu_sigma("reference")
            n_ref = float(merged.reference.n)
        if np.shape(mu2) != np.shape(mu1):
            raise MetricError(f"fid: reference statistics have {np.shape(mu2)} dims, activations {np.shape(mu1)}")
        value = float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
        return MetricResult(
            self.output_name, value, merged.images.n,
            details={"images": float(merged.images.n), "reference_images": n_ref},
        )
