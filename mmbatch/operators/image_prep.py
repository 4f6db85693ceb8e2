"""The standard image processors of transformers (CLIP, SigLIP, BLIP, ViT: resize, centre
crop, rescale, normalise) computed with torch alone, for a prepare stage's CPU tasks.

A CPU task that builds a step's prepare stage in a fresh worker pays the imports of its
processor: ``from transformers import CLIPImageProcessor`` pulls in torch, torchvision
(and through it ``torch._dynamo``) and half of transformers. That took 12-14 s on a
16-core H100 machine and 4.6 s on a 2-core VM, against 4-5 s and 1.6 s for ``import
torch``; the model actor pays it too, in parallel, but a worker that joins late (a task
of the tail) pays it alone while the model waits.

For a processor whose config (``processor_config.json`` or ``preprocessor_config.json``)
names one of these classes and only their keys, :func:`standard_image_prep` gives an
:class:`ImagePrep` that runs the same torch calls as transformers' torchvision backend
(the backend ``AutoProcessor`` picks when torchvision is installed) on one image at a
time, as that backend does on a CPU, so the values are the processor's own, bit for bit
(``tests/operators/test_image_prep.py`` compares them for each class, from configs saved
by transformers and from older hub-style ones). Any other processor, or key, goes to
transformers as before (``None``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
BILINEAR, BICUBIC = 2, 3  # PIL's resample codes, as the configs store them
PROCESSOR_CONFIG, PREPROCESSOR_CONFIG = "processor_config.json", "preprocessor_config.json"

# Each class's defaults (transformers 5: the class attributes; `rescale_factor` and
# `default_to_square` from the base class where the class does not set them).
_CLASSES: dict[str, dict[str, Any]] = {
    "CLIPImageProcessor": {
        "resample": BICUBIC, "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD,
        "size": {"shortest_edge": 224}, "default_to_square": False, "crop_size": {"height": 224, "width": 224},
        "do_resize": True, "do_center_crop": True, "do_rescale": True, "do_normalize": True,
    },
    "BlipImageProcessor": {
        "resample": BICUBIC, "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD,
        "size": {"height": 384, "width": 384}, "default_to_square": True,
        "do_resize": True, "do_rescale": True, "do_normalize": True,
    },
    "SiglipImageProcessor": {
        "resample": BICUBIC, "image_mean": IMAGENET_STANDARD_MEAN, "image_std": IMAGENET_STANDARD_STD,
        "size": {"height": 224, "width": 224}, "default_to_square": False,
        "do_resize": True, "do_rescale": True, "do_normalize": True,
    },
    "ViTImageProcessor": {
        "resample": BILINEAR, "image_mean": IMAGENET_STANDARD_MEAN, "image_std": IMAGENET_STANDARD_STD,
        "size": {"height": 224, "width": 224}, "default_to_square": True,
        "do_resize": True, "do_rescale": True, "do_normalize": True,
    },
}
_FEATURE_EXTRACTORS = {"CLIPFeatureExtractor": "CLIPImageProcessor", "ViTFeatureExtractor": "ViTImageProcessor"}
# keys of these configs that change nothing here (names and bookkeeping)
_INERT = {"image_processor_type", "feature_extractor_type", "processor_class", "do_convert_rgb"}
_USED = {"resample", "image_mean", "image_std", "size", "crop_size", "do_resize", "do_center_crop", "do_rescale",
         "do_normalize", "rescale_factor"}


@dataclass(frozen=True)
class ImagePrep:
    """resize -> centre crop -> rescale and normalise, as transformers' torchvision backend
    does them on a CPU; :meth:`pixel_values` takes ``HxWx3`` uint8 RGB images."""

    shortest_edge: int | None  # resize the shorter side to this, keeping the aspect ratio
    size: tuple[int, int] | None  # or to exactly (height, width); neither: no resize
    resample: int
    crop: tuple[int, int] | None
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    def pixel_values(self, images: Iterable[Any], dtype: Any = None) -> np.ndarray:
        """The processor's ``pixel_values`` of a batch: one ``(n, 3, H, W)`` array, cast to
        ``dtype`` (if given) image by image, as numpy's ``astype`` of the whole would."""
        import torch

        to = None if dtype is None else torch.from_numpy(np.zeros(0, dtype)).dtype
        with torch.inference_mode():
            return np.stack([(x if to is None else x.to(to)).numpy() for x in map(self._one, map(_chw, images))])

    def _one(self, image: Any) -> Any:
        import torch

        if self.shortest_edge is not None or self.size is not None:
            image = self._resize(image)
        if self.crop is not None:
            image = _center_crop(image, *self.crop)
        if self._normalize is not None:
            mean, std = self._normalize
            return image.to(torch.float32).sub_(mean).div_(std)
        if self.rescale is not None:
            return image * self.rescale
        return image

    @cached_property
    def _normalize(self) -> tuple[Any, Any] | None:
        """The (mean, std) tensors each image is normalised by, made once: scaled by
        ``1 / rescale`` where rescaling is fused into them, as the backend fuses them."""
        import torch

        if self.mean is None or self.std is None:
            return None
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        if self.rescale is not None:
            mean, std = mean * (1.0 / self.rescale), std * (1.0 / self.rescale)
        return mean.view(-1, 1, 1), std.view(-1, 1, 1)

    @cached_property
    def _native_uint8(self) -> bool:
        """Whether torch resizes uint8 natively here: on a CPU for bicubic, and for bilinear
        where the CPU has AVX2 (else through float32, rounded back). The native kernel gives
        the same values for the channels-last view of the decoded pixels as for the
        contiguous copy transformers makes, three times as fast as copy and resize (0.27
        against 0.78 ms for 640x480 -> 298x224 here), so the copy is made only for the float
        path. Asked once, not per image."""
        import torch

        return self.resample == BICUBIC or torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or \
            os.uname().machine in ("aarch64", "arm64")

    def _resize(self, image: Any) -> Any:
        import torch

        height, width = image.shape[-2:]
        if self.shortest_edge is not None:
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
            new = (new_long, new_short) if width <= height else (new_short, new_long)
        else:
            assert self.size is not None
            new = self.size
        if new == (height, width):
            return image
        mode = "bicubic" if self.resample == BICUBIC else "bilinear"
        native = self._native_uint8
        x = image.unsqueeze(0) if native else image.contiguous().unsqueeze(0).to(torch.float32)
        x = torch.nn.functional.interpolate(x, size=list(new), mode=mode, align_corners=False, antialias=True)
        return x[0] if native else x[0].round_().to(torch.uint8)


