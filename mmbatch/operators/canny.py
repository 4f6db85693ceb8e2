"""canny: Canny edge maps from decoded pixels, the conditioning images of canny ControlNets."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from mmbatch.core.columns import Column
from mmbatch.core.requirements import Requirements

from .base import OpConfig, Operator, map_rows, register


class CannyConfig(OpConfig):
    column: str = Field("pixels", description="pixel column (HxWx3 uint8) from decode_image")
    output: str = Field("canny", description="output column: HxWx3 uint8 edge map, white on black (not written)")
    low_threshold: int = Field(100, ge=0, le=255, description="hysteresis low threshold (cv2.Canny)")
    high_threshold: int = Field(200, ge=0, le=255, description="hysteresis high threshold (cv2.Canny)")

    @model_validator(mode="after")
    def _ordered(self) -> CannyConfig:
        if self.low_threshold > self.high_threshold:
            raise ValueError("low_threshold must not exceed high_threshold")
        return self


def canny_edges(pixels: np.ndarray, low: int, high: int) -> np.ndarray:
    """``cv2.Canny`` on the pixels (as in the lllyasviel/sd-controlnet-canny preprocessing),
    stacked to 3 channels."""
    import cv2

    edges = cv2.Canny(np.ascontiguousarray(pixels, dtype=np.uint8), low, high)
    return np.repeat(edges[:, :, None], 3, axis=2)


@register("canny")
class Canny(Operator[CannyConfig]):
    """Canny edges for ControlNet conditioning.

    Input: ``column`` (HxWx3 uint8 pixels). Output: ``output`` (HxWx3 uint8: 255 on edges,
    0 elsewhere; transient). Runs as Ray tasks (1 CPU); needs ``opencv-python-headless``.
    """

    stateful = False
    default_batch_size = 64
    requires = Requirements(("cv2",), "diffusion")

    def inputs(self) -> dict[str, str]:
        return {self.config.column: "RGB pixels"}

    def outputs(self) -> dict[str, str]:
        return {self.config.output: "edge map, HxWx3 uint8"}

    def transient_outputs(self) -> set[str]:
        return {self.config.output}

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config

        def one(**row: Any) -> dict[str, Any]:
            return {cfg.output: canny_edges(row[cfg.column], cfg.low_threshold, cfg.high_threshold)}

        return map_rows({cfg.column: batch[cfg.column]}, one, [cfg.output])
