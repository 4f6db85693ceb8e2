"""Image decoding and preprocessing in the model worker, on its device, from encoded bytes
(``decode_on_device``: nvJPEG on a GPU), for every step that reads images (``embed``,
``classify``, ``caption``): :meth:`ModelOperator.on_encoded
<mmbatch.operators.model.ModelOperator.on_encoded>`. In a prepare stage of CPU tasks the
processor runs through :meth:`ModelOperator.pixel_values
<mmbatch.operators.model.ModelOperator.pixel_values>` instead."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.files import PathAccessKeys

from .image import ORIENTATION, DecodeImageConfig, read_image


class DeviceDecodeKeys(PathAccessKeys):
    """The keys of a vision step that can decode its images itself."""

    image: str | None = Field("pixels", description="pixel column from decode_image (with decode_on_device: "
                              "the column of encoded image bytes)")
    decode_on_device: bool = Field(
        False,
        description="the image column holds encoded bytes, decoded in the model worker on its device "
        "(JPEG: torchvision's decode_jpeg, nvJPEG on a GPU; anything it refuses: PIL, row by row), "
        "then preprocessed there by the processor (no prepare tasks); no decode_image step needed",
    )
    max_pixels: int = Field(
        DecodeImageConfig().max_pixels, ge=1, description="decode_on_device: refuse images declaring more pixels"
    )

    def image_input(self) -> str:
        """What the image column holds, for the step's description of its inputs."""
        return "encoded image bytes" if self.decode_on_device else "RGB pixels"


def _jpeg_header(data: bytes) -> tuple[int, int, int]:
    """A JPEG's declared width, height and EXIF orientation (1: upright), from its header."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:  # reads the header only
        return (*img.size, int(img.getexif().get(ORIENTATION, 1)))


# EXIF orientation -> what PIL.ImageOps.exif_transpose does, on a (..., H, W) tensor: 2 mirrors
# it, 3 turns it half round, 4 flips it, 5-8 turn it a quarter, mirrored or not
_TURNS: dict[int, Callable[[Any], Any]] = {
    2: lambda t: t.flip(-1),
    3: lambda t: t.flip(-2, -1),
    4: lambda t: t.flip(-2),
    5: lambda t: t.transpose(-2, -1),
    6: lambda t: t.rot90(-1, (-2, -1)),
    7: lambda t: t.transpose(-2, -1).flip(-2, -1),
    8: lambda t: t.rot90(1, (-2, -1)),
}


def upright(image: Any, orientation: int) -> Any:
    """A ``(3, H, W)`` tensor turned upright by its EXIF orientation, on its device, as
    ``decode_image`` turns the decoded picture (PIL's ``exif_transpose``)."""
    turn = _TURNS.get(orientation)
    return image if turn is None else turn(image).contiguous()


class Decoded(NamedTuple):
    """A batch of images decoded by :func:`decode_batch`."""

    images: list[Any]
    """RGB ``(3, H, W)`` uint8 tensors on the device; None for a row that failed."""
    errors: list[str | None]
    """Each row's error, or None."""
    by_pil: int
    """Rows that PIL decoded, row by row on the CPU: not JPEGs, or JPEGs ``decode_jpeg`` refused."""


def decode_batch(
    encoded: Column, device: str, max_pixels: int, allowed_roots: list[str] | None = None
) -> Decoded:
    """Encoded images -> RGB ``(3, H, W)`` uint8 tensors on ``device``, and one error (or
    None) per row (:class:`Decoded`). JPEGs are decoded in one batched
    ``torchvision.io.decode_jpeg`` on the device (nvJPEG on CUDA, libjpeg-turbo on a CPU)
    and turned upright there by their EXIF orientation, as ``decode_image`` does; any row
    it refuses (PNG, CMYK, corrupt) falls back to PIL alone; a row neither can decode gets
    the error."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    n = len(encoded)
    images: list[Any] = [None] * n
    errors: list[str | None] = [None] * n
    jpegs: list[int] = []
    orientations = [1] * n
    for i, data in enumerate(encoded):
        # a JPEG from start (SOI) to end (EOI); a truncated one goes to PIL, which says so
        # (nvJPEG may fill the missing part instead of failing)
        if isinstance(data, bytes) and data[:3] == b"\xff\xd8\xff" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9":
            try:
                w, h, orientations[i] = _jpeg_header(data)
            except Exception:  # noqa: BLE001 - left to the PIL fallback, which names the cause
                continue
            if w * h > max_pixels:
                errors[i] = f"ValueError: image declares {w}x{h} pixels, more than max_pixels={max_pixels}"
            else:
                jpegs.append(i)
    if jpegs:
        raw = [torch.frombuffer(bytearray(encoded[i]), dtype=torch.uint8) for i in jpegs]
        try:
            for i, t in zip(jpegs, decode_jpeg(raw, mode=ImageReadMode.RGB, device=device), strict=True):
                images[i] = upright(t, orientations[i])
        except RuntimeError:  # one bad JPEG fails the batch: decode them one by one
            for i, r in zip(jpegs, raw, strict=True):
                try:
                    images[i] = upright(decode_jpeg(r, mode=ImageReadMode.RGB, device=device), orientations[i])
                except RuntimeError:
                    pass
    by_pil = 0
    for i in range(n):
        if images[i] is None and errors[i] is None:
            try:
                pixels = read_image(encoded[i], None, max_pixels, {}, allowed_roots=allowed_roots)[0]
            except Exception as exc:  # noqa: BLE001 - any cause (PIL's DecompressionBombError too) is the row's
                errors[i] = f"{type(exc).__name__}: {exc}"
                continue
            images[i] = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).to(device)
            by_pil += 1
    return Decoded(images, errors, by_pil)


def processor_inputs(processor: Any, images: list[Any], device: str, **kwargs: Any) -> Any:
    """``processor(images=..., **kwargs)`` for ``(3, H, W)`` uint8 tensors on ``device``, as
    torch tensors on ``device``: computed there when the image processor runs on torch
    (transformers' torchvision backend), else on the CPU from numpy copies. ``processor`` is
    an image processor or a processor holding one (``.image_processor``) with text kwargs."""
    import importlib

    try:
        torch_backend = getattr(importlib.import_module("transformers.image_processing_backends"), "TorchvisionBackend", None)
    except ImportError:  # a transformers without backends: its processors take numpy
        torch_backend = None
    image_processor = getattr(processor, "image_processor", processor)
    if torch_backend is not None and isinstance(image_processor, torch_backend):
        return processor(images=images, device=device, return_tensors="pt", **kwargs).to(device)
    arrays = [t.permute(1, 2, 0).cpu().numpy() for t in images]
    return processor(images=arrays, return_tensors="pt", **kwargs).to(device)
