"""decode_image: encoded image bytes (or a path/URL) -> RGB pixels."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.files import read_bytes
from mmbatch.core.requirements import Requirements

from .base import OpConfig, Operator, map_rows, register


class DecodeImageConfig(OpConfig):
    column: str = Field("image", description="binary column of encoded images, or string column of paths/URLs")
    output: str = Field("pixels", description="output column: HxWx3 uint8 RGB pixels (not written)")
    resize: int | tuple[int, int] | None = Field(
        None, description="N: shorter side to N pixels keeping the aspect ratio; [W, H]: exact size"
    )
    max_pixels: int = Field(
        89_478_485, ge=1, description="refuse images declaring more pixels (decompression bombs)"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for URLs")


def target_size(size: tuple[int, int], resize: int | tuple[int, int] | None) -> tuple[int, int]:
    w, h = size
    if resize is None:
        return w, h
    if isinstance(resize, int):
        scale = resize / min(w, h)
        return max(1, round(w * scale)), max(1, round(h * scale))
    return resize


def read_image(
    data: bytes | str, resize: int | tuple[int, int] | None, max_pixels: int, storage_options: dict[str, Any]
) -> tuple[np.ndarray, int, int]:
    """Decode to RGB uint8 pixels; returns (pixels, original width, original height)."""
    from PIL import Image

    if isinstance(data, str):
        data = read_bytes(data, storage_options)
    if not data:
        raise ValueError("empty image (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise ValueError(f"not a decodable image ({len(data)} bytes, starts with {data[:8]!r})") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise ValueError(f"image declares {w}x{h} pixels, more than max_pixels={max_pixels}")
        tw, th = target_size((w, h), resize)
        if (tw, th) != (w, h):
            img.draft("RGB", (tw, th))  # JPEG: decode at a reduced scale >= the target
        rgb = img.convert("RGB")
        if rgb.size != (tw, th):
            rgb = rgb.resize((tw, th), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.uint8), w, h


@register("decode_image")
class DecodeImage(Operator[DecodeImageConfig]):
    """Decode images to RGB pixels.

    Inputs: ``column`` (bytes, or a path/URL string). Outputs: ``output`` (HxWx3 uint8,
    transient), ``<column>_width`` and ``<column>_height`` (the original size).
    Runs as Ray tasks (1 CPU). A corrupt, truncated, empty or non-image row, or one
    declaring more than ``max_pixels`` pixels, becomes an error row.
    """

    stateful = False
    default_batch_size = 64
    requires = Requirements(("PIL",), "all")

    def inputs(self) -> dict[str, str]:
        return {self.config.column: "encoded image bytes or path/URL"}

    def outputs(self) -> dict[str, str]:
        c = self.config.column
        return {
            self.config.output: "RGB pixels, HxWx3 uint8",
            f"{c}_width": "original width in pixels",
            f"{c}_height": "original height in pixels",
        }

    def transient_outputs(self) -> set[str]:
        return {self.config.output}

    def media_inputs(self) -> set[str]:
        return {self.config.column}

    def output_types(self) -> dict[str, pa.DataType]:
        c = self.config.column
        return {f"{c}_width": pa.int64(), f"{c}_height": pa.int64()}

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config
        c = cfg.column

        def one(**row: Any) -> dict[str, Any]:
            pixels, w, h = read_image(row[c], cfg.resize, cfg.max_pixels, cfg.storage_options)
            return {cfg.output: pixels, f"{c}_width": w, f"{c}_height": h}

        return map_rows({c: batch[c]}, one, list(self.outputs()))
