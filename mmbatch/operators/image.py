"""decode_image: encoded image bytes (or a path/URL) -> RGB pixels."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.files import Fetch, check_path_allowed, read_bytes
from mmbatch.core.requirements import Requirements

from .base import map_rows, register
from .decoding import DecodeKeys, Decoder


class DecodeImageConfig(DecodeKeys):
    column: str = Field("image", description="binary column of encoded images, or string column of paths/URLs")
    output: str = Field("pixels", description="output column: HxWx3 uint8 RGB pixels (not written)")
    resize: int | tuple[int, int] | None = Field(
        None, description="N: shorter side to N pixels keeping the aspect ratio; [W, H]: exact size"
    )
    max_pixels: int = Field(
        89_478_485, ge=1, description="refuse images declaring more pixels (decompression bombs)"
    )
    exif_transpose: bool = Field(True, description="turn images upright by their EXIF orientation, as viewers show them")
    background: tuple[int, int, int] = Field(
        (255, 255, 255), description="RGB that transparent pixels are composited on (RGBA, LA, P with transparency)"
    )


WHITE = (255, 255, 255)
ORIENTATION = 0x0112  # EXIF tag
SWAPS_AXES = {5, 6, 7, 8}  # orientations that turn the image by 90 degrees
TURNS = set(range(2, 9))  # orientations that flip or turn the image (1: upright)


def _scaled_to_8_bits(img: Any) -> Any:
    """16- and 32-bit greyscale and float images as 8-bit greyscale, by their value range:
    ``I;16*`` and ``I`` within 0..65535 scale by 255/65535, ``F`` within 0..1 by 255. Other
    ranges have no faithful 8-bit picture: ``ValueError``."""
    from PIL import Image

    arr = np.asarray(img)
    if img.mode == "F":
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"float pixels in [{lo:g}, {hi:g}], not [0, 1]: no faithful 8-bit picture")
        return Image.fromarray(np.round(arr * 255.0).astype(np.uint8), "L")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 65535:
        raise ValueError(f"{img.mode} pixels in [{lo}, {hi}], not 0..65535: no faithful 8-bit picture")
    return Image.fromarray(np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8), "L")


def to_rgb(img: Any, background: tuple[int, int, int] = WHITE) -> Any:
    """An RGB picture of ``img`` as a viewer shows it: high bit depths scaled, transparency
    composited on ``background``."""
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _scaled_to_8_bits(img)
    transparent = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if not transparent:
        return img if img.mode == "RGB" else img.convert("RGB")  # convert() would copy an RGB image
    rgba = img.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")


def target_size(size: tuple[int, int], resize: int | tuple[int, int] | None) -> tuple[int, int]:
    w, h = size
    if resize is None:
        return w, h
    if isinstance(resize, int):
        scale = resize / min(w, h)
        return max(1, round(w * scale)), max(1, round(h * scale))
    return resize


def read_image(
    data: bytes | str,
    resize: int | tuple[int, int] | None = None,
    max_pixels: int = 89_478_485,
    storage_options: dict[str, Any] | None = None,
    *,
    exif_transpose: bool = True,
    background: tuple[int, int, int] = WHITE,
    allowed_roots: list[str] | None = None,
    fetch: Fetch | None = None,
) -> tuple[np.ndarray, int, int, int]:
    """Decode to RGB uint8 pixels as a viewer shows the image: upright by its EXIF
    orientation, 16/32-bit modes scaled to 8 bits, transparency composited on ``background``,
    an animation's first frame. Returns (pixels, width, height, frames in the file); width
    and height are the upright picture's, before ``resize``."""
    from PIL import Image, ImageOps

    if isinstance(data, str):
        check_path_allowed(data, allowed_roots)
        data = read_bytes(data, storage_options, fetch)
    if not data:
        raise ValueError("empty image (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise ValueError(f"not a decodable image ({len(data)} bytes, starting {data[:8].hex()})") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise ValueError(f"image declares {w}x{h} pixels, more than max_pixels={max_pixels}")
        frames = int(getattr(img, "n_frames", 1))
        orientation = img.getexif().get(ORIENTATION, 1) if exif_transpose else 1
        turned = orientation in SWAPS_AXES
        if turned:
            w, h = h, w
        tw, th = target_size((w, h), resize)
        if (tw, th) != (w, h) and img.format == "JPEG":
            img.draft("RGB", (th, tw) if turned else (tw, th))  # decode at a reduced scale >= the target
        # exif_transpose copies an image that needs no turn (orientation 1 or none)
        upright = ImageOps.exif_transpose(img) if orientation in TURNS else img
        rgb = to_rgb(upright, background)
        if rgb.size != (tw, th):
            rgb = rgb.resize((tw, th), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.uint8), w, h, frames


@register("decode_image")
class DecodeImage(Decoder[DecodeImageConfig]):
    """Decode images to RGB pixels.

    Inputs: ``column`` (bytes, or a path/URL string). Outputs: ``output`` (HxWx3 uint8,
    transient), ``<column>_width`` and ``<column>_height`` (the upright picture's size) and
    ``<column>_frames`` (frames in the file: an animation is decoded at its first frame).
    Pixels are what a viewer shows: EXIF orientation applied, 16/32-bit modes scaled to 8
    bits, transparency composited on ``background``. Runs as Ray tasks (1 CPU). A corrupt,
    truncated, empty or non-image row, one declaring more than ``max_pixels`` pixels, or one
    with no faithful 8-bit picture (float pixels outside 0..1) becomes an error row.
    """

    media = "image"
    default_batch_size = 64
    requires = Requirements(("PIL",), "all")

    def outputs(self) -> dict[str, str]:
        c = self.config.column
        return {
            self.config.output: "RGB pixels, HxWx3 uint8",
            f"{c}_width": "original width in pixels",
            f"{c}_height": "original height in pixels",
            f"{c}_frames": "frames in the file (an animation: decoded at frame 1)",
        }

    def output_types(self) -> dict[str, pa.DataType]:
        c = self.config.column
        return {f"{c}_width": pa.int64(), f"{c}_height": pa.int64(), f"{c}_frames": pa.int64()}

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config
        c = cfg.column

        def one(**row: Any) -> dict[str, Any]:
            pixels, w, h, frames = read_image(row[c], cfg.resize, cfg.max_pixels, cfg.storage_options,
                                              exif_transpose=cfg.exif_transpose, background=cfg.background,
                                              allowed_roots=cfg.allowed_roots, fetch=cfg.fetch())
            return {cfg.output: pixels, f"{c}_width": w, f"{c}_height": h, f"{c}_frames": frames}

        return map_rows({c: batch[c]}, one, list(self.outputs()))