def _chw(image: Any) -> Any:
    """An ``HxWx3`` uint8 image (``decode_image``'s pixels) as a ``(3, H, W)`` tensor: a
    view of the pixels (channels last), no copy."""
    import warnings

    import torch

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 RGB pixels, got shape {arr.shape} of {arr.dtype}")
    if not arr.size:
        raise ValueError(f"empty image ({arr.shape[1]}x{arr.shape[0]} pixels)")
    with warnings.catch_warnings():  # Arrow-backed arrays are read-only; nothing writes to the view
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(arr).permute(2, 0, 1)


def _center_crop(image: Any, height: int, width: int) -> Any:
    import torch

    h, w = image.shape[-2:]
    if height > h or width > w:  # padded with zeros first, as torchvision's crop does
        left, top = max(0, (width - w) // 2), max(0, (height - h) // 2)
        right, bottom = max(0, (width - w + 1) // 2), max(0, (height - h + 1) // 2)
        image = torch.nn.functional.pad(image, [left, right, top, bottom], value=0)
        h, w = image.shape[-2:]
    top, left = int((h - height) / 2.0), int((w - width) / 2.0)
    return image[..., top : top + height, left : left + width]


def _size(value: Any, default_to_square: bool) -> tuple[int | None, tuple[int, int] | None] | None:
    """(shortest edge, (height, width)) of a config's ``size``; None: a form not covered."""
    if isinstance(value, int):
        return (None, (value, value)) if default_to_square else (value, None)
    if isinstance(value, dict):
        keys = {k for k, v in value.items() if v is not None}
        if keys == {"shortest_edge"}:
            return int(value["shortest_edge"]), None
        if keys == {"height", "width"}:
            return None, (int(value["height"]), int(value["width"]))
    return None


def standard_image_prep(path: str) -> ImagePrep | None:
    """An :class:`ImagePrep` equal to ``AutoProcessor.from_pretrained(path)``'s image
    processor, or None where it may not be: no image processor config in the folder,
    another class, a key beyond the standard ones, the PIL backend asked for, or no
    torchvision (transformers then picks its PIL backend)."""
    config = _image_processor_config(path)
    if not isinstance(config, dict) or "auto_map" in config or importlib.util.find_spec("torchvision") is None:
        return None
    name = config.get("image_processor_type") or _FEATURE_EXTRACTORS.get(config.get("feature_extractor_type", ""), "")
    defaults = _CLASSES.get(name.removesuffix("Fast"))
    if defaults is None or set(config) - _INERT - _USED:
        return None
    c = defaults | {k: v for k, v in config.items() if k in _USED}
    size = _size(c.get("size"), defaults["default_to_square"]) if c.get("do_resize") else (None, None)
    crop = _size(c.get("crop_size"), True) if c.get("do_center_crop") else (None, None)
    if size is None or crop is None or crop[0] is not None or c.get("resample") not in (BILINEAR, BICUBIC):
        return None
    rescale = float(c.get("rescale_factor", 1 / 255)) if c.get("do_rescale") else None
    mean, std = (_floats(c.get("image_mean")), _floats(c.get("image_std"))) if c.get("do_normalize") else (None, None)
    if c.get("do_normalize") and (mean is None or std is None or not all(std)):
        return None
    return ImagePrep(size[0], size[1], int(c["resample"]), crop[1], rescale, mean, std)


def plain_processor_class(path: str) -> str | None:
    """The ``processor_class`` a model folder's processor config names (e.g.
    ``BlipProcessor``), without transformers; None if it names none or the folder holds a
    chat template (the processor would then build a prompt of its own)."""
    if any(os.path.exists(os.path.join(path, f)) for f in ("chat_template.jinja", "chat_template.json")):
        return None
    for _, config in _config_files(path):
        if isinstance(config, dict) and "chat_template" in config:
            return None
        if isinstance(config, dict) and isinstance(config.get("processor_class"), str):
            return str(config["processor_class"])
    return None


def _image_processor_config(path: str) -> Any:
    """The image processor's config as transformers finds it in a folder: nested in
    ``processor_config.json``, else ``preprocessor_config.json``; None if neither."""
    for name, config in _config_files(path):
        if name == PREPROCESSOR_CONFIG:
            return config
        if isinstance(config, dict) and "image_processor" in config:
            return config["image_processor"]
    return None


def _config_files(path: str) -> Iterator[tuple[str, Any]]:
    """(name, parsed JSON) of the processor config files in a model folder, in the order
    transformers reads them."""
    for name in (PROCESSOR_CONFIG, PREPROCESSOR_CONFIG):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            with open(file, encoding="utf-8") as f:
                yield name, json.load(f)


def _floats(value: Any) -> tuple[float, ...] | None:
    if isinstance(value, Sequence) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    return None
