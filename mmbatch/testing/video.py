"""A tiny random-weight video classifier and synthetic, deterministic videos (PyAV).

* :func:`build_tiny_videomae` -- ``VideoMAEForVideoClassification`` (4 frames, tubelets of 2,
  32x32, hidden size 32) + ``VideoMAEImageProcessor``; loads with
  ``AutoModelForVideoClassification`` / ``AutoImageProcessor``.
* :func:`synthetic_video` -- video ``i``: a coloured square moving across a plain background
  (direction, colours and speed from ``random.Random(i)``), as a (T, H, W, 3) uint8 array;
  :func:`encode_video` writes frames as MP4 (H.264 where PyAV has libx264, else MPEG-4 Part 2);
  :func:`write_video_folder` / :func:`write_video_parquet` write corpora, the latter optionally
  with one row per :data:`BAD_KINDS` (bytes no demuxer accepts).
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmbatch.testing.images import COLORS

__all__ = [
    "DIRECTIONS",
    "BAD_KINDS",
    "build_tiny_videomae",
    "synthetic_video",
    "encode_video",
    "bad_video_bytes",
    "write_video_folder",
    "write_video_parquet",
]

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
#: bad rows of ``write_video_parquet(..., with_bad=True)``; the row id is ``"bad-<kind>"``
BAD_KINDS: tuple[str, ...] = ("corrupt", "truncated", "empty", "text")


def build_tiny_videomae(
    out_dir: str | Path,
    labels: Sequence[str] = DIRECTIONS,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    num_frames: int = 4,
    hidden_size: int = 32,
) -> Path:
    """``VideoMAEForVideoClassification`` with ``id2label`` from ``labels`` + a
    ``VideoMAEImageProcessor`` resizing the shorter side to ``image_size`` and centre-cropping."""
    import torch
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor

    config = VideoMAEConfig(
        image_size=image_size,
        patch_size=patch_size,
        num_frames=num_frames,
        tubelet_size=2,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        use_mean_pooling=True,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    processor = VideoMAEImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    torch.manual_seed(seed)
    model = VideoMAEForVideoClassification(config).eval()
    out = Path(out_dir)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out


def synthetic_video(i: int, num_frames: int = 16, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """Video ``i`` (deterministic): (num_frames, height, width, 3) uint8, ``size=(width, height)``."""
    rng = random.Random(i)
    names = list(COLORS)
    fg = names[rng.randrange(len(names))]
    bg = rng.choice([c for c in names if c != fg])
    direction = DIRECTIONS[i % len(DIRECTIONS)]
    w, h = size
    side = max(4, min(w, h) // 4)
    frames = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    frames[:] = COLORS[bg]
    for t in range(num_frames):
        f = t / max(1, num_frames - 1)
        x = {"left": 1 - f, "right": f}.get(direction, 0.5) * (w - side)
        y = {"up": 1 - f, "down": f}.get(direction, 0.5) * (h - side)
        x0, y0 = int(round(x)), int(round(y))
        frames[t, y0 : y0 + side, x0 : x0 + side] = COLORS[fg]
    return frames


def encode_video(frames: np.ndarray, fps: int = 8, codec: str | None = None) -> bytes:
    """Encode (T, H, W, 3) uint8 frames as an MP4 (even sizes required by yuv420p)."""
    import av

    if codec is None:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def bad_video_bytes() -> dict[str, bytes]:
    """One payload per kind in :data:`BAD_KINDS` (deterministic)."""
    rng = random.Random(4321)
    good = encode_video(synthetic_video(0, 8), codec="mpeg4")
    return {
        "corrupt": good[:32] + bytes(rng.randrange(256) for _ in range(2048)),  # ftyp box, then garbage
        "truncated": good[: len(good) // 2],  # the moov box (written last) is gone
        "empty": b"",
        "text": b"This is a plain text file, not a video.\n",
    }


def write_video_folder(
    directory: str | Path, n: int, num_frames: int = 16, size: tuple[int, int] = (64, 48), fps: int = 8
) -> list[Path]:
    """Write videos ``0 .. n-1`` as ``vid-00000.mp4`` ... into ``directory``; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = directory / f"vid-{i:05d}.mp4"
        p.write_bytes(encode_video(synthetic_video(i, num_frames, size), fps))
        paths.append(p)
    return paths


def write_video_parquet(
    path: str | Path,
    n: int,
    num_frames: int = 16,
    size: tuple[int, int] = (64, 48),
    fps: int = 8,
    with_bad: bool = False,
) -> list[str]:
    """One Parquet file with columns ``id`` (``vid-00000`` ..., ``bad-<kind>``), ``video``
    (MP4 bytes) and ``direction`` (the true motion label). Returns the bad rows' ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[tuple[str, bytes, str | None]] = [
        (f"vid-{i:05d}", encode_video(synthetic_video(i, num_frames, size), fps), DIRECTIONS[i % len(DIRECTIONS)])
        for i in range(n)
    ]
    bad = [(f"bad-{kind}", payload, None) for kind, payload in bad_video_bytes().items()] if with_bad else []
    rows = rows[: n // 2] + bad + rows[n // 2 :]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.string()),
            "video": pa.array([r[1] for r in rows], pa.binary()),
            "direction": pa.array([r[2] for r in rows], pa.string()),
        }
    )
    pq.write_table(table, path)
    return [r[0] for r in bad]
