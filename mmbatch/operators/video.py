"""decode_video: video bytes (or a path/URL) -> sampled RGB frames; classify_video: top-k labels."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.files import check_path_allowed, read_bytes
from mmbatch.core.requirements import Requirements

from .base import map_rows, register
from .decoding import DecodeKeys, Decoder
from .labels import Classifier, LabelConfig, label_names


class DecodeVideoConfig(DecodeKeys):
    column: str = Field("video", description="binary column of encoded videos, or string column of paths/URLs")
    output: str = Field("frames", description="output column: (N, H, W, 3) uint8 RGB frames (not written)")
    num_frames: int = Field(16, ge=1, description="frames sampled evenly from the first to the last frame")
    fps: float | None = Field(None, gt=0, description="instead of num_frames: one frame every 1/fps seconds")
    max_frames: int = Field(256, ge=1, description="at most this many frames per video with fps sampling")
    resize: int | None = Field(None, ge=1, description="shorter side to N pixels, keeping the aspect ratio")


def _open(data: bytes) -> Any:
    import av

    try:
        container = av.open(io.BytesIO(data))
    except av.error.FFmpegError as exc:
        raise ValueError(f"not a decodable video ({len(data)} bytes, starting {data[:8].hex()}): {exc}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"no video stream ({len(data)} bytes; truncated or not a video)")
    return container


def read_video(data: bytes | str, cfg: DecodeVideoConfig) -> dict[str, Any]:
    """Decode with PyAV, streaming: only the sampled frames are converted to RGB and kept.

    Uniform sampling takes frames ``round(linspace(0, total - 1, num_frames))`` (repeating frames
    of a video shorter than ``num_frames``); the total comes from the stream header or, when the
    container has none (WebM, MKV), from counting packets. ``fps`` sampling keeps the first frame
    at or after each multiple of ``1/fps`` seconds from the first frame."""
    if isinstance(data, str):
        check_path_allowed(data, cfg.allowed_roots)
        data = read_bytes(data, cfg.storage_options, cfg.fetch())
    if not data:
        raise ValueError("empty video (0 bytes)")
    with _open(data) as container:
        stream = container.streams.video[0]
        total = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = container.duration / 1e6 if container.duration else (total / rate if rate else 0.0)
    if not total:
        raise ValueError("the video stream holds no frames")
    wanted = Counter(np.linspace(0, total - 1, cfg.num_frames).round().astype(int).tolist())
    size: dict[str, int] = {}
    kept: list[np.ndarray] = []
    with _open(data) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        next_t: float | None = None
        for i, frame in enumerate(container.decode(stream)):
            if cfg.resize and not size:
                scale = cfg.resize / min(frame.width, frame.height)
                size = {"width": max(1, round(frame.width * scale)), "height": max(1, round(frame.height * scale))}
            if cfg.fps is None:
                if i in wanted:
                    kept += [frame.to_ndarray(format="rgb24", **size)] * wanted[i]
                if i >= max(wanted):
                    break
            else:
                t = float(frame.time) if frame.time is not None else i / (rate or 1.0)
                next_t = t if next_t is None else next_t
                if t + 1e-6 >= next_t:
                    kept.append(frame.to_ndarray(format="rgb24", **size))
                    next_t += 1.0 / cfg.fps
                    if len(kept) >= cfg.max_frames:
                        break
    if not kept:
        raise ValueError("no decodable frames")
    if cfg.fps is None and len(kept) < cfg.num_frames:  # the header promised more frames than decode
        kept += [kept[-1]] * (cfg.num_frames - len(kept))
    return {"frames": np.stack(kept), "duration": duration, "fps": rate, "num_frames": total}


@register("decode_video")
class DecodeVideo(Decoder[DecodeVideoConfig]):
    """Decode videos and sample frames.

    Input: ``column`` (bytes, or a path/URL string). Outputs: ``output`` ((N, H, W, 3) uint8
    RGB frames, transient), ``<column>_duration`` (seconds), ``<column>_fps`` (average frame
    rate) and ``<column>_num_frames`` (frames in the video). Runs as Ray tasks (1 CPU). A
    corrupt, truncated, empty or frameless video becomes an error row.
    """

    media = "video"
    default_batch_size = 8
    requires = Requirements(("av",), "video")

    def outputs(self) -> dict[str, str]:
        c = self.config.column
        return {
            self.config.output: "sampled RGB frames, (N, H, W, 3) uint8",
            f"{c}_duration": "duration in seconds",
            f"{c}_fps": "average frame rate",
            f"{c}_num_frames": "number of frames in the video",
        }

    def output_types(self) -> dict[str, pa.DataType]:
        c = self.config.column
        return {f"{c}_duration": pa.float64(), f"{c}_fps": pa.float64(), f"{c}_num_frames": pa.int64()}

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config
        c = cfg.column

        def one(**row: Any) -> dict[str, Any]:
            v = read_video(row[c], cfg)
            return {cfg.output: v["frames"], **{f"{c}_{k}": v[k] for k in ("duration", "fps", "num_frames")}}

        return map_rows({c: batch[c]}, one, list(self.outputs()))


class ClassifyVideoConfig(LabelConfig):
    frames: str = Field("frames", description="frames column from decode_video")


@register("classify_video")
class ClassifyVideo(Classifier[ClassifyVideoConfig]):
    """Top-k video labels from ``AutoModelForVideoClassification`` (VideoMAE, TimeSformer,
    ViViT, ...) with its ``AutoImageProcessor``; each row's frames are resampled evenly to the
    model's ``num_frames``, in a prepare stage of CPU tasks.

    Input: ``frames`` ((N, H, W, 3) uint8, from decode_video). Outputs: ``output`` (string),
    ``<output>_topk`` (list<string>), ``<output>_scores`` (list<float32>). Resources: 1 actor,
    1 CPU by default; set ``resources.gpus`` to run on GPUs.
    """

    default_batch_size = 8

    def inputs(self) -> dict[str, str]:
        return {self.config.frames: "RGB frames, (N, H, W, 3) uint8"}

    def prepared(self) -> dict[str, str]:
        return {self.column("pixel_values"): "the processor's pixel_values, (T, 3, H, W) per row"}

    def load_processors(self, path: str) -> None:
        from transformers import AutoConfig, AutoImageProcessor

        self.processor = self.load_processor(AutoImageProcessor, path)
        self.num_frames = getattr(self.load_processor(AutoConfig, path), "num_frames", None)

    def load(self, path: str) -> None:
        from transformers import AutoModelForVideoClassification

        self.model = self.load_model(AutoModelForVideoClassification, path)
        self.load_processors(path)
        self.label_names = label_names(self.model.config)

    def prepare(self, batch: dict[str, Column]) -> dict[str, Any]:
        videos = list(batch[self.config.frames])
        if self.num_frames:
            videos = [v[np.linspace(0, len(v) - 1, self.num_frames).round().astype(int)] for v in videos]
        values = self.processor([list(v) for v in videos], return_tensors="np")["pixel_values"]
        return {self.column("pixel_values"): np.asarray(values).astype(self.transfer_dtype, copy=False)}

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        pixels = batch[self.column("pixel_values")]
        assert isinstance(pixels, np.ndarray)
        values = self.tensor(pixels, self.model_dtype)  # copied while the other call computes
        with self.on_device():
            probs = self.model(pixel_values=values).logits.float().softmax(dim=-1)
        return self.label_columns(probs.cpu())
